"""The ``bp`` subcommands of runs (``flows.cli.servers`` has the servers'): each checks its input before Prefect is
imported, then calls one flow, or reads the store.

Configs, data and the tracking store are checked first, so a typo costs a second, not the 10-20 s
start of Prefect's temporary server.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from bpcore.config.serial import to_dict, to_yaml
from bpcore.data.root import readable_here
from bpcore.errors import InputError
from bpcore.kinds import fingerprint, load_config
from bpcore.search.grid import expand
from flows.cli import exits, render
from flows.runtime import terminal
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
        print(f"bp: {args.config}: training the base config; its sweep runs with bp sweep", file=sys.stderr)
        config = config.model_copy(update={"sweep": None})
    fingerprint(config)  # load the data now (cached for the flow): bad data fails before Prefect starts
    uri = prepare_store(args.tracking_uri, _check_prefect)

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
    if pool:
        return _on_pool(args, config, pool, args.tracking_uri, Path(args.config).stem, args.parallel)
    uri = prepare_store(args.tracking_uri, _check_prefect)

    def flow():
        from flows.sweep.flow import sweep

        return sweep

    from flows.cli.launch import sweep_cluster

    return _launch(args, flow, render.sweep_table, config=to_dict(config), tracking_uri=uri,
                   run_name=Path(args.config).stem, parallel=args.parallel, points=points,
                   beside=sweep_cluster(args.parallel, config, points))


def _on_pool(args, config, pool: str, uri: str | None, run_name: str, parallel: int | None,
             resume: str | None = None) -> int:
    """The sweep as a flow run on ``pool``'s workers, followed here (or, with --detach, only submitted); ``resume``:
    the parent run of the sweep it finishes. The tracking ``uri`` is prepared once the server and pool are checked."""
    from flows.server import prefect_api

    def servers() -> None:
        url, auth = prefect_api.require("a sweep on a work pool needs the Prefect server its workers serve")
        prefect_api.require_pool(url, auth, pool, "--pool" if args.pool else "sweep.pool")

    uri = prepare_store(uri, servers)
    terminal.quiet()
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


def _check_prefect() -> None:
    """The configured Prefect API, if any, answers and takes our auth string (else Prefect's temporary one runs)."""
    from flows.server import prefect_api

    url, auth = prefect_api.configured()
    if url:
        prefect_api.check(url, auth)


def _reproduce(args) -> int:
    uri = prepare_store(args.tracking_uri, _check_prefect)
    from flows.experiments import reproduce
    from flows.tracking import runs

    recorded = reproduce.read_record(args.run_id, runs.client(uri), args.overrides)  # fails fast on a bad id
    reproduce.check_data(recorded, *fingerprint(recorded.validated()))
    return _launch(args, lambda: reproduce.reproduce, render.differences, run_id=args.run_id, tracking_uri=uri,
                   overrides=args.overrides, recorded=recorded)


def _resume(args) -> int:
    uri = prepare_store(args.tracking_uri)
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


def prepare_store(uri: str | None, servers: Callable[[], None] | None = None) -> str:
    """The tracking URI, checked (exit 2 within seconds if unusable), then the ``servers`` it is used with checked,
    then the store created once if it is new: a refusal of either makes nothing, and neither check imports MLflow
    (nor, with PREFECT_API_URL and its auth string in the environment, Prefect), which takes seconds.

    Its orphaned runs are reaped by ``launch`` while Prefect's server starts: reaping needs MLflow's
    imports, which would otherwise delay that start.
    """
    from flows.tracking import store

    uri = resolve_tracking_uri(uri)
    store.check_store(uri)
    if servers is not None:
        servers()
    store.ensure_store(uri)
    return uri


def _launch(args, get_flow, render, beside=None, **params) -> int:
    from flows.cli.launch import launch

    return launch(get_flow, render, reap_uri=params["tracking_uri"], beside=beside, **params)


COMMANDS = {"train": _train, "sweep": _sweep, "validate": _validate, "reproduce": _reproduce, "resume": _resume,
            "runs": _runs}
