import logging
import os
import signal

import pytest

_TIMINGS = {}


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # Importing salt adds root log handlers that write to closed streams at exit.
    logging.getLogger().handlers.clear()
    # A terminated run (CI's time limit, a person's kill) still tears its lab down.
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture(scope="session")
def timings():
    """Measured durations in seconds, printed at the end of the run (for notes, never asserted)."""
    return _TIMINGS


def pytest_terminal_summary(terminalreporter):
    if _TIMINGS:
        terminalreporter.section("measured")
        for what, seconds in _TIMINGS.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {what}")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root for private namespaces")
        for item in items:
            if "differential" in item.keywords or "lab" in item.keywords:
                item.add_marker(skip)
