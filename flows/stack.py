"""``bp stack up|down|status``: the servers' topology as local background processes, for one machine without Docker.

``up`` starts the Prefect server, the MLflow server (artifacts proxied into DIR) and N Prefect workers
on the ``process`` pool ``bp``, each in its own session with its log in DIR/logs; records their pids
(with start times, so a reused pid is never taken for ours) in DIR/pids.json; waits until each is
healthy; and prints the UIs, then the two ``export`` lines as its last two lines. ``down`` pauses
the pool, lets the workers' flow runs finish (cancels them after ``--grace`` s), then stops exactly
the recorded processes, workers first. ``status`` prints one line per service.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bpcore.errors import InputError
from flows import stack_db
from flows import stack_procs as procs
from flows import stack_services as svc

DEFAULT_DIR = ".bp-stack"
START_TIMEOUT = 240.0  # s; both servers need ~15 s on two cores, a cold first start (migrations) more
# How long `down` lets the workers' flow runs finish before it cancels them (--grace); then how long the
# cancelled runs, and each process after SIGTERM, get before SIGKILL.
WORKER_GRACE = 30.0
STOP_GRACE = 15.0

StackError = procs.StackError  # a service did not start or stop: exit 1, the message quotes its log


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``stack`` with ``up``, ``down`` and ``status`` to the ``bp`` command's subparsers."""
    stack = subparsers.add_parser("stack", help="start, stop or show the servers and workers as local processes",
                                  description="the Prefect server, the MLflow server and Prefect workers as local "
                                              "background processes (the docker-compose topology without Docker)")
    actions = stack.add_subparsers(dest="action", required=True, metavar="{up,down,status}", parser_class=type(stack))
    up = actions.add_parser("up", help="start the servers and workers, wait until they answer",
                            description="start the Prefect server, the MLflow server and N workers on pool bp; the "
                                        "last two lines printed are the export lines for clients")
    up.add_argument("--workers", type=_count, default=1, metavar="N", help="Prefect workers to start (default: 1)")
    up.add_argument("--database-url", metavar="URL", help=f"{stack_db.FORM}: both servers on this Postgres, "
                    "databases mlflow and prefect (created when missing); default: SQLite files in DIR")
    up.add_argument("--prefect-port", type=_port, default=4200, metavar="P", help="Prefect server port (default: 4200)")
    up.add_argument("--mlflow-port", type=_port, default=5000, metavar="P", help="MLflow server port (default: 5000)")
    up.add_argument("--auth", action="store_true", help="MLflow basic auth and a Prefect auth string, from "
                    "BP_MLFLOW_ADMIN_PASSWORD (12+ characters) and BP_PREFECT_AUTH_STRING")
    down = actions.add_parser("down", help="stop the processes bp stack up started (workers first)",
                              description="pause pool bp, let the workers' flow runs finish (up to --grace s), cancel "
                                          "the rest, then stop the workers and the servers (SIGTERM, then SIGKILL)")
    down.add_argument("--grace", type=_seconds, default=WORKER_GRACE, metavar="S",
                      help=f"seconds the running flow runs get to finish before they are cancelled (default: "
                           f"{WORKER_GRACE:g})")
    status = actions.add_parser("status", help="one line per service: name, pid, up/down, URL (exit 1 if any is down)")
    for p in (up, down, status):
        p.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                       help=f"the stack's directory (default: {DEFAULT_DIR})")
        p.add_argument("--verbose", action="store_true", help="quote more of a failing service's log")
    return stack


def main(args: argparse.Namespace) -> int:
    """Run ``bp stack ACTION``; InputError (bad input, exit 2) is left to the caller."""
    try:
        return {"up": up, "down": down, "status": status}[args.action](args)
    except StackError as exc:
        print(f"bp: {exc}", file=sys.stderr)
        return 1


