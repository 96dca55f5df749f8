"""Fixtures of lab C: one set of machines for the whole session, reset to the image where a test needs it."""

import time

import machines
import pytest


@pytest.fixture(scope="module", params=machines.releases())
def machine_lab(request, timings):
    """Three booted machines of a Debian release, every minion answering with this checkout's modules, etcd and
    a master; every test that uses it runs once per release of $PATRONI_DEBIAN_RELEASES.

    One lab per test module and release: a module that brings up its own lab (the README's commands do) never
    meets another's.
    """
    started = time.monotonic()
    with machines.MachineLab(machines=3, release=request.param) as lab:
        timings[f"lab C ({lab.release}): image cached → 3 machines booted (systemd running)"] = (
            time.monotonic() - started
        )
        lab.wait_minions()
        timings[f"lab C ({lab.release}): up → every minion answers test.ping"] = time.monotonic() - started
        lab.provision()
        yield lab


@pytest.fixture
def fresh_machines(machine_lab, timings):
    """The session's machines reset to the image (modules synced again) and etcd emptied, for one test."""
    started = time.monotonic()
    machine_lab.reset_all()
    machine_lab.provision()
    timings[f"lab C ({machine_lab.release}): reset of all 3 machines for a test"] = time.monotonic() - started
    return machine_lab
