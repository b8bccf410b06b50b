"""The test session: bp's settings applied first (as the bp command does), the shared fixtures as plugins."""

from __future__ import annotations

import pytest

from flows.runtime import settings

settings.apply()  # bp's offline Prefect/MLflow defaults, before either is imported

pytest_plugins = ["support.fixtures", "support.stack"]


# pytest-xdist runs a group's tests one after another on one worker (--dist loadgroup, pyproject.toml): those that
# share a session's stack, those on the pool's own stack or the default ports (test_stack_pool, the README's
# walk-through), and the compose tests on the one Docker engine; every other test goes where a worker is free.
POOL_GROUP = ("tests/stack/test_stack_pool.py", "tests/stack/test_walkthrough.py")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    """Tests that start servers are slow: those on the session's Prefect server, the stack's and compose's. The
    stack's and compose's keep to their group's worker."""
    for item in items:
        if "prefect_server" in getattr(item, "fixturenames", ()) or item.get_closest_marker("stack") \
                or item.get_closest_marker("compose"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("compose"):
            item.add_marker(pytest.mark.xdist_group("compose"))
        elif item.get_closest_marker("stack"):
            pool = item.nodeid.split("::")[0] in POOL_GROUP
            item.add_marker(pytest.mark.xdist_group("pool" if pool else "stack"))
