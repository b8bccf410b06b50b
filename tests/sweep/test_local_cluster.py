"""An in-process sweep's points on its own Dask cluster (``--parallel 2``): they train in worker processes that
``bp sweep`` started, a stop reaches them through the scheduler, nothing outlives bp, and the scheduler takes
no client without the sweep's temporary certificate."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import BP, REPO, python_env
from support.procs import alive, children_of, killed_if_left, survivors

from flows.tracking.store import ensure_store

MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
API = "http://127.0.0.1:9/api"  # a Prefect API for a cluster no point runs on: nothing calls it
LONG = ["--parallel", "2", "--set", "trainer.epochs=500", "--set", "data.limit=2000", "--set", "experiment=cluster",
        "--set", "sweep.grid.trainer.learning_rate=[0.005, 0.01, 0.02]", "--set", "sweep.model_name=null"]


def training_children(bp: subprocess.Popen, uri: str, count: int, timeout: float = 180) -> list:
    """The RUNNING child runs of experiment ``cluster``, once ``count`` of them have logged an epoch; if they never
    do, ``bp`` (the sweep) is stopped and what it said is in the failure."""
    deadline, mc = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if mc is None and Path(uri.removeprefix("sqlite:///")).exists():
            ensure_store(uri)  # bp may be creating the tables right now: take its lock, as a second bp would
            mc = MlflowClient(uri)
        if mc is not None and (experiment := mc.get_experiment_by_name("cluster")) is not None:
            runs = [r for r in mc.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING' and "
                                              "tags.`bp.sweep` = 'child'") if mc.get_metric_history(r.info.run_id,
                                                                                                    "cost")]
            if len(runs) >= count:
                return runs
        assert bp.poll() is None, f"the sweep ended (exit {bp.returncode}): {bp.communicate()[1][-3000:]}"
        time.sleep(0.5)
    bp.kill()
    raise AssertionError(f"{count} children did not start training in time: {bp.communicate()[1][-3000:]}")


def start_sweep(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**python_env(), "PREFECT_HOME": str(Path.home() / ".prefect")}  # the temporary server, not the test's
    env.pop("PREFECT_API_URL", None)
    bp = subprocess.Popen([*BP, "sweep", MNIST_SWEEP, "--tracking-uri", uri, *LONG,
                           *extra], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return bp, uri


@pytest.mark.slow  # it starts Prefect's temporary server and a Dask cluster
def test_points_train_in_worker_processes_and_stop_with_the_sweep(tmp_path):
    bp, uri = start_sweep(tmp_path)
    with killed_if_left(bp):
        training = training_children(bp, uri, 2)
        started = children_of(bp.pid)
        pids = {int(r.data.tags["bp.worker"].rsplit(":", 1)[1]) for r in training}
        assert len(pids) == 2 and pids <= started, (pids, started)  # two processes of bp's, not bp itself
        stopped = time.monotonic()
        bp.send_signal(signal.SIGTERM)
        out, err = bp.communicate(timeout=60)
        took = time.monotonic() - stopped
    assert bp.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert took < 20, took
    time.sleep(1)
    assert not [pid for pid in started if alive(pid)], "a process bp started outlived it"
    mc = MlflowClient(uri)
    for run in training:  # each stopped after its epoch, through the scheduler: KILLED with the sweep's reason
        run = mc.get_run(run.info.run_id)
        assert run.info.status == "KILLED", run.data.tags
        assert run.data.tags["bp.failure_reason"].startswith("stopped by SIGTERM"), run.data.tags
    parent = mc.get_run(training[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"
    assert err.strip().splitlines()[-1] == f"bp: stopped by SIGTERM; resume with: bp resume {parent.info.run_id}"
    assert not mc.search_runs([parent.info.experiment_id], "attributes.status = 'RUNNING'")


@pytest.mark.slow
def test_a_sigkilled_sweep_leaves_no_worker_behind(tmp_path):
    bp, uri = start_sweep(tmp_path)
    try:
        training_children(bp, uri, 2)
        started = children_of(bp.pid)
    finally:
        bp.kill()
        bp.communicate()
    assert not survivors(started, within=10), "a worker (or the server) outlived bp by more than 10 s"


@pytest.fixture(scope="module")
def one_worker():
    """A sweep's local cluster of one worker process, started as bp sweep starts it; its scheduler's address."""
    from flows.sweep.cluster import LocalSweepCluster

    local = LocalSweepCluster(1, API)
    try:
        yield local.address()
    finally:
        local.close()


def test_the_scheduler_refuses_clients_without_the_sweeps_certificate(one_worker):
    from distributed import Client
    from distributed.security import Security

    from flows.sweep.cluster import security_for

    address = one_worker
    assert address.startswith("tls://127.0.0.1:")
    with Client(address, security=security_for(address), timeout=30) as client:  # the sweep's own
        assert client.submit(sum, [1, 2]).result(timeout=30) == 3
    for security in [None, Security.temporary()]:  # plain tcp; TLS with a certificate of its own
        target = address.replace("tls://", "tcp://") if security is None else address
        with pytest.raises((OSError, TimeoutError)):
            Client(target, security=security, timeout=3)


def test_a_worker_is_a_fork_of_the_warmed_forkserver_and_reads_its_own_prefect_api(one_worker):
    """Workers start as forks of one process that imported what a point needs (not as fresh interpreters importing
    it all again), and Prefect in them answers to the API the cluster was given, as in a worker started afresh."""
    from distributed import Client

    from flows.sweep.cluster import security_for

    def started():
        from prefect.settings import get_current_settings

        parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().split(b"\0")
        return any(b"multiprocessing.forkserver" in word for word in parent), str(get_current_settings().api.url)

    with Client(one_worker, security=security_for(one_worker), timeout=30) as client:
        assert list(client.run(started).values()) == [(True, API)]


def test_a_local_cluster_leaves_the_blas_threads_of_bps_own_environment_alone():
    """Dask's nannies, in bp's process, write their pre-spawn variables into its environment; the BLAS ones (1 thread)
    would then reach what bp starts afterwards: a bp resumed from that process trained on 1 thread, not 2."""
    from flows.runtime import blas
    from flows.sweep.cluster import LocalSweepCluster

    before = {name: os.environ.get(name) for name in blas.VARIABLES}
    local = LocalSweepCluster(1, API)
    try:
        local.address()
        assert {name: os.environ.get(name) for name in blas.VARIABLES} == before
    finally:
        local.close()


def test_the_cluster_keeps_bps_housekeeping_intervals(one_worker, tmp_path):
    """The scheduler and the worker process run with IDLE_CONFIG (Dask's 20 ms event-loop check would cost an idle
    pool several times the CPU), and a stack's scheduler, a command of its own, reads the same from its
    environment."""
    import dask
    from dask.utils import parse_timedelta
    from distributed import Client

    from flows.stack import services
    from flows.sweep.cluster import IDLE_CONFIG, security_for

    def intervals(dask_scheduler=None, dask_worker=None):  # each Dask server's health checks, in ms
        server = dask_scheduler or dask_worker
        return {name: server.periodic_callbacks[name].callback_time for name in ("tick", "monitor")}

    ms = {"tick": 1000 * parse_timedelta(IDLE_CONFIG["distributed.admin.tick.interval"]),
          "monitor": 1000 * parse_timedelta(IDLE_CONFIG["distributed.admin.system-monitor.interval"])}
    with Client(one_worker, security=security_for(one_worker), timeout=30) as client:
        assert client.run_on_scheduler(intervals) == ms
        assert list(client.run(intervals).values()) == [ms]
    _, env = services.scheduler(tmp_path, 8786)
    read = dask.config.collect_env(env)  # as the scheduler command reads its environment
    assert {key: dask.config.get(key, config=read) for key in IDLE_CONFIG} == IDLE_CONFIG


@pytest.mark.slow
def test_a_point_whose_worker_is_killed_goes_on_from_its_checkpoint_in_its_own_run(tmp_path):
    """A worker SIGKILLed mid-point (out of memory, say): Dask trains the point again on a worker that lives, which
    goes on from the lost attempt's checkpoint in the same MLflow run: every point one FINISHED child, nothing left
    RUNNING, and the resumed point identical to its uninterrupted training (bp reproduce)."""
    bp, uri = start_sweep(tmp_path, "--set", "trainer.epochs=60")  # killed long before its run ends
    with killed_if_left(bp):
        victim = training_children(bp, uri, 1)[0]
        mc = MlflowClient(uri)  # only now: building a client builds a new store, beside bp building it
        while len(mc.get_metric_history(victim.info.run_id, "cost")) < 3:  # a checkpoint or two written
            time.sleep(0.1)
        os.kill(int(victim.data.tags["bp.worker"].rsplit(":", 1)[1]), signal.SIGKILL)
        out, err = bp.communicate(timeout=300)
    assert bp.returncode == 0, err[-3000:]
    parent = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    kids = mc.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted((k.info.run_name, k.info.status) for k in kids) == [
        ("lr=0.005", "FINISHED"), ("lr=0.01", "FINISHED"), ("lr=0.02", "FINISHED")]
    resumed = mc.get_run(victim.info.run_id)
    assert resumed.data.tags["bp.resumed"] == "1" and resumed.data.tags["bp.status"] == "finished"
    assert parent.data.metrics["finished"] == 3
    steps = [m.step for m in mc.get_metric_history(victim.info.run_id, "cost")]
    assert steps == list(range(1, 61)), "each epoch logged once"
    env = {**python_env(), "PREFECT_HOME": str(Path.home() / ".prefect")}
    env.pop("PREFECT_API_URL", None)
    again = subprocess.run([*BP, "reproduce", victim.info.run_id, "--tracking-uri",
                            uri], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.stdout.strip().splitlines()[0] == "identical", again.stdout + again.stderr[-3000:]
