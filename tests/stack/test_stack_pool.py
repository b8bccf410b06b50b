"""Sweeps on the default stack (``bp stack up --workers 2``: SQLite, as a new user starts it, its Dask scheduler
taking a frozen worker for lost after 8 s), under load and through trouble: 32 points with the Prefect server
restarted on the way, the server gone for good, SIGTERM and SIGKILL of the submitting ``bp sweep``, a sweep
worker frozen and woken, the MLflow server restarted, ``bp stack down`` under a sweep, strangers at the
scheduler, data that only the workers have, and a data path outside the workers' data root."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, SEED_DATA, bp, python_env
from support.stack import bp_stack, exported, free_port

from flows.runtime import outage
from flows.stack import procs as stack_procs

pytestmark = pytest.mark.stack

WORKER_TTL = "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL"  # the scheduler's: a silent worker is lost after this
LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """The default stack, two workers reading data only under the seed's data directory; down after."""
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
    try:
        yield {"dir": directory, "env": {**python_env(), **env}, "cwd": cwd, **env}
    finally:
        records = stack_procs.read_records(directory)
        down = bp_stack("down", "--dir", str(directory), "--grace", "5", timeout=180)
        left = [r for r in records if stack_procs.group(r)]
        stack_procs.stop(left, 5)
        assert down.returncode == 0 and not left, f"bp stack down left {left}: {down.stdout}{down.stderr}"


def sweep(pool, *argv: str, env: dict | None = None, wait: bool = True):
    return bp("sweep", *argv, env={**pool["env"], **(env or {})}, cwd=pool["cwd"], timeout=900, wait=wait)


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


def flow_run_states(pool, ids) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import temporary_settings

    settings = {"api.url": pool["PREFECT_API_URL"], "api.auth_string": pool["PREFECT_API_AUTH_STRING"]}
    with temporary_settings(updates=settings), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids))))
    return {str(r.id): r.state.type.value for r in runs}


