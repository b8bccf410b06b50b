"""The ``bp`` subcommands for the servers a team keeps: ``deploy``, ``serve``, ``stack`` and ``sweep-worker``.

Each checks its input (the configs, the Prefect API, the scheduler) before it registers or starts anything.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from bpcore.errors import InputError
from bpcore.kinds import load_config
from bpcore.search.grid import expand
from flows.cli import exits
from flows.cli.commands import prepare_store
from flows.runtime import terminal
from flows.runtime.settings import resolve_tracking_uri


def _configs(args) -> list[tuple[str, object]]:
    """(deployment name, config) for each CONFIG, every one checked before anything is registered."""
    from flows.deployments import deployment_name

    named = [(deployment_name(path), load_config(path, args.overrides)) for path in args.configs]
    seen = [name for name, _ in named]
    twice = sorted({name for name in seen if seen.count(name) > 1})
    if twice:
        raise InputError(f"two configs would be deployed as {', '.join(twice)}: deployments are named after "
                         "the config file's stem")
    for _, config in named:
        if config.sweep is not None and config.sweep.search != "grid":
            from bpcore.search.space import check

            check(config)
        for point in (expand(config) if config.sweep is not None and config.sweep.search == "grid" else []):
            point.validated()
    return named


def _deploy(args) -> int:
    named = _configs(args)
    from flows.server import prefect_api

    url, auth = prefect_api.require("deployments and work pools live on a Prefect server")
    if not args.create_pool:
        prefect_api.require_pool(url, auth, args.pool, hint="; bp deploy --create-pool makes it")
    from flows.deployments import deploy  # the flows, Prefect and MLflow: once the server is known to answer

    terminal.quiet()
    names = deploy.deploy(named, args.pool, create_pool=args.create_pool)
    for (_, config), name in zip(named, names):
        print(f"{name}: {deploy.describe(config)}, work pool {args.pool!r}")
    return exits.FINISHED


def _stack(args) -> int:
    from flows.stack import control
    from flows.stack.procs import StackError

    try:
        return exits.FINISHED if control.run(args) else exits.FAILED
    except StackError as exc:
        print(f"bp: {exc}", file=sys.stderr)
        return exits.FAILED


def _serve(args) -> int:
    named = _configs(args)
    from flows.server import prefect_api

    prefect_api.require("bp serve registers its schedules on a Prefect server that outlives it")
    from flows.deployments import deploy

    def announce(line: str) -> None:
        print(f"bp: serving {line}", file=sys.stderr)

    # serving ends only when the process is told to stop: say so, with the signal's exit code
    raise exits.Stopped(getattr(signal, deploy.serve(named, announce)))


def _sweep_worker(args) -> int:
    from urllib.parse import urlsplit

    from flows.sweep import worker

    uri = resolve_tracking_uri(args.tracking_uri)
    if urlsplit(uri).scheme in ("", "file") and not Path(urlsplit(uri).path if "://" in uri else uri).is_dir():
        raise InputError(f"tracking URI {uri}: no such directory (a sweep worker logs the points to their sweeps' "
                         "store: the MLflow server or database the sweeps' flow runs use)")
    uri = prepare_store(uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the points' runs: their flows read it (``runs.client(None)``)
    from flows.server import prefect_api

    url, _ = prefect_api.require("a sweep worker reports its points' task runs to the Prefect server of the sweeps")
    if problem := worker.check_reachable(args.scheduler, args.certs):
        raise InputError(problem)
    print(f"bp: sweep worker of the scheduler at {args.scheduler}, one point at a time, reporting to {url}, logging "
          f"to {uri}", file=sys.stderr, flush=True)
    stopped_by = worker.serve(args.scheduler, args.certs)
    if stopped_by:
        raise exits.Stopped(stopped_by) if stopped_by != signal.SIGINT else KeyboardInterrupt
    return exits.FINISHED


COMMANDS = {"deploy": _deploy, "serve": _serve, "stack": _stack, "sweep-worker": _sweep_worker}
