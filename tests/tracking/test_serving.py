"""Serving the network model: garbage input gets a 4xx that names the fault, never a digit.

The models are built without training and logged once per module into a SQLite store under a
temporary directory; one ``mlflow models serve`` process per module answers the HTTP tests.
The network model has no input schema (MLflow would keep the first 784 columns of a wider input
and drop the rest unseen): its predict checks the width and every value, and refuses with a 400.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

WIDTH = 784

def valid_pixels(rows: int = 4) -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (rows, WIDTH)).astype(np.uint8)


def with_value(row: int, col: int, value, rows: int = 2) -> np.ndarray:
    X = valid_pixels(rows).astype(np.float64)
    if value is None:  # floats and one None, as pandas holds a column with a null
        X = X.astype(object)
    X[row, col] = value
    return X


def label_and_pixels() -> np.ndarray:
    """The training CSV's layout: label first, then the 784 pixels."""
    return np.hstack([np.array([[3], [8]]), valid_pixels(2)]).astype(np.float64)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Run ids of the logged models by name, the untrained MNIST-shaped net, the tracking URI, the dir."""
    import mlflow
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    from bpcore.data.table import Table
    from bpcore.train.network import Network
    from flows.tracking.models import log_line_model, log_network_model

    tmp_path = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{tmp_path / 't.db'}"
    # _use_tracking_uri puts back exactly what was set before (set_tracking_uri also sets the env var)
    with pytest.MonkeyPatch.context() as mp, _use_tracking_uri(uri):
        mp.chdir(tmp_path)  # artifacts go to ./mlruns
        pixels = Network.create([WIDTH, 16, 10], rng=np.random.default_rng(0))
        chain = Network.create([3, 4, 2], rng=np.random.default_rng(1))
        runs = {}

        # this store's own experiment: the fluent API may still hold another test's active experiment id
        experiment_id = mlflow.MlflowClient(uri).create_experiment("serving")

        def log(name, fn, *args, **kwargs):
            with mlflow.start_run(run_name=name, experiment_id=experiment_id) as run:
                work = tmp_path / name
                work.mkdir()
                fn(run.info.run_id, work, *args, **kwargs)
            runs[name] = run.info.run_id

        log("pixels", log_network_model, pixels, valid_pixels(3), input_scale=1 / 255, output="class")
        log("chain", log_network_model, chain, np.array([[0.5, -2.0, 7.0]]), input_scale=1.0, output="activation")
        X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
        table = Table(X=X, y=X @ [2.0, -1.0] + 0.5, feature_names=("x", "z"), target_name="y",
                      source="test_serving", digest="0" * 64)
        log("line", log_line_model, table, np.array([2.0, -1.0]), 0.5)
        yield {"runs": runs, "pixels_net": pixels, "uri": uri, "dir": tmp_path}


@pytest.fixture(scope="module")
def loaded(store):
    import mlflow

    return {name: mlflow.pyfunc.load_model(f"runs:/{run_id}/model") for name, run_id in store["runs"].items()}


def refused(model, data) -> str:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException) as info:
        model.predict(data)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert info.value.get_http_status_code() == 400
    return info.value.message


# --- in process: mlflow.pyfunc.load_model(...).predict(...) ---------------------------------------

BAD_PIXELS = [
    pytest.param(with_value(0, 17, np.nan), "row 0, column 17: NaN (or null) is not a pixel value (expected 0-255)",
                 id="nan"),
    pytest.param(with_value(1, 3, None), "row 1, column 3: NaN (or null) is not a pixel value", id="none-array"),
    pytest.param(pd.DataFrame(with_value(1, 3, None)), "row 1, column 3: NaN (or null) is not a pixel value",
                 id="none-frame"),
    pytest.param(with_value(0, 5, 256), "row 0, column 5: 256 is not a pixel value (expected 0-255)", id="256"),
    pytest.param(with_value(1, 783, -1), "row 1, column 783: -1 is not a pixel value (expected 0-255)", id="-1"),
    pytest.param(with_value(0, 0, np.inf), "row 0, column 0: inf is not a pixel value", id="inf"),
]


@pytest.mark.parametrize(("data", "message"), BAD_PIXELS)
def test_bad_pixel_values_are_refused(loaded, data, message):
    assert message in refused(loaded["pixels"], data)


def test_several_bad_values_are_counted(loaded):
    X = valid_pixels(3).astype(np.float64)
    X[1, 2], X[2, 700] = 300, np.nan
    assert refused(loaded["pixels"], X) == "row 1, column 2: 300 is not a pixel value (expected 0-255) " \
                                           "(and 1 more bad values)"


@pytest.mark.parametrize("data", [
    pytest.param(label_and_pixels(), id="array"),
    pytest.param(pd.DataFrame(label_and_pixels()), id="frame"),
])
def test_785_columns_are_refused(loaded, data):
    assert refused(loaded["pixels"], data) == \
        "expected 784 pixel columns, got 785 (a label column? send the pixels only)"


TOO_FEW = "expected 784 pixel columns, got 783"


def test_783_columns_are_refused(loaded):
    assert refused(loaded["pixels"], valid_pixels(1)[:, :783]) == TOO_FEW


def test_non_numbers_are_refused(loaded):
    X = valid_pixels(1).astype(object)
    X[0, 9] = "x"
    assert refused(loaded["pixels"], X) == "row 0, column 9: 'x' is not a pixel value (expected 0-255)"


def test_valid_pixels_predict_digits(store, loaded):
    name = "pixels"
    X = valid_pixels()
    expected = store["pixels_net"].predict(X.astype(np.float32) * (1 / 255))
    digits = loaded[name].predict(X)
    assert digits.dtype == np.int64 and digits.tolist() == expected.tolist()
    assert loaded[name].predict(pd.DataFrame(X.astype(np.float64))).tolist() == expected.tolist()
    assert loaded[name].predict([X[0].astype(float).tolist()]).tolist() == expected[:1].tolist()
    assert loaded[name].predict(np.zeros((1, WIDTH))).shape == (1,)  # the range's ends are pixels
    assert loaded[name].predict(np.full((1, WIDTH), 255.0)).shape == (1,)


def test_int64_rows_are_pixels_too(store, loaded):
    """A ColSpec("double") schema refused int64 columns in process ("Can not safely convert int64 to float64")."""
    X = valid_pixels()
    expected = store["pixels_net"].predict(X.astype(np.float32) * (1 / 255))
    assert loaded["pixels"].predict(X.astype(np.int64).tolist()).tolist() == expected.tolist()


def test_chain_takes_any_finite_number_but_not_nan_or_inf(loaded):
    chain = loaded["chain"]
    out = chain.predict(np.array([[-5.0, 1e6, 300.0], [0.0, 0.5, -1.0]]))
    assert out.shape == (2, 2) and np.isfinite(out).all()
    assert refused(chain, np.array([[0.0, np.nan, 1.0]])) == \
        "row 0, column 1: NaN (or null) is not a finite number"
    assert refused(chain, np.array([[0.0, 1.0, 2.0], [0.0, 1.0, -np.inf]])) == \
        "row 1, column 2: -inf is not a finite number"


def test_line_model_refuses_nan_and_inf(loaded):
    line = loaded["line"]
    frame = pd.DataFrame({"x": [1.0, 2.0], "z": [0.0, 1.0]})
    np.testing.assert_allclose(line.predict(frame), [2.5, 3.5])
    frame.loc[1, "z"] = np.nan
    assert refused(line, frame) == "row 1, column 'z': NaN (or null) is not a finite number"
    frame.loc[1, "z"] = np.inf
    assert refused(line, frame) == "row 1, column 'z': inf is not a finite number"


# --- over HTTP: mlflow models serve, one server for the module ----------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(store):
    """``mlflow models serve`` of the ``pixels`` model on 127.0.0.1; the base URL."""
    port = free_port()
    log = store["dir"] / "serve.log"
    env = dict(os.environ) | {"MLFLOW_TRACKING_URI": store["uri"]}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"runs:/{store['runs']['pixels']}/model",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            cwd=store["dir"], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not answer /ping in 60 s:\n" + \
                log.read_text()[-3000:]
            time.sleep(0.3)
        yield url
    finally:  # the server's uvicorn workers share its process group
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            proc.wait(timeout=10)


def post(url: str, payload) -> tuple[int, dict]:
    body = json.dumps(payload).encode()  # NaN is written as the bare token NaN, which MLflow reads
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rows(X: np.ndarray) -> list:
    return [[None if v is None else float(v) for v in row] for row in X]


BAD_REQUESTS = [
    pytest.param({"inputs": rows(with_value(0, 17, np.nan))}, "row 0, column 17: NaN (or null) is not a pixel value",
                 id="nan"),
    pytest.param({"inputs": rows(with_value(0, 17, None))}, "row 0, column 17: NaN (or null) is not a pixel value",
                 id="null-inputs"),
    pytest.param({"dataframe_split": {"data": rows(with_value(1, 4, None))}},
                 "row 1, column 4: NaN (or null) is not a pixel value", id="null-dataframe"),
    pytest.param({"inputs": rows(with_value(0, 5, 256))},
                 "row 0, column 5: 256 is not a pixel value (expected 0-255)", id="256"),
    pytest.param({"inputs": rows(with_value(1, 5, -1))},
                 "row 1, column 5: -1 is not a pixel value (expected 0-255)", id="-1"),
    pytest.param({"inputs": rows(label_and_pixels())}, "expected 784 pixel columns, got 785", id="785-inputs"),
    pytest.param({"dataframe_split": {"data": rows(label_and_pixels())}}, "expected 784 pixel columns, got 785",
                 id="785-dataframe"),
    pytest.param({"inputs": rows(valid_pixels(1)[:, :783])}, TOO_FEW, id="783"),
]


@pytest.mark.parametrize(("payload", "message"), BAD_REQUESTS)
def test_served_model_refuses_garbage_with_4xx(server, payload, message):
    status, body = post(server, payload)
    assert 400 <= status < 500, (status, body)
    assert message in body["message"], body["message"][-500:]


def test_served_model_answers_valid_pixels(server, loaded):
    X = valid_pixels()
    expected = loaded["pixels"].predict(X).tolist()
    status, body = post(server, {"inputs": X.tolist()})
    assert status == 200 and body["predictions"] == expected and all(0 <= d <= 9 for d in expected)
    status, body = post(server, {"dataframe_split": {"columns": list(range(WIDTH)), "data": X.tolist()}})
    assert status == 200 and body["predictions"] == expected


# --- MLflow's scoring app, in process: the same refusals as served ---------------------------------

def test_scoring_app_refuses_as_the_server_does(loaded):
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    client = TestClient(scoring_server.init(loaded["pixels"]))

    def ask(payload):
        reply = client.post("/invocations", content=json.dumps(payload), headers={"Content-Type": "application/json"})
        return reply.status_code, reply.json()

    X = valid_pixels()
    status, body = ask({"inputs": X.tolist()})
    assert status == 200 and body["predictions"] == loaded["pixels"].predict(X).tolist()
    for payload, message in [
        ({"inputs": rows(label_and_pixels())}, "expected 784 pixel columns, got 785"),
        ({"dataframe_split": {"data": rows(label_and_pixels())}}, "expected 784 pixel columns, got 785"),
        ({"inputs": rows(with_value(0, 17, None))}, "row 0, column 17: NaN (or null) is not a pixel value"),
        ({"inputs": rows(with_value(0, 17, 256))}, "row 0, column 17: 256 is not a pixel value"),
        ({"inputs": [[str(v) for v in X[0][:9]] + ["x"] + X[0][10:].tolist()]}, "row 0, column 9: 'x' is not"),
    ]:
        status, body = ask(payload)
        assert status == 400 and message in body["message"], (status, body["message"][-300:])
        assert len(body["message"]) < 200, body["message"][:300]  # the reason, not the input repeated
