"""The ``bp`` subcommands: each checks its input before Prefect is imported, then calls one flow (or the stack).

Configs, data and the tracking store are checked first, so a typo costs a second, not the 10-20 s
start of Prefect's temporary server.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bpcore.config import to_dict, to_yaml
from bpcore.configfile import load_config
from bpcore.errors import InputError
from bpcore.loading import fingerprint, readable_here
from bpcore.sweep import expand
from flows.cli import exits, render
from flows.runtime.settings import resolve_tracking_uri


def _config(args):
    """The command's config, ``--experiment`` applied; bad input raises InputError."""
    overrides = list(args.overrides)
    experiment = getattr(args, "experiment", None)
    if experiment is not None:
        if not experiment.strip():
            raise InputError("--experiment: the experiment name must not be empty")
        overrides.append(f"experiment={experiment}")
    return load_config(args.config, overrides)


def _validate(args) -> int:
    config = _config(args)
    _check_data_path(config)
    if config.sweep is not None and config.sweep.search != "grid":
        from bpcore.space import check, describe

        check(config, args.config)
        print(f"bp: {describe(config)}", file=sys.stderr)
    elif config.sweep is not None:
        print(f"bp: {len(expand(config, args.config))} grid points", file=sys.stderr)
    print(to_yaml(config), end="")
    return exits.FINISHED


def _check_data_path(config) -> None:
    """Cheap check for validate: the data path, if any, is there (no pandas, no reading)."""
    path = getattr(getattr(config, "data", None), "path", None)
    if path is None or getattr(config.data, "download", False):
        return
    if config.kind == "linreg":
        from bpcore.data import check_path

        check_path(path)
    else:
        from bpcore.dataroot import confine
        from bpcore.errors import DataError

        if not confine(path).exists():
            raise DataError(f"{Path(path).expanduser().resolve()}: no such data file or directory")


def _train(args) -> int:
    config = _config(args)
    if config.sweep is not None:
        print(f"bp: {args.config}: training the base config; its sweep.grid runs with bp sweep", file=sys.stderr)
        config = config.model_copy(update={"sweep": None})
    fingerprint(config)  # load the data now (cached for the flow): bad data fails before Prefect starts
    uri = _prepare_store(args.tracking_uri)
    _check_prefect()

    def flow():
        from flows.experiments.registry import flow_for

        return flow_for(config.kind)

    return _launch(args, flow, None, config=config, tracking_uri=uri)


def _sweep(args) -> int:
    config = _config(args)
    pool = args.pool if args.pool is not None else config.sweep.pool if config.sweep else None
    if config.sweep is not None and config.sweep.search != "grid":
        points = _search_checked(config, args.config)
    else:
        points = expand(config, args.config)
    if pool and not all(readable_here(p.validated()) for p in points):
        print(f"bp: {config.data.path} is not on this machine: the workers read it, and their copies must agree",
              file=sys.stderr)
    else:
        for point in points:  # every point's data loaded (and cached) now: bad data fails before Prefect starts
            fingerprint(point.validated())
    uri = _prepare_store(args.tracking_uri)
    if pool:
        from flows.server import prefect_api

        url, _ = prefect_api.require("a sweep on a work pool needs the Prefect server its workers serve")
        prefect_api.require_pool(url, pool, "--pool" if args.pool else "sweep.pool")
    else:
        _check_prefect()

    def flow():
        from flows.sweep.flow import sweep

        return sweep

    # on a pool the sweep sends heartbeats: if this process is lost, the server marks its flow run Crashed
    return _launch(args, flow, render.sweep_table, config=to_dict(config), tracking_uri=uri,
                   run_name=Path(args.config).stem, parallel=args.parallel, points=points, pool=pool,
                   heartbeat=HEARTBEAT_SECONDS if pool else None,
                   beside=None if pool else _local_cluster(args.parallel, config, points))


def _local_cluster(parallel: int | None, config, points: list):
    """What starts an in-process sweep's Dask cluster beside Prefect's server, when its points train several at a
    time (one at a time, they train in this process: a cluster would only cost its start)."""
    from flows.sweep.local import at_once

    workers = at_once(parallel, config.sweep.trials if config.sweep.search != "grid" else len(points), config.kind)
    if workers < 2:
        return None
    configs = [p.config for p in points] or [to_dict(config.model_copy(update={"sweep": None}))]
    data = list({json.dumps(c["data"], sort_keys=True): c for c in configs}.values())  # one per dataset

    def start(prefect_api: str | None):
        from flows.sweep.cluster import LocalSweepCluster

        return _Beside(LocalSweepCluster(workers, prefect_api, data))

    return start


class _Beside:
    """A started cluster as ``launch`` wants it: the flow's ``scheduler`` parameter, then closed."""

    def __init__(self, cluster):
        self.cluster = cluster

    def params(self) -> dict[str, str]:
        return {"scheduler": self.cluster.address()}

    def close(self) -> None:
        self.cluster.close()


