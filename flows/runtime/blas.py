"""How many BLAS threads each of several training processes or threads on this machine gets: the cores shared out.

OpenBLAS threads spin while they wait: trainers whose threads outnumber the cores run slower together
than fewer would (docs/performance.md).
"""

from __future__ import annotations

import os

VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")  # what BLAS libraries read at start


def share(trainers: int) -> int:
    """BLAS threads for each of ``trainers`` trainers: the cores divided between them, at least one each."""
    return max(1, (os.cpu_count() or 1) // max(1, trainers))


def environment(trainers: int) -> dict[str, str]:
    """The variables that give a new process its share (those already set in this environment are kept)."""
    return {name: os.environ.get(name, str(share(trainers))) for name in VARIABLES}
