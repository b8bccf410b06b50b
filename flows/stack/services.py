"""What ``bp stack up`` starts: the command line and environment of each service, and how to tell it is ready.

Secrets (the database password, MLflow's admin password, Prefect's auth string, MLflow's session
key) go into the environment of the processes that need them, never onto a command line; those of
the stack itself are kept in DIR/secrets.json (mode 600, ``flows.stack.secrets``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bpcore.data.root import VARIABLE as DATA_ROOT
from flows.runtime import blas, processes
from flows.runtime.http import request
from flows.stack.db import Postgres
from flows.stack.secrets import Secrets
from flows.sweep import cluster, tls

POOL = "bp"
HOST = "127.0.0.1"
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONUNBUFFERED": "1"}


def base_env(directory: Path) -> dict[str, str]:
    """This process's environment, offline, without settings that would point a service elsewhere."""
    drop = ("PREFECT_API_DATABASE_", "PREFECT_SERVER_DATABASE_", "MLFLOW_TRACKING_", "PREFECT_API_AUTH_STRING",
            "PREFECT_SERVER_API_AUTH_STRING", "MLFLOW_AUTH_", "MLFLOW_LOGGING_LEVEL",  # bp quiets MLflow: not the logs
            # the launching shell's MLflow run context (mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID): a
            # worker's runs go to their config's experiment on the stack's server, where that id means nothing
            "MLFLOW_EXPERIMENT_", "MLFLOW_RUN_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **OFFLINE, "PREFECT_HOME": str(directory / "prefect")}


def prefect_server(directory: Path, port: int, pg: Postgres | None, keys: Secrets) -> tuple[list[str], dict]:
    api = f"http://{HOST}:{port}/api"
    url = pg.url("prefect", "asyncpg") if pg else f"sqlite+aiosqlite:///{directory / 'prefect.db'}"
    env = {**base_env(directory), **(pg.env() if pg else {}), "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
           "PREFECT_API_DATABASE_CONNECTION_URL": url, "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api,
           # every API call but /health needs the auth string; the server's own client (automations) sends it
           "PREFECT_SERVER_API_AUTH_STRING": keys.prefect_auth_string,
           "PREFECT_API_AUTH_STRING": keys.prefect_auth_string,
           # browsers may call the API from the UI's own page only (Prefect cannot refuse unknown Host headers)
           "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"http://{HOST}:{port}"}
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port), "--no-prompt"]
    return argv, env


def mlflow_server(directory: Path, port: int, pg: Postgres | None, keys: Secrets) -> tuple[list[str], dict]:
    store = pg.url("mlflow", "psycopg") if pg else f"sqlite:///{directory / 'mlflow.db'}"
    env = {**base_env(directory), **(pg.env() if pg else {}), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "1",
            "--backend-store-uri", store,
            "--serve-artifacts", "--artifacts-destination", str(directory / "mlartifacts"),
            # MLflow refuses other Host headers (DNS rebinding) and other origins' requests (CORS)
            "--allowed-hosts", f"localhost:{port},127.0.0.1:{port},{HOST}:{port}",
            "--cors-allowed-origins", f"http://{HOST}:{port},http://localhost:{port}"]
    if keys.mlflow_password:
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(write_auth_ini(directory, keys)),
                   MLFLOW_AUTH_ADMIN_PASSWORD=keys.mlflow_password,
                   MLFLOW_FLASK_SERVER_SECRET_KEY=keys.flask_key)
        argv += ["--app-name", "basic-auth"]
    return argv, env


def worker(directory: Path, name: str, api: str, tracking: str, keys: Secrets, workers: int = 1,
           data_root: Path | None = None, scheduler: str | None = None) -> tuple[list[str], dict]:
    """A Prefect process worker of pool ``bp``: it runs the deployments' flow runs (schedules, ``bp deploy``, ``bp
    sweep --pool``); a sweep's flow run sends its points to the Dask ``scheduler`` (certificates in DIR/dask)."""
    env = {**_worker_env(directory, api, tracking, keys, workers, data_root),
           # heartbeats let a dead worker's flow runs be found (bp deploy's automation); no dependency installs
           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false"}
    if scheduler:
        env.update({tls.SCHEDULER_ENV: scheduler, tls.CERTS_ENV: str(certs_dir(directory))})
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")  # Prefect's 10 s is felt by every flow run; local is cheap
    # one flow run at a time, as compose's workers
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process", "--name", name,
            "--limit", "1", "--install-policy", "never", "--no-prompt"]
    return argv, env


