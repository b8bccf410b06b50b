"""The ``bp`` subcommands: each checks its input before Prefect is imported, then calls one flow (or the stack).

Configs, data and the tracking store are checked first, so a typo costs a second, not the 10-20 s
start of Prefect's temporary server.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from bpcore.config.serial import to_dict, to_yaml
from bpcore.data.root import readable_here
from bpcore.errors import InputError
from bpcore.kinds import fingerprint, load_config
from bpcore.search.grid import expand
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
        from bpcore.search.space import check, describe

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
        from bpcore.data.table import check_path

        check_path(path)
    else:
        from bpcore.data.root import confine
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
    here = all(readable_here(p) for p in ([config] if config.sweep is None or config.sweep.search != "grid"
                                            else [q.validated() for q in expand(config, args.config)]))
    if pool and not here:
        print(f"bp: {config.data.path} is not on this machine: the pool's workers read it", file=sys.stderr)
    if config.sweep is not None and config.sweep.search != "grid":
        points = _search_checked(config, args.config, load=here)
    else:
        points = expand(config, args.config)
        for point in points if here else []:  # every point's data loaded (and cached): bad data fails early
            fingerprint(point.validated())
    uri = _prepare_store(args.tracking_uri)
    if pool:
        return _on_pool(args, config, pool, uri, Path(args.config).stem, args.parallel)
    _check_prefect()

    def flow():
        from flows.sweep.flow import sweep

        return sweep

    from flows.cli.launch import sweep_cluster

    return _launch(args, flow, render.sweep_table, config=to_dict(config), tracking_uri=uri,
                   run_name=Path(args.config).stem, parallel=args.parallel, points=points,
                   beside=sweep_cluster(args.parallel, config, points))


def _on_pool(args, config, pool: str, uri: str, run_name: str, parallel: int | None, resume: str | None = None) -> int:
    """The sweep as a flow run on ``pool``'s workers, followed here (or, with --detach, only submitted); ``resume``:
    the parent run of the sweep it finishes."""
    from flows.server import prefect_api

    url, _ = prefect_api.require("a sweep on a work pool needs the Prefect server its workers serve")
    prefect_api.require_pool(url, pool, "--pool" if args.pool else "sweep.pool")
    if not args.verbose:
        from flows.cli.launch import quiet_console

        quiet_console()
    from flows.cli import pool as submit

    submitted = submit.submit(to_dict(config), run_name, parallel, None, pool, resume)
    print(f"bp: flow run {submitted.name} ({submitted.flow_run_id}) submitted to work pool {pool!r}",
          file=sys.stderr)
    if args.detach:
        return submit.detached(submitted, uri)
    return submit.follow(submitted, uri, render.sweep_table, args.verbose)


def _search_checked(config, source: str, load: bool = True) -> list:
    """A random or tpe search's space checked, and (``load``: it is on this machine) its data read, before Prefect
    starts; no points yet (the sweep draws them as it goes)."""
    from bpcore.search.space import check, stable_limit

    if load:
        fingerprint(config.model_copy(update={"sweep": None}))
    check(config, source, stable_limit(config) if load else None)
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
            from bpcore.search.space import check

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
    from urllib.parse import urlsplit

    from flows.sweep import worker

    uri = resolve_tracking_uri(args.tracking_uri)
    if urlsplit(uri).scheme in ("", "file") and not Path(urlsplit(uri).path if "://" in uri else uri).is_dir():
        raise InputError(f"tracking URI {uri}: no such directory (a sweep worker logs the points to their sweeps' "
                         "store: the MLflow server or database the sweeps' flow runs use)")
    uri = _prepare_store(uri)
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


def _reproduce(args) -> int:
    uri = _prepare_store(args.tracking_uri)
    _check_prefect()
    from flows.experiments import reproduce
    from flows.tracking import runs

    recorded = reproduce.read_record(args.run_id, runs.client(uri), args.overrides)  # fails fast on a bad id
    reproduce.check_data(recorded, *fingerprint(recorded.validated()))
    return _launch(args, lambda: reproduce.reproduce, render.differences, run_id=args.run_id, tracking_uri=uri,
                   overrides=args.overrides, recorded=recorded)


def _resume(args) -> int:
    uri = _prepare_store(args.tracking_uri)
    from flows.experiments import reproduce
    from flows.experiments.resumption import resumable
    from flows.tracking import runs

    recorded, at_once = resumable(args.run_id, runs.client(uri))  # one line, exit 2, when it cannot be resumed
    config = recorded.validated()
    reproduce.check_data(recorded, *fingerprint(config.model_copy(update={"sweep": None})))
    if config.sweep is not None:
        return _resume_sweep(args, config, uri, at_once)
    if args.pool or args.detach:
        raise InputError(f"--pool, --detach: run {args.run_id} is not a sweep's parent; it resumes here")
    import inspect

    from flows.experiments.registry import flow_for

    if "resume" not in inspect.signature(flow_for(config.kind).fn).parameters:
        raise InputError(f"run {args.run_id} is of kind {config.kind!r}, whose flow takes no resume: train it again")
    _check_prefect()

    def flow():
        return flow_for(config.kind)

    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    blas = recorded.blas_threads  # as it trained: a product split between other threads may round differently
    with threadpool_limits(limits=blas, user_api="blas") if blas else nullcontext():
        return _launch(args, flow, None, config=config, tracking_uri=uri, data_digest=recorded.data_digest,
                       resume=args.run_id)


def _resume_sweep(args, config, uri: str, at_once: int | None) -> int:
    """Finish a sweep in its parent run, as many points at a time as it trained (a search then draws the same
    trials), here or on a pool as ``bp sweep`` would."""
    pool = args.pool if args.pool is not None else config.sweep.pool
    points = expand(config) if config.sweep.search == "grid" else []
    if pool:
        return _on_pool(args, config, pool, uri, None, at_once, resume=args.run_id)
    _check_prefect()

    def flow():
        from flows.sweep.flow import sweep

        return sweep

    from flows.cli.launch import sweep_cluster

    return _launch(args, flow, render.sweep_table, config=to_dict(config), tracking_uri=uri, parallel=at_once,
                   points=points, resume=args.run_id, beside=sweep_cluster(at_once, config, points))


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


def _launch(args, get_flow, render, beside=None, **params) -> int:
    from flows.cli.launch import launch

    return launch(get_flow, render, verbose=args.verbose, reap_uri=params["tracking_uri"], beside=beside, **params)


COMMANDS = {"train": _train, "sweep": _sweep, "validate": _validate, "reproduce": _reproduce, "resume": _resume,
            "runs": _runs, "deploy": _deploy, "serve": _serve, "stack": _stack, "sweep-worker": _sweep_worker}
