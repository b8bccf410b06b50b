"""bp's exit codes, in one place: 0 finished, 1 the run failed, 2 bad input, 128 + N stopped by signal N.

A failed run's MLflow run is FAILED with the reason; bad input is one line on stderr naming the
file, key or row at fault; Ctrl-C is 130 and SIGTERM 143.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bpcore.errors import InputError, causes, one_line

FINISHED, FAILED, BAD_INPUT = 0, 1, 2
INTERRUPTED = 128 + signal.SIGINT  # Ctrl-C: 130
PIPE_CLOSED = 128 + signal.SIGPIPE  # 141: what a shell reports of a Unix tool whose reader went away (bp ... | head)

# render(result) prints what a command shows before the ``run_id:`` line; returns the exit code
Render = Callable[[Any], int]


def finish(state, render: Render | None = None) -> int:
    """The exit code of a flow's final state; prints what ``render`` shows and then the ``run_id:`` line.

    0 completed (or what ``render`` says); 1 the run failed, its MLflow run FAILED with the reason;
    2 bad input found inside the flow (one line naming it).
    """
    from flows.tracking.runs import RunFailed

    if state.is_completed():
        result = state.result()
        code = render(result) if render else FINISHED
        print(f"run_id: {result.run_id}")
        return code
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, InputError):
        print(f"bp: {exc}", file=sys.stderr)
        return BAD_INPUT
    if not isinstance(exc, RunFailed):
        print(f"bp: flow {state.name.lower()}: {_one_line(exc, state.message)}", file=sys.stderr)
        return FAILED
    print(f"bp: run {exc.status}: {exc.reason}", file=sys.stderr)
    if render and exc.result is not None:
        render(exc.result)
    print(f"run_id: {exc.run_id}")
    return FAILED


def _one_line(exc, message: str | None) -> str:
    """What a failed flow's exception says, in one line; a server that stopped answering, by its address."""
    from flows.runtime import outage

    if isinstance(exc, BaseException) and outage.unreachable(exc):
        where = re.search(r"https?://[^/\s'\"]+", " ".join(str(cause) for cause in causes(exc)))
        server = f"the server at {where[0]}" if where else "a server it needs"
        return f"{server} stopped answering (bp's requests wait about {outage.seconds():g} s, {outage.VARIABLE})"
    return " ".join(message.split())[:500] if message else one_line(exc)


class Stopped(SystemExit):
    """Raised in the main thread by SIGTERM or SIGHUP; exits with 128 + the signal's number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signal = signal.Signals(signum).name

    def __str__(self) -> str:
        return f"stopped by {self.signal}"


@contextmanager
def signals_as_exit() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Stopped (a SystemExit) in the main thread, as Ctrl-C raises KeyboardInterrupt.

    The default action would end the process at once, its MLflow run left RUNNING. Unwinding instead marks
    the run and reaches the ``finally`` that stops Prefect's temporary server (``flows.cli.launch``).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum, frame):
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def guarded(command: Callable[[Any], int], args) -> int:
    """Run one subcommand with SIGTERM and SIGHUP as exits; bad input, Ctrl-C and signals become their code."""
    with signals_as_exit():
        try:
            return command(args)
        except InputError as exc:
            print(f"bp: {exc}", file=sys.stderr)
            return BAD_INPUT
        except KeyboardInterrupt:
            print(f"bp: interrupted{_resume_hint()}", file=sys.stderr)
            return INTERRUPTED
        except Stopped as exc:
            print(f"bp: {exc}{_resume_hint()}", file=sys.stderr)
            return exc.code
        except BrokenPipeError:
            _reader_gone()
            return PIPE_CLOSED


def _resume_hint() -> str:
    """``; resume with: bp resume <id>`` when this process stopped a run (MLflow's modules are not imported for it)."""
    runs = sys.modules.get("flows.tracking.runs")
    stopped = getattr(runs, "stopped_runs", None)
    return f"; resume with: bp resume {stopped[-1]}" if stopped else ""


def _reader_gone() -> None:
    """Standard output's reader closed it early (``bp stack status | head -1``): leave quietly, as Unix tools do,
    with nothing more written to it (what is still buffered, or printed on the way out, goes nowhere)."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing to point elsewhere
        pass
