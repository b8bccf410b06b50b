"""The secrets of a stack: the Prefect API's auth string (always), MLflow's admin login (with ``--auth``)
and MLflow's session key; each given in the environment, else the one kept in DIR, else made anew.

They are kept in ``DIR/secrets.json`` (mode 600, in a directory of mode 700) so that ``bp stack
down`` and the next ``up`` find them, and so that the stack is never open: without an auth string
anyone on the machine, or any web page in a local browser, could submit a deployment whose pull
step runs a shell command on a worker. What a secret must be is checked the same way for secrets
given to ``bp stack up`` and to the compose file's MLflow server (``docker/mlflow_server.py``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from bpcore.errors import InputError

FILE = "secrets.json"
MIN_SECRET = 12  # characters other than spaces; MLflow's own minimum for a password
USER = "bp"  # of a generated Prefect auth string


def password_problem(value: str) -> str | None:
    """Why ``value`` is too weak for a password, or None."""
    if len("".join(value.split())) < MIN_SECRET:
        return f"needs at least {MIN_SECRET} characters other than spaces"
    return None


def auth_string_problem(value: str) -> str | None:
    """Why ``value`` cannot be a Prefect auth string (``user:password``, the password as strong as one), or None."""
    user, sep, password = value.partition(":")
    if not sep or not user.strip():
        return "must be user:password"
    problem = password_problem(password)
    return f"its password {problem}" if problem else None


@dataclass(frozen=True)
class Secrets:
    """What the servers and their clients need; ``mlflow_password`` only with ``--auth``."""

    prefect_auth_string: str
    mlflow_user: str = "admin"
    mlflow_password: str | None = None
    flask_key: str | None = None


def resolve(directory: Path, env: dict[str, str], mlflow_auth: bool) -> Secrets:
    """The stack's secrets: BP_PREFECT_AUTH_STRING / BP_MLFLOW_ADMIN_PASSWORD when set (and strong enough),
    else those kept in DIR, else new random ones; kept in DIR for next time. InputError for a weak one."""
    check_given(env, mlflow_auth)
    kept = read(directory)
    given = env.get("BP_PREFECT_AUTH_STRING")
    auth_string = given or kept.get("prefect_auth_string") or f"{USER}:{secrets.token_hex(24)}"
    values = {**kept, "prefect_auth_string": auth_string}
    if mlflow_auth:
        password = env.get("BP_MLFLOW_ADMIN_PASSWORD")
        values["mlflow_admin_password"] = password or kept.get("mlflow_admin_password") or secrets.token_hex(24)
        values["mlflow_admin_username"] = env.get("BP_MLFLOW_ADMIN_USERNAME") or kept.get("mlflow_admin_username") \
            or "admin"
        values["flask_secret_key"] = env.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or kept.get("flask_secret_key") \
            or secrets.token_hex(32)
    if values != kept:
        write(directory, values)
    return Secrets(auth_string, values.get("mlflow_admin_username", "admin"), values.get("mlflow_admin_password"),
                   values.get("flask_secret_key"))


def check_given(env: dict[str, str], mlflow_auth: bool) -> None:
    """An InputError for a secret given in the environment that is too weak (before anything is made)."""
    given = env.get("BP_PREFECT_AUTH_STRING")
    if given is not None and (problem := auth_string_problem(given)):
        raise InputError(f"BP_PREFECT_AUTH_STRING: the Prefect auth string {problem} (unset it and bp stack up "
                         "makes a random one)")
    password = env.get("BP_MLFLOW_ADMIN_PASSWORD")
    if mlflow_auth and password is not None and (problem := password_problem(password)):
        raise InputError(f"BP_MLFLOW_ADMIN_PASSWORD: the MLflow admin password {problem} (unset it and bp stack "
                         "up makes a random one)")


def read(directory: Path) -> dict[str, str]:
    """What DIR/secrets.json keeps ({} when there is none); InputError when it is not what bp wrote."""
    path = directory / FILE
    try:
        kept = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the stack's secrets ({getattr(exc, 'strerror', None) or exc}); "
                         "remove it and bp stack up makes new ones") from None
    if not isinstance(kept, dict) or not all(isinstance(v, str) for v in kept.values()):
        raise InputError(f"{path}: not the stack's secrets (a JSON object of strings); remove it and bp stack up "
                         "makes new ones")
    return kept


def write(directory: Path, values: dict[str, str]) -> None:
    """Replace DIR/secrets.json atomically, readable by its owner only from the moment it exists."""
    path, tmp = directory / FILE, directory / (FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2)
    os.replace(tmp, path)


def exports(api: str, tracking: str, keys) -> list[tuple[str, str]]:
    """What a client of the stack sets: the two URLs, the Prefect auth string and, with --auth, MLflow's login."""
    found = [("PREFECT_API_URL", api), ("MLFLOW_TRACKING_URI", tracking),
             ("PREFECT_API_AUTH_STRING", keys.prefect_auth_string)]
    if keys.mlflow_password:
        found += [("MLFLOW_TRACKING_USERNAME", keys.mlflow_user), ("MLFLOW_TRACKING_PASSWORD", keys.mlflow_password)]
    return found


def prefect_auth(directory: Path) -> str | None:
    """The Prefect API's auth string kept in DIR (none for a stack from before it was)."""
    return read(directory).get("prefect_auth_string") or os.environ.get("BP_PREFECT_AUTH_STRING")
