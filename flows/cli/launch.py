"""How ``bp`` runs one flow in this process: the temporary Prefect server when none is configured, and the
flow's final state handed to ``flows.cli.exits`` for the exit code.

Also the warm-up of logging's imports while the temporary server starts.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from flows.cli import exits
from flows.runtime import internals, terminal


def launch(get_flow: Callable[[], Any], render: exits.Render | None = None,
           reap_uri: str | None = None, beside: Callable[[str | None], Any] | None = None, **params) -> int:
    """Call the flow ``get_flow()`` returns with ``params`` here; print its outcome, then ``run_id: <id>``
    last; return the exit code.

    With no Prefect API configured, a temporary server is started first (``flows.server.temporary_server``)
    and ``get_flow`` (which imports the flow's module) runs while it starts. ``reap_uri``: a tracking
    store whose orphaned runs (their process on this host gone) are marked FAILED meanwhile.
    The flow run sends no heartbeats (``_without_heartbeats``).
    ``beside(api_url)``: what the flow needs started meanwhile (a sweep's Dask cluster), given the Prefect API
    the flow will use: an object whose ``params()`` the flow is called with too, and ``close()``d after it.
    """
    import os

    from flows.server import temporary_server

    server = None if temporary_server.configured_api() else temporary_server.start()
    companion = None
    try:
        companion = beside(server.api_url if server else temporary_server.configured_api()) if beside else None
        flow = get_flow()
        terminal.quiet()  # unless --verbose (BP_VERBOSE=1, which main sets for this process and its workers)
        warm = _start_prewarm(reap_uri)
        if server is not None:
            server.wait_ready(float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")))
        if companion is not None:
            params = {**params, **companion.params()}
        with temporary_server.pointed_at(server) if server else nullcontext(), _without_heartbeats():
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
                return exits.FAILED
            finally:
                if server is not None:
                    internals.drain_prefect_queues()  # while the server, and Prefect's context for it, are there
    finally:
        if companion is not None:
            companion.close()
        if server is not None:
            server.stop()  # now, so nothing of its shutdown is printed after the run_id line
    return exits.finish(state, render)


def _without_heartbeats():
    """The flow run bp runs in this process sends no heartbeats, whatever the environment says.

    Each flow run's end waits up to a second for its heartbeat thread to stop, a large share of a short run.
    Heartbeats let a server notice a flow run whose process vanished; a temporary server dies with this
    process anyway, and a bp process killed outright has its MLflow run reaped by the next bp. Flow runs that
    workers execute (a pool sweep's among them) keep theirs: the worker's environment sets them.
    """
    from prefect.settings import get_current_settings, temporary_settings

    if get_current_settings().flows.heartbeat_frequency is None:  # already so: no copy of the settings
        return nullcontext()
    return temporary_settings(updates={"flows.heartbeat_frequency": None})


def _start_prewarm(reap_uri: str | None = None) -> threading.Thread:
    """Warm up logging's imports in a thread while the main thread waits on Prefect's server.

    Called after the flow module is imported (two threads importing one package at once can see
    it half-initialised).
    """
    thread = threading.Thread(target=_prewarm, args=(reap_uri,), name="bp-prewarm", daemon=True)
    thread.start()
    return thread


def _prewarm(reap_uri: str | None = None) -> None:
    """Import and initialise what logging a run will need (``warmup.warm_logging``); then reap."""
    from flows.experiments import warmup

    warmup.warm_logging(sql_store=reap_uri is None or not reap_uri.startswith(("http:", "https:")))
    if reap_uri is not None:
        _reap(reap_uri)


def _reap(uri: str) -> None:
    from flows.tracking.reap import reap

    try:
        for run_id, reason in reap(uri, checked=True):  # the command checked the store before it started
            print(f"bp: run {run_id} marked FAILED: {reason}", file=sys.stderr)
    except Exception as exc:  # housekeeping: the run this process starts must not depend on it
        print(f"bp: could not look for orphaned runs in {uri}: {exc}", file=sys.stderr)


def sweep_cluster(parallel: int | None, config, points: list):
    """What starts an in-process sweep's Dask cluster beside Prefect's server, when its points train several at a
    time (one at a time, they train in this process: a cluster would only cost its start)."""
    from bpcore.config.serial import to_dict
    from flows.sweep.cluster import LocalSweepCluster
    from flows.sweep.local import at_once

    workers = at_once(parallel, config.sweep.trials if config.sweep.search != "grid" else len(points), config.kind)
    if workers < 2:
        return None
    configs = [p.config for p in points] or [to_dict(config.model_copy(update={"sweep": None}))]
    data = list({json.dumps(c["data"], sort_keys=True): c for c in configs}.values())  # one per dataset

    def start(prefect_api: str | None):
        return _Beside(LocalSweepCluster(workers, prefect_api, data))

    return start


class _Beside:
    """A started cluster as ``launch`` wants it: the flow's ``scheduler`` parameter, then closed."""

    def __init__(self, cluster):
        self.cluster = cluster

    def params(self) -> dict[str, str]:
        return {"scheduler": self.cluster.address()}

    def close(self) -> None:
        self.cluster.close()
