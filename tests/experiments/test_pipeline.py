"""bp train end to end: Prefect flow on a test server, everything read back from MLflow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO, SEED_B, SEED_COST, SEED_M, SEED_START_COST, forget_loaded_data, history, python_env, run_bp

pytestmark = pytest.mark.usefixtures("prefect_server", "in_workdir")

LINREG = str(REPO / "configs" / "linreg.yaml")
REL = 1e-9


def train(capsys, tracking_uri, *args):
    code, out, err = run_bp(["train", LINREG, "--tracking-uri", tracking_uri, *args], capsys)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    run_id = last.removeprefix("run_id: ") if last.startswith("run_id: ") else None
    return code, run_id, err


def artifact_paths(mc, run_id, path=None):
    out = []
    for item in mc.list_artifacts(run_id, path):
        out += artifact_paths(mc, run_id, item.path) if item.is_dir else [item.path]
    return out


def test_seed_figures_through_bp_train(capsys, tracking_uri, seed_csv, workdir):
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={seed_csv}",
                              "--experiment", "seed-figures")
    assert code == 0, err
    assert not (workdir / "mlflow.db").exists()  # --tracking-uri wins over the default
    mc = MlflowClient(tracking_uri)
    run = mc.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment = mc.get_experiment(run.info.experiment_id)
    assert experiment.name == "seed-figures"
    # MLflow's UI opens it on the training runs, not on an empty GenAI overview
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    steps, cost = history(mc, run_id, "cost")
    assert steps == list(range(1001))
    assert cost[0] == pytest.approx(SEED_START_COST, rel=REL)
    assert cost[-1] == pytest.approx(SEED_COST, rel=REL)
    metrics = run.data.metrics
    assert metrics["intercept"] == pytest.approx(SEED_B, rel=REL)
    assert metrics["slope"] == pytest.approx(SEED_M, rel=REL)
    assert metrics["final_cost"] == pytest.approx(SEED_COST, rel=REL)
    assert metrics["max_stable_lr"] == pytest.approx(4.0e-4, rel=0.01)
    xy = np.loadtxt(seed_csv, delimiter=",")
    A = np.column_stack([np.ones(len(xy)), xy[:, 0]])
    residual = xy[:, 1] - A @ np.linalg.lstsq(A, xy[:, 1], rcond=None)[0]
    assert metrics["least_squares_cost"] == pytest.approx(residual @ residual / len(xy), rel=1e-9)
    excess_steps, excess = history(mc, run_id, "excess_cost")
    assert excess_steps == steps
    np.testing.assert_allclose(excess, cost - metrics["least_squares_cost"], rtol=1e-9, atol=1e-9)

    params = run.data.params
    assert params["trainer.learning_rate"] == "0.0001" and params["trainer.iterations"] == "1000"
    assert params["data.path"] == str(seed_csv) and params["experiment"] == "seed-figures"

    tags = run.data.tags
    assert tags["bp.status"] == "finished"
    assert len(tags["bp.config_digest"]) == 64
    assert tags["bp.data_digest"] == __import__("hashlib").sha256(seed_csv.read_bytes()).hexdigest()
    assert len(tags["mlflow.source.git.commit"]) == 40  # the tests run from a checkout

    files = artifact_paths(mc, run_id)
    assert {"config.yaml", "environment.json", "plots/cost.png", "plots/fit.png"} <= set(files)
    env = json.loads(open(mc.download_artifacts(run_id, "environment.json")).read())
    assert env["packages"]["numpy"] == np.__version__ and env["python"].count(".") == 2
    assert env["cpu_count"] >= 1 and "thread_variables" in env
    config_text = (mc.download_artifacts(run_id, "config.yaml"))
    assert f"path: {seed_csv}" in open(config_text).read()

    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "data.csv"
    assert inputs[0].dataset.digest == tags["bp.data_digest"][:16]

    # the model is linked to the figures of the step that produced it, the last one: not the first
    (model,) = mc.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    linked = {m.key: (m.step, m.value) for m in model.metrics}
    assert linked["final_cost"] == (1000, pytest.approx(SEED_COST, rel=REL))
    assert linked["cost"] == (1000, pytest.approx(SEED_COST, rel=REL))
    assert linked["slope"] == (1000, pytest.approx(SEED_M, rel=REL))
    assert {step for step, _ in linked.values()} == {1000}


def test_model_loads_in_a_fresh_process(capsys, tracking_uri, seed_csv, workdir, tmp_path):
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={seed_csv}",
                              "--set", "trainer.iterations=50")
    assert code == 0, err
    metrics = MlflowClient(tracking_uri).get_run(run_id).data.metrics
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(f'runs:/{sys.argv[1]}/model')\n"
        "print(json.dumps([float(v) for v in model.predict(pd.DataFrame({'x': [0.0, 10.0, 32.5]}))]))\n"
    )
    env = python_env() | {"MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run([sys.executable, "-c", script, run_id], capture_output=True, text=True,
                          cwd=workdir, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    predictions = json.loads(done.stdout.strip().splitlines()[-1])
    b, m = metrics["intercept"], metrics["slope"]
    np.testing.assert_allclose(predictions, [b, b + 10 * m, b + 32.5 * m], rtol=1e-12)

    # no pickle anywhere: the model is code plus an .npz that loads with allow_pickle=False
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=str(tmp_path)))
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".cloudpickle"))], files
    (weights,) = [local / f for f in files if f.endswith(".npz")]
    with np.load(weights, allow_pickle=False) as z:
        assert float(z["b"]) == b and float(z["w"][0]) == m
    assert "numpy==" in (local / "requirements.txt").read_text()


def test_divergence_exits_1_with_a_failed_run(capsys, tracking_uri, seed_csv):
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={seed_csv}",
                              "--set", "trainer.learning_rate=0.001")
    assert code == 1
    assert "diverged at iteration" in err.strip().splitlines()[-1]
    mc = MlflowClient(tracking_uri)
    run = mc.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["bp.status"] == "diverged"
    assert run.data.tags["bp.failure_reason"].startswith("diverged at iteration ")
    steps, cost = history(mc, run_id, "cost")
    assert steps == list(range(len(steps))) and 1 < len(steps) < 20
    assert np.all(np.isfinite(cost))
    assert "final_cost" not in run.data.metrics and "slope" not in run.data.metrics
    assert "plots/cost.png" in artifact_paths(mc, run_id)
    assert not mc.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")


def test_error_during_training_marks_the_run_failed(capsys, tracking_uri, monkeypatch):
    import bpcore.train.linreg

    def broken(*_args, **_kw):
        raise FloatingPointError("simulated failure inside the trainer")

    monkeypatch.setattr(bpcore.train.linreg, "fit", broken)
    code, run_id, err = train(capsys, tracking_uri, "--set", "trainer.iterations=5")
    assert code == 1 and run_id
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["bp.status"] == "failed"
    assert "simulated failure inside the trainer" in run.data.tags["bp.failure_reason"]
    assert run.data.params["trainer.iterations"] == "5"  # what was logged before the failure stays


def test_default_config_trains_on_the_generated_line_identically_twice(capsys, tracking_uri,
                                                                       monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)  # no --tracking-uri: the variable wins
    run_ids = []
    for _ in range(2):
        forget_loaded_data()  # the second run generates the line again rather than reusing the first's
        code, out, err = run_bp(["train", LINREG, "--experiment", "twice"], capsys)
        assert code == 0, err
        run_ids.append(out.strip().splitlines()[-1].removeprefix("run_id: "))
    mc = MlflowClient(tracking_uri)
    first, second = (mc.get_run(r) for r in run_ids)
    assert first.data.tags["bp.data_source"] == "generated:line?rows=100&seed=0"
    assert first.data.params["data.path"] == "null"
    assert 1.0 < first.data.metrics["slope"] < 1.6
    for key in ("bp.config_digest", "bp.data_digest"):
        assert first.data.tags[key] == second.data.tags[key]
    assert history(mc, run_ids[0], "cost")[1].tobytes() == history(mc, run_ids[1], "cost")[1].tobytes()
    for key in ("intercept", "slope", "final_cost"):
        assert first.data.metrics[key] == second.data.metrics[key]


def test_multi_feature_csv(capsys, tracking_uri, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 2))
    y = 3.0 + X @ [2.0, -1.0]
    path = tmp_path / "two.csv"
    path.write_text("a,b,target\n" + "\n".join(f"{a},{b},{t}" for (a, b), t in zip(X, y)))
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={path}",
                              "--set", "trainer.learning_rate=0.3", "--set", "trainer.iterations=400")
    assert code == 0, err
    metrics = MlflowClient(tracking_uri).get_run(run_id).data.metrics
    assert metrics["slope.a"] == pytest.approx(2.0, abs=1e-6)
    assert metrics["slope.b"] == pytest.approx(-1.0, abs=1e-6)
    assert metrics["intercept"] == pytest.approx(3.0, abs=1e-6)


def reproduce(capsys, tracking_uri, run_id, *args, fresh: bool = True):
    """``bp reproduce``; ``fresh``: with the data unloaded, as in the new process a user would start."""
    if fresh:
        forget_loaded_data()
    code, out, err = run_bp(["reproduce", run_id, "--tracking-uri", tracking_uri, *args], capsys)
    lines = out.strip().splitlines()
    new_id = lines[-1].removeprefix("run_id: ") if lines and lines[-1].startswith("run_id: ") else None
    return code, lines[:-1], new_id, err


@pytest.fixture
def own_csv(tmp_path, seed_csv):
    """A private copy of the seed data, free to be changed by the test."""
    path = tmp_path / "points.csv"
    path.write_bytes(seed_csv.read_bytes())
    return path


def test_reproduce_is_identical_and_tagged(capsys, tracking_uri, own_csv):
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={own_csv}", "--set", "trainer.iterations=300")
    assert code == 0, err
    code, report, new_id, err = reproduce(capsys, tracking_uri, run_id)
    assert code == 0, (report, err)
    assert report == ["identical"]
    new = MlflowClient(tracking_uri).get_run(new_id)
    assert new.data.tags["bp.reproduces"] == run_id and new.data.params["trainer.iterations"] == "300"


@pytest.mark.parametrize("process", ["new", "same"])
def test_reproduce_refuses_changed_data(capsys, tracking_uri, own_csv, process):
    """In a new process; and in the one that trained (as under ``bp serve``), whose cache holds the old table."""
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={own_csv}", "--set", "trainer.iterations=50")
    assert code == 0, err
    recorded = MlflowClient(tracking_uri).get_run(run_id).data.tags["bp.data_digest"]
    own_csv.write_text(own_csv.read_text().rstrip("\n") + "\n50.0,70.0\n")  # one more row
    code, report, new_id, err = reproduce(capsys, tracking_uri, run_id, fresh=process == "new")
    assert code == 2 and new_id is None
    line = err.strip()
    assert line.startswith(f"bp: {own_csv}: data changed since run {run_id}") and recorded in line
    assert len(line.splitlines()) == 1


def test_reproduce_reports_changed_code_and_config(capsys, tracking_uri, own_csv, monkeypatch):
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={own_csv}", "--set", "trainer.iterations=50")
    assert code == 0, err
    code, report, _, _ = reproduce(capsys, tracking_uri, run_id, "--set", "trainer.iterations=60")
    assert code == 1
    assert any(r.startswith("metric cost: 51 values recorded, 61 now") for r in report)
    assert "config: trainer.iterations 50 recorded, 60 now" in report

    import bpcore.train.linreg

    real = bpcore.train.linreg._fast_scalar_steps

    def nudged(moments):  # "changed code": the same maths, one rounding different
        step = real(moments)
        return lambda w, b: (lambda c, gw, gb: (c * (1 + 1e-12), gw, gb))(*step(w, b))

    monkeypatch.setattr(bpcore.train.linreg, "_fast_scalar_steps", nudged)
    code, report, _, _ = reproduce(capsys, tracking_uri, run_id)
    assert code == 1
    assert any(r.startswith("metric cost: max |difference|") for r in report), report
    assert not any(r.startswith("config:") for r in report)


def test_reproduce_names_the_first_step_that_differs(capsys, tracking_uri, own_csv):
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={own_csv}", "--set", "trainer.iterations=50")
    assert code == 0, err
    code, report, _, _ = reproduce(capsys, tracking_uri, run_id, "--set", "trainer.learning_rate=0.0002")
    assert code == 1
    cost = next(r for r in report if r.startswith("metric cost: "))
    assert cost.endswith("first at step 1"), cost  # step 0 is the starting cost, before any update
    assert "config: trainer.learning_rate 0.0001 recorded, 0.0002 now" in report


def test_the_readme_seed_run_reproduces_from_a_relative_path_and_anywhere(capsys, tracking_uri, own_csv,
                                                                          monkeypatch, tmp_path):
    """``bp train configs/linreg.yaml --set data.path=../shared/data/data.csv``, then ``bp reproduce``."""
    monkeypatch.chdir(own_csv.parent)
    code, run_id, err = train(capsys, tracking_uri, "--set", f"data.path={own_csv.name}",
                              "--set", "trainer.iterations=50")
    assert code == 0, err
    assert MlflowClient(tracking_uri).get_run(run_id).data.params["data.path"] == own_csv.name
    for where in (own_csv.parent, tmp_path / "elsewhere"):
        where.mkdir(exist_ok=True)
        monkeypatch.chdir(where)
        code, report, new_id, err = reproduce(capsys, tracking_uri, run_id)
        assert (code, report) == (0, ["identical"]), (where, report, err)


def test_reproduce_unknown_run_is_bad_input(capsys, tracking_uri):
    code, report, new_id, err = reproduce(capsys, tracking_uri, "0123456789abcdef0123456789abcdef")
    assert code == 2 and new_id is None
    assert "run 0123456789abcdef0123456789abcdef: cannot read its record" in err
