"""What every tier shares: the tiers' markers and xdist groups, measured durations, and the end-of-run summary.

The tiers are named for what they need (tests/README.md): ``unit`` nothing; ``sandboxed`` root and private
namespaces; ``namespace_hosts`` root, network namespaces and this host's PostgreSQL, Patroni and etcd;
``systemd_machines`` root and Debian machines booting systemd, once per release. ``make test`` runs them side by
side with pytest-xdist: each release's machines on a worker of their own (one lab per release per run), the other
tiers on a third, which then takes the longest machine tests (``OWN_LAB``) on a lab of its own per release
(:py:func:`group`).
"""

import logging
import os
import pathlib
import re
import signal
import threading
import time

import pytest

import host_cpu

TESTS = pathlib.Path(__file__).resolve().parent
RELEASES = ("bookworm", "trixie")  # machines.RELEASES, without importing the labs into every worker
TIERS = {  # folder → (marker, what it needs)
    "unit": ("unit", "nothing"),
    "sandboxed": ("sandboxed", "root: private mount, UTS and network namespaces"),
    "namespace_hosts": ("namespace_hosts", "root: network namespaces, this host's PostgreSQL, Patroni and etcd"),
    "systemd_machines": ("systemd_machines", "root: Debian machines booting systemd (systemd-nspawn), per release"),
}
# Machine test files run on a lab of their own per release, by the worker that is free first (the one of the other
# tiers, which ended 10-14 minutes before the machines): the longest, so that the third worker does not idle. Each
# costs a lab's boot (13-16 s to every minion answering) and saves its release's lab the file's minutes and a clean
# slate (CI48 → CI49: 25 min 16 s → 23 min 42 s).
OWN_LAB = ("tests/systemd_machines/test_backup.py",)
_TIMINGS = {}
_SPANS = {}  # label → [first start, last stop, tests passed, tests failed, the xdist workers that ran them]
_FILES = {}  # label → {test file → seconds in setup, call and teardown}: where a tier's wall time goes
_WORKERS = {}  # xdist worker → [first test's start, last test's end, its shares]: how evenly the run is spread


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # Importing salt adds root log handlers that write to closed streams at exit.
    logging.getLogger().handlers.clear()
    # A terminated run (CI's time limit, a person's kill) still tears its labs down.
    signal.signal(signal.SIGTERM, _interrupt)
    for marker, needs in TIERS.values():
        config.addinivalue_line("markers", f"{marker}: needs {needs}")
    if not hasattr(config, "workerinput"):
        config._cpu = CpuSampler()  # noqa: SLF001 - the controller's, read in the summary


def tier(item):
    """The tier of a collected test: the first folder under tests/."""
    return pathlib.Path(str(item.path)).relative_to(TESTS).parts[0]


def release(item):
    """The Debian release a systemd_machines test runs on, from its lab fixture's parameter."""
    params = getattr(item, "callspec", None)
    params = params.params if params else {}
    return params.get("machine_lab")


def group(nodeid):
    """The worker's share a test belongs to, from its id: one per release for the machines (one lab per release,
    on a worker of its own), one per release and file of ``OWN_LAB``, and one for the rest, where the tests of
    the people's lab (slot 0: the README's, make demo's) run one after another."""
    found = re.search(r"\[(?:[^\]]*-)?(" + "|".join(RELEASES) + r")(?:-[^\]]*)?\]", nodeid)
    if nodeid.startswith("tests/systemd_machines/") and found:
        path = nodeid.split("::")[0]
        return f"machines {found.group(1)}" + (f", {path}" if path in OWN_LAB else "")
    return "the other tiers"


def pytest_xdist_make_scheduler(config, log):
    """xdist's loadgroup cannot group on pytest 9.2 (it renames ``item._nodeid``, which pytest 9.2 no longer
    reads): the same scheduling by scope, with the scope read from the test's id."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(config, items):
    root = os.geteuid() == 0
    for item in items:
        marker, needs = TIERS.get(tier(item), ("unit", "nothing"))
        item.add_marker(getattr(pytest.mark, marker))
        if not root and needs.startswith("root"):
            item.add_marker(pytest.mark.skip(reason=f"needs {needs}"))
        item.user_properties.append(("group", _label(item)))


def _label(item):
    """The summary's line a test counts in: its tier, and its release where it has one."""
    name = release(item)
    return f"{tier(item)} ({name})" if name else tier(item)


