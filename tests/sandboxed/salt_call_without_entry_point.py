"""salt-call as on a minion where this project is not pip-installed: Salt must not see our entry point.

The project's .venv has it installed (editable), which would hide a broken file_roots + saltutil.sync_all path.
"""

import salt.utils.entrypoints
from salt.scripts import salt_call

_iter_entry_points = salt.utils.entrypoints.iter_entry_points


def _without_ours(group, name=None):
    return [point for point in _iter_entry_points(group, name) if not point.value.startswith("patroni_debian_loader")]


salt.utils.entrypoints.iter_entry_points = _without_ours
salt_call()
