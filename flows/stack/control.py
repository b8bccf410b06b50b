"""``bp stack up|down``: the servers' topology as local background processes, for one machine without Docker.

``up`` starts the Prefect server, the MLflow server (artifacts proxied into DIR), N Prefect workers
on the ``process`` pool ``bp`` (the deployments' and the pool sweeps' flow runs), a Dask scheduler (TLS,
its certificates made in DIR/dask) and N sweep workers joined to it (``bp sweep-worker``: the points of
those sweeps), each in its own session with its log in DIR/logs; records their pids (with start times,
so a reused pid is never taken for ours) in DIR/pids.json; waits until each is healthy; and prints the
UIs, then the ``export`` lines as its last lines. ``down`` pauses
the pool, lets the workers' flow runs finish (cancels them after ``--grace`` s), then stops exactly
the recorded processes, workers first. ``status`` and ``env``: ``flows.stack.report``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bpcore.errors import InputError
from flows.runtime import waiting
from flows.runtime.http import basic, request
from flows.server import pools
from flows.server.automations import ensure_zombie_automation
from flows.stack import checks, procs, workers
from flows.stack import db as stack_db
from flows.stack import secrets as stack_secrets
from flows.stack import services as svc

START_TIMEOUT = 240.0  # s: a cold first start runs both servers' migrations
STOP_GRACE = 15.0  # s: what the cancelled flow runs, and each process after SIGTERM, get before SIGKILL

StackError = procs.StackError  # a service did not start or stop: exit 1, the message quotes its log


def run(args: argparse.Namespace) -> bool:
    """Run ``bp stack ACTION``: whether all is well. A stack that cannot start or stop raises StackError, bad input
    InputError; the command line turns each into its exit code."""
    from flows.stack import report

    return {"up": up, "down": down, "status": report.status, "env": report.env}[args.action](args)


def up(args: argparse.Namespace) -> bool:
    directory = checks.stack_dir(args.dir)
    checks.refuse_running(directory, args.dir)
    checks.check_ports(args.prefect_port, args.mlflow_port, args.scheduler_port if args.workers else None)
    data_root = checks.data_root(args.data_root)
    stack_secrets.check_given(dict(os.environ), mlflow_auth=args.auth)
    pg = stack_db.parse(args.database_url) if args.database_url else None
    if pg:
        created = stack_db.ensure_databases(pg)
        _progress(f"databases on {pg.redacted()}: " + ", ".join(
            f"{name} ({'created' if name in created else 'exists'})" for name in stack_db.DATABASES))
    elif args.workers > 1:
        _progress(f"{args.workers} workers on SQLite: its one writer at a time makes busy servers wait; "
                  "--database-url (Postgres) suits more than one worker")
    checks.make_private(directory, args.dir)
    keys = stack_secrets.resolve(directory, dict(os.environ), mlflow_auth=args.auth)
    api, tracking = f"http://{svc.HOST}:{args.prefect_port}/api", f"http://{svc.HOST}:{args.mlflow_port}"
    headers = basic(keys.prefect_auth_string)
    records: list[dict] = []
    try:  # each service starts as soon as what it needs answers: the servers and the scheduler at once
        _spawn_server(directory, records, args, pg, keys, "prefect-server")
        address = workers.spawn_scheduler(directory, records, args.scheduler_port) if args.workers else None
        if pg is None:
            _sqlite_store(directory)  # as the Prefect server starts
        _spawn_server(directory, records, args, pg, keys, "mlflow-server")
        _progress("starting the Prefect and MLflow servers" + (" and the Dask scheduler" if address else ""))
        _wait(list(records), _answers, args.verbose)
        started = []
        if address:  # a sweep worker checks both servers as it starts; the pool is made meanwhile
            started += workers.spawn_sweep_workers(directory, records, args, api, tracking, keys, address, data_root)
        if keys.mlflow_password:
            _check_mlflow_login(tracking, keys, directory)
        _prepare_server(api, keys.prefect_auth_string)
        if address:
            started += workers.spawn_workers(directory, records, args, api, tracking, keys, address, data_root)
            workers.wait_ready(directory, started, api, headers, address, _wait)
    except BaseException:
        _abort(directory, records)
        raise
    print(f"Prefect UI: http://{svc.HOST}:{args.prefect_port} (it asks for PREFECT_API_AUTH_STRING)")
    print(f"MLflow UI:  {tracking}" + (f" (user {keys.mlflow_user}, MLFLOW_TRACKING_PASSWORD)" if args.auth else ""))
    print(f"workers:    {args.workers} on work pool {svc.POOL}"
          + (f", reading data under {data_root}" if data_root else "") + f"; logs, pids and secrets in {directory}")
    if args.workers:
        print(f"sweeps:     {args.workers} sweep worker{'s' * (args.workers > 1)} on the Dask scheduler "
              f"tls://{svc.HOST}:{args.scheduler_port} (certificates in {svc.certs_dir(directory)})")
    for name, value in stack_secrets.exports(api, tracking, keys):
        print(f"export {name}={shlex.quote(value)}")
    return True


def _sqlite_store(directory: Path) -> None:
    """MLflow's tables in DIR/mlflow.db, in WAL mode: readers then never wait for the writer."""
    import sqlite3

    from flows.tracking.store import ensure_store

    ensure_store(f"sqlite:///{directory / 'mlflow.db'}")
    with sqlite3.connect(directory / "mlflow.db") as db:
        db.execute("PRAGMA journal_mode=WAL")


