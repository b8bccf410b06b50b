"""Pool sweeps on the default stack (``pool``, tests/support/pool.py, shared with test_stack_pool_when_servers_fail.py,
whose tests come after these): SIGTERM and SIGKILL of the submitting ``bp sweep`` and ``--detach``, data that only
the workers have and a data path outside their data root, a divergence-aware grid, searches (TPE, pruned) that end as
they do in-process, and strangers at the scheduler."""

from __future__ import annotations

import os
import signal
import time

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, SEED_DATA, bp
from support.pool import flow_run_states, point_states, runs_of, sweep, until_while_running
from support.procs import killed_if_left

from flows.stack import procs as stack_procs

pytestmark = pytest.mark.stack

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")


def test_sigterm_stops_a_pool_sweep_within_seconds_and_bp_resume_finishes_it_on_the_pool(pool):
    args = [MNIST_SWEEP, "--pool", "bp", "--set", "experiment=pool-sigterm", "--set", "trainer.epochs=100",
            "--set", "data.limit=500", "--set", "sweep.model_name=null",
            "--set", "sweep.grid.trainer.learning_rate=[0.002, 0.005, 0.01, 0.02, 0.05, 0.1]"]
    running = sweep(pool, *args, wait=False)
    mc = MlflowClient(pool["MLFLOW_TRACKING_URI"])

    def early(run) -> bool:  # a child far from its end (the first two start, and end, within a second)
        return len(mc.get_metric_history(run.info.run_id, "cost")) < 50

    with killed_if_left(running):
        until_while_running(running, lambda: runs_of(pool, "pool-sigterm", "attributes.status = 'FINISHED'") and [
            r for r in runs_of(pool, "pool-sigterm", "attributes.status = 'RUNNING' and tags.`bp.sweep` = 'child'")
            if early(r)])
        running.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, err = running.communicate(timeout=120)
        took = time.monotonic() - sent
    assert running.returncode == 128 + signal.SIGTERM and took < 20, (running.returncode, took, err[-3000:])
    runs = runs_of(pool, "pool-sigterm")
    parent = next(r for r in runs if r.data.tags.get("bp.sweep") == "parent")
    assert "bp: stopped by SIGTERM: cancelling flow run" in err and err.strip().endswith(
        f" cancelled; resume with: bp resume {parent.info.run_id} --pool bp"), err[-3000:]
    assert parent.info.status == "KILLED" and parent.data.metrics["finished"] >= 1  # what finished, summarised
    flow_run = parent.data.tags["bp.flow_run"]
    ended = {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}
    # a worker stops its cancelled flow run (once it has, nothing more can start), and the server records its points'
    # ends from their events, in batches: a point's end may reach the Prefect UI a few seconds after the flow run's
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = point_states(pool, flow_run)
        if flow_run_states(pool, [flow_run]) == {flow_run: "CANCELLED"} and states and set(states.values()) <= ended:
            break
        time.sleep(0.5)
    children = runs_of(pool, "pool-sigterm", f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert not [c for c in children if c.info.status == "RUNNING"]
    killed = [c for c in children if c.info.status == "KILLED"]
    assert killed and all("stopped by SIGTERM" in c.data.tags["bp.failure_reason"] for c in killed)
    assert len(children) < 6  # the points not started never trained
    states = point_states(pool, flow_run)  # nothing left running in the Prefect UI either
    assert states and set(states.values()) <= ended, states
    assert flow_run_states(pool, [flow_run]) == {flow_run: "CANCELLED"}

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
    until_while_running(running, lambda: runs_of(pool, "pool-orphan", "attributes.status = 'RUNNING' and "
                                                                      "tags.`bp.sweep` = 'child'"), every=0.5)
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
