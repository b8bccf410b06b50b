"""``bp stack status`` and ``bp stack env``: what a running stack is, for its user and for a client's shell."""

from __future__ import annotations

import argparse
import shlex

from bpcore.errors import InputError
from flows.runtime.http import basic, request
from flows.stack import checks, procs
from flows.stack import secrets as stack_secrets
from flows.stack import services as svc


def status(args: argparse.Namespace) -> bool:
    """One line per service, judged by what answers: a server by its health URL, a worker by its process
    or by the Prefect server counting it online. False (exit 1) when anything is down."""
    directory = checks.stack_dir(args.dir)
    records = procs.read_records(directory)
    if not records:
        print(f"no stack recorded in {directory}")
        return False
    server = next((r for r in records if r["name"] == "prefect-server"), None)
    online = svc.online_workers(server["url"] + "/api", _headers(directory)) if server else set()
    up = []
    for record in records:
        alive = procs.alive(record)
        if "worker" in record:
            answers = record["worker"] in online
        elif "sweep_worker" in record:  # judged by its process: it answers nothing itself (its nanny restarts it)
            answers = alive
        elif "scheduler" in record:
            answers = alive and procs.port_in_use(int(record["url"].rsplit(":", 1)[1]), svc.HOST)
        else:
            answers = request("GET", record["health"])[0] == 200 if "health" in record else alive
        state = ("up" if alive else "up, not the recorded process") if answers else \
            ("up, not answering" if alive else "down")
        up.append(answers)
        where = record.get("url", "") + (f" (pool {svc.POOL}, as {record['worker']})" if "worker" in record else
                                         " (sweep worker)" if "sweep_worker" in record else
                                         " (Dask scheduler of the sweep workers, TLS)" if "scheduler" in record else "")
        print(f"{record['name']:<15} {record['pid']:>8}  {state:<5} {where}")
    return all(up)


def env(args: argparse.Namespace) -> bool:
    """The ``export`` lines ``bp stack up`` ended with, for the stack running from DIR: ``eval "$(bp stack env)"``
    points this shell's bp, prefect and mlflow at it. InputError when no stack runs there."""
    directory = checks.stack_dir(args.dir)
    servers = {r["name"]: r for r in procs.read_records(directory) if procs.alive(r)}
    if not {"prefect-server", "mlflow-server"} <= servers.keys():
        raise InputError(f"no stack runs from {args.dir} (bp stack status --dir {args.dir} says what is left): "
                         "bp stack up starts one")
    kept = stack_secrets.read(directory)
    password = kept.get("mlflow_admin_password") if servers["mlflow-server"].get("auth") else None
    keys = stack_secrets.Secrets(stack_secrets.prefect_auth(directory) or "",
                                 kept.get("mlflow_admin_username", "admin"), password)
    api, tracking = servers["prefect-server"]["url"] + "/api", servers["mlflow-server"]["url"]
    for name, value in stack_secrets.exports(api, tracking, keys):
        print(f"export {name}={shlex.quote(value)}")
    return True


def _headers(directory) -> dict[str, str]:
    auth = stack_secrets.prefect_auth(directory)
    return basic(auth) if auth else {}
