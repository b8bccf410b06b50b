"""The Dask cluster an in-process sweep's points train on: single-threaded worker processes on this machine.

``bp sweep --parallel N`` starts a ``LocalCluster`` of N worker processes while Prefect's temporary
server starts (both take seconds, on other cores), its workers forked from one process that imported and warmed
the point's modules, so the first point pays no imports; the sweep's flow submits its points to it through
``prefect-dask``'s task runner and ``bp`` closes it after the flow. The workers reach the same Prefect
API as the flow (their task runs are the sweep's), each with its share of the BLAS threads, and the
scheduler takes only clients holding its temporary certificate (Dask's mutual TLS): another user of
this machine can neither submit work to it nor read the points' arguments.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass

from flows.runtime import blas, internals

PRELOAD = ("flows.sweep.worker_setup",)  # what each worker runs as it starts: imports, warm-ups, the data
FORK_PRELOAD = ("flows.sweep.forked",)  # what the forkserver a local cluster's workers fork from imports, once
WARM_DATA = "BP_SWEEP_WARM_DATA"  # the workers' environment: JSON list of configs whose data they load at start
# Dask's housekeeping intervals suit clusters of short tasks: an event-loop health check every 20 ms, a system sample
# every 500 ms and a memory check every 100 ms in each scheduler, nanny and worker. A point trains for seconds to
# hours and a pool may wait idle for days, so these run rarely (in every Dask process bp starts: through
# WORKER_CONFIG in this process and its nannies, through ``environment`` in a stack's scheduler command).
IDLE_CONFIG = {"distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "5s",
               "distributed.worker.memory.monitor-interval": "1s"}
# Dask's statistical profiler samples every thread's stack every 10 ms, taking the GIL from the point that trains;
# Dask's MALLOC_TRIM_THRESHOLD_ turns off glibc's adaptive mmap threshold, so every array over 128 KiB a batch
# makes (a layer's weight gradient) is mapped and unmapped anew, page-faulting on every batch.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False,
                 "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None, **IDLE_CONFIG}
# A local cluster's workers are forks of one process that imported and warmed what a point needs (3 s a worker
# otherwise): see ``internals.forkserver_workers``; a nanny restarting a lost worker later spawns it afresh. Its
# nannies live in bp's process and write Dask's pre-spawn variables into bp's own environment before each start: the
# BLAS ones (1 thread) would reach every process bp starts afterwards and every run it trains in itself (its BLAS
# threads are part of what a run reproduces); the workers get their share through the cluster's ``env`` instead.
LOCAL_CONFIG = {"distributed.worker.multiprocessing-method": "forkserver",
                **{f"distributed.nanny.pre-spawn-environ.{name}": None for name in blas.VARIABLES}}
_SECURITY: dict[str, object] = {}  # scheduler address -> the Security its clients connect with (this process's)


def environment(config: dict) -> dict[str, str]:
    """Dask settings as the environment variables Dask reads at start, for a Dask process bp launches as a command."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in config.items()}


@dataclass
class Started:
    """A running cluster: its scheduler's address, and the cluster object that stops it."""

    address: str
    cluster: object


class LocalSweepCluster:
    """``workers`` single-threaded worker processes and their scheduler, started in a thread of their own (the
    caller goes on meanwhile); ``address()`` waits for them. ``data``: configs whose data each worker loads as it
    starts (one per distinct dataset the points read)."""

    def __init__(self, workers: int, prefect_api: str | None, data: list[dict] | None = None):
        self.workers, self.prefect_api, self.data = workers, prefect_api, data or []
        self._started: Started | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="bp-dask-cluster", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            import dask
            from distributed import LocalCluster
            from distributed.security import Security

            logging.getLogger("distributed").setLevel(logging.WARNING)  # its INFO lines: each worker's every step
            # prefect-dask's INFO line links a dashboard the cluster does not run
            logging.getLogger("prefect.task_runner.dask").setLevel(logging.WARNING)

            security = Security.temporary()
            env = {**blas.environment(self.workers), WARM_DATA: json.dumps(self.data),
                   **({"PREFECT_API_URL": self.prefect_api} if self.prefect_api else {})}
            internals.forkserver_workers(list(FORK_PRELOAD))
            with dask.config.set({**WORKER_CONFIG, **LOCAL_CONFIG}):  # the nannies hand it to their worker processes
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                       security=security, host="127.0.0.1", dashboard_address=None,
                                       silence_logs=logging.ERROR, env=env, preload=list(PRELOAD),
                                       worker_dashboard_address=None)
            _SECURITY[cluster.scheduler_address] = security
            self._started = Started(cluster.scheduler_address, cluster)
        except BaseException as exc:  # raised to whoever asks for the address
            self._failed = exc

    def address(self, timeout: float = 120) -> str:
        """The scheduler's address, once the cluster is up; RuntimeError if it could not start."""
        self._thread.join(timeout)
        if self._started is None:
            why = f"{type(self._failed).__name__}: {self._failed}" if self._failed else f"not up within {timeout:g} s"
            raise RuntimeError(f"the sweep's local Dask cluster did not start ({why})")
        return self._started.address

    def close(self) -> None:
        """Stop the workers and the scheduler (waiting for a start still under way)."""
        self._thread.join(120)
        if self._started is not None:
            _SECURITY.pop(self._started.address, None)
            try:
                self._started.cluster.close(timeout=10)
            except Exception:  # a worker already gone: nothing of the sweep's depends on a clean close
                pass


def started_here(address: str) -> bool:
    """Whether the scheduler at ``address`` is a local cluster this process started."""
    return address in _SECURITY


def security_for(address: str):
    """The Security a client of the scheduler at ``address`` connects with: a local cluster's temporary one, else
    the pool's certificates this flow run's worker names (``flows.sweep.tls``); None: Dask's own defaults."""
    from flows.sweep import tls

    if address in _SECURITY:
        return _SECURITY[address]
    pool = tls.from_environment()
    return pool[1] if pool and pool[0] == address else None


def worker_count(address: str, timeout: float = 30) -> int:
    """How many workers the scheduler at ``address`` has now (at least 1: points queue until one joins)."""
    from distributed import Client

    with Client(address, security=security_for(address), timeout=timeout, set_as_default=False) as client:
        return max(1, len(client.scheduler_info(n_workers=-1)["workers"]))
