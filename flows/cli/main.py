"""The ``bp`` command: parse, check the input, call one flow, turn its final state into the exit code.

Configs, data and the tracking store are checked before Prefect is imported, so a typo costs a
second, not the 10-20 s start of Prefect's temporary server. Exit codes: 0 finished, 1 the run
failed (its MLflow run is FAILED with the reason), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

from bpcore.config import to_dict, to_yaml
from bpcore.configfile import load_config
from bpcore.errors import InputError
from bpcore.loading import fingerprint, readable_here
from bpcore.sweep import expand
from flows.cli.launch import Stopped, signals_as_exit
from flows.runtime import settings, speedups
from flows.runtime.settings import DEFAULT_TRACKING_URI, resolve_tracking_uri


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bp", description="Gradient-descent experiments as tracked Prefect + MLflow runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        p.add_argument("--verbose", action="store_true", help="show Prefect's full log, tracebacks included")
        return p

    def with_config(name: str, help: str) -> argparse.ArgumentParser:
        p = command(name, help)
        p.add_argument("config", help="YAML experiment config, e.g. configs/linreg.yaml")
        _overrides(p)
        return p

    def tracked(name: str, help: str) -> argparse.ArgumentParser:
        p = with_config(name, help)
        p.add_argument("--experiment", help="MLflow experiment name (overrides the config's)")
        _tracking_uri(p)
        return p

    tracked("train", "run one training flow (a config's sweep section is ignored)")
    sweep = tracked("sweep", "train every point of the config's sweep.grid as nested MLflow runs")
    sweep.add_argument("--parallel", type=_positive, metavar="N",
                       help="children trained at once (default: the number of cores)")
    sweep.add_argument("--pool", type=_pool, help="train the children on this Prefect work pool's workers (default: "
                       "the config's sweep.pool, else in this process); needs PREFECT_API_URL")
    deploy = command("deploy", "register each config as a deployment on a work pool, with its schedule",
                     "register one deployment per config on the Prefect server in PREFECT_API_URL, named after "
                     "the config file's stem, with the config's schedule; running it again updates them")
    deploy.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML experiment configs")
    deploy.add_argument("--pool", type=_pool, default="bp",
                        help="the process work pool whose workers run them (default: bp)")
    deploy.add_argument("--create-pool", action="store_true", help="create the work pool when it does not exist "
                        "(else that is an error: a typo would make a pool no worker serves)")
    _overrides(deploy, "override a dotted config key in every config (repeatable)")
    serve = command("serve", "run the configs' schedules from this process (no work pool), until stopped")
    serve.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML experiment configs")
    _overrides(serve, "override a dotted config key in every config (repeatable)")
    with_config("validate", "check a config and print it resolved")
    again = command("reproduce", "train a recorded run again and compare",
                    "train a recorded run again from its MLflow record and compare metrics and weights; "
                    "exit 0 when identical, 1 when not")
    again.add_argument("run_id", help="the MLflow run id to reproduce")
    _tracking_uri(again)
    _overrides(again, "re-run with this change to the recorded config (differences are then expected)")
    runs = command("runs", "look after the runs in the tracking store",
                   "mark FAILED the RUNNING runs whose process on this host is gone (bp train and bp sweep "
                   "do this at start as well)")
    runs.add_argument("--reap", action="store_true", required=True, help="mark orphaned runs FAILED")
    _tracking_uri(runs)
    from flows.stack import control

    control.add_parser(sub)
    return parser


def _overrides(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=help or "override a dotted config key (repeatable), e.g. trainer.learning_rate=0.0002")


def _tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                   f"{DEFAULT_TRACKING_URI})")


def main(argv: list[str] | None = None) -> int:
    settings.apply()  # before Prefect or MLflow is imported
    speedups.no_notebook_probe()
    args = build_parser().parse_args(argv)
    # before MLflow is imported: its INFO lines (table creation, "Validating input example") are noise here
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if args.verbose else "WARNING")
    with signals_as_exit():
        try:
            return COMMANDS[args.command](args)
        except InputError as exc:
            print(f"bp: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("bp: interrupted", file=sys.stderr)
            return 130
        except Stopped as exc:
            print(f"bp: {exc}", file=sys.stderr)
            return exc.code


def _pool(text: str) -> str:
    from bpcore.config import check_pool_name
    from bpcore.errors import ConfigError

    try:
        return check_pool_name(text, "")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


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
    if config.sweep is not None:
        print(f"bp: {len(expand(config, args.config))} grid points", file=sys.stderr)
    print(to_yaml(config), end="")
    return 0


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
    points = expand(config, args.config)
    pool = args.pool if args.pool is not None else config.sweep.pool
    if pool and not all(readable_here(p.validated()) for p in points):
        print(f"bp: {config.data.path} is not on this machine: the workers read it, and their copies must agree",
              file=sys.stderr)
    else:
        for point in points:  # every point's data loaded (and cached) now: bad data fails before Prefect starts
            fingerprint(point.validated())
    uri = _prepare_store(args.tracking_uri)
    if pool:
        from flows.server import prefect_api

        url, auth = prefect_api.require("a sweep on a work pool needs the Prefect server its workers serve")
        prefect_api.require_pool(url, auth, pool, "--pool" if args.pool else "sweep.pool")
    else:
        _check_prefect()

    def flow():
        from flows.sweep.flow import sweep

        return sweep

    # on a pool the sweep sends heartbeats: if this process is lost, the server marks its flow run Crashed
    return _launch(args, flow, _show_sweep, config=to_dict(config), tracking_uri=uri,
                   run_name=Path(args.config).stem, parallel=args.parallel, points=points, pool=pool,
                   heartbeat=HEARTBEAT_SECONDS if pool else None)


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
        for point in (expand(config) if config.sweep is not None else []):
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

    url, auth = prefect_api.require("deployments and work pools live on a Prefect server")
    if not args.create_pool:
        prefect_api.require_pool(url, auth, args.pool, hint="; bp deploy --create-pool makes it")

    if not args.verbose:
        from flows.cli.launch import quiet_console

        quiet_console()
    names = deploy.deploy(named, args.pool, create_pool=args.create_pool)
    for (_, config), name in zip(named, names):
        print(f"{name}: {deploy.describe(config)}, work pool {args.pool!r}")
    return 0


def _stack(args) -> int:
    from flows.stack import control

    return control.main(args)


def _serve(args) -> int:
    named = _configs(args)
    from flows.deployments import deploy
    from flows.server import prefect_api

    prefect_api.require("bp serve registers its schedules on a Prefect server that outlives it")

    for name, config in named:
        flow, _ = deploy.flow_and_parameters(config, name)
        print(f"bp: serving {flow.name}/{deploy.served_name(name)}: {deploy.describe(config)}", file=sys.stderr)
    import signal

    # serving ends only when the process is told to stop: say so, with the signal's exit code
    raise Stopped(getattr(signal, deploy.serve(named)))


def _reproduce(args) -> int:
    uri = _prepare_store(args.tracking_uri)
    _check_prefect()
    from flows.experiments import reproduce

    config, record = reproduce.recorded_config(args.run_id, uri, args.overrides)  # fails fast on a bad id
    reproduce.check_data(record, *fingerprint(config))
    return _launch(args, lambda: reproduce.reproduce, _show_differences, run_id=args.run_id, tracking_uri=uri,
                   overrides=args.overrides)


def _runs(args) -> int:
    from flows.tracking.reap import reap

    uri = resolve_tracking_uri(args.tracking_uri)
    reaped = reap(uri)
    for run_id, reason in reaped:
        print(f"{run_id}  FAILED  {reason}")
    print(f"bp: {len(reaped)} orphaned run(s) marked FAILED in {uri}", file=sys.stderr)
    return 0


def _prepare_store(uri: str | None) -> str:
    """The tracking URI, checked (exit 2 within seconds if unusable) and, when new, created once.

    Its orphaned runs are reaped by ``launch`` while Prefect's server starts (it needs MLflow's
    imports, which would otherwise delay that start by about 1.5 s).
    """
    from flows.tracking import store

    uri = resolve_tracking_uri(uri)
    store.check_store(uri)
    store.ensure_store(uri)
    return uri


HEARTBEAT_SECONDS = 30  # as the workers' flow runs (bp stack up, compose): the zombie automation waits 90 s


def _launch(args, get_flow, render, heartbeat: int | None = None, **params) -> int:
    from flows.cli.launch import launch

    return launch(get_flow, render, verbose=args.verbose, reap_uri=params["tracking_uri"], heartbeat=heartbeat,
                  **params)


def _show_sweep(result) -> int:
    """The children as a table (grid point, status, the sweep's metric, run id) on stdout."""
    from rich.console import Console
    from rich.table import Table

    columns = [key for key in result.rows[0] if key != "reason"]
    table = Table(box=None, pad_edge=False, header_style="bold")
    for key in columns:
        table.add_column(key)
    for row in result.rows:
        table.add_row(*(_text(row[key]) for key in columns))
    Console(width=200, soft_wrap=True).print(table)
    if result.registry:
        print(result.registry)
    return 0


def _text(value) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _show_differences(result) -> int:
    print("identical" if not result.differences else "\n".join(result.differences))
    return 0 if not result.differences else 1


COMMANDS = {"train": _train, "sweep": _sweep, "validate": _validate, "reproduce": _reproduce, "runs": _runs,
            "deploy": _deploy, "serve": _serve, "stack": _stack}


def entry() -> None:
    """The ``bp`` console script (and ``python -m flows.cli``): ``main()`` in a process of its own.

    Two costs of a short run that only a process's owner can cut, about 1 s of a 5 s line fit
    against servers (``benchmarks/stack_bench.py``, part a):
    - the cyclic garbage collector, with its default thresholds, walks the growing heap again and
      again while MLflow, Prefect and pandas are imported (300-500 ms here); collections are made
      rarer, not turned off;
    - the interpreter's teardown frees every one of those modules' objects one by one at exit
      (about 0.6 s). ``_leave`` exits without it.
    """
    gc.set_threshold(10_000, 50, 100)
    _leave(main())


def _leave(code: int) -> None:
    """Exit with ``code`` as the interpreter would, minus freeing the heap object by object.

    What Python's own exit does first, in its order: wait for non-daemon threads and run
    threading's exit hooks (Prefect drains its log and event queues there), then the atexit
    handlers (MLflow, logging); then flush the standard streams. Only the teardown of modules
    and objects, which the operating system makes moot, is skipped.
    """
    import atexit
    import threading

    _flush()
    # A thread still waiting on a server that went away (a plot upload, retrying for minutes) must
    # not hold the exit: after EXIT_GRACE s the process leaves all the same.
    deadline = threading.Timer(EXIT_GRACE, os._exit, args=(code,))
    deadline.daemon = True
    deadline.start()
    threading._shutdown()  # the interpreter's own first exit step; private, present from 3.4 to 3.13
    atexit._run_exitfuncs()
    _flush()
    os._exit(code)


EXIT_GRACE = 10.0  # s


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (bp ... | head): nothing more can reach it
            pass


if __name__ == "__main__":
    entry()
