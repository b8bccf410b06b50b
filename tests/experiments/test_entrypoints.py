"""Every command is a flow importable by entrypoint, and a flow run started in a fresh process from
its JSON parameters alone (as a worker starts it) behaves exactly as one started by bp."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from prefect.flows import load_flow_from_entrypoint
from support import REPO, prefect_api_env, run_bp

from bpcore import kinds
from bpcore.config.serial import to_dict
from bpcore.kinds import load_config
from flows.experiments.registry import flow_for

ENTRYPOINTS = [f"{f.fn.__module__.replace('.', '/')}.py:{f.fn.__name__}" for f in map(flow_for, kinds.names())] + [
    "flows/sweep/flow.py:sweep", "flows/experiments/reproduce.py:reproduce"]

# a worker's view: a fresh interpreter, the flow loaded by entrypoint, parameters from JSON
FRESH = """
import json, sys
from prefect.flows import load_flow_from_entrypoint
flow = load_flow_from_entrypoint(sys.argv[1])
state = flow(**json.loads(sys.argv[2]), return_state=True)
outcome = state.result(raise_on_failure=False)
print(json.dumps({"state": state.type.value, "message": state.message,
                  "run_id": getattr(outcome, "run_id", None)}))
"""


@pytest.mark.parametrize("entrypoint", ENTRYPOINTS)
def test_every_command_is_a_flow_loadable_by_entrypoint(entrypoint):
    loaded = load_flow_from_entrypoint(str(REPO / entrypoint))
    assert loaded.name == entrypoint.rsplit(":", 1)[1]
    json.dumps(loaded.parameters.model_dump())  # the parameter schema is plain JSON


def fresh(entrypoint: str, params: dict, cwd) -> dict:
    done = subprocess.run([sys.executable, "-c", FRESH, str(REPO / entrypoint), json.dumps(params)],
                          capture_output=True, text=True, timeout=300, cwd=cwd, env=prefect_api_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_fresh_process_from_json_parameters_trains_as_bp_does(capsys, tracking_uri, seed_csv, workdir):
    argv = ["--set", f"data.path={seed_csv}", "--set", "experiment=fresh-process"]
    code, out, err = run_bp(["train", str(REPO / "configs" / "linreg.yaml"), "--tracking-uri", tracking_uri, *argv],
                            capsys)
    assert code == 0, err
    by_bp = out.strip().splitlines()[-1].removeprefix("run_id: ")
    config = to_dict(load_config(REPO / "configs" / "linreg.yaml", [a for a in argv if a != "--set"]))
    worker = fresh("flows/experiments/linreg.py:linreg", {"config": config, "tracking_uri": tracking_uri}, workdir)
    assert worker["state"] == "COMPLETED", worker

    mc = MlflowClient(tracking_uri)
    a, b = mc.get_run(by_bp), mc.get_run(worker["run_id"])
    for tag in ("bp.data_digest", "bp.data_source", "bp.config_digest", "bp.status"):
        assert a.data.tags[tag] == b.data.tags[tag], tag
    for key in ("final_cost", "intercept", "slope", "least_squares_cost"):
        assert a.data.metrics[key] == b.data.metrics[key], key
    assert [m.value for m in mc.get_metric_history(by_bp, "cost")] == \
           [m.value for m in mc.get_metric_history(worker["run_id"], "cost")]
    assert b.data.tags["bp.worker"].split(":")[1] != a.data.tags["bp.worker"].split(":")[1]  # another process


@pytest.mark.usefixtures("prefect_server", "in_workdir")
def test_a_fresh_process_checks_the_data_it_reads(tracking_uri, seed_csv, tmp_path):
    config = to_dict(load_config(REPO / "configs" / "linreg.yaml", [f"data.path={seed_csv}"]))
    done = fresh("flows/experiments/linreg.py:linreg",
                 {"config": config, "tracking_uri": tracking_uri, "data_digest": "0" * 64}, tmp_path)
    assert done["state"] == "FAILED"
    assert f"{seed_csv}: data differs from what was recorded: expected sha256 {'0' * 64}" in done["message"]
    config["data"]["path"] = str(tmp_path / "gone.csv")
    done = fresh("flows/experiments/linreg.py:linreg", {"config": config, "tracking_uri": tracking_uri}, tmp_path)
    assert done["state"] == "FAILED" and f"{tmp_path / 'gone.csv'}: no such data file" in done["message"]


def test_bp_runs_its_own_flow_without_heartbeats_even_when_the_shell_asks_for_them():
    """Heartbeats are for flow runs a worker executes; bp's own would only wait for their thread at the end."""
    from prefect.settings import get_current_settings, temporary_settings

    from flows.cli.launch import _without_heartbeats

    with temporary_settings(updates={"flows.heartbeat_frequency": 30}):
        with _without_heartbeats():
            assert get_current_settings().flows.heartbeat_frequency is None
        assert get_current_settings().flows.heartbeat_frequency == 30
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        with _without_heartbeats() as inner:  # already off: the settings are not copied
            assert inner is None and get_current_settings().flows.heartbeat_frequency is None
