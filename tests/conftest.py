"""The test session: bp's settings applied first (as the bp command does), the shared fixtures as plugins, and how
the tests share this machine's two cores (pytest-xdist, two workers: ``addopts`` in pyproject.toml)."""

from __future__ import annotations

import signal

import pytest

from flows.runtime import settings

settings.apply()  # bp's offline Prefect/MLflow defaults, before either is imported

# Tests send SIGINT to the bp processes they start, as Ctrl-C would. A session started in the background by a
# non-interactive shell (`python -m pytest &`, some CI runners) inherits SIGINT ignored, and so would every process it
# starts: Ctrl-C's handler, as in a terminal, for the session and (reset to the default action at exec) its children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

pytest_plugins = ["support.fixtures", "support.stack", "support.pool"]

# Fixtures that start servers and are shared by several tests (session- or module-scoped): every test using one
# runs on the same pytest-xdist worker, so the servers start once. The session stack's group spans two modules
# (test_stack.py checks the running stack before test_stack_flows.py restarts its parts: file order is kept), so
# does the pool's (test_stack_pool_sweeps.py's sweeps before test_stack_pool_when_servers_fail.py's faults), and
# the latter's lost_stack serves its frozen-scheduler test, then its killed-scheduler test, in file order.
SHARED_SERVERS = {"stack": "stack", "servers": "stack", "pool": "pool", "lost_stack": "lost-stack"}
# modules whose tests share module-scoped state (a sweep trained once, a server, the default ports) keep together
ONE_WORKER_MODULES = ("tests/stack/test_walkthrough.py", "tests/sweep/test_sweep.py",
                      "tests/sweep/test_sweep_server.py", "tests/tracking/test_store.py",
                      "tests/tracking/test_serving.py", "tests/experiments/test_mnist_pipeline.py",
                      "tests/experiments/test_resume.py", "tests/bpcore/test_linreg.py",
                      "tests/bpcore/test_mnist_data.py")
# modules whose bp processes start Prefect's temporary server on the user's Prefect home (~/.prefect, one SQLite
# database) keep to one worker: spread over two, a sweep there waited past 180 s for its first epoch in CI
USER_PREFECT_HOME = ("tests/runtime/test_signals.py", "tests/runtime/test_terminal.py",
                     "tests/sweep/test_local_cluster.py")


def _group(item) -> str | None:
    module = item.nodeid.split("::")[0]
    if item.get_closest_marker("compose"):
        return "compose"  # one Docker engine
    for fixture, group in SHARED_SERVERS.items():
        if fixture in item.fixturenames:
            return group
    if module in USER_PREFECT_HOME:
        return "prefect-home"
    return module if module in ONE_WORKER_MODULES else None


def _weight(item) -> int:
    """Longest first, so the two workers end together: the stacks' groups, then other server tests, then the rest."""
    if any(fixture in item.fixturenames for fixture in SHARED_SERVERS):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    """Tests that start servers are slow: those on the session's Prefect server, the stack's and compose's. Tests
    sharing servers keep to one worker (``--dist loadgroup``) and follow one another there (and with ``-n 0``), so
    their servers stop right after the last of them; the longest are handed out first."""
    first: dict[str, int] = {}  # each group where its first test was collected: the group's place
    unit: dict[str, str] = {}  # each test's group, or the test itself
    for index, item in enumerate(items):
        if "prefect_server" in item.fixturenames or item.get_closest_marker("stack") \
                or item.get_closest_marker("compose"):
            item.add_marker(pytest.mark.slow)
        group = _group(item)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
        unit[item.nodeid] = group or item.nodeid
        first.setdefault(unit[item.nodeid], index)
    items.sort(key=lambda item: (_weight(item), first[unit[item.nodeid]]))  # stable: a group's own order is kept
