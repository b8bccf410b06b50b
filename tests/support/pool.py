"""The pool stack of the sweep tests (``bp stack up --workers 2`` on SQLite, as a new user starts it, its Dask
scheduler taking a frozen worker for lost after 8 s) and what its tests do with it: a sweep submitted to it, its
runs, the Prefect states of its flow runs and points, a service of it stopped and started again as it was.

``pool`` is session-scoped: test_stack_pool_sweeps.py and test_stack_pool_when_servers_fail.py share one stack, on one
pytest-xdist worker, in file order (tests/conftest.py): the sweeps first, then the faults, whose frozen sweep worker
and ``bp stack down`` under a sweep come last.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.stack import procs as stack_procs
from support import SEED_DATA, bp, python_env
from support.stack import bp_stack, exported, free_port, prefect_client, stop_after_its_last_test, stop_once

WORKER_TTL = "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL"  # the scheduler's: a silent worker is lost after this


@pytest.fixture(scope="session")
def pool(tmp_path_factory, request):
    """The default stack, two workers reading data only under the seed's data directory; down after its last test
    (or at the session's end), nothing left."""
    directory = tmp_path_factory.mktemp("bp-sqlite-stack")
    up = bp_stack("up", "--dir", str(directory), "--workers", "2", "--data-root", str(SEED_DATA.parent),
                  "--prefect-port", str(free_port()), "--mlflow-port", str(free_port()),
                  "--scheduler-port", str(free_port()),
                  env={**python_env(), WORKER_TTL: "8s"})
    if up.returncode != 0:
        bp_stack("down", "--dir", str(directory))
        pytest.fail(f"bp stack up failed (exit {up.returncode}):\n{up.stderr[-4000:]}")
    assert "--database-url (Postgres) suits more than one worker" in up.stderr
    env = exported(up.stdout)
    cwd = tmp_path_factory.mktemp("pool-client")  # not the checkout, where the workers start their flow runs

    def down() -> None:
        records = stack_procs.read_records(directory)  # a service a test restarted included
        done = bp_stack("down", "--dir", str(directory), "--grace", "5", timeout=180)
        left = [r for r in records if stack_procs.group(r)]
        stack_procs.stop(left, 5)
        assert done.returncode == 0 and not left, f"bp stack down left {left}: {done.stdout}{done.stderr}"

    stop_after_its_last_test(request, "pool", down)
    try:
        yield {"dir": directory, "env": {**python_env(), **env}, "cwd": cwd, **env}
    finally:
        stop_once(request.config, "pool")  # unless its last test did


def sweep(pool, *argv: str, env: dict | None = None, wait: bool = True):
    return bp("sweep", *argv, env={**pool["env"], **(env or {})}, cwd=pool["cwd"], timeout=900, wait=wait)


def until_while_running(running, found, every: float = 1, timeout: float = 300):
    """``found()`` polled every ``every`` s until it is true, its value returned; fails with the process's stderr
    when ``running`` (a ``bp`` Popen) exits first or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while not (value := found()):
        assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
        time.sleep(every)
    return value


def runs_of(pool, experiment: str, where: str = "") -> list:
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    found = mc.get_experiment_by_name(experiment)
    return mc.search_runs([found.experiment_id], where, max_results=500) if found else []


def prefect_server(pool) -> dict:
    return next(r for r in stack_procs.read_records(pool["dir"]) if r["name"] == "prefect-server")


def stop_service(record: dict) -> tuple[list[bytes], dict, str]:
    """Stop a stack service (its whole session); what it takes to start it again as it was."""
    pid = record["pid"]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    env = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    cwd = os.readlink(f"/proc/{pid}/cwd")
    stack_procs.stop([record], 10)
    return argv, env, cwd


def start_service(pool, record: dict, argv, env, cwd) -> None:
    """Start a stopped service again and record it, so that bp stack down stops the new process."""
    records = []
    stack_procs.spawn(records, record["name"], [a.decode() for a in argv], {k.decode(): v.decode() for k, v in
                      env.items()}, Path(record["log"]), cwd=Path(cwd), url=record["url"], health=record["health"])
    write = [records[0] if r["name"] == record["name"] else r for r in stack_procs.read_records(pool["dir"])]
    stack_procs.write_records(pool["dir"], write)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            import urllib.request

            with urllib.request.urlopen(record["health"], timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{record['name']} did not come back")


def away_a_while(pool, record: dict, seconds: float) -> None:
    """A stack service stopped, then started again as it was after ``seconds``."""
    restart = stop_service(record)
    time.sleep(seconds)
    start_service(pool, record, *restart)


def flow_run_states(pool, ids) -> dict[str, str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with prefect_client(pool) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))
    return {str(r.id): r.state.type.value for r in runs}


def point_states(pool, flow_run: str) -> dict[str, str]:
    """The states of a sweep's point task runs (under its flow run in the Prefect UI), by name."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with prefect_client(pool) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])), limit=200)
    return {r.name: r.state.type.value for r in runs if r.name.startswith("child ")}


def rates(n: int) -> str:
    return "[" + ", ".join(f"{1.0e-5 * (1 + i):.6g}" for i in range(n)) + "]"