def certs_dir(directory: Path) -> Path:
    """Where the stack keeps its sweep pool's certificates (``flows.sweep.tls``)."""
    return directory / "dask"


def scheduler(directory: Path, port: int) -> tuple[list[str], dict]:
    """The Dask scheduler the sweep workers join and the sweeps' flow runs submit points to: TLS only."""
    return tls.scheduler_argv(certs_dir(directory), HOST, port), {**base_env(directory),
                                                                   **cluster.environment(cluster.IDLE_CONFIG)}


def sweep_worker(directory: Path, api: str, tracking: str, keys: Secrets, scheduler_address: str, workers: int = 1,
                 data_root: Path | None = None) -> tuple[list[str], dict]:
    """A sweep worker (``bp sweep-worker``): one point of a sweep at a time, in a warm process."""
    env = _worker_env(directory, api, tracking, keys, workers, data_root)
    return [sys.executable, "-m", "flows.cli", "sweep-worker", "--scheduler", scheduler_address,
            "--certs", str(certs_dir(directory))], env


def _worker_env(directory: Path, api: str, tracking: str, keys: Secrets, workers: int,
                data_root: Path | None) -> dict[str, str]:
    """What every worker process of the stack runs with: both servers, the auth, its share of the BLAS threads
    (``workers`` of each kind side by side on this machine) and the data root."""
    env = {**base_env(directory), "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": tracking, **blas.environment(workers),
           "PREFECT_API_AUTH_STRING": keys.prefect_auth_string}
    if data_root is not None:
        env[DATA_ROOT] = str(data_root)
    else:
        env.pop(DATA_ROOT, None)
    if keys.mlflow_password:
        env.update(MLFLOW_TRACKING_USERNAME=keys.mlflow_user, MLFLOW_TRACKING_PASSWORD=keys.mlflow_password)
    return env


def write_auth_ini(directory: Path, keys: Secrets) -> Path:
    """DIR/basic_auth.ini: MLflow's auth settings, its user database in DIR; the password stays in the environment."""
    path = directory / "basic_auth.ini"
    path.write_text("[mlflow]\n"
                    "default_permission = READ\n"
                    f"database_uri = sqlite:///{directory / 'basic_auth.db'}\n"
                    f"admin_username = {keys.mlflow_user}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def registered_workers(api: str, headers: dict) -> set[str]:
    """Names of the workers the Prefect server knows in pool ``bp``."""
    return {w["name"] for w in _pool_workers(api, headers)}


def online_workers(api: str, headers: dict) -> set[str]:
    """Names of the workers of pool ``bp`` the Prefect server counts online (heartbeats arriving)."""
    return {w["name"] for w in _pool_workers(api, headers) if w.get("status") == "ONLINE"}


def _pool_workers(api: str, headers: dict) -> list[dict]:
    """The workers of pool ``bp`` as the server lists them; none when it does not answer."""
    status, answer = request("POST", f"{api}/work_pools/{POOL}/workers/filter", headers, {"limit": 200})
    return answer if status == 200 and isinstance(answer, list) else []


def runs_in_flight(api: str, headers: dict) -> list[dict]:
    """The flow runs of pool ``bp`` that a worker has taken and not finished (Pending, Running, Cancelling)."""
    body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}},
            "work_pools": {"name": {"any_": [POOL]}}, "limit": 200}
    status, answer = request("POST", f"{api}/flow_runs/filter", headers, body, timeout=10)
    return [run for run in answer if _here(run)] if status == 200 and isinstance(answer, list) else []


def _here(run: dict) -> bool:
    # a run's infrastructure_pid is its flow-run process; one that is gone (worker SIGKILLed) has nothing to wait for
    pid = str(run.get("infrastructure_pid") or "")
    if not pid:
        return run.get("state_type") == "PENDING"  # taken by a worker, process not started yet
    return pid.isdigit() and processes.stat(int(pid)) is not None


def cancel_run(api: str, headers: dict, run_id: str, message: str) -> None:
    """Ask the run's worker to cancel it: it sends the flow-run process SIGTERM, the run ends Cancelled."""
    state = {"type": "CANCELLING", "name": "Cancelling", "message": message}
    request("POST", f"{api}/flow_runs/{run_id}/set_state", headers, {"state": state, "force": True}, timeout=10)


def run_finished(api: str, headers: dict, run_id: str) -> bool:
    """The flow run is in a final state (or the server no longer answers for it)."""
    status, answer = request("GET", f"{api}/flow_runs/{run_id}", headers)
    final = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
    return status != 200 or not isinstance(answer, dict) or answer.get("state_type") in final
