"""The demo's first words to a newcomer: what the host lacks, one sentence each, saying what to do.

The host facts are stand-ins here (a pure decision over them); the real checks run in
tests/systemd_machines/test_demo.py.
"""

import collections

import demo
import pytest

Usage = collections.namedtuple("Usage", "total used free")


@pytest.fixture
def host(monkeypatch):
    """A host with everything the demo needs; each test takes one thing away."""
    facts = {
        "euid": 0,
        "release": {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"},
        "up": False,
        "namespaces": True,
        "memory": 8 << 30,
        "disk": 50 << 30,
    }
    monkeypatch.setattr(demo.os, "geteuid", lambda: facts["euid"])
    monkeypatch.setattr(demo, "_os_release", lambda: facts["release"])
    monkeypatch.setattr(demo, "_lab_is_up", lambda: facts["up"])
    monkeypatch.setattr(demo, "_namespaces_work", lambda: facts["namespaces"])
    monkeypatch.setattr(demo, "_meminfo", lambda: {"MemAvailable": facts["memory"]})
    monkeypatch.setattr(demo.shutil, "disk_usage", lambda folder: Usage(100 << 30, 0, facts["disk"]))
    return facts


def test_a_ready_host_has_nothing_to_say(host):
    assert demo.problems() == []


def test_trixie_is_not_yet_a_lab_host(host):
    host["release"] = {"ID": "debian", "VERSION_ID": "13", "PRETTY_NAME": "Debian GNU/Linux 13 (trixie)"}
    assert demo.problems() == [
        "The demo runs on Debian 12 (bookworm), not Debian GNU/Linux 13 (trixie): use a Debian 12 host or VM."
    ]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"euid": 1000}, "run it as root"),
        ({"release": {"ID": "ubuntu", "VERSION_ID": "24.04", "PRETTY_NAME": "Ubuntu 24.04"}}, "not Ubuntu 24.04"),
        ({"up": True}, "A demo is already up: reuse it"),
        ({"namespaces": False}, "unprivileged container"),
        ({"memory": 1 << 30}, "2 GiB of free memory"),
        ({"disk": 1 << 30}, "3 GiB free under /var/cache"),
    ],
)
def test_each_missing_thing_gets_one_sentence_with_what_to_do(host, change, words):
    host.update(change)
    found = demo.problems()
    assert any(words in problem for problem in found), found
    assert all(problem.endswith(".") and problem.count(": ") <= 2 for problem in found), found
