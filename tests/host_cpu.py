"""This host's CPU counters, for the suite's summary (``tests/conftest.py``) and the benchmarks
(``MachineLab.cpu_seconds``): the standard library only, so that conftest reads them without importing the labs."""

import os

TICK = os.sysconf("SC_CLK_TCK")


def ticks():
    """``(total, idle)`` clock ticks of every core since boot, from ``/proc/stat`` (idle counts iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        values = [int(value) for value in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def busy_seconds():
    """CPU seconds this host has been busy since it booted, every core."""
    total, idle = ticks()
    return (total - idle) / TICK


def cgroup_seconds(folder):
    """``usage_usec`` of the cgroup ``folder`` (cgroup v2's ``cpu.stat``), in seconds; 0 when it is gone."""
    try:
        with open(folder / "cpu.stat", encoding="ascii") as stat:
            usage = dict(line.split() for line in stat)
    except FileNotFoundError:
        return 0.0
    return int(usage["usage_usec"]) / 1e6


def session_seconds(session):
    """CPU seconds of the live processes of ``session`` (a session leader's id) and of the children they have
    reaped: the lab's Salt master, whose workers live as long as it does."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[3]) == session:
            total += sum(int(value) for value in fields[11:15])
    return total / TICK
