"""bp sweep end to end on SQLite: parent and children, histories, divergence, registry, reproduction."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO, history, python_env, refused, run_bp

import bpcore.data.table

pytestmark = pytest.mark.usefixtures("prefect_server", "in_workdir")

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
MODEL = "sweep-test-line"


def sweep(capsys, uri, *args, config=LINREG_SWEEP):
    code, out, err = run_bp(["sweep", config, "--tracking-uri", uri, *args], capsys)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return code, (last.removeprefix("run_id: ") if last.startswith("run_id: ") else None), out, err


def children(mc, parent):
    run = mc.get_run(parent)
    found = mc.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=100)
    return {r.info.run_name: r for r in found}


@pytest.fixture(scope="module")
def sweep_db(tmp_path_factory):
    """A tracking database of this module's own (registry state is checked across sweeps)."""
    return f"sqlite:///{tmp_path_factory.mktemp('sweep') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def own_csv(tmp_path_factory, seed_csv):
    """The seed's data under a path no other test has loaded (so a read is a real read)."""
    path = tmp_path_factory.mktemp("sweep-data") / "data.csv"
    shutil.copy(seed_csv, path)
    return path


@pytest.fixture(scope="module")
def full_sweep(sweep_db, own_csv):
    """Eight learning rates, all eight at once, on the seed's data; counts the CSV reads."""
    reads = []
    original = bpcore.data.table.read_csv

    def counting(path, cfg):
        reads.append(path)
        return original(path, cfg)

    bpcore.data.table.read_csv = counting
    try:
        from flows.cli.main import main

        out, err = io.StringIO(), io.StringIO()  # capsys is per test; this runs once per module
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["sweep", LINREG_SWEEP, "--tracking-uri", sweep_db, "--parallel", "8",
                         "--set", f"data.path={own_csv}", "--set", f"sweep.model_name={MODEL}"])
    finally:
        bpcore.data.table.read_csv = original
    last = out.getvalue().strip().splitlines()[-1]
    return code, last.removeprefix("run_id: "), out.getvalue(), err.getvalue(), reads


def test_sweep_has_a_parent_and_eight_complete_children(full_sweep, sweep_db):
    code, parent, out, err, reads = full_sweep
    assert code == 0, err
    mc = MlflowClient(sweep_db)
    run = mc.get_run(parent)
    assert run.info.status == "FINISHED" and run.data.tags["bp.sweep"] == "parent"
    kids = children(mc, parent)
    assert sorted(kids, key=lambda n: float(n[3:])) == [
        "lr=1e-05", "lr=2e-05", "lr=5e-05", "lr=0.0001", "lr=0.0002", "lr=0.0003", "lr=0.0004", "lr=0.0005"]
    assert {r.info.experiment_id for r in kids.values()} == {run.info.experiment_id}
    for name, child in kids.items():
        assert child.data.tags["bp.sweep"] == "child"
        assert child.data.params["trainer.learning_rate"] == name[3:]
        assert "sweep.grid.trainer.learning_rate" not in child.data.params
        files = {a.path for a in mc.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "environment.json", "plots"} <= files
    assert len(reads) == 1  # the data was read once, for all eight