def _prepare_server(api: str, auth: str) -> None:
    """The work pool (created, or resumed: down paused it) and the automation that crashes a flow run whose
    heartbeats stopped (``flows.server.automations``), through Prefect's client."""
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    # relative paths in a config then mean what they mean to `bp train` run where `bp stack up` ran
    template["variables"]["properties"]["working_dir"]["default"] = str(Path.cwd())
    # the flow run's engine started directly, with the workers' own Python: without a command, Prefect 3.9's process
    # worker starts a workspace supervisor first, a second interpreter importing Prefect (seconds a flow run)
    template["variables"]["properties"]["command"]["default"] = f"{shlex.quote(sys.executable)} -m prefect.engine"
    with _client_of(api, auth):
        if pools.ensure_pool(svc.POOL, template, resume=True):
            _progress(f"work pool {svc.POOL} created (flow runs start in {Path.cwd()})")
        ensure_zombie_automation()
    _progress("automation: flow runs whose heartbeats stop are marked Crashed")


def _answers(record: dict) -> bool:
    """A server answers its health URL; the scheduler listens on its port."""
    if "health" in record:
        return request("GET", record["health"])[0] == 200
    return workers.scheduler_up(record)


def _spawn_server(directory: Path, records: list[dict], args, pg, keys, name: str) -> None:
    build, port, health = {"prefect-server": (svc.prefect_server, args.prefect_port, "/api/health"),
                           "mlflow-server": (svc.mlflow_server, args.mlflow_port, "/health")}[name]
    argv, env = build(directory, port, pg, keys)
    url = f"http://{svc.HOST}:{port}"
    procs.spawn(records, name, argv, env, directory / "logs" / f"{name}.log", url=url, health=url + health,
                auth=keys.mlflow_password is not None)
    procs.write_records(directory, records)


def _wait(records: list[dict], ready: Callable[[dict], bool], verbose: bool) -> None:
    """Until each record is ready; a StackError naming the one that died or did not answer in time."""
    pending = list(records)

    def still_pending() -> list[dict]:
        for record in list(pending):
            if not procs.alive(record):
                raise StackError(_failure(record, "exited while starting", verbose))
            if ready(record):
                pending.remove(record)
                _progress(f"{record['name']} is up (pid {record['pid']})")
        return pending

    if waiting.poll(still_pending, lambda left: not left, START_TIMEOUT, every=0.5):
        raise StackError(_failure(pending[0], f"not ready after {START_TIMEOUT:g} s", verbose))


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
    first = [r for r in records if "worker" in r or "sweep_worker" in r]
    return first, [r for r in records if r not in first]


def down(args: argparse.Namespace) -> bool:
    directory = checks.stack_dir(args.dir)
    records = procs.read_records(directory)
    if not records:
        print(f"no stack recorded in {directory}")
        return True
    _drain(records, args.grace, stack_secrets.prefect_auth(directory))
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
    return True


@contextmanager
def _client_of(api: str, auth: str | None) -> Iterator[None]:
    """Prefect's client settings pointed at the stack's server (this process's own are left as they were)."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates={"api.url": api, "api.auth_string": auth}):
        yield


def _drain(records: list[dict], grace: float, auth: str | None) -> None:
    """Let the workers' flow runs finish (up to ``grace`` s), cancel the rest through Prefect, before any signal.

    Signalled, a Prefect process worker SIGKILLs the flow run it executes within seconds:
    the flow's own cleanup never runs and the run stays Running in Prefect and MLflow. Cancelled
    through the API instead, the worker SIGTERMs it and the run ends Cancelled.
    """
    server = next((r for r in records if r["name"] == "prefect-server"), None)
    if server is None or not any("worker" in r and procs.alive(r) for r in records) or not procs.alive(server):
        return
    api, headers = server["url"] + "/api", basic(auth) if auth else {}
    with _client_of(api, auth):
        pools.pause_pool(svc.POOL)  # no new flow runs; bp stack up resumes the pool
    runs = svc.runs_in_flight(api, headers)
    if runs:
        _progress(f"waiting up to {grace:g} s for {len(runs)} flow run(s) on the workers to finish")
        runs = _until_done(api, headers, grace)
    if runs:
        _progress(f"cancelling {len(runs)} flow run(s) still running")
        for run in runs:
            svc.cancel_run(api, headers, run["id"], "bp stack down: the stack is stopping")
        # until each is Cancelled: its worker reports that after the flow-run process has exited
        waiting.poll(lambda: [run for run in runs if not svc.run_finished(api, headers, run["id"])],
                     lambda left: not left, STOP_GRACE, every=1)


def _until_done(api: str, headers: dict, timeout: float) -> list[dict]:
    return waiting.poll(lambda: svc.runs_in_flight(api, headers), lambda runs: not runs, timeout, every=1)


def _progress(message: str) -> None:
    print(f"bp stack: {message}", file=sys.stderr, flush=True)


