"""A sweep against a real ``mlflow server`` on 127.0.0.1, read back through its REST API.

The checks read what the MLflow UI's compare view reads: runs found by ``mlflow.parentRunId``
and each child's metric history from ``/api/2.0/mlflow/metrics/get-history``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from support import REPO, python_env

pytestmark = pytest.mark.usefixtures("prefect_server", "in_workdir")

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
EXPERIMENT = "server-sweep"
MODEL = "server-line"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """``mlflow server --workers 1`` on a free local port, with its own SQLite store and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {**python_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.read().strip() == b"OK":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _get(url: str, endpoint: str, **query) -> dict:
    with urllib.request.urlopen(f"{url}{endpoint}?{urllib.parse.urlencode(query)}", timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}{endpoint}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _tags(run: dict) -> dict:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _history(url: str, run_id: str, key: str) -> list[tuple[int, float]]:
    points = _get(url, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key=key)["metrics"]
    return sorted((int(m["step"]), m["value"]) for m in points)


@pytest.fixture(scope="module")
def server_sweep(mlflow_server, seed_csv):
    """Three learning rates (the largest diverges) tracked on the server."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from flows.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["sweep", LINREG_SWEEP, "--tracking-uri", mlflow_server, "--experiment", EXPERIMENT,
                     "--set", f"data.path={seed_csv}", "--set", f"sweep.model_name={MODEL}",
                     "--set", "sweep.grid.trainer.learning_rate=[1.0e-4, 4.0e-4, 5.0e-4]"])
    assert code == 0, err.getvalue()[-3000:]
    return out.getvalue().strip().splitlines()[-1].removeprefix("run_id: ")


def test_children_are_found_by_parent_run_id(mlflow_server, server_sweep):
    experiment = _get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)
    found = _post(mlflow_server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]],
        "filter": f"tags.mlflow.parentRunId = '{server_sweep}'", "max_results": 100})["runs"]
    names = {r["info"]["run_name"]: r for r in found}
    assert sorted(names) == ["lr=0.0001", "lr=0.0004", "lr=0.0005"]
    assert names["lr=0.0005"]["info"]["status"] == "FAILED"
    assert _tags(names["lr=0.0005"])["bp.status"] == "diverged"
    for name in ("lr=0.0001", "lr=0.0004"):
        assert names[name]["info"]["status"] == "FINISHED" and _tags(names[name])["bp.status"] == "finished"


def test_each_child_history_is_complete_on_the_server(mlflow_server, server_sweep):
    experiment = _get(mlflow_server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name=EXPERIMENT)
    found = _post(mlflow_server, "/api/2.0/mlflow/runs/search", {
        "experiment_ids": [experiment["experiment"]["experiment_id"]],
        "filter": f"tags.mlflow.parentRunId = '{server_sweep}' and tags.`bp.status` = 'finished'"})["runs"]
    assert len(found) == 2
    for run in found:
        cost = _history(mlflow_server, run["info"]["run_id"], "cost")
        excess = _history(mlflow_server, run["info"]["run_id"], "excess_cost")
        assert [s for s, _ in cost] == list(range(1001)) and [s for s, _ in excess] == list(range(1001))
        assert excess[-1][1] < excess[10][1] < excess[0][1]


def test_parent_and_registry_on_the_server(mlflow_server, server_sweep):
    parent = _get(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=server_sweep)["run"]
    tags = _tags(parent)
    metrics = {m["key"]: m["value"] for m in parent["data"]["metrics"]}
    assert tags["bp.sweep"] == "parent" and tags["bp.best_point"] == "lr=0.0004"
    assert (metrics["children"], metrics["finished"], metrics["diverged"]) == (3, 2, 1)
    champion = _get(mlflow_server, "/api/2.0/mlflow/registered-models/alias", name=MODEL, alias="champion")
    assert champion["model_version"]["run_id"] == tags["bp.best_child"]
    files = _get(mlflow_server, "/api/2.0/mlflow/artifacts/list", run_id=server_sweep, path="sweep")["files"]
    assert {f["path"] for f in files} == {"sweep/results.csv", "sweep/results.json"}
