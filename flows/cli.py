"""The ``bp`` command: ``bp train``, ``bp sweep``, ``bp validate``, ``bp reproduce``.

Configs and data are checked before Prefect or MLflow is imported, so a typo costs a second,
not the 10-20 s start of Prefect's temporary server. Exit codes: 0 finished, 1 the run failed
(its MLflow run is FAILED with the reason), 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import threading
from pathlib import Path

from bpcore.config import load_config, to_yaml
from bpcore.errors import InputError
from bpcore.loading import fingerprint
from bpcore.sweep import expand
from flows import flow_for


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bp", description="Gradient-descent experiments as tracked Prefect + MLflow runs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_config(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("config", help="YAML experiment config, e.g. configs/linreg.yaml")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a dotted config key (repeatable), e.g. trainer.learning_rate=0.0002")
        return p

    def tracked(name: str, help: str) -> argparse.ArgumentParser:
        p = with_config(name, help)
        p.add_argument("--experiment", help="MLflow experiment name (overrides the config's)")
        p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                       "else sqlite:///mlflow.db)")
        return p

    tracked("train", "run one training flow (a config's sweep section is ignored)")
    sweep = tracked("sweep", "train every point of the config's sweep.grid as nested MLflow runs")
    sweep.add_argument("--parallel", type=_positive, metavar="N",
                       help="children trained at once (default: the number of cores)")
    with_config("validate", "check a config and print it resolved")
    again = sub.add_parser("reproduce", help="train a recorded run again and compare",
                           description="train a recorded run again from its MLflow record and compare metrics "
                                       "and weights; exit 0 when identical, 1 when not")
    again.add_argument("run_id", help="the MLflow run id to reproduce")
    again.add_argument("--tracking-uri", help="MLflow tracking URI holding the run")
    again.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="re-run with this change to the recorded config (differences are then expected)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "reproduce":
            return _reproduce(args.run_id, args.tracking_uri, args.overrides)
        overrides = list(args.overrides)
        if getattr(args, "experiment", None):
            overrides.append(f"experiment={args.experiment}")
        config = load_config(args.config, overrides)
        if args.command == "validate":
            _check_data_file(config)
            if config.sweep is not None:
                print(f"bp: {len(expand(config, args.config))} grid points", file=sys.stderr)
            print(to_yaml(config), end="")
            return 0
        if args.command == "sweep":
            return _sweep(config, args.config, args.tracking_uri, args.parallel)
        if config.sweep is not None:
            print(f"bp: {args.config}: training the base config; its sweep.grid runs with bp sweep", file=sys.stderr)
            config = config.model_copy(update={"sweep": None})
        fingerprint(config)  # load the data now (cached for the flow): bad data fails before Prefect starts
        return _run_flow(config, args.tracking_uri)[0]
    except InputError as exc:
        print(f"bp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bp: interrupted (an open MLflow run is marked KILLED)", file=sys.stderr)
        return 130


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _check_data_file(config) -> None:
    """Cheap check for validate: the data path, if any, exists (no pandas, no reading)."""
    path = getattr(config.data, "path", None)
    if path is not None and not getattr(config.data, "download", False):
        from bpcore.errors import DataError

        resolved = Path(path).expanduser().resolve()
        if not resolved.exists():
            raise DataError(f"{resolved}: no such data file or directory")


def _reproduce(run_id: str, tracking_uri: str | None, overrides: list[str]) -> int:
    """Re-run a recorded run (tagged bp.reproduces=<run_id>) and print what differs.

    The BLAS thread count is set to the recorded one: a product split differently between
    threads may round differently.
    """
    from flows import reproduce

    config, record = reproduce.recorded_config(run_id, tracking_uri, overrides)
    reproduce.check_data(record, *fingerprint(config))
    with reproduce.recorded_threads(record):
        code, new_id = _run_flow(config, tracking_uri, {"bp.reproduces": run_id}, quiet=True)
    if new_id is None:
        return code
    found = reproduce.differences(run_id, new_id, tracking_uri)
    print("identical" if not found else "\n".join(found))
    print(f"run_id: {new_id}")
    return 0 if not found else 1


def _sweep(config, source: str, tracking_uri: str | None, parallel: int | None) -> int:
    """Run the grid (every point validated and its data loaded first); print the results table."""
    points = expand(config, source)
    for point in points:
        fingerprint(point.config)
    import flows.sweep

    code, parent_id = _launch(flows.sweep.sweep, config, tracking_uri, None, Path(source).stem, parallel)
    if parent_id is not None:
        print(flows.sweep.results_text(parent_id, tracking_uri))
        print(f"run_id: {parent_id}")
    return code


def _run_flow(config, tracking_uri: str | None, tags: dict[str, str] | None = None,
              quiet: bool = False) -> tuple[int, str | None]:
    """Run the config's flow; returns (exit code, MLflow run id or None).

    Prints ``run_id: <id>`` as the last line unless ``quiet`` (the caller prints more after it).
    """
    code, run_id = _launch(flow_for(config.kind), config, tracking_uri, tags)
    if run_id is not None and not quiet:
        print(f"run_id: {run_id}")
    return code, run_id


def _launch(flow, *args) -> tuple[int, str | None]:
    """Call a flow (its module already imported); returns (exit code, MLflow run id or None)."""
    from flows.tracking import RunFailed

    _start_prewarm()
    with _local_settings():
        state = flow(*args, return_state=True)
    if state.is_completed():
        return 0, state.result()
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, InputError):
        print(f"bp: {exc}", file=sys.stderr)
        return 2, None
    if not isinstance(exc, RunFailed):
        print(f"bp: flow {state.name.lower()}: {state.message or exc}", file=sys.stderr)
        return 1, None
    print(f"bp: run {exc.status}: {exc.reason}", file=sys.stderr)
    return 1, exc.run_id


def _local_settings():
    """Without a Prefect server (PREFECT_API_URL), switch off flow-run heartbeats.

    Heartbeats let a long-lived server notice crashed runs; a temporary server dies with this
    process, and each flow run's end waits up to a second for its heartbeat thread to stop.
    """
    from contextlib import nullcontext

    from prefect.settings import get_current_settings, temporary_settings

    if get_current_settings().api.url:
        return nullcontext()
    return temporary_settings(updates={"flows.heartbeat_frequency": None})


class _OnMessage(logging.Filter):
    """Sets an event when a log record's message starts with a given text."""

    def __init__(self, prefix: str, event: threading.Event):
        super().__init__()
        self.prefix, self.event = prefix, event

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith(self.prefix):
            self.event.set()
        return True


