"""Fixtures of the machines' tier: one lab per release for the whole run, and the starting points tests declare.

A test never relies on what an earlier test left: it asks for a *starting point* (a fixture below, or one of its
module's made with :py:func:`starting_point`). A starting point is made from a clean slate (every machine reset to
its image, etcd emptied, the modules synced), and kept for the next test that asks for the same one only while
its check still gives what it gave when it was made (every member streaming, the same pillar, …) and no test
failed on it. So any test passes alone (``-k``) and in any order, and tests that share a starting point, run one
after another, pay for it once. ``tests/unit/test_lab_independence.py`` checks that every test here asks for one.
"""

import time

import machines
import pytest
from starting_points import bare_machines, fresh_machines, orchestrated  # noqa: F401 - fixtures for every module


@pytest.fixture(scope="session", params=machines.releases())
def machine_lab(request, timings):
    """Three booted machines of a Debian release, every minion answering with this checkout's modules, etcd and a
    master: one lab per release for the whole run. Tests do not use it directly: they ask for a starting point."""
    started = time.monotonic()
    with machines.MachineLab(machines=3, release=request.param) as lab:
        timings[f"machines ({lab.release}): image cached → 3 machines booted (systemd running)"] = (
            time.monotonic() - started
        )
        lab.wait_minions()
        timings[f"machines ({lab.release}): up → every minion answers test.ping"] = time.monotonic() - started
        lab.provision()
        lab.starting_point = None
        yield lab