def point_states(pool, flow_run: str) -> dict[str, str]:
    """The states of a sweep's point task runs (under its flow run in the Prefect UI), by name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import temporary_settings

    settings = {"api.url": pool["PREFECT_API_URL"], "api.auth_string": pool["PREFECT_API_AUTH_STRING"]}
    with temporary_settings(updates=settings), get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])), limit=200)
    return {r.name: r.state.type.value for r in runs if r.name.startswith("child ")}


def rates(n: int) -> str:
    return "[" + ", ".join(f"{1.0e-5 * (1 + i):.6g}" for i in range(n)) + "]"


def test_32_points_on_the_default_stack_ride_out_a_prefect_server_restart(pool):
    """On SQLite the Prefect server answers 503 "database is locked" under a 32-point submission; restarted
    mid-sweep it is away for some seconds. The sweep finishes all the same, every point complete."""
    running = sweep(pool, LINREG_SWEEP, "--pool", "bp", "--set", "experiment=pool-32", "--set", "sweep.model_name=null",
                    "--set", f"sweep.grid.trainer.learning_rate={rates(32)}", wait=False)
    try:
        deadline = time.monotonic() + 300
        while len(runs_of(pool, "pool-32", "attributes.status = 'FINISHED'")) < 6:
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(1)
        record = prefect_server(pool)
        restart = stop_service(record)
        time.sleep(5)  # away a while, as in a restart that takes its time
        start_service(pool, record, *restart)
        out, err = running.communicate(timeout=900)
    finally:
        if running.poll() is None:
            running.kill()
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
    """The submitting ``bp sweep`` gives up after BP_SERVER_TIMEOUT with one line naming the server; once the server
    is back, the sweep's flow run has ended, nothing stays RUNNING in MLflow, and the same sweep works again."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-gone", "--set", "trainer.epochs=30",
            "--set", "data.limit=500", "--set", "sweep.model_name=null"]
    running = sweep(pool, *args, env={outage.VARIABLE: "15"}, wait=False)
    record = prefect_server(pool)
    try:
        deadline = time.monotonic() + 300
        while not runs_of(pool, "pool-gone", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'"):
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(1)
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
    assert gave_up < 150 and "Traceback" not in err, (gave_up, err[-3000:])

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


def test_sigterm_stops_a_pool_sweep_within_seconds_and_bp_resume_finishes_it_on_the_pool(pool):
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-sigterm", "--set", "trainer.epochs=100",
            "--set", "data.limit=500", "--set", "sweep.model_name=null",
            "--set", "sweep.grid.trainer.learning_rate=[0.002, 0.005, 0.01, 0.02, 0.05, 0.1]"]
    running = sweep(pool, *args, wait=False)
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])

    def early(run) -> bool:  # a child far from its end (the first two start, and end, within a second)
        return len(mc.get_metric_history(run.info.run_id, "cost")) < 50

    try:
        deadline = time.monotonic() + 300
        while not (runs_of(pool, "pool-sigterm", "attributes.status = 'FINISHED'")
                   and [r for r in runs_of(pool, "pool-sigterm", "attributes.status = 'RUNNING' and "
                                                                 "tags.`bp.sweep` = 'child'") if early(r)]):
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(1)
        running.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = running.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 128 + signal.SIGTERM and took < 20, (running.returncode, took, err[-3000:])
    runs = runs_of(pool, "pool-sigterm")
    parent = next(r for r in runs if r.data.tags.get("bp.sweep") == "parent")
    assert "bp: stopped by SIGTERM: cancelling flow run" in err and err.strip().endswith(
        f" cancelled; resume with: bp resume {parent.info.run_id} --pool bp"), err[-3000:]
    assert parent.info.status == "KILLED" and parent.data.metrics["finished"] >= 1  # what finished, summarised
    time.sleep(15)  # a worker stops its cancelled flow run; nothing queued may start meanwhile
    children = runs_of(pool, "pool-sigterm", f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert not [c for c in children if c.info.status == "RUNNING"]
    killed = [c for c in children if c.info.status == "KILLED"]
    assert killed and all("stopped by SIGTERM" in c.data.tags["bp.failure_reason"] for c in killed)
    assert len(children) < 6  # the points not started never trained
    states = point_states(pool, parent.data.tags["bp.flow_run"])  # nothing left running in the Prefect UI either
    assert states and set(states.values()) <= {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}, states
    assert flow_run_states(pool, [parent.data.tags["bp.flow_run"]]) == {parent.data.tags["bp.flow_run"]: "CANCELLED"}

    # as it ran: its points on the pool's workers
    resumed = bp("resume", parent.info.run_id, "--pool", "bp", env=pool["env"], cwd=pool["cwd"], timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == f"run_id: {parent.info.run_id}"
    children = runs_of(pool, "pool-sigterm", f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((c.info.run_name, c.info.status) for c in children) == sorted(
        (f"lr={rate:g}", "FINISHED") for rate in (0.002, 0.005, 0.01, 0.02, 0.05, 0.1))
    for child in children:
        assert [m.step for m in mc.get_metric_history(child.info.run_id, "cost")] == list(range(1, 101))
    assert {c.info.run_id for c in children if c.data.tags.get("bp.resumed") == "1"} == {k.info.run_id
                                                                                          for k in killed}
    # a point resumed on a worker is its uninterrupted training
    again = bp("reproduce", killed[0].info.run_id, env=pool["env"], cwd=pool["cwd"], timeout=900)
    assert again.stdout.strip().splitlines()[0] == "identical", again.stdout + again.stderr[-3000:]


def test_data_only_the_workers_have(pool):
    """The compose sweep of docs/servers.md: a data path the submitting machine cannot read, but every worker can."""
    relative = os.path.relpath(SEED_DATA, REPO)  # the workers start in the checkout; this client elsewhere
    done = sweep(pool, LINREG_SWEEP, "--pool", "bp", "--set", "experiment=pool-data", "--set", f"data.path={relative}",
                 "--set", "sweep.model_name=null", "--set", "sweep.grid.trainer.learning_rate=[1.0e-4, 2.0e-4]")
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"bp: {relative} is not on this machine: the pool's workers read it" in done.stderr
    import hashlib

    digest = hashlib.sha256(SEED_DATA.read_bytes()).hexdigest()
    runs = runs_of(pool, "pool-data")
    assert {r.data.tags["bp.data_digest"] for r in runs} == {digest}  # parent and both children
    assert len(runs) == 3


def test_the_workers_read_nothing_outside_their_data_root(pool):
    outside = os.path.relpath("/etc/hostname", REPO)  # exists on the workers, not from this client's directory
    done = sweep(pool, LINREG_SWEEP, "--pool", "bp", "--set", "experiment=pool-root", "--set", f"data.path={outside}",
                 "--set", "sweep.model_name=null", "--set", "sweep.grid.trainer.learning_rate=[1.0e-4]")
    assert done.returncode == 1, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("bp: flow run ")]
    assert said and f"outside the data root {SEED_DATA.parent} (BP_DATA_ROOT)" in said[-1], done.stderr[-3000:]
    assert not runs_of(pool, "pool-root")  # refused where the sweep runs, before any run opened
    assert "Traceback" not in done.stderr


def test_a_divergence_aware_grid_on_the_pool_skips_the_rates_above_one_that_diverged(pool):
    grid = "[0.01, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]"  # momentum 0.9: 2.0 and above diverge within an epoch
    done = sweep(pool, MNIST_SWEEP, "--pool", "bp", "--set", f"sweep.grid.trainer.learning_rate={grid}", "--set",
                 "trainer.epochs=6", "--set", "sweep.model_name=null", "--set", "experiment=pool-skip")
    assert done.returncode == 0, done.stderr[-3000:]
    kids = {k.data.params["trainer.learning_rate"]: k for k in runs_of(pool, "pool-skip", "tags.`bp.sweep` = 'child'")}
    assert sorted(kids, key=float) == ["0.01", "2.0", "3.0", "4.0", "5.0", "6.0", "7.0", "8.0"]  # one run each
    status = {lr: k.data.tags["bp.status"] for lr, k in kids.items()}
    assert status["0.01"] == "finished" and status["2.0"] == "diverged", status
    above = [kids[lr] for lr in kids if float(lr) > 2.0]
    assert {status[r.data.params["trainer.learning_rate"]] for r in above} <= {"diverged", "skipped"}, status
    skipped = [r for r in above if r.data.tags["bp.status"] == "skipped"]
    assert skipped, status  # the points still queued when 2.0 was seen diverged
    for run in skipped:  # taken back before a worker trained it, or stopped on its worker: KILLED with the reason
        assert run.info.status == "KILLED"
        reason = run.data.tags["bp.failure_reason"]  # the first rate seen diverged (larger ones diverge sooner)
        cause = reason.removeprefix("skipped: learning rate ").split(" ")[0]
        assert reason == f"skipped: learning rate {cause} diverged (sweep.skip_above_divergence)"
        rate = float(run.data.params["trainer.learning_rate"])
        assert status[f"{float(cause)}"] == "diverged" and float(cause) < rate
    assert not runs_of(pool, "pool-skip", "attributes.status = 'RUNNING'")
    parent = next(iter(kids.values())).data.tags["mlflow.parentRunId"]
    assert MlflowClient(pool["MLFLOW_TRACKING_URI"]).get_run(parent).data.metrics["skipped"] == len(skipped)


def test_a_tpe_search_on_the_pool_draws_and_scores_the_trials_it_draws_in_process(pool):
    space = ["--set", "sweep.search=tpe", "--set", "sweep.grid=null", "--set", "sweep.trials=5", "--set",
             "sweep.space.trainer.learning_rate={log_uniform: [1.0e-5, stable]}", "--set", "sweep.model_name=null",
             "--set", "data.path=" + str(SEED_DATA)]
    found = {}
    for where, more in (("pool", ["--pool", "bp", "--parallel", "2"]), ("here", ["--parallel", "2"])):
        done = sweep(pool, LINREG_SWEEP, *space, "--set", f"experiment=pool-search-{where}", *more)
        assert done.returncode == 0, done.stderr[-3000:]
        kids = runs_of(pool, f"pool-search-{where}", "tags.`bp.sweep` = 'child'")
        found[where] = sorted((k.data.params["trainer.learning_rate"], k.data.metrics["final_cost"]) for k in kids)
        pool_flow_run = {k.data.tags["bp.flow_run"] for k in kids}
        assert len(pool_flow_run) == 1  # trained as task runs of the sweep's own flow run
    assert len(found["pool"]) == 5 and found["pool"] == found["here"]  # the same trials, the same results


@pytest.mark.parametrize("sampler,prune", [("tpe", "median"), ("random", "halving")])
def test_a_pruned_search_on_the_pool_prunes_as_it_does_in_process(pool, sampler, prune):
    search = ["--set", f"sweep.search={sampler}", "--set", "sweep.trials=6", "--set", "trainer.epochs=4", "--set",
              f"sweep.prune={prune}"]
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    found = {}
    for where, more in (("pool", ["--pool", "bp", "--parallel", "2"]), ("here", ["--parallel", "2"])):  # rounds of 2
        experiment = f"pool-prune-{sampler}-{where}"
        done = sweep(pool, MNIST_SEARCH, *search, "--set", f"experiment={experiment}", *more)
        assert done.returncode == 0, done.stderr[-3000:]
        kids = runs_of(pool, experiment, "tags.`bp.sweep` = 'child'")
        found[where] = sorted((k.data.params["trainer.learning_rate"], k.data.tags["bp.status"], k.info.status,
                               [m.value for m in mc.get_metric_history(k.info.run_id, "val_accuracy")])
                              for k in kids)
    assert len(found["pool"]) == 6 and found["pool"] == found["here"]  # same trials, pruned at the same epochs
    assert any(status == "pruned" and run_status == "FINISHED" for _, status, run_status, _ in found["pool"])


def test_the_submitting_bp_sweep_killed_the_sweep_goes_on_and_detach_returns_at_once(pool):
    """``bp sweep --pool`` SIGKILLed as its sweep trains (a laptop closed): the flow run goes on and finishes;
    ``--detach`` prints the flow run and the parent run and returns, the sweep finishing without it."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "trainer.epochs=20", "--set", "data.limit=500",
            "--set", "sweep.model_name=null"]
    running = sweep(pool, *args, "--set", "experiment=pool-orphan", wait=False)
    deadline = time.monotonic() + 300
    while not runs_of(pool, "pool-orphan", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'"):
        assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
        time.sleep(0.5)
    running.kill()
    running.communicate()
    detached = sweep(pool, *args, "--set", "experiment=pool-detached", "--detach")
    assert detached.returncode == 0, detached.stderr[-3000:]
    lines = detached.stdout.strip().splitlines()
    assert lines[0].startswith("flow_run: ") and lines[-1].startswith("run_id: "), detached.stdout
    for experiment in ("pool-orphan", "pool-detached"):
        deadline = time.monotonic() + 300
        while True:
            parent = next(r for r in runs_of(pool, experiment) if r.data.tags.get("bp.sweep") == "parent")
            if parent.info.status != "RUNNING" or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert parent.info.status == "FINISHED", (experiment, parent.data.tags.get("bp.failure_reason"))
        children = runs_of(pool, experiment, "tags.`bp.sweep` = 'child'")
        assert sorted(c.info.status for c in children) == ["FAILED"] + ["FINISHED"] * 3  # lr=2 diverges
    parents = [r for r in runs_of(pool, "pool-detached") if r.data.tags.get("bp.sweep") == "parent"]
    assert lines[-1] == f"run_id: {parents[0].info.run_id}"


def test_a_frozen_sweep_worker_woken_after_its_point_moved_never_finishes_it_twice(pool):
    """A sweep worker (its nanny and worker process) SIGSTOPped mid-point past the scheduler's worker TTL (8 s here)
    is taken for lost: its point goes on in its run on the other worker, from its checkpoint. Woken (SIGCONT), its
    stale attempt stops at its next epoch without logging it or ending the run: every point ends exactly one
    FINISHED run, each epoch logged once, nothing stays RUNNING, and the woken sweep worker serves again."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-frozen", "--set", "trainer.epochs=60",
            "--set", "data.limit=500", "--set", "sweep.model_name=null",
            "--set", "sweep.grid.trainer.learning_rate=[0.005, 0.01, 0.02, 0.05]"]
    running = sweep(pool, *args, wait=False)
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    try:
        deadline, victim = time.monotonic() + 300, None
        while victim is None:
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            training = [r for r in runs_of(pool, "pool-frozen", "attributes.status = 'RUNNING' and "
                                                                "tags.`bp.sweep` = 'child'")
                        if len(mc.get_metric_history(r.info.run_id, "cost")) >= 2]
            victim = training[0] if training else None
            time.sleep(0.2)
        group = os.getpgid(int(victim.data.tags["bp.worker"].rsplit(":", 1)[1]))  # the sweep worker, nanny and all
        os.killpg(group, signal.SIGSTOP)
        time.sleep(25)  # past the TTL: the scheduler has moved the point
        os.killpg(group, signal.SIGCONT)
        out, err = running.communicate(timeout=900)
    finally:
        if running.poll() is None:
            running.kill()
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


def test_the_mlflow_server_restarted_under_a_pool_sweep_retrains_no_point(pool):
    """Worker liveness is Dask's, never MLflow's: the MLflow server away 10 s mid-sweep, every point still has one run,
    FINISHED, and no point was trained twice."""
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-mlflow", "--set", "trainer.epochs=40",
            "--set", "data.limit=500", "--set", "sweep.model_name=null",
            "--set", "sweep.grid.trainer.learning_rate=[0.005, 0.01, 0.02, 0.05]"]
    running = sweep(pool, *args, wait=False)
    record = next(r for r in stack_procs.read_records(pool["dir"]) if r["name"] == "mlflow-server")
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])
    try:
        deadline = time.monotonic() + 300
        while not [r for r in runs_of(pool, "pool-mlflow", "attributes.status = 'RUNNING'")
                   if r.data.tags.get("bp.sweep") == "child"
                   and len(mc.get_metric_history(r.info.run_id, "cost")) >= 2]:
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(0.5)
        restart = stop_service(record)
        time.sleep(10)
        start_service(pool, record, *restart)
        out, err = running.communicate(timeout=900)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 0, err[-3000:]
    children = runs_of(pool, "pool-mlflow", "tags.`bp.sweep` = 'child'")
    assert sorted(c.info.run_name for c in children) == ["lr=0.005", "lr=0.01", "lr=0.02", "lr=0.05"]
    assert {c.info.status for c in children} == {"FINISHED"}
    assert "was trained again" not in err


