"""Fixtures of lab C: one set of machines for the whole session, reset to the image where a test needs it."""

import time

import machines
import pytest


@pytest.fixture(scope="module")
def machine_lab(timings):
    """Three booted machines, every minion answering with this checkout's modules, etcd and a master.

    One lab per test module: a module that brings up its own lab (the README's commands do) never meets
    another's.
    """
    started = time.monotonic()
    with machines.MachineLab(machines=3) as lab:
        timings["lab C: image cached → 3 machines booted (systemd running)"] = time.monotonic() - started
        lab.wait_minions()
        timings["lab C: up → every minion answers test.ping"] = time.monotonic() - started
        lab.provision()
        yield lab


@pytest.fixture
def fresh_machines(machine_lab, timings):
    """The session's machines reset to the image (modules synced again) and etcd emptied, for one test."""
    started = time.monotonic()
    for machine in machine_lab.nodes:
        machine.reset()
    machine_lab.clear_dcs()
    machine_lab.wait_minions()
    machine_lab.provision()
    timings["lab C: reset of all 3 machines for a test"] = time.monotonic() - started
    return machine_lab
