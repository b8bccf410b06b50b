"""A tracking server that goes away mid-run: bp gives up in bounded time, stops within seconds on SIGTERM,
and the run it could not mark is marked FAILED by the next bp once the server is back. Also what a run's
end writes: never the status without the reason."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import BP, REPO, prefect_api_env, python_env
from support.procs import killed_if_left
from support.stack import free_port

from flows.runtime import outage
from flows.tracking import ending
from flows.tracking import runs as tracking

MNIST = str(REPO / "configs" / "mnist.yaml")
LONG = ["--set", "trainer.epochs=1000", "--set", "data.limit=500", "--set", "experiment=outage"]


class MlflowServer:
    """``mlflow server`` on a fixed port with its own SQLite store: stopped and started again on that port."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {**python_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = open(self.root / "server.log", "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers",
             "1", "--backend-store-uri", f"sqlite:///{self.root / 'server.db'}", "--artifacts-destination",
             str(self.root / "artifacts")], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.root,
            start_new_session=True)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, (self.root / "server.log").read_text()
                time.sleep(0.3)

    def kill(self) -> None:
        import os

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def server(tmp_path):
    server = MlflowServer(tmp_path)
    server.start()
    yield server
    if server.proc.poll() is None:
        server.kill()


def start_training(server: MlflowServer, tmp_path, budget: int = 10) -> tuple[subprocess.Popen, str]:
    env = {**prefect_api_env(), "MLFLOW_TRACKING_URI": server.url, outage.VARIABLE: str(budget)}
    bp = subprocess.Popen([*BP, "train", MNIST, *LONG], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    mc, deadline = MlflowClient(server.url), time.monotonic() + 180
    while time.monotonic() < deadline and bp.poll() is None:
        experiment = mc.get_experiment_by_name("outage")
        runs = mc.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") if experiment else []
        if runs and len(mc.get_metric_history(runs[0].info.run_id, "cost")) >= 2:
            return bp, runs[0].info.run_id
        time.sleep(0.3)
    bp.kill()
    raise AssertionError(f"training did not start: {bp.communicate()[1][-3000:]}")


def reaped_after_restart(server: MlflowServer, run_id: str, tmp_path):
    server.start()
    done = subprocess.run([*BP, "runs", "--reap", "--tracking-uri", server.url],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=python_env())
    assert done.returncode == 0, done.stderr
    return MlflowClient(server.url).get_run(run_id)


@pytest.mark.usefixtures("prefect_server")
def test_a_server_gone_for_good_fails_the_run_in_bounded_time(server, tmp_path):
    bp, run_id = start_training(server, tmp_path)
    server.kill()
    killed = time.monotonic()
    with killed_if_left(bp):
        out, err = bp.communicate(timeout=180)
    waited = time.monotonic() - killed
    assert bp.returncode == 1, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line == (f"bp: run failed: the MLflow server at {server.url} stopped answering: gave up after waiting "
                    f"about 10 s ({outage.VARIABLE})"), err[-3000:]
    assert waited < 60, f"gave up {waited:.0f} s after the server went away, for a budget of 10 s"
    assert "Traceback" not in err
    run = reaped_after_restart(server, run_id, tmp_path)  # nothing could mark it while the server was away
    assert run.info.status == "FAILED" and "that ran it is gone" in run.data.tags["bp.failure_reason"]


@pytest.mark.usefixtures("prefect_server")
def test_sigterm_with_the_server_gone_exits_within_seconds(server, tmp_path):
    bp, run_id = start_training(server, tmp_path, budget=600)
    server.kill()
    time.sleep(3)  # bp is now waiting for the server, with minutes of retries ahead
    bp.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    with killed_if_left(bp):
        out, err = bp.communicate(timeout=120)
    assert bp.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert time.monotonic() - sent < 20, "SIGTERM took more than 20 s to end bp"
    assert err.strip().splitlines()[-1] == f"bp: stopped by SIGTERM; resume with: bp resume {run_id}"
    assert reaped_after_restart(server, run_id, tmp_path).info.status == "FAILED"


def test_mlflow_retries_are_sized_from_the_budget():
    # urllib3 waits 0, 2f, 4f, ... s between attempts; the sum first reaches the budget at these counts
    assert outage.retries_for(10) == (4, 1) and outage.retries_for(120) == (7, 1)
    assert outage.retries_for(600) == (10, 2)
    settings = outage.client_settings(120)
    assert settings["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "7" and settings["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "30"
    # Prefect's client waits 2, 4, 8 ... s between attempts: 5 retries (62 s) fit in 120 s, 3 (14 s) in 15 s
    assert settings["PREFECT_CLIENT_MAX_RETRIES"] == "5" and outage.prefect_retries_for(15) == 3


class FlakyClient:
    """An MlflowClient stand-in whose tag writes fail ``failures`` times; it records what reached the store."""

    tracking_uri = "http://127.0.0.1:5000"  # a server, as the outages it stands for

    def __init__(self, failures: int, terminate_fails: bool = False):
        self.failures, self.terminate_fails, self.written = failures, terminate_fails, []

    def log_batch(self, run_id, tags=()):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Max retries exceeded (Connection refused)")
        self.written.append(("tags", {t.key: t.value for t in tags}))

    def set_terminated(self, run_id, status):
        if self.terminate_fails:
            raise ConnectionError("Max retries exceeded (Connection refused)")
        self.written.append(("status", status))


def test_a_status_is_never_written_without_its_reason():
    # the tag write ran out of retries while the server was down; it is back for the status: the reason follows
    mc = FlakyClient(failures=1)
    ending.end(mc, "r1", "FAILED", "failed", "boom")
    assert mc.written == [("status", "FAILED"), ("tags", {"bp.status": "failed", "bp.failure_reason": "boom"})]
    # still down for the status: nothing is written, the run stays RUNNING for the next bp to reap
    mc = FlakyClient(failures=1, terminate_fails=True)
    with pytest.raises(ConnectionError):
        ending.end(mc, "r2", "FAILED", "failed", "boom")
    assert mc.written == []


def test_a_new_experiment_created_meanwhile_is_found_by_id(tmp_path, monkeypatch):
    """Another process creates the experiment between our look-up and our create: the run goes there, by id."""
    from flows.tracking.store import ensure_store

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    ensure_store(uri)
    mc = MlflowClient(uri)
    theirs = mc.create_experiment("first-use")
    real, calls = mc.get_experiment_by_name, []

    def late(name):  # the first look-up does not see it yet
        calls.append(name)
        return None if len(calls) == 1 else real(name)

    monkeypatch.setattr(mc, "get_experiment_by_name", late)
    assert tracking.experiment_id_of(mc, "first-use") == theirs
    assert tracking.experiment_id_of(mc, "brand-new") == real("brand-new").experiment_id


def test_a_worker_gone_under_its_flow_run_is_the_reason_given():
    """Killed, a worker closes the pipe its flow run writes to; rich's console then raises SystemExit(1)."""
    exited = SystemExit(1)
    exited.__context__ = BrokenPipeError(32, "Broken pipe")  # raised while handling it
    assert tracking.stop_reason(exited) == ("stopped: its output pipe broke (the worker that started this flow run "
                                         "is gone)")
    assert tracking.stop_reason(SystemExit(3)) == "stopped: the process exited (SystemExit(3))"