def _start_prewarm() -> None:
    """Warm up logging's imports in a thread while the main thread waits on Prefect's server.

    Called after the flow module is imported (two threads importing one package at once can see
    it half-initialised). With a temporary server, the warm-up waits until that server's process
    is launched: until then the main thread is busy importing Prefect's server code, and a
    warm-up competing with it for the GIL would only delay the start.
    """
    from prefect.settings import get_current_settings

    go = threading.Event()
    if get_current_settings().api.url:
        go.set()
        watch = None
    else:
        watch = _OnMessage("Starting temporary server", go)
        logging.getLogger("prefect").addFilter(watch)
    threading.Thread(target=_prewarm, args=(go, watch), name="bp-prewarm", daemon=True).start()


def _prewarm(go: threading.Event, watch: logging.Filter | None = None) -> None:
    """Import and initialise what logging a run will need: about 2-3 s on a process's first run.

    MLflow's SQL store (imported when the first run starts), matplotlib and its first figure
    (fonts, the Agg renderer), mlflow.pyfunc, and MLflow's scan of installed packages (done when
    a model's requirements are checked).
    """
    go.wait(timeout=30)
    if watch is not None:
        logging.getLogger("prefect").removeFilter(watch)
    try:
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import numpy as np
        from mlflow.utils import requirements_utils

        import flows.models  # noqa: F401  (mlflow.pyfunc)
        from flows import plots

        requirements_utils._init_packages_to_modules_map()
        plots.cost_curve(np.array([2.0, 1.0]), "warm-up").savefig(io.BytesIO(), format="png")
    except Exception:  # an optimisation only: never let it break a run
        pass


if __name__ == "__main__":
    sys.exit(main())
