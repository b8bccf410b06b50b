"""What the forkserver a local sweep's workers fork from imports once (``cluster.FORK_PRELOAD``): the point's task
and the kinds' flows, and what logging a run takes, warmed. Each worker then starts as a copy of this process
instead of importing and warming it all again; ``worker_setup.dask_setup`` does the rest, per worker."""

from __future__ import annotations

import flows.sweep.worker_setup  # noqa: F401  (the point's task, through it the kinds' flows)
from flows.experiments import warmup

warmup.warm_logging()
