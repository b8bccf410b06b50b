"""The ``bp`` command line: every subcommand, its arguments, and their one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.runtime.settings import DEFAULT_TRACKING_URI


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bp", description="Gradient-descent experiments as tracked Prefect + MLflow runs.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help: str, description: str | None = None, prefect: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description or help)
        if prefect:  # a command that runs or talks to Prefect
            p.add_argument("--verbose", action="store_true", help="print Prefect's engine log here too, tracebacks "
                           "included (it is on the Prefect server either way)")
        return p

    def with_config(name: str, help: str, prefect: bool = True) -> argparse.ArgumentParser:
        p = command(name, help, prefect=prefect)
        p.add_argument("config", help="YAML experiment config, e.g. configs/linreg.yaml")
        _overrides(p)
        return p

    def tracked(name: str, help: str) -> argparse.ArgumentParser:
        p = with_config(name, help)
        p.add_argument("--experiment", metavar="NAME", help="MLflow experiment name (overrides the config's)")
        _tracking_uri(p)
        return p

    tracked("train", "run one training flow (a config's sweep section is ignored)")
    sweep = tracked("sweep", "train the config's sweep (a grid, or a search of sweep.space) as child runs of one "
                    "parent MLflow run, then register the best model")
    sweep.add_argument("--parallel", type=_positive, metavar="N",
                       help="children at once, each in a worker process above 1 (default: cores for a network, 1 "
                       "for a line fit); a search's rounds, on a pool too (default there: its sweep workers)")
    _on_a_pool(sweep)
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
    _sweep_worker(command)
    with_config("validate", "check a config and print it resolved", prefect=False)
    _recorded_runs(command)
    runs = command("runs", "look after the runs in the tracking store",
                   "mark FAILED the RUNNING runs whose process on this host is gone (bp train and bp sweep "
                   "do this at start as well)", prefect=False)
    runs.add_argument("--reap", action="store_true", required=True, help="mark orphaned runs FAILED")
    _tracking_uri(runs)
    from flows.stack import parser as stack_parser

    stack_parser.add_parser(sub)
    return parser


def _version() -> str:
    """``bp 0.1.0 (mlflow 3.17.0, prefect 3.9.0, python 3.11.7)``, read from the installed metadata (no imports)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    python = platform.python_version()
    return f"bp {of('bp-pipeline')} (mlflow {of('mlflow')}, prefect {of('prefect')}, python {python})"


def _sweep_worker(command) -> None:
    """bp sweep-worker: a long-lived Dask worker of a sweep pool's scheduler."""
    points = command("sweep-worker", "train the points of a sweep pool's sweeps: a Dask worker, until stopped",
                     "join a sweep pool's Dask scheduler (TLS, with the pool's certificates) and train its sweeps' "
                     "points one at a time, logging to MLFLOW_TRACKING_URI and reporting to PREFECT_API_URL; run "
                     "one per core to use, on any machine that reaches the scheduler and both servers")
    points.add_argument("--scheduler", required=True, metavar="tls://HOST:PORT", help="the pool's scheduler")
    points.add_argument("--certs", required=True, type=Path, metavar="DIR",
                        help="the pool's certificates (bp stack up makes them in DIR/dask)")
    _tracking_uri(points)


def _recorded_runs(command) -> None:
    """bp reproduce and bp resume: what they do with a run MLflow holds, named by its id."""
    again = command("reproduce", "train a recorded run again and compare",
                    "train a recorded run again from its MLflow record and compare metrics and weights; "
                    "exit 0 when identical, 1 when not")
    again.add_argument("run_id", help="the MLflow run id to reproduce")
    _tracking_uri(again)
    _overrides(again, "re-run with this change to the recorded config (differences are then expected)")
    resume = command("resume", "go on with a stopped or failed run",
                     "go on with a KILLED or FAILED run in the same MLflow run: a network from its latest "
                     "checkpoint, anything else from the start; it ends as if it had never stopped")
    resume.add_argument("run_id", help="the MLflow run id to resume (a sweep's parent finishes the sweep)")
    _tracking_uri(resume)
    _on_a_pool(resume)

def _on_a_pool(p: argparse.ArgumentParser) -> None:
    """A sweep's --pool and --detach (bp sweep, and bp resume of a sweep)."""
    p.add_argument("--pool", type=_pool, help="run the sweep as a flow run on this Prefect work pool, followed "
                   "here (default: the config's sweep.pool, else here); needs PREFECT_API_URL")
    p.add_argument("--detach", action="store_true", help="with a pool: return once the sweep is submitted")

def _overrides(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=help or "override a dotted config key (repeatable), e.g. trainer.learning_rate=0.0002")


def _tracking_uri(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", metavar="URI", help=f"MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                   f"{DEFAULT_TRACKING_URI})")


def _pool(text: str) -> str:
    from bpcore.config.fields import check_pool_name
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