def _search_checked(config, source: str) -> list:
    """A random or tpe search's space checked, and its data read, before Prefect starts; no points yet (the
    sweep draws them as it goes)."""
    from bpcore import stability
    from bpcore.space import check

    fingerprint(config.model_copy(update={"sweep": None}))
    check(config, source, stability.for_search(config))
    return []


def _configs(args) -> list[tuple[str, object]]:
    """(deployment name, config) for each CONFIG, every one checked before anything is registered."""
    from flows.deployments.deploy import deployment_name

    named = [(deployment_name(path), load_config(path, args.overrides)) for path in args.configs]
    seen = [name for name, _ in named]
    twice = sorted({name for name in seen if seen.count(name) > 1})
    if twice:
        raise InputError(f"two configs would be deployed as {', '.join(twice)}: deployments are named after "
                         "the config file's stem")
    for _, config in named:
        if config.sweep is not None and config.sweep.search != "grid":
            from bpcore.space import check

            check(config)
        for point in (expand(config) if config.sweep is not None and config.sweep.search == "grid" else []):
            point.validated()
    return named


def _check_prefect() -> None:
    """The configured Prefect API, if any, answers and takes our auth string (else Prefect's temporary one runs)."""
    from flows.server import prefect_api

    url, auth = prefect_api.configured()
    if url:
        prefect_api.check(url, auth)


def _deploy(args) -> int:
    named = _configs(args)
    from flows.deployments import deploy
    from flows.server import prefect_api

    url, _ = prefect_api.require("deployments and work pools live on a Prefect server")
    if not args.create_pool:
        prefect_api.require_pool(url, args.pool, hint="; bp deploy --create-pool makes it")

    if not args.verbose:
        from flows.cli.launch import quiet_console

        quiet_console()
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
    from flows.deployments import deploy
    from flows.server import prefect_api

    prefect_api.require("bp serve registers its schedules on a Prefect server that outlives it")

    import signal

    def announce(line: str) -> None:
        print(f"bp: serving {line}", file=sys.stderr)

    # serving ends only when the process is told to stop: say so, with the signal's exit code
    raise exits.Stopped(getattr(signal, deploy.serve(named, announce)))


def _sweep_worker(args) -> int:
    from flows.server import prefect_api
    from flows.sweep import points

    uri = _prepare_store(args.tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri  # the points' runs: their flows read it (``runs.client(None)``)
    url, _ = prefect_api.require("a sweep worker takes its points from the Prefect server the sweeps run on")
    prefect_api.require_pool(url, args.pool, hint="; bp deploy --create-pool or bp stack up makes it")
    print(f"bp: sweep worker for pool {args.pool!r} on {url}, {args.limit} point(s) at a time, logging to "
          f"{uri}", file=sys.stderr)
    points.serve(args.pool, args.limit)
    return exits.FINISHED


def _reproduce(args) -> int:
    uri = _prepare_store(args.tracking_uri)
    _check_prefect()
    from flows.experiments import reproduce
    from flows.tracking import runs

    recorded = reproduce.read_record(args.run_id, runs.client(uri), args.overrides)  # fails fast on a bad id
    reproduce.check_data(recorded, *fingerprint(recorded.validated()))
    return _launch(args, lambda: reproduce.reproduce, render.differences, run_id=args.run_id, tracking_uri=uri,
                   overrides=args.overrides, recorded=recorded)


def _runs(args) -> int:
    from flows.tracking.reap import reap

    uri = resolve_tracking_uri(args.tracking_uri)
    reaped = reap(uri)
    for run_id, reason in reaped:
        print(f"{run_id}  FAILED  {reason}")
    print(f"bp: {len(reaped)} orphaned run(s) marked FAILED in {uri}", file=sys.stderr)
    return exits.FINISHED


def _prepare_store(uri: str | None) -> str:
    """The tracking URI, checked (exit 2 within seconds if unusable) and, when new, created once.

    Its orphaned runs are reaped by ``launch`` while Prefect's server starts: reaping needs MLflow's
    imports, which would otherwise delay that start.
    """
    from flows.tracking import store

    uri = resolve_tracking_uri(uri)
    store.check_store(uri)
    store.ensure_store(uri)
    return uri


HEARTBEAT_SECONDS = 30  # as the workers' flow runs (bp stack up, compose): the zombie automation waits 90 s


def _launch(args, get_flow, render, heartbeat: int | None = None, beside=None, **params) -> int:
    from flows.cli.launch import launch

    return launch(get_flow, render, verbose=args.verbose, reap_uri=params["tracking_uri"], heartbeat=heartbeat,
                  beside=beside, **params)


COMMANDS = {"train": _train, "sweep": _sweep, "validate": _validate, "reproduce": _reproduce, "runs": _runs,
            "deploy": _deploy, "serve": _serve, "stack": _stack, "sweep-worker": _sweep_worker}
