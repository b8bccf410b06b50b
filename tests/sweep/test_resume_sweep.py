"""bp resume of a sweep's parent: a grid and a pruned TPE search stopped by SIGINT after some children ended finish in
the same parent run with the same children, statuses and metrics as the sweep that was never stopped."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient
from support import BP, REPO, prefect_api_env, run_bp
from support.procs import killed_if_left

from flows.experiments.reproduce import differences
from flows.tracking import runs

pytestmark = pytest.mark.usefixtures("prefect_server", "in_workdir")

MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MNIST_SEARCH = str(REPO / "configs" / "mnist_lr_search.yaml")
SMALL = ["--parallel", "2", "--set", "trainer.epochs=24", "--set", "data.limit=2000", "--set", "sweep.model_name=null"]
SWEEPS = {
    "grid": [MNIST_SWEEP, *SMALL, "--set", "sweep.grid.trainer.learning_rate=[0.005,0.01,0.02,0.05]"],
    # seed 2: a trial of the second round trains to the end (the first seed prunes every later trial at epoch 1)
    "tpe search, median pruner": [MNIST_SEARCH, *SMALL, "--set", "sweep.trials=6", "--set", "sweep.prune=median",
                                  "--set", "seed=2"],
}


def children(mc: MlflowClient, parent_id: str) -> dict[int, object]:
    """A sweep's child runs by their point's index."""
    experiment = mc.get_run(parent_id).info.experiment_id
    found = mc.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    return {int(run.data.tags["bp.point"]): run for run in found}


def stopped_sweep(tracking_uri: str, workdir, args: list[str], experiment: str) -> str:
    """``bp sweep ARGS`` in a process of its own, sent SIGINT once two of its children ended and one more has trained
    three epochs; the parent run's id."""
    mc = MlflowClient(tracking_uri)
    bp = subprocess.Popen([*BP, "sweep", *args, "--tracking-uri", tracking_uri,
                           "--set", f"experiment={experiment}"], cwd=workdir, env=prefect_api_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with killed_if_left(bp):
        parent_id = _midway(mc, experiment, bp)
        bp.send_signal(signal.SIGINT)
        _, err = bp.communicate(timeout=120)
    assert bp.returncode == 130, err[-3000:]
    assert [line for line in err.splitlines() if line.startswith("bp: ")][-1] == (
        f"bp: interrupted; resume with: bp resume {parent_id}")
    return parent_id


def _midway(mc: MlflowClient, experiment: str, bp: subprocess.Popen) -> str:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert bp.poll() is None, f"the sweep ended before it could be stopped midway: {bp.communicate()[1][-3000:]}"
        found = mc.get_experiment_by_name(experiment)
        parents = mc.search_runs([found.experiment_id], "tags.`bp.sweep` = 'parent'") if found else []
        if parents:
            kids = children(mc, parents[0].info.run_id).values()
            ended = [k for k in kids if k.info.status != "RUNNING"]
            training = [k for k in kids if k.info.status == "RUNNING"
                        and len(mc.get_metric_history(k.info.run_id, "cost")) >= 3]
            if len(ended) >= 2 and training:
                return parents[0].info.run_id
        time.sleep(0.1)
    raise AssertionError("the sweep did not get midway in time")


@pytest.mark.parametrize("name", list(SWEEPS))
def test_a_sweep_stopped_midway_resumes_to_the_uninterrupted_sweep(name, tracking_uri, workdir, capsys):
    experiment = f"resume-{name.split()[0]}"
    code, out, err = run_bp(["sweep", *SWEEPS[name], "--tracking-uri", tracking_uri, "--set",
                             f"experiment={experiment}"], capsys)
    assert code == 0, err[-3000:]
    whole = out.strip().splitlines()[-1].removeprefix("run_id: ")
    parent_id = stopped_sweep(tracking_uri, workdir, SWEEPS[name], experiment)
    mc = MlflowClient(tracking_uri)
    assert mc.get_run(parent_id).info.status == "KILLED"
    cut = {i for i, k in children(mc, parent_id).items() if k.info.status == "KILLED"}
    assert cut, "a child was training as the sweep stopped"
    code, out, err = run_bp(["resume", parent_id, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, err[-3000:]
    assert out.strip().splitlines()[-1] == f"run_id: {parent_id}"
    parent, expected = mc.get_run(parent_id), mc.get_run(whole)
    assert (parent.info.status, parent.data.tags["bp.resumed"]) == ("FINISHED", "1")
    assert {k: v for k, v in parent.data.metrics.items()} == expected.data.metrics
    assert parent.data.tags["bp.best_point"] == expected.data.tags["bp.best_point"]
    resumed, mine = children(mc, whole), children(mc, parent_id)
    assert sorted(resumed) == sorted(mine)
    for index, run in mine.items():
        theirs = resumed[index]
        assert (run.info.run_name, run.info.status, run.data.tags["bp.status"]) == (
            theirs.info.run_name, theirs.info.status, theirs.data.tags["bp.status"]), index
        assert differences(theirs.info.run_id, run.info.run_id, runs.client(tracking_uri)) == [], index
    assert all(mine[i].data.tags.get("bp.resumed") == "1" for i in cut)  # went on in their own runs
