"""``bp stack up|down|status|env``: the subcommands' arguments and their checks."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from flows.stack import db as stack_db

DEFAULT_DIR = ".bp-stack"
# How long `down` lets the workers' flow runs finish before it cancels them (--grace)
WORKER_GRACE = 30.0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``stack`` with ``up``, ``down``, ``status`` and ``env`` to the ``bp`` command's subparsers."""
    stack = subparsers.add_parser("stack", help="start, stop or show the servers and workers as local processes",
                                  description="the Prefect and MLflow servers, Prefect workers, and a Dask scheduler "
                                              "with its sweep workers as local background processes (the "
                                              "docker-compose topology without Docker)")
    actions = stack.add_subparsers(dest="action", required=True, metavar="{up,down,status,env}",
                                   parser_class=type(stack))
    up = actions.add_parser("up", help="start the servers and workers, wait until they answer",
                            description="start the Prefect server, the MLflow server, N workers on pool bp, and a "
                                        "Dask scheduler with N sweep workers; the last lines printed are the "
                                        "export lines for clients")
    up.add_argument("--workers", type=_count, default=1, metavar="N",
                    help="Prefect workers, and sweep workers, to start (default: 1)")
    up.add_argument("--database-url", metavar="URL", help=f"{stack_db.FORM}: both servers on this Postgres, "
                    "databases mlflow and prefect (created when missing); default: SQLite files in DIR")
    up.add_argument("--prefect-port", type=_port, default=4200, metavar="P", help="Prefect server port (default: 4200)")
    up.add_argument("--mlflow-port", type=_port, default=5000, metavar="P", help="MLflow server port (default: 5000)")
    up.add_argument("--scheduler-port", type=_port, default=8786, metavar="P",
                    help="the sweep workers' Dask scheduler port, TLS only (default: 8786)")
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
    env = actions.add_parser("env", help="print the export lines of the running stack: eval \"$(bp stack env)\"",
                             description="print the export lines bp stack up ended with (PREFECT_API_URL, "
                                         "MLFLOW_TRACKING_URI, PREFECT_API_AUTH_STRING; MLflow's login with --auth), "
                                         "for a shell to eval; exit 2 when no stack runs from DIR")
    for p in (up, down, status, env):
        p.add_argument("--dir", type=Path, default=Path(DEFAULT_DIR),
                       help=f"the stack's directory (default: {DEFAULT_DIR})")
        p.add_argument("--verbose", action="store_true", help="quote more of a failing service's log")
    return stack


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
