"""Pool sweeps whose servers fail under them, on the default stack (``pool``, tests/support/pool.py: SQLite, as a
new user starts it, the Dask scheduler taking a frozen worker for lost after 8 s; test_stack_pool_sweeps.py's tests
use it first): 32 points with the Prefect server restarted on the way, the Prefect server gone for good, a sweep
worker frozen and woken, the MLflow server restarted, then ``bp stack down`` under a sweep; and on a stack of their
own, the Dask scheduler frozen, then (the frozen scheduler leaves the stack working) killed."""

from __future__ import annotations

import os
import signal
import time

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, python_env
from support.pool import (
    away_a_while,
    flow_run_states,
    prefect_server,
    rates,
    runs_of,
    start_service,
    stop_service,
    sweep,
    until_while_running,
)
from support.procs import killed_if_left
from support.stack import bp_stack, exported, free_port

from flows.runtime import outage
from flows.stack import procs as stack_procs

pytestmark = pytest.mark.stack

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")
RUNNING_CHILD = "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'"


def test_32_points_on_the_default_stack_ride_out_a_prefect_server_restart(pool):
    """On SQLite the Prefect server answers 503 "database is locked" under a 32-point submission; restarted
    mid-sweep it is away for some seconds. The sweep finishes all the same, every point complete."""
    running = sweep(pool, LINREG_SWEEP, "--pool", "bp", "--set", "experiment=pool-32", "--set", "sweep.model_name=null",
                    "--set", f"sweep.grid.trainer.learning_rate={rates(32)}", wait=False)
    with killed_if_left(running):
        until_while_running(running, lambda: len(runs_of(pool, "pool-32", "attributes.status = 'FINISHED'")) >= 6)
        away_a_while(pool, prefect_server(pool), 5)  # as in a restart that takes its time
        out, err = running.communicate(timeout=900)
    assert running.returncode == 0, err[-3000:]
    parent = out.strip().splitlines()[-1].removeprefix("run_id: ")
    children = runs_of(pool, "pool-32", f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(c.info.run_name for c in children) == sorted(f"lr={1.0e-5 * (1 + i):g}" for i in range(32))
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    for child in children:
        assert child.info.status == "FINISHED", (child.info.run_name, child.data.tags.get("bp.failure_reason"))
        assert [m.step for m in mc.get_metric_history(child.info.run_id, "cost")] == list(range(1001))
    assert mc.get_run(parent).data.metrics["finished"] == 32
    assert "AttributeError" not in err and "Traceback" not in err


def test_a_prefect_server_gone_for_good_ends_the_following_and_nothing_stays_running(pool):
    """The submitting ``bp sweep`` gives up after BP_SERVER_TIMEOUT (not a multiple of it) with one line naming the
    server; once the server is back, the sweep's flow run has ended, nothing stays RUNNING in MLflow, and the same
    sweep works again."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-gone", "--set", "trainer.epochs=30",
            "--set", "data.limit=500", "--set", "sweep.model_name=null"]
    running = sweep(pool, *args, env={outage.VARIABLE: "15"}, wait=False)
    record = prefect_server(pool)
    try:
        until_while_running(running, lambda: runs_of(pool, "pool-gone", RUNNING_CHILD))
        restart = stop_service(record)
        lost = time.monotonic()
        out, err = running.communicate(timeout=300)
        gave_up = time.monotonic() - lost
    finally:
        if running.poll() is None:
            running.kill()
        if not stack_procs.alive(prefect_server(pool)):
            start_service(pool, record, *restart)
    assert running.returncode == 1, err[-3000:]
    said = [line for line in err.splitlines() if line.startswith("bp: ")]
    assert said[-1].startswith(f"bp: the Prefect server at {pool['PREFECT_API_URL']} stopped answering"), err[-3000:]
    assert gave_up < 35 and "Traceback" not in err, (gave_up, err[-3000:])  # 15 s and a poll (it took 42 s)

    parent = next(r for r in runs_of(pool, "pool-gone") if r.data.tags.get("bp.sweep") == "parent")
    flow_run = parent.data.tags["bp.flow_run"]
    deadline, states = time.monotonic() + 300, {}
    while time.monotonic() < deadline:  # the server is back: the sweep's flow run ends, one way or another
        states = flow_run_states(pool, [flow_run])
        if states.get(flow_run) in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") and not runs_of(
                pool, "pool-gone", "attributes.status = 'RUNNING'"):
            break
        time.sleep(2)
    assert states.get(flow_run) in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), states
    assert not runs_of(pool, "pool-gone", "attributes.status = 'RUNNING'")
    again = sweep(pool, *args, "--set", "sweep.grid.trainer.learning_rate=[0.02]", "--set", "trainer.epochs=2")
    assert again.returncode == 0, again.stderr[-3000:]


def test_the_mlflow_server_restarted_under_a_pool_sweep_retrains_no_point(pool):
    """Worker liveness is Dask's, never MLflow's: the MLflow server away 10 s mid-sweep, every point still has one run,
    FINISHED, and no point was trained twice."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-mlflow", "--set", "trainer.epochs=40",
            "--set", "data.limit=500", "--set", "sweep.model_name=null",
            "--set", "sweep.grid.trainer.learning_rate=[0.005, 0.01, 0.02, 0.05]"]
    running = sweep(pool, *args, wait=False)
    record = next(r for r in stack_procs.read_records(pool["dir"]) if r["name"] == "mlflow-server")
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    with killed_if_left(running):
        until_while_running(running, lambda: [r for r in runs_of(pool, "pool-mlflow", RUNNING_CHILD)
                                              if len(mc.get_metric_history(r.info.run_id, "cost")) >= 2], every=0.5)
        away_a_while(pool, record, 10)
        out, err = running.communicate(timeout=900)
    assert running.returncode == 0, err[-3000:]
    children = runs_of(pool, "pool-mlflow", "tags.`bp.sweep` = 'child'")
    assert sorted(c.info.run_name for c in children) == ["lr=0.005", "lr=0.01", "lr=0.02", "lr=0.05"]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert "was trained again" not in err


