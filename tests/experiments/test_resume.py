"""bp resume: a network run stopped (SIGKILL, SIGTERM) goes on in the same MLflow run from its checkpoint and ends
exactly as an uninterrupted run of its config; what cannot be resumed is refused in one line."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient
from support import BP, REPO, prefect_api_env, run_bp

from flows.experiments.reproduce import differences
from flows.tracking import runs

pytestmark = pytest.mark.usefixtures("prefect_server", "in_workdir")

MNIST = str(REPO / "configs" / "mnist.yaml")
# about 45 ms an epoch here: long enough to be stopped in the middle, short enough to train twice
SMALL = ["--set", "trainer.epochs=24", "--set", "data.limit=2000", "--set", "experiment=resume"]


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1] if out.strip() else ""


def last_bp_line(err: str) -> str:
    """bp's last word (Prefect's workers may still print as the process exits)."""
    return [line for line in err.splitlines() if line.startswith("bp: ")][-1]


@pytest.fixture(scope="module")
def uninterrupted(tracking_uri, prefect_server, workdir) -> str:
    """The run every resumed one must end identical to."""
    import io
    from contextlib import chdir, redirect_stdout

    from flows.cli.main import main

    buf = io.StringIO()
    with chdir(workdir), redirect_stdout(buf):
        assert main(["train", MNIST, "--tracking-uri", tracking_uri, *SMALL]) == 0
    return last_line(buf.getvalue()).removeprefix("run_id: ")


def stopped_at(tracking_uri: str, workdir, sig: int, epoch: int, command: list[str]) -> tuple[str, str, int]:
    """Run ``bp COMMAND`` in a process of its own (the session's Prefect server) and send it ``sig`` once its run has
    logged ``epoch``; (run id, its stderr, its exit code)."""
    mc = MlflowClient(tracking_uri)
    since = int(time.time() * 1000) - 1000
    bp = subprocess.Popen([*BP, *command, "--tracking-uri", tracking_uri],
                          cwd=workdir, env=prefect_api_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    try:
        run_id = _training(mc, since, epoch, bp, command)
        bp.send_signal(sig)
        _, err = bp.communicate(timeout=60)
    finally:
        if bp.poll() is None:
            bp.kill()
    return run_id, err, bp.returncode


def _training(mc: MlflowClient, since: int, epoch: int, bp: subprocess.Popen, command: list[str]) -> str:
    """The run of experiment ``resume`` that ``bp`` is training, once it has logged ``epoch`` since ``since``."""
    resumed = command[0] == "resume"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert bp.poll() is None, bp.communicate()[1][-3000:]
        experiment = mc.get_experiment_by_name("resume")
        found = mc.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'") if experiment else []
        for run in found:
            if (run.info.run_id == command[1]) if resumed else run.info.start_time >= since:
                steps = [m.step for m in mc.get_metric_history(run.info.run_id, "cost")]
                if steps and max(steps) >= epoch:
                    return run.info.run_id
        time.sleep(0.05)
    raise AssertionError("the run did not reach its epoch in time")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_network_stopped_mid_training_resumes_to_the_uninterrupted_run(sig, uninterrupted, tracking_uri, workdir,
                                                                       capsys, caplog):
    run_id, err, code = stopped_at(tracking_uri, workdir, sig, 6, ["train", MNIST, *SMALL])
    mc = MlflowClient(tracking_uri)
    if sig == signal.SIGTERM:  # bp unwinds: the run is KILLED, its last checkpoint written, and it says what next
        assert code == 128 + sig, err[-3000:]
        assert last_bp_line(err) == f"bp: stopped by SIGTERM; resume with: bp resume {run_id}"
        assert mc.get_run(run_id).info.status == "KILLED"
    else:
        assert mc.get_run(run_id).info.status == "RUNNING"  # nothing ran to mark it: bp resume reaps it first
    kept = [item.path for item in mc.list_artifacts(run_id, "checkpoint")]
    assert kept == ["checkpoint/state.npz"]
    code, out, err = run_bp(["resume", run_id, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, err[-3000:]
    assert last_line(out) == f"run_id: {run_id}"  # the same run, not a new one
    assert f"run {run_id}: resuming after epoch" in caplog.text
    run = mc.get_run(run_id)
    assert (run.info.status, run.data.tags["bp.status"], run.data.tags["bp.resumed"]) == ("FINISHED", "finished", "1")
    assert "bp.failure_reason" not in run.data.tags
    assert run.data.tags["bp.config_digest"] == mc.get_run(uninterrupted).data.tags["bp.config_digest"]
    assert differences(uninterrupted, run_id, runs.client(tracking_uri)) == []


def test_a_run_resumed_twice_and_one_without_a_checkpoint_end_as_if_never_stopped(uninterrupted, tracking_uri,
                                                                                  workdir, capsys, caplog):
    """No checkpoint kept (checkpoint_every above the epochs, and SIGKILL writes none): it trains from the start in
    the same run; stopped again while resumed and resumed once more, it still ends identical."""
    sparse = [*SMALL, "--set", "trainer.checkpoint_every=100"]
    run_id, _, _ = stopped_at(tracking_uri, workdir, signal.SIGKILL, 5, ["train", MNIST, *sparse])
    _, err, code = stopped_at(tracking_uri, workdir, signal.SIGTERM, 12, ["resume", run_id])
    assert code == 128 + signal.SIGTERM and f"run {run_id} holds no checkpoint: training from the start" in err, err
    assert last_bp_line(err) == f"bp: stopped by SIGTERM; resume with: bp resume {run_id}"
    code, out, err = run_bp(["resume", run_id, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, err[-3000:]
    resumed_after = re.search(rf"run {run_id}: resuming after epoch (\d+)", caplog.text)
    assert resumed_after and int(resumed_after[1]) >= 11, caplog.text  # a stop writes the last finished epoch's state
    mc = MlflowClient(tracking_uri)
    assert mc.get_run(run_id).data.tags["bp.resumed"] == "2"
    assert differences(uninterrupted, run_id, runs.client(tracking_uri)) == []
    steps = [m.step for m in mc.get_metric_history(run_id, "cost")]
    assert steps == sorted(set(steps)) == list(range(1, 25)), "each epoch logged once, whatever was trained twice"
    assert [m.step for m in mc.get_metric_history(run_id, "sharpness")] == [0]


def recorded_run(mc: MlflowClient, status: str, tags: dict[str, str]) -> str:
    """A run as bp records one (its config.yaml, tags), ended with ``status``, trained on nothing."""
    experiment = mc.get_experiment_by_name("resume") or mc.get_experiment(mc.create_experiment("resume"))
    run = mc.create_run(getattr(experiment, "experiment_id", experiment), tags={"bp.kind": "mnist", **tags})
    config = yaml.safe_load(open(MNIST))
    mc.log_text(run.info.run_id, yaml.safe_dump(config), "config.yaml")
    if status != "RUNNING":
        mc.set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.mark.parametrize(("status", "tags", "says"), [
    ("FINISHED", {"bp.status": "finished"}, "is FINISHED: nothing to resume (bp reproduce"),
    ("FINISHED", {"bp.status": "pruned"}, "is pruned by its search: nothing to resume"),
    ("FAILED", {"bp.status": "diverged", "bp.failure_reason": "diverged at epoch 1: cost nan"},
     "diverged (diverged at epoch 1: cost nan): resumed, it would diverge again"),
    ("KILLED", {"bp.status": "skipped", "bp.sweep": "child"}, "is a sweep's skipped child"),
    ("RUNNING", {"bp.status": "running", "bp.worker": "elsewhere:12"}, "is still RUNNING (process elsewhere:12)"),
])
def test_what_cannot_be_resumed_is_refused_in_one_line(status, tags, says, tracking_uri, capsys):
    run_id = recorded_run(MlflowClient(tracking_uri), status, tags)
    code, out, err = run_bp(["resume", run_id, "--tracking-uri", tracking_uri], capsys)
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and err.startswith(f"bp: run {run_id} ") and says in err, err
