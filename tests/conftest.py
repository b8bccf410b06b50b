"""The test session: bp's settings applied first (as the bp command does), the shared fixtures as plugins."""

from __future__ import annotations

import pytest

from flows.runtime import settings

settings.apply()  # bp's offline Prefect/MLflow defaults, before either is imported

pytest_plugins = ["support.fixtures", "support.stack"]


def pytest_collection_modifyitems(items):
    """Tests that start servers are slow: those on the session's Prefect server, the stack's and compose's."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()) or item.get_closest_marker("stack") \
                or item.get_closest_marker("compose"):
            item.add_marker(pytest.mark.slow)
