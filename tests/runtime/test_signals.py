"""Signals: SIGTERM leaves no process behind and no run RUNNING; after SIGKILL the next bp reaps the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import BP, REPO, prefect_api_env, python_env
from support.procs import alive, children_of, killed_if_left, survivors

from flows.tracking.store import ensure_store

MNIST = str(REPO / "configs" / "mnist.yaml")
LONG = ["--set", "trainer.epochs=500", "--set", "data.limit=2000", "--set", "experiment=signals"]


def wait_for_running(uri: str, timeout: float = 120) -> str:
    """The id of the first RUNNING run in experiment ``signals``, once one exists."""
    deadline, mc = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if mc is None and Path(uri.removeprefix("sqlite:///")).exists():
            ensure_store(uri)  # bp may be creating the tables right now: take its lock, as a second bp would
            mc = MlflowClient(uri)
        if mc is not None:
            experiment = mc.get_experiment_by_name("signals")
            if experiment is not None:
                runs = mc.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
                if runs and mc.get_metric_history(runs[0].info.run_id, "cost"):
                    return runs[0].info.run_id  # training, an epoch logged
        time.sleep(0.5)
    raise AssertionError("no run started training in time")


@pytest.mark.slow  # it starts Prefect's temporary server
def test_sigterm_stops_the_temporary_server_and_marks_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**python_env(), "PREFECT_HOME": str(Path.home() / ".prefect")}  # the temporary server, not the test's
    env.pop("PREFECT_API_URL", None)
    bp = subprocess.Popen([*BP, "train", MNIST, "--tracking-uri", uri, *LONG],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with killed_if_left(bp):
        run_id = wait_for_running(uri)
        started = children_of(bp.pid)
        assert started, "the temporary Prefect server runs as a child of bp"
        bp.send_signal(signal.SIGTERM)
        out, err = bp.communicate(timeout=60)
    assert bp.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert err.strip().splitlines()[-1] == f"bp: stopped by SIGTERM; resume with: bp resume {run_id}"
    time.sleep(1)
    assert not [pid for pid in started if alive(pid)], "a process bp started outlived it"
    run = MlflowClient(uri).get_run(run_id)
    assert (run.info.status, run.data.tags.get("bp.failure_reason")) == ("KILLED", "stopped by SIGTERM"), err[-3000:]


@pytest.mark.slow  # it starts Prefect's temporary server
def test_sigkill_leaves_no_temporary_server_behind(tmp_path):
    """Nothing bp can run outlives a SIGKILL of it: the kernel stops its temporary server (parent-death signal)."""
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    env = {**python_env(), "PREFECT_HOME": str(Path.home() / ".prefect")}
    env.pop("PREFECT_API_URL", None)
    bp = subprocess.Popen([*BP, "train", MNIST, "--tracking-uri", uri, *LONG],
                          cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_running(uri)
        started = children_of(bp.pid)
        assert started, "the temporary Prefect server runs as a child of bp"
    finally:
        bp.kill()
        bp.wait()
    assert not survivors(started, within=5), "the temporary server outlived bp by more than 5 s"


@pytest.mark.usefixtures("prefect_server")
def test_after_sigkill_the_next_bp_marks_the_run_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    bp = subprocess.Popen([*BP, "train", MNIST, "--tracking-uri", uri, *LONG],
                          cwd=tmp_path, env=prefect_api_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run_id = wait_for_running(uri)
    finally:
        bp.kill()
        bp.wait()
    mc = MlflowClient(uri)
    assert mc.get_run(run_id).info.status == "RUNNING"  # nothing in the killed process could end it
    assert mc.get_run(run_id).data.tags["bp.worker"].endswith(f":{bp.pid}")

    # the next bp run against the store marks it, while Prefect starts
    chain = [*BP, "train", str(REPO / "configs" / "chain.yaml"), "--tracking-uri", uri,
             "--set", "trainer.iterations=5"]
    done = subprocess.run(chain, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=prefect_api_env())
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"bp: run {run_id} marked FAILED: process " in done.stderr
    run = mc.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["bp.status"] == "failed"
    assert f":{bp.pid} that ran it is gone" in run.data.tags["bp.failure_reason"]


def test_bp_runs_reap_marks_orphans_and_nothing_else(tmp_path):
    """``bp runs --reap`` on its own, without Prefect: an orphan (a run of a process that is gone) and a live run."""
    from flows.tracking.store import ensure_store

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    ensure_store(uri)
    mc = MlflowClient(uri)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = __import__("socket").gethostname()
    experiment = mc.create_experiment("reap")
    orphan = mc.create_run(experiment, tags={"bp.worker": f"{host}:{gone.stdout.strip()}"}).info.run_id
    live = mc.create_run(experiment, tags={"bp.worker": f"{host}:{os.getpid()}"}).info.run_id
    done = subprocess.run([*BP, "runs", "--reap", "--tracking-uri", uri],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=python_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{orphan}  FAILED  process {host}:") and live not in done.stdout
    assert "1 orphaned run(s) marked FAILED" in done.stderr
    assert mc.get_run(orphan).info.status == "FAILED" and mc.get_run(live).info.status == "RUNNING"


class Halt(BaseException):
    """What the test's own SIGTERM handler raises."""


