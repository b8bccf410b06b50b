"""What ``bp`` checks of the servers before anything starts: each fault one line, exit 2, within seconds, before
any run opens. Against the session's stack (tests/support/stack.py)."""

from __future__ import annotations

import subprocess
import time

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, bp, python_env, refused
from support.stack import free_port

pytestmark = pytest.mark.stack

LINREG = str(REPO / "configs" / "linreg.yaml")
LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")


def timed_bp(*argv: str, env: dict, cwd) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = bp(*argv, env=env, cwd=cwd, timeout=120)
    return done, time.monotonic() - start


def refused_soon(done_and_time, *fragments: str) -> str:
    """A refusal (``support.refused``) from bp itself, within 15 s."""
    done, took = done_and_time
    line = refused(done, *fragments, prefix="bp: ")
    assert took < 15, f"{took:.1f} s to refuse"
    return line


@pytest.fixture
def client_env(stack):
    return {**python_env(), **stack.env}


COMMANDS = [("train", LINREG), ("sweep", LINREG_SWEEP), ("deploy", LINREG), ("serve", LINREG)]


@pytest.mark.parametrize(("command", "config"), COMMANDS)
def test_a_prefect_api_that_is_not_one_is_refused(stack, client_env, tmp_path, command, config):
    mlflow_root = stack.mlflow_uri
    cases = [(f"http://127.0.0.1:{free_port()}/api", "no server answers there"),
             (mlflow_root, "not a Prefect API (that looks like the MLflow server)"),
             (f"{mlflow_root}/api", "not a Prefect API (that looks like the MLflow server)")]
    for url, fragment in cases:
        refused_soon(timed_bp(command, config, env={**client_env, "PREFECT_API_URL": url}, cwd=tmp_path),
                f"PREFECT_API_URL {url}: {fragment}")


@pytest.mark.parametrize(("command", "config"), COMMANDS)
def test_the_prefect_auth_string_missing_or_wrong_is_refused(client_env, tmp_path, command, config):
    missing = {k: v for k, v in client_env.items() if k != "PREFECT_API_AUTH_STRING"}
    refused_soon(timed_bp(command, config, env=missing, cwd=tmp_path), "the server asks for an auth string")
    wrong = {**client_env, "PREFECT_API_AUTH_STRING": "bp:not-the-right-secret"}
    refused_soon(timed_bp(command, config, env=wrong, cwd=tmp_path),
                 "the server refuses the PREFECT_API_AUTH_STRING given")


def test_serve_and_deploy_need_a_prefect_server(client_env, tmp_path):
    alone = {k: v for k, v in client_env.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    alone["PREFECT_HOME"] = str(tmp_path / "prefect")  # no profile naming a server either
    for command in ("serve", "deploy"):
        refused_soon(timed_bp(command, LINREG, env=alone, cwd=tmp_path), "PREFECT_API_URL is not set")


def test_pools_are_checked_by_name(stack, client_env, tmp_path):
    mc = MlflowClient(stack.mlflow_uri)
    before = len(mc.search_experiments())
    refused_soon(timed_bp("sweep", LINREG_SWEEP, "--pool", "nosuchpool", env=client_env, cwd=tmp_path),
            "--pool 'nosuchpool': no such work pool on", "(work pools: 'bp')")
    refused_soon(timed_bp("sweep", LINREG_SWEEP, "--set", "sweep.pool=typo", env=client_env, cwd=tmp_path),
            "sweep.pool 'typo': no such work pool")
    refused_soon(timed_bp("deploy", LINREG, "--pool", "typo", env=client_env, cwd=tmp_path),
            "--pool 'typo': no such work pool", "bp deploy --create-pool makes it")
    for name in ("", "a/b", "   "):
        for command, config in (("sweep", LINREG_SWEEP), ("deploy", LINREG)):
            done, _ = timed_bp(command, config, "--pool", name, env=client_env, cwd=tmp_path)
            assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "argument --pool" in done.stderr and "not a work pool name" in done.stderr
    assert len(mc.search_experiments()) == before  # no run opened for any of them

    made, _ = timed_bp("deploy", LINREG, "--pool", "made-on-purpose", "--create-pool", env=client_env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "linreg/linreg: on demand, work pool 'made-on-purpose'" in made.stdout
