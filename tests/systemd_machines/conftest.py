"""Fixtures of the machines' tier: one lab per release for the whole run (and one per release for each file of
tests/conftest.py's ``OWN_LAB``, on another worker), and the starting points tests declare.

A test never relies on what an earlier test left: it asks for a *starting point* (one of starting_points.py, or
one of its module's made with ``starting_points.starting_point``). A starting point is made from a clean slate
(every machine reset to its image, etcd emptied, the modules in place), and kept for the next test that asks for
the same one only while its check still gives what it gave when it was made (every member streaming, the same
pillar, …) and no test failed on it. So any test passes alone (``-k``) and in any order, and tests that share a
starting point, run one after another, pay for it once. ``tests/unit/test_lab_independence.py`` checks that every
test here asks for one.
"""

import time

import machines
import pytest
from starting_points import (  # noqa: F401 - for every module
    bare_machines,
    fresh_machines,
    orchestrated,
    tls_cluster,
)


@pytest.fixture(scope="session", params=machines.releases())
def machine_lab(request, timings):
    """Three booted machines of a Debian release, every minion answering with this checkout's modules, etcd and a
    master: one lab per release and worker for the whole run. Tests do not use it directly: they ask for a starting
    point."""
    started = time.monotonic()
    with machines.MachineLab(machines=3, release=request.param) as lab:
        # a release may have a second lab, for the files of tests/conftest.py's OWN_LAB: its slot tells them apart
        lab.label = f"{lab.release}, lab {lab.slot.number}"
        timings[f"machines ({lab.label}): image cached → 3 machines booted (systemd running)"] = (
            time.monotonic() - started
        )
        lab.wait_minions()
        timings[f"machines ({lab.label}): up → every minion answers test.ping"] = time.monotonic() - started
        lab.provision()
        lab.starting_point = None
        yield lab


# The order the tests run in, per release: by starting point, so that each is made as few times as possible (a
# test that reaches another starting point, such as the rollout from fresh machines, runs before the tests that
# start from it; one marked ``spoils`` after those that keep theirs). Only speed depends on it: every starting
# point checks the lab before it is kept.
ORDER = (
    "fresh_machines",
    "orchestrated",
    "orchestrated spoils",
    "two_members",
    "restartable",
    "fresh_machines spoils",
    "bare_machines",
    "tls_cluster",
    "tls_cluster spoils",
    "formula_cluster",
    "formula_cluster spoils",
    "debian_way",
)
POINTS = tuple(dict.fromkeys(name.split()[0] for name in ORDER))


def pytest_configure(config):
    config.addinivalue_line("markers", "spoils: leaves the lab outside its starting point (runs after the others)")


def _rank(item):
    point = next((name for name in POINTS if name in item.fixturenames), None)
    if point is None:
        return len(ORDER)
    return ORDER.index(f"{point} spoils" if item.get_closest_marker("spoils") else point)


def pytest_collection_modifyitems(items):
    here = [index for index, item in enumerate(items) if "systemd_machines" in item.path.parts]
    releases = machines.releases()
    ours = sorted(
        (items[index] for index in here),
        key=lambda item: (
            releases.index(item.callspec.params["machine_lab"]) if "machine_lab" in item.fixturenames else -1,
            _rank(item),
            here.index(items.index(item)),
        ),
    )
    for index, item in zip(here, ours):
        items[index] = item