def scheduler_lost_a_worker(pool, timeout: float = 120) -> None:
    """Wait until the pool's Dask scheduler has one of its two workers left."""
    from flows.stack.workers import scheduler_client

    address = next(r for r in stack_procs.read_records(pool["dir"]) if r["name"] == "scheduler")["url"]
    with scheduler_client(pool["dir"], address) as dask:
        deadline = time.monotonic() + timeout
        while len(dask.scheduler_info(n_workers=-1)["workers"]) > 1:
            assert time.monotonic() < deadline, f"the scheduler still counts the frozen worker after {timeout} s"
            time.sleep(0.5)


def test_a_frozen_sweep_worker_woken_after_its_point_moved_never_finishes_it_twice(pool):
    """A sweep worker (its nanny and worker process) SIGSTOPped mid-point past the scheduler's worker TTL (8 s here)
    is taken for lost once its nanny does not answer the restart Dask asks of it (30 s): its point goes on in its
    run on the other worker, from its checkpoint. Woken (SIGCONT), its
    stale attempt stops at its next epoch without logging it or ending the run: every point ends exactly one
    FINISHED run, each epoch logged once, nothing stays RUNNING. The scheduler dropped the woken worker, which does
    not join again: the pool has one sweep worker left, and only the bp stack down test after this one."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-frozen", "--set", "trainer.epochs=60",
            "--set", "data.limit=500", "--set", "sweep.model_name=null",
            "--set", "sweep.grid.trainer.learning_rate=[0.005, 0.01, 0.02, 0.05]"]
    running = sweep(pool, *args, wait=False)
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    with killed_if_left(running):
        victim = until_while_running(running, lambda: next((r for r in runs_of(pool, "pool-frozen", RUNNING_CHILD)
                                                            if len(mc.get_metric_history(r.info.run_id, "cost")) >= 2),
                                                           None), every=0.2)
        group = os.getpgid(int(victim.data.tags["bp.worker"].rsplit(":", 1)[1]))  # the sweep worker, nanny and all
        os.killpg(group, signal.SIGSTOP)
        try:  # past the TTL (8 s) and the 30 s Dask gives the frozen nanny to restart it: the point moves
            scheduler_lost_a_worker(pool)
        finally:
            os.killpg(group, signal.SIGCONT)
        out, err = running.communicate(timeout=900)
    assert running.returncode == 0, err[-3000:]
    parent = out.strip().splitlines()[-1].removeprefix("run_id: ")
    time.sleep(5)  # the woken attempt's next epoch
    children = runs_of(pool, "pool-frozen", f"tags.mlflow.parentRunId = '{parent}'")
    finished = sorted(c.info.run_name for c in children if c.info.status == "FINISHED")
    assert finished == ["lr=0.005", "lr=0.01", "lr=0.02", "lr=0.05"], [(c.info.run_name, c.info.status)
                                                                      for c in children]
    moved = mc.get_run(victim.info.run_id)
    assert (moved.info.status, moved.data.tags["bp.resumed"]) == ("FINISHED", "1"), moved.data.tags
    assert len(children) == 4 and not [c for c in children if c.info.status == "RUNNING"]
    assert [m.step for m in mc.get_metric_history(moved.info.run_id, "cost")] == list(range(1, 61))


def test_bp_stack_down_under_a_pool_sweep_ends_it_and_leaves_nothing_running(pool):
    """Stopped as a sweep trains (the pool's last test: one sweep worker is left after the frozen one): the sweep's
    flow run is cancelled, its parent and children end KILLED, the follower says so (exit 1), and no process of the
    stack is left."""
    records = stack_procs.read_records(pool["dir"])
    running = sweep(pool, MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-down", "--set",
                    "trainer.epochs=200", "--set", "data.limit=500", "--set", "sweep.model_name=null",
                    env={outage.VARIABLE: "15"}, wait=False)
    try:
        until_while_running(running, lambda: runs_of(pool, "pool-down", RUNNING_CHILD), every=0.5)
        runs_seen = runs_of(pool, "pool-down")
        down = bp_stack("down", "--dir", str(pool["dir"]), "--grace", "3", timeout=240)
        out, err = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
        stack_procs.stop([r for r in records if stack_procs.group(r)], 5)
    assert down.returncode == 0, down.stderr[-3000:]
    assert running.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert not [r for r in records if stack_procs.group(r)]
    import sqlite3

    with sqlite3.connect(pool["dir"] / "mlflow.db") as db:  # the server is gone: its store, read directly
        statuses = dict(db.execute("select run_uuid, status from runs").fetchall())
    assert {statuses[r.info.run_id] for r in runs_seen} <= {"KILLED", "FINISHED", "FAILED"}, statuses


@pytest.fixture(scope="module")
def lost_stack(tmp_path_factory):
    """A stack of its own (one worker, its services' and its client's BP_SERVER_TIMEOUT 15 s), as a client sees it:
    its frozen scheduler leaves it working, then its scheduler is killed (the two tests share it in this order,
    tests/conftest.py keeping them on one pytest-xdist worker); down after, nothing left."""
    directory = tmp_path_factory.mktemp("bp-lost-stack")
    env = {**python_env(), outage.VARIABLE: "15"}
    up = bp_stack("up", "--dir", str(directory), "--workers", "1", "--prefect-port", str(free_port()),
                  "--mlflow-port", str(free_port()), "--scheduler-port", str(free_port()), env=env)
    records = stack_procs.read_records(directory) if up.returncode == 0 else []
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield {"env": {**env, **exported(up.stdout)}, "cwd": tmp_path_factory.mktemp("lost-client"),
               "dir": directory, "records": records, **exported(up.stdout)}
    finally:
        bp_stack("down", "--dir", str(directory), "--grace", "3", timeout=240)
        stack_procs.stop([r for r in records if stack_procs.group(r)], 5)


def lose_scheduler(client, how: str) -> None:
    """The stack's Dask scheduler SIGSTOPped (then woken) or SIGKILLed as a point trains: within the timeout the
    sweep ends FAILED naming the scheduler, the follower exits 1 with one line, and no run stays RUNNING or
    finishes afterwards (the woken scheduler's point stops at its next epoch)."""
    scheduler = next(r for r in client["records"] if r["name"] == "scheduler")
    running = sweep(client, MNIST_SWEEP, "--pool", "bp", "--set", f"experiment=lost-{how}", "--set",
                    "trainer.epochs=300", "--set", "data.limit=500", "--set", "sweep.model_name=null", wait=False)
    try:
        until_while_running(running, lambda: runs_of(client, f"lost-{how}", RUNNING_CHILD), every=0.5)
        os.killpg(scheduler["pid"], signal.SIGSTOP if how == "frozen" else signal.SIGKILL)
        lost = time.monotonic()
        out, err = running.communicate(timeout=300)
        gave_up = time.monotonic() - lost
        if how == "frozen":
            os.killpg(scheduler["pid"], signal.SIGCONT)
            time.sleep(10)  # the woken scheduler answers the point, whose next epoch finds its sweep ended
        runs = runs_of(client, f"lost-{how}")
    finally:
        if running.poll() is None:
            running.kill()
        if how == "frozen":
            os.killpg(scheduler["pid"], signal.SIGCONT)
    assert running.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert gave_up < (45 if how == "frozen" else 25), (gave_up, err[-3000:])
    said = [line for line in err.splitlines() if line.startswith("bp: ")]
    assert "Dask scheduler" in said[-1], err[-3000:]
    parent = next(r for r in runs if r.data.tags.get("bp.sweep") == "parent")
    assert parent.info.status == "FAILED" and "Dask scheduler" in parent.data.tags["bp.failure_reason"]
    children = [r for r in runs if r.data.tags.get("bp.sweep") == "child"]
    assert children and {c.info.status for c in children} <= {"FAILED", "KILLED"}, [
        (c.info.run_name, c.info.status) for c in children]


def test_a_scheduler_frozen_under_a_pool_sweep_fails_it_naming_the_scheduler(lost_stack):
    lose_scheduler(lost_stack, "frozen")


def test_a_scheduler_killed_under_a_pool_sweep_fails_it_naming_the_scheduler(lost_stack):
    lose_scheduler(lost_stack, "killed")  # the stack's last test: its sweep workers go with the scheduler