@pytest.fixture(scope="session")
def timings():
    """Measured durations in seconds, printed at the end of the run (for notes, never asserted)."""
    return _TIMINGS


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its measurements travel to the controller
        workeroutput["timings"] = dict(_TIMINGS)


def pytest_testnodedown(node, error):
    _TIMINGS.update(getattr(node, "workeroutput", {}).get("timings", {}))


def pytest_runtest_logreport(report):
    label = dict(report.user_properties).get("group")
    if not label:
        return
    span = _SPANS.setdefault(label, [report.start, report.stop, 0, 0, set()])
    files = _FILES.setdefault(label, {})
    test_file = report.nodeid.split("::")[0]
    files[test_file] = files.get(test_file, 0) + report.duration
    span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)
    node = getattr(report, "node", None)
    worker = node.gateway.id if node is not None else "this process"
    span[4].add(worker)
    busy = _WORKERS.setdefault(worker, [report.start, report.stop, set()])
    busy[0], busy[1] = min(busy[0], report.start), max(busy[1], report.stop)
    busy[2].add(label)
    if report.outcome == "failed":
        span[3] += 1
    elif report.when == "call" and report.outcome == "passed":
        span[2] += 1


class CpuSampler:
    """This machine's CPU use while the run goes, from /proc/stat every 5 s: where two labs and the rest meet."""

    def __init__(self, interval=5):
        self.samples, self.interval = [], interval
        self._last = host_cpu.ticks()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            time.sleep(self.interval)
            total, idle = host_cpu.ticks()
            spent, idled = total - self._last[0], idle - self._last[1]
            self._last = (total, idle)
            if spent:
                self.samples.append(100 * (spent - idled) / spent)

    def summary(self):
        if not self.samples:
            return "no samples"
        busy = sorted(self.samples)
        saturated = sum(1 for s in busy if s >= 95) / len(busy)
        per_minute = max(1, 60 // self.interval)
        minutes = [self.samples[i : i + per_minute] for i in range(0, len(self.samples), per_minute)]
        timeline = " ".join(f"{sum(m) / len(m):.0f}" for m in minutes)
        return (
            f"mean {sum(busy) / len(busy):.0f} %, median {busy[len(busy) // 2]:.0f} %, "
            f"saturated (≥ 95 %) {100 * saturated:.0f} % of the time ({len(busy)} samples of {self.interval} s); "
            f"minute by minute: {timeline}"
        )


def pytest_terminal_summary(terminalreporter, config):
    if _TIMINGS:
        terminalreporter.section("measured")
        for what, seconds in sorted(_TIMINGS.items()):
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}")
    if _SPANS:
        terminalreporter.section("durations per tier and release (wall: first test's start to last test's end)")
        for label, (start, stop, passed, failed, workers) in sorted(_SPANS.items(), key=lambda kv: kv[1][0]):
            counts = f"{passed} passed" + (f", {failed} failed" if failed else "")
            terminalreporter.write_line(
                f"{(stop - start) / 60:6.1f} min  {label:32} {counts}  (on {', '.join(sorted(workers))})"
            )
            heaviest = sorted(_FILES.get(label, {}).items(), key=lambda kv: -kv[1])[:6]
            heaviest = [f"{pathlib.Path(f).stem} {s / 60:.1f}" for f, s in heaviest if s >= 30]
            if heaviest:
                terminalreporter.write_line(f"{'':12}min per file: {', '.join(heaviest)}")
    if len(_WORKERS) > 1:  # the run's wall time is the last worker's: how far the others were from it
        begun = min(start for start, _, _ in _WORKERS.values())
        terminalreporter.write_line("each worker done, minutes after the first test's start:")
        for worker, (_, stop, labels) in sorted(_WORKERS.items(), key=lambda kv: kv[1][1]):
            terminalreporter.write_line(f"{(stop - begun) / 60:6.1f} min  {worker:5} {'; '.join(sorted(labels))}")
    sampler = getattr(config, "_cpu", None)
    if sampler is not None and sampler.samples:
        terminalreporter.write_line(f"CPU ({os.cpu_count()} cores): {sampler.summary()}")