def raise_halt(signum, frame):
    raise Halt(signum)


def test_a_signal_inside_signals_held_acts_at_its_end_through_the_handler_then_in_place():
    from flows.runtime.stops import signals_held

    previous = signal.signal(signal.SIGTERM, raise_halt)
    interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    reached = []
    try:
        with pytest.raises(Halt):
            with signals_held():
                with signals_held():  # nested: the inner end hands it to the outer block, which holds it too
                    os.kill(os.getpid(), signal.SIGTERM)
                    time.sleep(0.05)
                    reached.append("inner")
                reached.append("outer")
        assert reached == ["inner", "outer"]
        assert signal.getsignal(signal.SIGTERM) is raise_halt  # the handler in place again
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C too, as Python's own handler raises it
            with signals_held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                reached.append("ctrl-c")
        assert reached[-1] == "ctrl-c"
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, interrupt)


def test_a_stop_never_cuts_a_write_to_a_sqlite_store(tmp_path):
    """Stops at random moments of per-epoch writes: every run is still marked at once, with its reason.

    A stop raised inside MLflow's SQLite transaction left the connection holding the database's lock
    (2 of 200 such stops with plain ``log_batch``): marking the run then waited 20 s and failed.
    """
    import random
    import threading

    from mlflow.entities import Metric

    from flows.tracking import metrics
    from flows.tracking import runs as tracking

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    ensure_store(uri)
    mc = MlflowClient(uri)
    experiment = mc.create_experiment("stops")
    previous = signal.signal(signal.SIGTERM, raise_halt)
    unmarked, slow = [], []
    try:
        for trial in range(200):
            run_id = mc.create_run(experiment).info.run_id
            timer = threading.Timer(random.uniform(0.005, 0.03), os.kill, (os.getpid(), signal.SIGTERM))
            step = 0
            try:
                timer.start()  # on a busy machine its signal may come while start() still waits for the thread
                while True:
                    metrics.log_batch(mc, run_id, metrics=[Metric("cost", 1.0, 0, step), Metric("acc", 0.5, 0, step)])
                    step += 1
            except Halt:
                pass
            timer.join()
            started = time.monotonic()
            try:
                tracking.mark_failed(mc, run_id, "failed", "stopped by SIGTERM", run_status="KILLED")
            except Exception as exc:
                unmarked.append(f"{trial}: {type(exc).__name__}: {str(exc)[:100]}")
            if time.monotonic() - started > 5:
                slow.append(trial)
            if unmarked or slow:
                break  # the store is locked for good: the rest would wait the same
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not unmarked and not slow, (unmarked, slow)
    runs = mc.search_runs([experiment], max_results=500)
    assert len(runs) == 200
    assert {(r.info.status, r.data.tags.get("bp.failure_reason")) for r in runs} == {("KILLED", "stopped by SIGTERM")}


HUNG_AFTER_STOP = """
import sys, threading, types
sys.modules["__main__"].__spec__ = types.SimpleNamespace(name=sys.argv[1])  # as `python -m NAME` sets it
from flows.runtime import stops

class TerminationSignal(BaseException):  # Prefect's carries the signal's number so
    signal = 15

stops.STOP_GRACE = 1.0
stops.leave_soon_after(TerminationSignal())
print("stopped", flush=True)
threading.Event().wait()  # what a lock never released does to the marking of the run
"""


@pytest.mark.parametrize("main, leaves", [("prefect.engine", True), ("flows.cli", False)])
def test_a_stopped_flow_run_process_leaves_even_if_its_marking_hangs(main, leaves):
    """A worker's or bp serve's flow-run process ends within STOP_GRACE s of a stop; bp's own commands are
    left to bound their exit themselves."""
    proc = subprocess.Popen([sys.executable, "-c", HUNG_AFTER_STOP, main], cwd=REPO, env=python_env(),
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "stopped\n"
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        proc.kill()
        proc.wait()
    assert code == (128 + signal.SIGTERM if leaves else None)
