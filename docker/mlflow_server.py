"""Start `mlflow server` on the stack's Postgres; with basic auth, check its secrets and write its ini.

The compose services `mlflow` and `mlflow-auth` run this with the `mlflow server` flags as
arguments. It adds `--backend-store-uri`, built from MLFLOW_DB_* with the password URL-quoted (so
any character works), then replaces itself with `mlflow server`.

With `--app-name basic-auth` it first refuses to start without MLFLOW_FLASK_SERVER_SECRET_KEY, or
with an admin password of fewer than 12 characters other than spaces, and writes the ini that MLflow's auth app
reads from MLFLOW_AUTH_CONFIG_PATH: its users live in their own database (`mlflow_auth`). The
admin password stays in MLFLOW_AUTH_ADMIN_PASSWORD, which MLflow reads itself, and only when it
creates the admin user on first start.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from flows.stack.secrets import password_problem  # the rule bp stack up applies too

DRIVER = "postgresql+psycopg"  # psycopg 3
MIN_SECRET_KEY = 32


def database_uri(env: Mapping[str, str], name: str) -> str:
    """SQLAlchemy URI of database `name` on the stack's Postgres, as user MLFLOW_DB_USER."""
    password = env.get("MLFLOW_DB_PASSWORD", "")
    if not password:
        raise SystemExit("mlflow_server: MLFLOW_DB_PASSWORD is empty: set it in .env")
    user = quote(env.get("MLFLOW_DB_USER", "mlflow"), safe="")
    host = env.get("MLFLOW_DB_HOST", "postgres")
    port = env.get("MLFLOW_DB_PORT", "5432")
    return f"{DRIVER}://{user}:{quote(password, safe='')}@{host}:{port}/{name}"


def check_auth_secrets(env: Mapping[str, str]) -> None:
    """Refuse to start basic auth with a missing secret key or a weak admin password."""
    if len(env.get("MLFLOW_FLASK_SERVER_SECRET_KEY", "")) < MIN_SECRET_KEY:
        raise SystemExit(
            f"mlflow_server: MLFLOW_FLASK_SERVER_SECRET_KEY must be at least {MIN_SECRET_KEY} characters "
            "(e.g. `openssl rand -hex 32`): set it in .env"
        )
    if not env.get("MLFLOW_AUTH_ADMIN_USERNAME", ""):
        raise SystemExit("mlflow_server: MLFLOW_AUTH_ADMIN_USERNAME is empty: set MLFLOW_ADMIN_USERNAME in .env")
    problem = password_problem(env.get("MLFLOW_AUTH_ADMIN_PASSWORD", ""))
    if problem:
        raise SystemExit(f"mlflow_server: the MLflow admin password {problem}: set MLFLOW_ADMIN_PASSWORD in .env")


def write_auth_ini(env: Mapping[str, str]) -> Path:
    """Write the basic-auth ini (mode 0600) to MLFLOW_AUTH_CONFIG_PATH and return its path."""
    path = Path(env.get("MLFLOW_AUTH_CONFIG_PATH", ""))
    if not path.name:
        raise SystemExit("mlflow_server: MLFLOW_AUTH_CONFIG_PATH is not set")
    ini = configparser.ConfigParser()
    values = {
        "default_permission": "READ",
        "database_uri": database_uri(env, env.get("MLFLOW_AUTH_DB_NAME", "mlflow_auth")),
        "admin_username": env["MLFLOW_AUTH_ADMIN_USERNAME"],
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    # MLflow reads the file with ConfigParser's interpolation: a quoted password's % must be %%.
    ini["mlflow"] = {key: value.replace("%", "%%") for key, value in values.items()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        ini.write(f)
    return path


def is_basic_auth(args: Sequence[str]) -> bool:
    """Whether the `mlflow server` arguments select the basic-auth app."""
    return "--app-name=basic-auth" in args or any(
        a == "--app-name" and b == "basic-auth" for a, b in zip(args, args[1:])
    )


def server_command(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The `mlflow server` command line: the given flags plus the backend store."""
    uri = database_uri(env, env.get("MLFLOW_DB_NAME", "mlflow"))
    return ["mlflow", "server", *args, "--backend-store-uri", uri]


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    if is_basic_auth(args):
        check_auth_secrets(env)
        write_auth_ini(env)
    command = server_command(args, env)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