def test_each_point_is_a_task_run_of_the_sweeps_flow_run_on_its_prefect_server(full_sweep, sweep_db):
    """The points trained in worker processes forked from one that imported Prefect before it knew the sweep's API:
    each reported its task run to the sweep's server all the same (none to a temporary server of its own)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _, parent, _, err, _ = full_sweep
    mc = MlflowClient(sweep_db)
    flow_run = mc.get_run(parent).data.tags["bp.flow_run"]
    deadline, points = time.monotonic() + 60, set()
    while time.monotonic() < deadline:  # the server records task runs from events, in batches
        with get_client(sync_client=True) as client:
            found = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run])))
        points = {r.name for r in found if r.name.startswith("child ")}
        if len(points) == 8:
            break
        time.sleep(1)
    assert points == {f"child {name}" for name in children(mc, parent)}, (points, err[-3000:])


def test_every_finished_child_has_its_whole_history_and_no_lost_metric(full_sweep, sweep_db):
    """Eight children wrote to one SQLite file at once: every value of every curve is there."""
    _, parent, _, err, _ = full_sweep
    assert "database is locked" not in err
    mc = MlflowClient(sweep_db)
    for name, child in children(mc, parent).items():
        steps, cost = history(mc, child.info.run_id, "cost")
        excess_steps, excess = history(mc, child.info.run_id, "excess_cost")
        if name == "lr=0.0005":
            continue
        assert child.info.status == "FINISHED" and child.data.tags["bp.status"] == "finished"
        assert steps == list(range(1001)) and excess_steps == steps
        np.testing.assert_allclose(excess, cost - child.data.metrics["least_squares_cost"], atol=1e-9)
        assert child.data.metrics["final_cost"] == cost[-1]
        assert mc.list_artifacts(child.info.run_id, "plots")


def test_the_diverged_child_is_failed_and_counted(full_sweep, sweep_db):
    _, parent, out, _, _ = full_sweep
    mc = MlflowClient(sweep_db)
    child = children(mc, parent)["lr=0.0005"]
    assert child.info.status == "FAILED" and child.data.tags["bp.status"] == "diverged"
    assert child.data.tags["bp.failure_reason"].startswith("diverged at iteration")
    metrics = mc.get_run(parent).data.metrics
    assert (metrics["children"], metrics["finished"], metrics["diverged"], metrics["failed"]) == (8, 7, 1, 0)
    assert "lr=0.0005  0.0005" in out and "diverged" in out


def test_parent_holds_the_comparison(full_sweep, sweep_db, tmp_path):
    _, parent, _, _, _ = full_sweep
    mc = MlflowClient(sweep_db)
    kids = children(mc, parent)
    best = min((r for r in kids.values() if r.info.status == "FINISHED"), key=lambda r: r.data.metrics["final_cost"])
    run = mc.get_run(parent)
    assert run.data.tags["bp.best_child"] == best.info.run_id and run.data.tags["bp.best_point"] == "lr=0.0004"
    assert run.data.metrics["best_final_cost"] == best.data.metrics["final_cost"]
    rows = list(csv.DictReader(open(mc.download_artifacts(parent, "sweep/results.csv", str(tmp_path)))))
    assert len(rows) == 8
    by_point = {row["point"]: row for row in rows}
    for name, child in kids.items():
        assert by_point[name]["run_id"] == child.info.run_id
        assert by_point[name]["status"] == child.data.tags["bp.status"]
    assert float(by_point["lr=0.0001"]["final_cost"]) == kids["lr=0.0001"].data.metrics["final_cost"]
    table = __import__("json").load(open(mc.download_artifacts(parent, "sweep/results.json", str(tmp_path))))
    assert len(table["data"]) == 8 and "final_cost" in table["columns"]
    png = open(mc.download_artifacts(parent, "plots/sweep.png", str(tmp_path)), "rb").read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_table_goes_to_prefect(full_sweep):
    _, parent, _, _, _ = full_sweep
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["sweep-results"])))
    mine = [a for a in artifacts if parent in (a.description or "")]
    assert len(mine) == 1 and mine[0].type == "table"
    assert len(__import__("json").loads(mine[0].data)) == 8


def test_champion_moves_only_to_a_better_model(full_sweep, capsys, sweep_db, own_csv, tmp_path):
    _, parent, _, _, _ = full_sweep
    mc = MlflowClient(sweep_db)
    champion = mc.get_model_version_by_alias(MODEL, "champion")
    assert champion.run_id == mc.get_run(parent).data.tags["bp.best_child"]

    # a worse sweep registers nothing (no new version each time), says why, and the champion stays
    code, worse, out, err = sweep(capsys, sweep_db, "--set", f"data.path={own_csv}", "--set",
                                  f"sweep.model_name={MODEL}", "--set", "sweep.grid.trainer.learning_rate=[1.0e-5]")
    assert code == 0, err
    versions = mc.search_model_versions(f"name = '{MODEL}'")
    assert len(versions) == 1
    assert mc.get_model_version_by_alias(MODEL, "champion").version == champion.version
    tags = mc.get_run(worse).data.tags
    assert tags["bp.champion_moved"] == "false" and "bp.registered_model" not in tags
    note = tags["bp.registry"]
    assert note.startswith("not registered: lr=1e-05 (final_cost ") and "does not beat" in note
    assert tags["bp.registry"] in out  # printed with the results table
    assert mc.get_run(parent).data.tags["bp.champion_moved"] == "true"

    # the champion loads by alias in a fresh process
    script = ("import sys, mlflow, pandas as pd\n"
              "mlflow.set_tracking_uri(sys.argv[1])\n"
              f"m = mlflow.pyfunc.load_model('models:/{MODEL}@champion')\n"
              "print(m.predict(pd.DataFrame({'x': [50.0]}))[0])\n")
    done = subprocess.run([sys.executable, "-c", script, sweep_db], capture_output=True, text=True, timeout=120,
                          env=python_env(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    best = mc.get_run(champion.run_id).data.metrics
    assert float(done.stdout.strip().splitlines()[-1]) == pytest.approx(best["intercept"] + 50 * best["slope"])

    # a sweep on other data (the generated line) is no match for models fitted to the seed's, either way:
    # compared with none of them, it is the first on its data, registered; but its model takes the column
    # hours, not x: the champion's consumers send x, so the alias stays where it is
    code, other, out, err = sweep(capsys, sweep_db, "--set", "data.path=null", "--set", f"sweep.model_name={MODEL}",
                                  "--set", "sweep.grid.trainer.learning_rate=[1.0e-4]")
    assert code == 0, err
    tags = mc.get_run(other).data.tags
    note = tags["bp.registry"]
    assert note.startswith(f"registered {MODEL} version 2 without the alias champion") and "the first version " \
        "trained on the same data" in note and note.endswith("; 1 version(s) trained on other data not compared"), note
    assert "its model takes columns hours (double) where version 1, the champion, takes columns x (double)" in note
    assert f"set_registered_model_alias('{MODEL}', 'champion', 2)" in note and note in out
    assert tags["bp.champion_moved"] == "false" and tags["bp.registered_model"] == f"{MODEL}/2"
    assert mc.get_model_version_by_alias(MODEL, "champion").version == champion.version
    code, again, out, err = sweep(capsys, sweep_db, "--set", f"data.path={own_csv}", "--set",
                                  f"sweep.model_name={MODEL}", "--set", "sweep.grid.trainer.learning_rate=[1.0e-5]")
    note = mc.get_run(again).data.tags["bp.registry"]
    assert f"does not beat {MODEL} version {champion.version} " in note, note  # the seed's own best, not version 2


def test_a_sweep_where_nothing_finishes_fails(capsys, tracking_uri):
    # both rates train (no skip above the first to diverge: with two at a time, whether 0.02 is skipped is timing)
    code, parent, out, err = sweep(capsys, tracking_uri, "--set", "sweep.grid.trainer.learning_rate=[0.01, 0.02]",
                                   "--set", "sweep.model_name=null", "--set", "experiment=sweep-all-diverge",
                                   "--set", "sweep.skip_above_divergence=false")
    assert code == 1 and parent is not None
    mc = MlflowClient(tracking_uri)
    run = mc.get_run(parent)
    assert run.info.status == "FAILED" and run.data.tags["bp.status"] == "failed"
    reasons = [r.data.tags.get("bp.failure_reason") for r in children(mc, parent).values()]
    assert run.data.tags["bp.failure_reason"] == (  # (the assertion shows the children's reasons)
        "no child finished with a score: 2 diverged, 0 failed, 0 finished without the metric"), reasons
    assert run.data.metrics["diverged"] == 2


def test_mnist_sweep_child_reproduces_bit_for_bit(capsys, tracking_uri):
    code, parent, out, err = sweep(
        capsys, tracking_uri, "--set", "trainer.epochs=2", "--set", "data.limit=600", "--set", "trainer.hidden=[32]",
        "--set", "sweep.grid.trainer.learning_rate=[0.02, 50.0]", "--set", "sweep.model_name=null",
        "--set", "experiment=sweep-mnist", config=MNIST_SWEEP)
    assert code == 0, err
    mc = MlflowClient(tracking_uri)
    kids = children(mc, parent)
    assert kids["lr=50"].data.tags["bp.status"] == "diverged"
    good = kids["lr=0.02"]
    steps, acc = history(mc, good.info.run_id, "val_accuracy")
    assert steps == [1, 2]
    parent_metrics = mc.get_run(parent).data.metrics
    assert parent_metrics["best_val_accuracy"] == good.data.metrics["best_val_accuracy"]
    assert "best_best_val_accuracy" not in parent_metrics  # the metric is named once

    code, out, err = run_bp(["reproduce", good.info.run_id, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, out + err
    assert out.splitlines()[0] == "identical"
    again = mc.get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    assert again.data.tags["bp.reproduces"] == good.info.run_id
    assert "mlflow.parentRunId" not in again.data.tags  # a reproduction stands on its own


def test_reproducing_a_parent_is_refused_with_a_pointer_to_its_children(full_sweep, capsys, sweep_db):
    _, parent, _, _, _ = full_sweep
    line = refused(run_bp(["reproduce", parent, "--tracking-uri", sweep_db], capsys))
    best = MlflowClient(sweep_db).get_run(parent).data.tags["bp.best_child"]
    assert line == (f"bp: run {parent} is a sweep's parent: it trained nothing itself; reproduce one of its "
                           f"children (its best child is {best}), or run the sweep again with bp sweep")


def test_bp_train_on_a_sweep_config_trains_the_base_values_once(capsys, tracking_uri):
    code, out, err = run_bp(["train", LINREG_SWEEP, "--tracking-uri", tracking_uri, "--set", "trainer.iterations=5",
                             "--set", "experiment=sweep-config-trained"], capsys)
    assert code == 0, err
    assert "training the base config; its sweep runs with bp sweep" in err
    run = MlflowClient(tracking_uri).get_run(out.strip().splitlines()[-1].removeprefix("run_id: "))
    assert run.data.params["trainer.learning_rate"] == "0.0001"
    assert not any(key.startswith("sweep") for key in run.data.params)
    assert "mlflow.parentRunId" not in run.data.tags


def test_a_child_whose_training_raises_is_failed_with_its_reason_and_the_others_finish(capsys, tracking_uri,
                                                                                     monkeypatch, tmp_path):
    """An error inside one child's MLflow run (not a divergence): that child is FAILED with the reason, read
    back from its run, and the sweep goes on."""
    import bpcore.train.linreg

    real = bpcore.train.linreg.fit

    def broken_at_one_rate(X, y, trainer):
        if trainer.learning_rate == 2e-4:
            raise FloatingPointError("simulated failure inside one child's trainer")
        return real(X, y, trainer)

    monkeypatch.setattr(bpcore.train.linreg, "fit", broken_at_one_rate)
    code, parent, out, err = sweep(capsys, tracking_uri, "--set", "experiment=sweep-child-error",
                                   "--set", "sweep.grid.trainer.learning_rate=[1.0e-4,2.0e-4]",
                                   "--set", "trainer.iterations=20", "--parallel", "1")  # here: patched
    assert code == 0 and parent, err
    mc = MlflowClient(tracking_uri)
    kids = children(mc, parent)
    broken = kids["lr=0.0002"]
    assert broken.info.status == "FAILED" and broken.data.tags["bp.status"] == "failed"
    assert "simulated failure inside one child's trainer" in broken.data.tags["bp.failure_reason"]
    assert kids["lr=0.0001"].info.status == "FINISHED"
    assert mc.get_run(parent).data.metrics["failed"] == 1 and mc.get_run(parent).data.metrics["finished"] == 1
    rows = {r["point"]: r for r in csv.DictReader(open(mc.download_artifacts(parent, "sweep/results.csv",
                                                                             str(tmp_path))))}
    assert rows["lr=0.0002"]["run_id"] == broken.info.run_id  # the parent read the child's own record
    assert "simulated failure inside one child's trainer" in rows["lr=0.0002"]["reason"]
