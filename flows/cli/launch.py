"""How ``bp`` runs one flow in this process and turns its final state into an exit code.

Also what makes that quiet and safe on a terminal: Prefect's console output without tracebacks
(they stay in the Prefect and MLflow records, and come back with ``--verbose``), signals turned
into an orderly exit (the MLflow run marked, the temporary Prefect server stopped), and the
warm-up of logging's imports while the temporary server starts.
"""

from __future__ import annotations

import io
import logging
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from bpcore.errors import InputError

# render(result) prints what a command shows before the ``run_id:`` line; returns the exit code
Render = Callable[[Any], int]


def launch(get_flow: Callable[[], Any], render: Render | None = None, verbose: bool = False,
           reap_uri: str | None = None, heartbeat: int | None = None, **params) -> int:
    """Call the flow ``get_flow()`` returns with ``params`` here; print its outcome, then ``run_id: <id>``
    last; return the exit code.

    With no Prefect API configured, a temporary server is started first (``flows.server.temporary_server``)
    and ``get_flow`` (which imports the flow's module) runs while it starts. ``reap_uri``: a tracking
    store whose orphaned runs (their process on this host gone) are marked FAILED meanwhile.
    ``heartbeat``: the flow run's heartbeat period in seconds (none by default, see ``_heartbeats``).
    """
    import os

    from flows.server import temporary_server

    server = None if temporary_server.configured_api() else temporary_server.start()
    try:
        flow = get_flow()
        if not verbose:
            quiet_console()
        warm = _start_prewarm(reap_uri)
        if server is not None:
            server.wait_ready(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
        with temporary_server.pointed_at(server) if server else nullcontext(), _heartbeats(heartbeat):
            try:
                state = flow(**params, return_state=True)
                warm.join(timeout=30)  # its reaping, if it is still at it
            except Exception as exc:  # Prefect's engine could not report the flow run's end to its server
                from flows.runtime import outage

                if not outage.unreachable(exc):
                    raise
                api = temporary_server.configured_api() or "the Prefect API"
                print(f"bp: the Prefect server at {api} stopped answering: the flow run's end could not be reported "
                      f"(bp's requests wait about {outage.seconds():g} s, {outage.VARIABLE}; a sweep's flow run is "
                      "marked Crashed once the server is back, its heartbeats having stopped)", file=sys.stderr)
                return 1
            finally:
                if server is not None:
                    _drain_to_server()  # while the server, and Prefect's context for it, are there
    finally:
        if server is not None:
            server.stop()  # now, so nothing of its shutdown is printed after the run_id line
    return finish(state, render)


def finish(state, render: Render | None = None) -> int:
    """The exit code of a flow's final state; prints what ``render`` shows and then the ``run_id:`` line.

    0 completed (or what ``render`` says); 1 the run failed, its MLflow run FAILED with the reason;
    2 bad input found inside the flow (one line naming it).
    """
    from flows.tracking.runs import RunFailed

    if state.is_completed():
        result = state.result()
        code = render(result) if render else 0
        print(f"run_id: {result.run_id}")
        return code
    exc = state.result(raise_on_failure=False)
    if isinstance(exc, InputError):
        print(f"bp: {exc}", file=sys.stderr)
        return 2
    if not isinstance(exc, RunFailed):
        print(f"bp: flow {state.name.lower()}: {_one_line(exc, state.message)}", file=sys.stderr)
        return 1
    print(f"bp: run {exc.status}: {exc.reason}", file=sys.stderr)
    if render and exc.result is not None:
        render(exc.result)
    print(f"run_id: {exc.run_id}")
    return 1


def _one_line(exc, message: str | None) -> str:
    """What a failed flow's exception says, in one line; a server that stopped answering, by its address."""
    from flows.runtime import outage

    if isinstance(exc, BaseException) and outage.unreachable(exc):
        where = re.search(r"https?://[^/\s'\"]+", " ".join(_chain(exc)))
        server = f"the server at {where[0]}" if where else "a server it needs"
        return f"{server} stopped answering (bp's requests wait about {outage.seconds():g} s, {outage.VARIABLE})"
    return " ".join(str(message or exc).split())[:500]


def _chain(exc: BaseException) -> list[str]:
    """The messages of ``exc`` and of what it was raised from."""
    found, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        found.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return found


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

    The default action would end the process at once: the MLflow run left RUNNING and Prefect's
    temporary server (a child process stopped only at exit) orphaned, listening. Unwinding
    instead marks the run and runs the exit handlers that stop the server.
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


def _drain_to_server() -> None:
    """Send the logs and events still queued for the temporary Prefect server, before it is stopped."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # best effort: the run's outcome is already decided and recorded
            pass


def _heartbeats(seconds: int | None):
    """The flow run bp runs in this process sends heartbeats every ``seconds``, or (None) none at all.

    Each flow run's end waits up to a second for its heartbeat thread to stop (a sixth of a line
    fit against a server). Heartbeats let a server notice a flow run whose process vanished; a
    temporary server dies with this process anyway, and a bp process killed outright has its MLflow
    run reaped by the next bp. A sweep on a pool sends them: its children run on, and its flow run
    must be seen Crashed if this process is lost. Runs that workers execute keep their own (the
    worker's environment sets them).
    """
    from prefect.settings import get_current_settings, temporary_settings

    if get_current_settings().flows.heartbeat_frequency == seconds:  # already so: no copy of the settings
        return nullcontext()
    return temporary_settings(updates={"flows.heartbeat_frequency": seconds})


class _NoTraceback(logging.Formatter):
    """Formats as the handler's own formatter would, minus tracebacks and stacks.

    A failed run's detail stays in the flow run's logs on the Prefect server and in the MLflow
    run's ``bp.failure_reason``; bp prints one ``bp:`` line for it. The record is copied, not
    changed: other handlers (Prefect's API log handler) still get the traceback.
    """

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None,
                                            "stack_info": None})
        return self.inner.format(record)


def quiet_console() -> None:
    """Prefect's console handlers without tracebacks, MLflow's INFO lines off, for the rest of this process."""
    from prefect.logging.handlers import PrefectConsoleHandler
    from prefect.logging.loggers import get_logger

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Validating input example ..." per model
    get_logger()  # make sure Prefect's logging config is applied before looking for its handlers
    for name in [None, *logging.root.manager.loggerDict]:
        for handler in _handlers(name):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _NoTraceback):
                handler.setFormatter(_NoTraceback(handler.formatter))


def _handlers(name: str | None) -> list[logging.Handler]:
    logger = logging.getLogger(name)
    return list(getattr(logger, "handlers", []))


def _start_prewarm(reap_uri: str | None = None) -> threading.Thread:
    """Warm up logging's imports in a thread while the main thread waits on Prefect's server.

    Called after the flow module is imported (two threads importing one package at once can see
    it half-initialised).
    """
    thread = threading.Thread(target=_prewarm, args=(reap_uri,), name="bp-prewarm", daemon=True)
    thread.start()
    return thread


def _prewarm(reap_uri: str | None = None) -> None:
    """Import and initialise what logging a run will need: about 2-3 s on a process's first run; then reap.

    In the order a run needs them: MLflow's SQL store (imported when the first run starts); what
    logging a model takes (mlflow.pyfunc and its loaders, and MLflow's scan of installed packages,
    done when the model's requirements are checked); then matplotlib and its first figure (fonts,
    the Agg renderer). Then the orphaned runs of ``reap_uri`` are marked FAILED.
    """
    try:
        if reap_uri is None or not reap_uri.startswith(("http:", "https:")):  # an SQL store: MLflow imports it
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import mlflow.pyfunc.loaders  # noqa: F401  (loaded when a logged model's input example is checked)
        from mlflow.utils import requirements_utils

        import flows.tracking.models  # noqa: F401  (mlflow.pyfunc)

        requirements_utils._init_packages_to_modules_map()
        import numpy as np

        from flows.experiments import plots

        plots.cost_curve(np.array([2.0, 1.0]), "warm-up").savefig(io.BytesIO(), format="png")
    except Exception:  # an optimisation only: never let it break a run
        pass
    if reap_uri is not None:
        _reap(reap_uri)


def _reap(uri: str) -> None:
    from flows.tracking.reap import reap

    try:
        for run_id, reason in reap(uri):
            print(f"bp: run {run_id} marked FAILED: {reason}", file=sys.stderr)
    except Exception as exc:  # housekeeping: the run this process starts must not depend on it
        print(f"bp: could not look for orphaned runs in {uri}: {exc}", file=sys.stderr)
