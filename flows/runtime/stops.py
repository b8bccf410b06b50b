"""How a process takes a stop: signals held across steps that must not be cut, and a stopped flow-run
process's bounded exit. Of bp it imports only ``flows.runtime.internals``: launch, tracking and the stack use it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP that come inside the block take effect when it ends, not within it.

    The first that came is raised again at the block's end, so whatever handler was in place then
    (bp's Stopped, Prefect's TerminationSignal inside a flow run, Ctrl-C's KeyboardInterrupt) acts as
    it would have. For steps that must not be cut in two: starting a process and recording it (cut
    between the fork and the record, the process would run on with nobody to stop it), or a write
    to a SQLite tracking store (cut inside its transaction, the connection keeps the database
    locked and the run can no longer be marked). Outside the main thread, where no signal handler
    runs, the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: came.append(signum)) for sig in HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        if came:
            signal.raise_signal(came[0])


STOP_GRACE = 10.0  # s: how long a flow-run process may take to leave once stopped


def leave_soon_after(stop: BaseException) -> None:
    """In a flow-run process a worker or ``bp serve`` started, make a stop end it within STOP_GRACE s.

    Prefect raises the stop (TerminationSignal) in the main thread wherever it is: raised inside a
    library's lock, that lock is never released, and marking the MLflow run can then wait on it until the
    runner's SIGKILL (its runs are cancelled one after another, 30 s each). A daemon timer ends the process
    if it is still there after STOP_GRACE s (its run, if it could not be marked, is reaped by the next bp
    as a gone process's).
    bp's own commands bound their exit themselves (``flows.cli.main``).
    """
    import os

    from flows.runtime import internals

    if not internals.in_prefect_engine_process():
        return
    number = getattr(stop, "signal", None)
    code = 130 if isinstance(stop, KeyboardInterrupt) else 128 + (number if isinstance(number, int) else 15)
    timer = threading.Timer(STOP_GRACE, os._exit, args=(code,))
    timer.daemon = True
    timer.start()
