"""Tell Salt's loader where this extension's modules live (``salt.loader`` entry point)."""

import os
import sys

# An editable install runs from the checkout; a wheel carries the folders as data files under sys.prefix.
_CANDIDATES = (
    os.path.dirname(os.path.abspath(__file__)),
    os.path.join(sys.prefix, "share", "patroni-debian"),
)


def _root():
    for candidate in _CANDIDATES:
        if os.path.isfile(os.path.join(candidate, "_modules", "patroni_debian.py")):
            return candidate
    raise RuntimeError(f"patroni_debian: _modules not found in {', '.join(_CANDIDATES)}")


def get_loader_dirs():
    """Return the module folders Salt should load, by loader kind."""
    root = _root()
    return {kind: [os.path.join(root, folder)] for kind, folder in (("modules", "_modules"), ("states", "_states"))}
