"""``bp sweep-worker``: a Dask worker of a sweep pool's scheduler, on any machine that holds the pool's certificates.

A nanny process keeps one single-threaded worker process (restarted if it dies); the worker imports the
point's task and warms up logging as it starts (``flows.sweep.worker_setup``), then trains whatever points
the pool's sweeps submit, one at a time, logging each to this machine's ``MLFLOW_TRACKING_URI`` and its task
run to ``PREFECT_API_URL``. Its liveness is Dask's business (heartbeats to the scheduler, which reschedules a
lost worker's point), never MLflow's. SIGTERM or Ctrl-C: it leaves the scheduler and exits.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from bpcore.errors import one_line
from flows.sweep.cluster import PRELOAD, WORKER_CONFIG


def serve(scheduler: str, certs: Path, name: str | None = None, start_timeout: float = 60) -> int:
    """Serve ``scheduler`` until stopped; the signal number that stopped it (0: the scheduler closed the worker)."""
    from flows.sweep import tls

    logging.getLogger("distributed").setLevel(logging.WARNING)
    security = tls.security(certs)
    return asyncio.run(_serve(scheduler, security, name, start_timeout))


async def _serve(scheduler: str, security, name: str | None, start_timeout: float) -> int:
    import dask
    from distributed import Nanny

    stopped: list[int] = []
    wake = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda s=signum: (stopped.append(s), wake.set()))
    with dask.config.set(WORKER_CONFIG):  # the nanny hands it to the worker process
        nanny = Nanny(scheduler, nthreads=1, security=security, preload=list(PRELOAD), name=name,
                      death_timeout=start_timeout, dashboard=False, silence_logs=logging.WARNING)
        await asyncio.wait_for(nanny.start(), start_timeout)
        finished = asyncio.ensure_future(nanny.finished())
        waiting = asyncio.ensure_future(wake.wait())
        await asyncio.wait([finished, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not finished.done():
            await nanny.close(timeout=10)
    return stopped[0] if stopped else 0


def check_reachable(scheduler: str, certs: Path, timeout: float = 10) -> str | None:
    """Why ``scheduler`` cannot be served with the certificates in ``certs``, in one line (None: it can)."""
    from flows.sweep import tls

    if problem := tls.missing(certs):
        return problem
    if not scheduler.startswith("tls://"):
        return f"--scheduler {scheduler}: a sweep pool's scheduler takes TLS only (tls://HOST:PORT)"
    from distributed import Client

    try:
        with Client(scheduler, security=tls.security(certs), timeout=timeout, set_as_default=False):
            return None
    except Exception as exc:
        return f"the scheduler at {scheduler} did not take this worker ({one_line(exc, 300, named=True)})"