def up(args: argparse.Namespace) -> int:
    directory = args.dir.expanduser().resolve()
    _refuse_running(directory, args.dir)
    _check_ports(args.prefect_port, args.mlflow_port)
    auth = svc.read_auth(dict(os.environ)) if args.auth else None
    pg = stack_db.parse(args.database_url) if args.database_url else None
    if pg:
        created = stack_db.ensure_databases(pg)
        _progress(f"databases on {pg.redacted()}: " + ", ".join(
            f"{name} ({'created' if name in created else 'exists'})" for name in stack_db.DATABASES))
    try:
        (directory / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--dir {args.dir}: cannot create it: {exc.strerror}") from None
    api, tracking = f"http://{svc.HOST}:{args.prefect_port}/api", f"http://{svc.HOST}:{args.mlflow_port}"
    headers = svc.basic(auth.prefect_auth_string) if auth else {}
    records: list[dict] = []
    try:
        _start_servers(directory, records, args, pg, auth)
        if auth:
            _check_mlflow_login(tracking, auth, directory)
        if svc.ensure_pool(api, headers, Path.cwd()):  # or resume it: down paused it
            _progress(f"work pool {svc.POOL} created (flow runs start in {Path.cwd()})")
        _zombie_automation(api, auth)
        if args.workers:
            _start_workers(directory, records, args.workers, api, tracking, auth, headers)
    except BaseException:
        _abort(directory, records)
        raise
    print(f"Prefect UI: http://{svc.HOST}:{args.prefect_port}")
    print(f"MLflow UI:  {tracking}")
    print(f"workers:    {args.workers} on work pool {svc.POOL}; logs and pids in {directory}")
    if auth:
        print(f"auth on: clients also need PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME={auth.mlflow_user} and "
              "MLFLOW_TRACKING_PASSWORD in their environment (the secrets bp stack up read; not printed)")
    print(f"export PREFECT_API_URL={api}")
    print(f"export MLFLOW_TRACKING_URI={tracking}")
    return 0


def _zombie_automation(api: str, auth) -> None:
    """The automation that marks a flow run Crashed when its worker stops sending heartbeats (flows.deploy)."""
    from prefect.settings import temporary_settings

    from flows.deploy import ensure_zombie_automation

    updates = {"api.url": api, **({"api.auth_string": auth.prefect_auth_string} if auth else {})}
    with temporary_settings(updates=updates):
        ensure_zombie_automation()
    _progress("automation: flow runs whose heartbeats stop are marked Crashed")


def _start_servers(directory: Path, records: list[dict], args, pg, auth) -> None:
    for name, build, port, health in (("prefect-server", svc.prefect_server, args.prefect_port, "/api/health"),
                                      ("mlflow-server", svc.mlflow_server, args.mlflow_port, "/health")):
        argv, env = build(directory, port, pg, auth)
        url = f"http://{svc.HOST}:{port}"
        records.append(procs.spawn(name, argv, env, directory / "logs" / f"{name}.log", url=url, health=url + health,
                                   auth=auth is not None))
        procs.write_records(directory, records)
    _progress("starting the Prefect and MLflow servers")
    _wait(records, lambda r: svc.http("GET", r["health"])[0] == 200, args.verbose)


def _start_workers(directory: Path, records: list[dict], n: int, api: str, tracking: str, auth, headers) -> None:
    started = []
    for i in range(1, n + 1):
        worker = f"bp-{socket.gethostname()}-{i}-{secrets.token_hex(3)}"
        argv, env = svc.worker(directory, worker, api, tracking, auth, workers=n)
        started.append(procs.spawn(f"worker-{i}", argv, env, directory / "logs" / f"worker-{i}.log", cwd=Path.cwd(),
                                   url=api, worker=worker))
        records.append(started[-1])
        procs.write_records(directory, records)
    _progress(f"starting {n} worker{'s' * (n > 1)} on pool {svc.POOL}")
    known: set[str] = set()

    def registered(record: dict) -> bool:
        if record["worker"] not in known:
            known.update(svc.registered_workers(api, headers))
        return record["worker"] in known

    _wait(started, registered, verbose=False)


def _wait(records: list[dict], ready: Callable[[dict], bool], verbose: bool) -> None:
    """Until each record is ready; a StackError naming the one that died or did not answer in time."""
    deadline = time.monotonic() + START_TIMEOUT
    pending = list(records)
    while pending:
        for record in list(pending):
            if not procs.alive(record):
                raise StackError(_failure(record, "exited while starting", verbose))
            if ready(record):
                pending.remove(record)
                _progress(f"{record['name']} is up (pid {record['pid']})")
        if pending and time.monotonic() > deadline:
            raise StackError(_failure(pending[0], f"not ready after {START_TIMEOUT:g} s", verbose))
        if pending:
            time.sleep(0.5)


def _failure(record: dict, what: str, verbose: bool) -> str:
    why = procs.reason(record["log"])
    return (f"{record['name']} {what}{': ' + why if why else ''}\n(the services started are stopped again; "
            f"last lines of {record['log']}:)\n{procs.tail(record['log'], 60 if verbose else 15)}")


def _check_mlflow_login(tracking: str, auth, directory: Path) -> None:
    url = f"{tracking}/api/2.0/mlflow/experiments/search?max_results=1"
    if svc.http("GET", url, svc.basic(f"{auth.mlflow_user}:{auth.mlflow_password}"))[0] != 200:
        raise InputError(f"--auth: MLflow refuses user {auth.mlflow_user} with the password given: its user store "
                         f"{directory / 'basic_auth.db'} was made with another one (set on first start only)")


def _abort(directory: Path, records: list[dict]) -> None:
    """Stop what a failed ``up`` started (workers first) and forget it."""
    for batch in _workers_then_servers(records):
        procs.stop(batch, 10)
    (directory / procs.PIDS_FILE).unlink(missing_ok=True)


def _workers_then_servers(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """The order to stop a stack in: a flow run a worker hands on still reaches both servers."""
    return [r for r in records if "worker" in r], [r for r in records if "worker" not in r]


def down(args: argparse.Namespace) -> int:
    directory = args.dir.expanduser().resolve()
    records = procs.read_records(directory)
    if not records:
        print(f"no stack recorded in {directory}")
        return 0
    _drain(records, args.grace)
    left = []
    for batch in _workers_then_servers(records):
        running = [r for r in batch if procs.group(r)]
        if running:
            _progress(f"stopping {', '.join(r['name'] for r in running)} (SIGTERM, SIGKILL after {STOP_GRACE:g} s)")
        killed = procs.stop(running, STOP_GRACE)
        for record in batch:
            how = "was not running" if record not in running else "killed" if record in killed else "stopped"
            print(f"{record['name']} (pid {record['pid']}) {how}")
        left += [r for r in batch if procs.group(r)]
    if left:
        raise StackError("still running after SIGKILL: " + ", ".join(f"{r['name']} (pid {r['pid']})" for r in left))
    (directory / procs.PIDS_FILE).unlink(missing_ok=True)
    return 0


def _drain(records: list[dict], grace: float) -> None:
    """Let the workers' flow runs finish (up to ``grace`` s), cancel the rest through Prefect, before any signal.

    Signalled, a Prefect 3.9 process worker SIGKILLs the flow run it executes within about 2 s:
    the flow's own cleanup never runs and the run stays Running in Prefect and MLflow. Cancelled
    through the API instead, the worker SIGTERMs it and the run ends Cancelled.
    """
    server = next((r for r in records if r["name"] == "prefect-server"), None)
    if server is None or not any("worker" in r and procs.alive(r) for r in records) or not procs.alive(server):
        return
    api = server["url"] + "/api"
    secret = os.environ.get("BP_PREFECT_AUTH_STRING") or os.environ.get("PREFECT_API_AUTH_STRING")
    if server.get("auth") and not secret:
        _progress("not waiting for flow runs: the Prefect server wants its auth string (BP_PREFECT_AUTH_STRING)")
        return
    headers = svc.basic(secret) if secret else {}
    svc.set_pool_paused(api, headers, True)  # no new flow runs; bp stack up resumes the pool
    runs = svc.runs_in_flight(api, headers)
    if runs:
        _progress(f"waiting up to {grace:g} s for {len(runs)} flow run(s) on the workers to finish")
        runs = _until_done(api, headers, grace)
    if runs:
        _progress(f"cancelling {len(runs)} flow run(s) still running")
        for run in runs:
            svc.cancel_run(api, headers, run["id"], "bp stack down: the stack is stopping")
        # until each is Cancelled: its worker reports that after the flow-run process has exited
        deadline = time.monotonic() + STOP_GRACE
        while runs and time.monotonic() < deadline:
            time.sleep(1)
            runs = [run for run in runs if not svc.run_finished(api, headers, run["id"])]


def _until_done(api: str, headers: dict, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while (runs := svc.runs_in_flight(api, headers)) and time.monotonic() < deadline:
        time.sleep(1)
    return runs


def status(args: argparse.Namespace) -> int:
    directory = args.dir.expanduser().resolve()
    records = procs.read_records(directory)
    if not records:
        print(f"no stack recorded in {directory}")
        return 1
    for record in records:
        state = "up" if procs.alive(record) else "down"
        if state == "up" and "health" in record and svc.http("GET", record["health"])[0] != 200:
            state = "up, not answering"
        where = record["url"] + (f" (pool {svc.POOL}, as {record['worker']})" if "worker" in record else "")
        print(f"{record['name']:<15} {record['pid']:>8}  {state:<5} {where}")
    return 0 if all(procs.alive(r) for r in records) else 1


def _refuse_running(directory: Path, given: Path) -> None:
    running = [r for r in procs.read_records(directory) if procs.alive(r)]
    if running:
        raise InputError(f"a stack already runs in {given} ({', '.join(r['name'] for r in running)}): "
                         f"bp stack down --dir {given} first")


def _check_ports(prefect: int, mlflow: int) -> None:
    if prefect == mlflow:
        raise InputError(f"--prefect-port and --mlflow-port are both {prefect}: the servers need a port each")
    for option, port in (("--prefect-port", prefect), ("--mlflow-port", mlflow)):
        if procs.port_in_use(port, svc.HOST):
            raise InputError(f"{option} {port}: {svc.HOST}:{port} is already in use; pick another port")


def _progress(message: str) -> None:
    print(f"bp stack: {message}", file=sys.stderr, flush=True)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, at least 0, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    return int(text)

