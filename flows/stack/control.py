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
import shlex
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bpcore.errors import InputError
from flows.runtime.http import basic, request
from flows.stack import db as stack_db
from flows.stack import procs
from flows.stack import secrets as stack_secrets
from flows.stack import services as svc

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
    up.add_argument("--auth", action="store_true", help="MLflow basic auth too (the Prefect API always asks for "
                    "its auth string): admin password from BP_MLFLOW_ADMIN_PASSWORD, else a random one kept in DIR")
    up.add_argument("--data-root", type=Path, metavar="DIR", help="workers read data only under DIR (BP_DATA_ROOT); "
                    "default: anywhere")
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
    directory = _stack_dir(args.dir)
    _refuse_running(directory, args.dir)
    _check_ports(args.prefect_port, args.mlflow_port)
    data_root = _data_root(args.data_root)
    stack_secrets.check_given(dict(os.environ), mlflow_auth=args.auth)
    pg = stack_db.parse(args.database_url) if args.database_url else None
    if pg:
        created = stack_db.ensure_databases(pg)
        _progress(f"databases on {pg.redacted()}: " + ", ".join(
            f"{name} ({'created' if name in created else 'exists'})" for name in stack_db.DATABASES))
    elif args.workers > 1:
        _progress(f"{args.workers} workers on SQLite: its one writer at a time makes busy servers wait; "
                  "--database-url (Postgres) suits more than one worker")
    _make_private(directory, args.dir)
    keys = stack_secrets.resolve(directory, dict(os.environ), mlflow_auth=args.auth)
    api, tracking = f"http://{svc.HOST}:{args.prefect_port}/api", f"http://{svc.HOST}:{args.mlflow_port}"
    headers = basic(keys.prefect_auth_string)
    records: list[dict] = []
    try:
        if pg is None:
            _sqlite_store(directory)
        _start_servers(directory, records, args, pg, keys)
        if keys.mlflow_password:
            _check_mlflow_login(tracking, keys, directory)
        if svc.ensure_pool(api, headers, Path.cwd()):  # or resume it: down paused it
            _progress(f"work pool {svc.POOL} created (flow runs start in {Path.cwd()})")
        _zombie_automation(api, keys)
        if args.workers:
            _start_workers(directory, records, args.workers, api, tracking, keys, headers, data_root)
    except BaseException:
        _abort(directory, records)
        raise
    print(f"Prefect UI: http://{svc.HOST}:{args.prefect_port} (it asks for PREFECT_API_AUTH_STRING)")
    print(f"MLflow UI:  {tracking}" + (f" (user {keys.mlflow_user}, MLFLOW_TRACKING_PASSWORD)" if args.auth else ""))
    print(f"workers:    {args.workers} on work pool {svc.POOL}"
          + (f", reading data under {data_root}" if data_root else "") + f"; logs, pids and secrets in {directory}")
    for name, value in exports(api, tracking, keys):
        print(f"export {name}={shlex.quote(value)}")
    return 0


def exports(api: str, tracking: str, keys) -> list[tuple[str, str]]:
    """What a client of the stack sets: the two URLs, the Prefect auth string and, with --auth, MLflow's login."""
    found = [("PREFECT_API_URL", api), ("MLFLOW_TRACKING_URI", tracking),
             ("PREFECT_API_AUTH_STRING", keys.prefect_auth_string)]
    if keys.mlflow_password:
        found += [("MLFLOW_TRACKING_USERNAME", keys.mlflow_user), ("MLFLOW_TRACKING_PASSWORD", keys.mlflow_password)]
    return found


def _stack_dir(given: Path) -> Path:
    """``--dir`` resolved; an InputError when it, or a directory above it, is a file."""
    directory = given.expanduser().resolve()
    for path in (directory, *directory.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == directory else f"is under {path}, a file"
                raise InputError(f"--dir {given}: {where}, not a directory")
            break
    return directory


def _make_private(directory: Path, given: Path) -> None:
    """DIR (mode 700) and its logs; what an older bp stack left there made its owner's only (700 / 600)."""
    os.umask(0o077)  # everything bp stack up and its services create from now on
    try:
        (directory / "logs").mkdir(parents=True, exist_ok=True)
        for path in (directory, *directory.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)
    except OSError as exc:
        raise InputError(f"--dir {given}: cannot make it private: {exc.strerror or exc}") from None


def _data_root(given: Path | None) -> Path | None:
    if given is None:
        return None
    root = given.expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"--data-root {given}: no such directory")
    return root


def _sqlite_store(directory: Path) -> None:
    """MLflow's tables in DIR/mlflow.db, in WAL mode: readers then never wait for the writer."""
    import sqlite3

    from flows.tracking.store import ensure_store

    ensure_store(f"sqlite:///{directory / 'mlflow.db'}")
    with sqlite3.connect(directory / "mlflow.db") as db:
        db.execute("PRAGMA journal_mode=WAL")


