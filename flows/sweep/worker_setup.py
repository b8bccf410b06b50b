"""What each worker process of a sweep's Dask cluster does as it starts (Dask calls ``dask_setup`` of a preload
module): import the point's task and the kinds' flows, warm up what logging a run takes, and load the
sweep's data into its cache. All of it runs while the sweep's parent is still starting (Prefect's server,
its own imports), so a worker's first point costs what its later ones do."""

from __future__ import annotations

import json
import os

import flows.sweep.point  # noqa: F401  (the task every point runs, and through it the kinds' flows)
from flows.sweep.cluster import WARM_DATA


def dask_setup(worker) -> None:
    from flows.experiments import warmup
    from flows.runtime import internals, terminal

    internals.refresh_prefect_settings()  # forked from a process that imported Prefect: the worker's own API URL
    terminal.quiet()  # a local sweep's workers print to bp's terminal: its lines only, unless BP_VERBOSE=1
    warmup.warm_logging()
    _load_data(os.environ.get(WARM_DATA))


def _load_data(configs: str | None) -> None:
    """Each config's data into this process's cache (what the points will check against their digests)."""
    from bpcore.kinds import load, validate

    for raw in json.loads(configs or "[]"):
        try:
            load(validate(raw))
        except Exception:  # a point that cannot load its data says so itself, with its own error
            pass
