"""What ``bp stack up`` starts: the command line and environment of each service, and how to tell it is ready.

Secrets (the database password, MLflow's admin password, Prefect's auth string) go into the
environment of the processes that need them, never onto a command line or into DIR, except
MLflow's Flask session key, kept in DIR (mode 600) so a restart keeps users logged in.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bpcore.errors import InputError
from flows.stack_db import Postgres
from flows.stack_procs import StackError

POOL = "bp"
HOST = "127.0.0.1"
MIN_PASSWORD = 12  # MLflow's own minimum for the admin password
OFFLINE = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONUNBUFFERED": "1"}


@dataclass(frozen=True)
class Auth:
    """The credentials ``--auth`` puts on the servers (read from the environment, never printed)."""
    mlflow_user: str
    mlflow_password: str
    prefect_auth_string: str


def read_auth(env: dict[str, str]) -> Auth:
    """The --auth credentials from BP_MLFLOW_ADMIN_PASSWORD and BP_PREFECT_AUTH_STRING (or the client variables)."""
    password = env.get("BP_MLFLOW_ADMIN_PASSWORD") or env.get("MLFLOW_TRACKING_PASSWORD")
    if not password:
        raise InputError("--auth: set BP_MLFLOW_ADMIN_PASSWORD (or MLFLOW_TRACKING_PASSWORD) to the MLflow admin "
                         f"password, at least {MIN_PASSWORD} characters; there is no default")
    if len(password) < MIN_PASSWORD:
        raise InputError(f"--auth: the MLflow admin password (BP_MLFLOW_ADMIN_PASSWORD or MLFLOW_TRACKING_PASSWORD) "
                         f"has {len(password)} characters; it needs at least {MIN_PASSWORD}")
    auth_string = env.get("BP_PREFECT_AUTH_STRING") or env.get("PREFECT_API_AUTH_STRING")
    if not auth_string:
        raise InputError("--auth: set BP_PREFECT_AUTH_STRING (or PREFECT_API_AUTH_STRING) to the Prefect server's "
                         "auth string, e.g. admin:<secret>")
    user = env.get("BP_MLFLOW_ADMIN_USERNAME") or env.get("MLFLOW_TRACKING_USERNAME") or "admin"
    return Auth(user, password, auth_string)


def base_env(directory: Path) -> dict[str, str]:
    """This process's environment, offline, without settings that would point a service elsewhere."""
    drop = ("PREFECT_API_DATABASE_", "PREFECT_SERVER_DATABASE_", "MLFLOW_TRACKING_", "PREFECT_API_AUTH_STRING",
            "PREFECT_SERVER_API_AUTH_STRING", "MLFLOW_AUTH_", "MLFLOW_LOGGING_LEVEL",  # bp quiets MLflow: not the logs
            # the launching shell's MLflow run context (mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID): a
            # worker's runs go to their config's experiment on the stack's server, where that id means nothing
            "MLFLOW_EXPERIMENT_", "MLFLOW_RUN_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, **OFFLINE, "PREFECT_HOME": str(directory / "prefect")}


def prefect_server(directory: Path, port: int, pg: Postgres | None, auth: Auth | None) -> tuple[list[str], dict]:
    api = f"http://{HOST}:{port}/api"
    url = pg.url("prefect", "asyncpg") if pg else f"sqlite+aiosqlite:///{directory / 'prefect.db'}"
    env = {**base_env(directory), **(pg.env() if pg else {}), "PREFECT_SERVER_DATABASE_CONNECTION_URL": url,
           "PREFECT_API_DATABASE_CONNECTION_URL": url, "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api}
    if auth:  # the server's own client (automations' actions) calls its API as well
        env.update(PREFECT_SERVER_API_AUTH_STRING=auth.prefect_auth_string,
                   PREFECT_API_AUTH_STRING=auth.prefect_auth_string)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", HOST, "--port", str(port), "--no-prompt"]
    return argv, env


def mlflow_server(directory: Path, port: int, pg: Postgres | None, auth: Auth | None) -> tuple[list[str], dict]:
    store = pg.url("mlflow", "psycopg") if pg else f"sqlite:///{directory / 'mlflow.db'}"
    env = {**base_env(directory), **(pg.env() if pg else {}), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    argv = [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(port), "--workers", "1",
            "--backend-store-uri", store,
            "--serve-artifacts", "--artifacts-destination", str(directory / "mlartifacts"),
            "--allowed-hosts", f"localhost:*,127.0.0.1:*,{HOST}:{port}"]
    if auth:
        env.update(MLFLOW_AUTH_CONFIG_PATH=str(write_auth_ini(directory, auth)),
                   MLFLOW_AUTH_ADMIN_PASSWORD=auth.mlflow_password,
                   MLFLOW_FLASK_SERVER_SECRET_KEY=flask_secret(directory))
        argv += ["--app-name", "basic-auth"]
    return argv, env


BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads(workers: int) -> dict[str, str]:
    """Each of ``workers`` workers on this machine gets its share of the cores for its BLAS threads.

    OpenBLAS threads spin while they wait: two children with two threads each on two cores ran a
    sweep slower on two workers than on one (measured: 0.9x). Variables already set are kept.
    """
    share = str(max(1, (os.cpu_count() or 1) // max(1, workers)))
    return {name: os.environ.get(name, share) for name in BLAS_VARIABLES}


def worker(directory: Path, name: str, api: str, tracking: str, auth: Auth | None,
           workers: int = 1) -> tuple[list[str], dict]:
    env = {**base_env(directory), "PREFECT_API_URL": api, "MLFLOW_TRACKING_URI": tracking, **blas_threads(workers),
           # heartbeats let a dead worker's flow runs be found (bp deploy's automation); no dependency installs
           "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30", "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false"}
    env.setdefault("PREFECT_WORKER_QUERY_SECONDS", "2")  # Prefect's 10 s is felt by every sweep child; local is cheap
    if auth:
        env.update(PREFECT_API_AUTH_STRING=auth.prefect_auth_string, MLFLOW_TRACKING_USERNAME=auth.mlflow_user,
                   MLFLOW_TRACKING_PASSWORD=auth.mlflow_password)
    # one flow run at a time, as compose's workers: N workers train N sweep children side by side
    argv = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process", "--name", name,
            "--limit", "1", "--install-policy", "never", "--no-prompt"]
    return argv, env


def write_auth_ini(directory: Path, auth: Auth) -> Path:
    """DIR/basic_auth.ini: MLflow's auth settings, its user database in DIR; the password stays in the environment."""
    path = directory / "basic_auth.ini"
    path.write_text("[mlflow]\n"
                    "default_permission = READ\n"
                    f"database_uri = sqlite:///{directory / 'basic_auth.db'}\n"
                    f"admin_username = {auth.mlflow_user}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    return path


def flask_secret(directory: Path) -> str:
    """MLFLOW_FLASK_SERVER_SECRET_KEY from the environment, else one made once and kept in DIR (mode 600)."""
    if os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):
        return os.environ["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    path = directory / "flask_secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_text().strip()


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def http(method: str, url: str, headers: dict | None = None, body=None, timeout: float = 3) -> tuple[int, object]:
    """(status, parsed JSON or text) of one request; status 0 when nothing answers."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {**(headers or {}), **({"Content-Type": "application/json"} if data else {})}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError):
        return 0, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def ensure_pool(api: str, headers: dict, working_dir: Path) -> bool:
    """Create the ``process`` pool ``bp`` unless it exists, flow runs started in ``working_dir``; True if created."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    # relative paths in a config then mean what they mean to `bp train` run where `bp stack up` ran
    template["variables"]["properties"]["working_dir"]["default"] = str(working_dir)
    status, answer = http("POST", f"{api}/work_pools/", headers,
                          {"name": POOL, "type": "process", "base_job_template": template}, timeout=30)
    if status == 409:  # there already: only resume it (bp stack down pauses it while it drains)
        set_pool_paused(api, headers, False)
        return False
    if status not in (200, 201):
        raise StackError(f"the Prefect server did not create work pool {POOL}: HTTP {status} {answer}")
    return True


def registered_workers(api: str, headers: dict) -> set[str]:
    """Names of the workers the Prefect server knows in pool ``bp``."""
    status, answer = http("POST", f"{api}/work_pools/{POOL}/workers/filter", headers, {"limit": 200})
    return {w["name"] for w in answer} if status == 200 and isinstance(answer, list) else set()


def set_pool_paused(api: str, headers: dict, paused: bool) -> None:
    """Pause pool ``bp`` (its workers take no new flow runs) or resume it."""
    http("PATCH", f"{api}/work_pools/{POOL}", headers, {"is_paused": paused})


def runs_in_flight(api: str, headers: dict) -> list[dict]:
    """The flow runs of pool ``bp`` that a worker has taken and not finished (Pending, Running, Cancelling)."""
    body = {"flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}},
            "work_pools": {"name": {"any_": [POOL]}}, "limit": 200}
    status, answer = http("POST", f"{api}/flow_runs/filter", headers, body, timeout=10)
    return [run for run in answer if _here(run)] if status == 200 and isinstance(answer, list) else []


def _here(run: dict) -> bool:
    # a run's infrastructure_pid is its flow-run process; one that is gone (worker SIGKILLed) has nothing to wait for
    pid = str(run.get("infrastructure_pid") or "")
    if not pid:
        return run.get("state_type") == "PENDING"  # taken by a worker, process not started yet
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def cancel_run(api: str, headers: dict, run_id: str, message: str) -> None:
    """Ask the run's worker to cancel it: it sends the flow-run process SIGTERM, the run ends Cancelled."""
    state = {"type": "CANCELLING", "name": "Cancelling", "message": message}
    http("POST", f"{api}/flow_runs/{run_id}/set_state", headers, {"state": state, "force": True}, timeout=10)


def run_finished(api: str, headers: dict, run_id: str) -> bool:
    """The flow run is in a final state (or the server no longer answers for it)."""
    status, answer = http("GET", f"{api}/flow_runs/{run_id}", headers)
    final = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
    return status != 200 or not isinstance(answer, dict) or answer.get("state_type") in final