def _zombie_automation(api: str, keys) -> None:
    """The automation that crashes a flow run whose heartbeats stopped (flows.server.automations), made at start."""
    from prefect.settings import temporary_settings

    from flows.server.automations import ensure_zombie_automation

    with temporary_settings(updates={"api.url": api, "api.auth_string": keys.prefect_auth_string}):
        ensure_zombie_automation()
    _progress("automation: flow runs whose heartbeats stop are marked Crashed")


def _start_servers(directory: Path, records: list[dict], args, pg, keys) -> None:
    for name, build, port, health in (("prefect-server", svc.prefect_server, args.prefect_port, "/api/health"),
                                      ("mlflow-server", svc.mlflow_server, args.mlflow_port, "/health")):
        argv, env = build(directory, port, pg, keys)
        url = f"http://{svc.HOST}:{port}"
        procs.spawn(records, name, argv, env, directory / "logs" / f"{name}.log", url=url, health=url + health,
                    auth=keys.mlflow_password is not None)
        procs.write_records(directory, records)
    _progress("starting the Prefect and MLflow servers")
    _wait(records, lambda r: request("GET", r["health"])[0] == 200, args.verbose)


def _start_workers(directory: Path, records: list[dict], n: int, api: str, tracking: str, keys, headers,
                   data_root: Path | None) -> None:
    started = []
    for i in range(1, n + 1):
        worker = f"bp-{socket.gethostname()}-{i}-{secrets.token_hex(3)}"
        argv, env = svc.worker(directory, worker, api, tracking, keys, workers=n, data_root=data_root)
        started.append(procs.spawn(records, f"worker-{i}", argv, env, directory / "logs" / f"worker-{i}.log",
                                   cwd=Path.cwd(), url=api, worker=worker))
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


def _check_mlflow_login(tracking: str, keys, directory: Path) -> None:
    url = f"{tracking}/api/2.0/mlflow/experiments/search?max_results=1"
    if request("GET", url, basic(f"{keys.mlflow_user}:{keys.mlflow_password}"))[0] != 200:
        raise InputError(f"--auth: MLflow refuses user {keys.mlflow_user} with the password given: its user store "
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
    directory = _stack_dir(args.dir)
    records = procs.read_records(directory)
    if not records:
        print(f"no stack recorded in {directory}")
        return 0
    _drain(records, args.grace, _headers(directory))
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


def _headers(directory: Path) -> dict[str, str]:
    """The Prefect API's auth header, from the auth string kept in DIR (none for a stack from before it was)."""
    auth = stack_secrets.read(directory).get("prefect_auth_string") or os.environ.get("BP_PREFECT_AUTH_STRING")
    return basic(auth) if auth else {}


def _drain(records: list[dict], grace: float, headers: dict[str, str]) -> None:
    """Let the workers' flow runs finish (up to ``grace`` s), cancel the rest through Prefect, before any signal.

    Signalled, a Prefect 3.9 process worker SIGKILLs the flow run it executes within about 2 s:
    the flow's own cleanup never runs and the run stays Running in Prefect and MLflow. Cancelled
    through the API instead, the worker SIGTERMs it and the run ends Cancelled.
    """
    server = next((r for r in records if r["name"] == "prefect-server"), None)
    if server is None or not any("worker" in r and procs.alive(r) for r in records) or not procs.alive(server):
        return
    api = server["url"] + "/api"
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
    """One line per service, judged by what answers: a server by its health URL, a worker by its process
    or by the Prefect server counting it online. Exit 1 when anything is down."""
    directory = _stack_dir(args.dir)
    records = procs.read_records(directory)
    if not records:
        print(f"no stack recorded in {directory}")
        return 1
    server = next((r for r in records if r["name"] == "prefect-server"), None)
    online = svc.online_workers(server["url"] + "/api", _headers(directory)) if server else set()
    up = []
    for record in records:
        alive = procs.alive(record)
        if "worker" in record:
            answers = record["worker"] in online
        else:
            answers = request("GET", record["health"])[0] == 200 if "health" in record else alive
        state = ("up" if alive else "up, not the recorded process") if answers else \
            ("up, not answering" if alive else "down")
        up.append(answers)
        where = record.get("url", "") + (f" (pool {svc.POOL}, as {record['worker']})" if "worker" in record else "")
        print(f"{record['name']:<15} {record['pid']:>8}  {state:<5} {where}")
    return 0 if all(up) else 1


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


MAX_WORKERS_PER_CORE = 4


def _count(text: str) -> int:
    most = MAX_WORKERS_PER_CORE * (os.cpu_count() or 1)
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 0, got {text!r}")
    if int(text) > most:
        raise argparse.ArgumentTypeError(f"{text} workers: at most {most} on this machine ({MAX_WORKERS_PER_CORE} "
                                         f"per core; each is a process that trains)")
    return int(text)