def test_bp_stack_down_under_a_pool_sweep_ends_it_and_leaves_nothing_running(tmp_path_factory):
    """A stack of its own, stopped as a sweep trains: the sweep's flow run is cancelled, its parent and children
    end KILLED, the follower says so (exit 1), and no process of the stack is left."""
    directory = tmp_path_factory.mktemp("bp-down-stack")
    up = bp_stack("up", "--dir", str(directory), "--workers", "1", "--prefect-port", str(free_port()),
                  "--mlflow-port", str(free_port()), "--scheduler-port", str(free_port()))
    assert up.returncode == 0, up.stderr[-3000:]
    env = exported(up.stdout)
    client = {"env": {**python_env(), **env}, "cwd": tmp_path_factory.mktemp("down-client"), **env}
    records = stack_procs.read_records(directory)
    running = sweep(client, MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-down", "--set",
                    "trainer.epochs=200", "--set", "data.limit=500", "--set", "sweep.model_name=null", wait=False)
    try:
        deadline = time.monotonic() + 300
        while not runs_of(client, "pool-down", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'"):
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(0.5)
        runs_seen = runs_of(client, "pool-down")
        down = bp_stack("down", "--dir", str(directory), "--grace", "3", timeout=240)
        out, err = running.communicate(timeout=300)
    finally:
        if running.poll() is None:
            running.kill()
        stack_procs.stop([r for r in records if stack_procs.group(r)], 5)
    assert down.returncode == 0, down.stderr[-3000:]
    assert running.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert not [r for r in records if stack_procs.group(r)]
    import sqlite3

    with sqlite3.connect(directory / "mlflow.db") as db:  # the server is gone: its store, read directly
        statuses = dict(db.execute("select run_uuid, status from runs").fetchall())
    assert {statuses[r.info.run_id] for r in runs_seen} <= {"KILLED", "FINISHED", "FAILED"}, statuses


def test_the_scheduler_refuses_clients_without_the_stack_certificate(pool):
    """Plain tcp, and TLS with a certificate the stack's CA did not sign, are refused; the stack's own is taken."""
    from distributed import Client
    from distributed.security import Security

    from flows.sweep import tls

    address = next(r for r in stack_procs.read_records(pool["dir"]) if r["name"] == "scheduler")["url"]
    with pytest.raises(OSError):
        Client(address.replace("tls://", "tcp://"), timeout=5, set_as_default=False)
    with pytest.raises(OSError):
        Client(address, security=Security.temporary(), timeout=5, set_as_default=False)
    with Client(address, security=tls.security(pool["dir"] / "dask"), timeout=10, set_as_default=False) as ok:
        assert len(ok.scheduler_info(n_workers=-1)["workers"]) == 2


@pytest.mark.parametrize("how", ["frozen", "killed"])
def test_a_scheduler_lost_under_a_pool_sweep_fails_it_naming_the_scheduler(tmp_path_factory, how):
    """A stack of its own (BP_SERVER_TIMEOUT 15 s), its Dask scheduler SIGSTOPped (then woken) or SIGKILLed as a point
    trains: within the timeout the sweep ends FAILED naming the scheduler, the follower exits 1 with one line, and
    no run stays RUNNING or finishes afterwards (the woken scheduler's point stops at its next epoch)."""
    directory = tmp_path_factory.mktemp(f"bp-scheduler-{how}")
    env = {**python_env(), outage.VARIABLE: "15"}
    up = bp_stack("up", "--dir", str(directory), "--workers", "1", "--prefect-port", str(free_port()),
                  "--mlflow-port", str(free_port()), "--scheduler-port", str(free_port()), env=env)
    assert up.returncode == 0, up.stderr[-3000:]
    client = {"env": {**env, **exported(up.stdout)}, "cwd": tmp_path_factory.mktemp("lost-client"),
              **exported(up.stdout)}
    records = stack_procs.read_records(directory)
    scheduler = next(r for r in records if r["name"] == "scheduler")
    running = sweep(client, MNIST_SWEEP, "--pool", "bp", "--set", f"experiment=lost-{how}", "--set",
                    "trainer.epochs=300", "--set", "data.limit=500", "--set", "sweep.model_name=null", wait=False)
    try:
        deadline = time.monotonic() + 300
        while not runs_of(client, f"lost-{how}", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'"):
            assert time.monotonic() < deadline and running.poll() is None, running.communicate()[1][-3000:]
            time.sleep(0.5)
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
        bp_stack("down", "--dir", str(directory), "--grace", "3", timeout=240)
        stack_procs.stop([r for r in records if stack_procs.group(r)], 5)
    assert running.returncode == 1 and "Traceback" not in err, err[-3000:]
    assert gave_up < (45 if how == "frozen" else 25), (gave_up, err[-3000:])
    said = [line for line in err.splitlines() if line.startswith("bp: ")]
    assert "Dask scheduler" in said[-1], err[-3000:]
    parent = next(r for r in runs if r.data.tags.get("bp.sweep") == "parent")
    assert parent.info.status == "FAILED" and "Dask scheduler" in parent.data.tags["bp.failure_reason"]
    children = [r for r in runs if r.data.tags.get("bp.sweep") == "child"]
    assert children and {c.info.status for c in children} <= {"FAILED", "KILLED"}, [
        (c.info.run_name, c.info.status) for c in children]
