import logging
import os

import pytest


def pytest_configure(config):
    # Importing salt adds root log handlers that write to closed streams at exit.
    logging.getLogger().handlers.clear()


def pytest_collection_modifyitems(config, items):
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="needs root for private namespaces")
        for item in items:
            if "differential" in item.keywords:
                item.add_marker(skip)
