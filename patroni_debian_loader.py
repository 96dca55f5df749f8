"""Tell Salt's loader where this extension's modules live (``salt.loader`` entry point)."""
import os

_ROOT = os.path.dirname(os.path.abspath(__file__))


def get_loader_dirs():
    """Return the module folders Salt should load, by loader kind."""
    return {
        "modules": [os.path.join(_ROOT, "_modules")],
        "states": [os.path.join(_ROOT, "_states")],
    }
