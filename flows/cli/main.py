"""The ``bp`` command: parse, dispatch to one subcommand, turn what it ends with into the exit code."""

from __future__ import annotations

import os

from flows.cli import commands, exits, servers
from flows.cli.parser import build_parser
from flows.runtime import internals, settings, terminal


def main(argv: list[str] | None = None) -> int:
    """Run ``bp ARGV`` in this process; returns the exit code (``flows.cli.exits``)."""
    settings.apply()  # before Prefect or MLflow is imported
    internals.no_notebook_probe()
    args = build_parser().parse_args(argv)
    # before MLflow is imported: its INFO lines (table creation, "Validating input example") are noise here
    verbose = getattr(args, "verbose", False)  # bp validate and bp runs have none: they run nothing of Prefect's
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "INFO" if verbose else "WARNING")
    if verbose:  # Prefect's whole console log, here and in the worker processes this process starts
        os.environ[terminal.VERBOSE] = "1"
    return exits.guarded({**commands.COMMANDS, **servers.COMMANDS}[args.command], args)


def entry() -> None:
    """The ``bp`` console script (and ``python -m flows.cli``): ``main()`` in a process of its own, which
    collects garbage less often while the libraries import and exits without tearing down its heap."""
    internals.fewer_collections()
    internals.leave(main(), grace=EXIT_GRACE)


# s: a thread still waiting on a server that went away (a plot upload, retrying for minutes) does not hold the exit
EXIT_GRACE = 10.0


if __name__ == "__main__":
    entry()
