"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import gc
import time
import tracemalloc


def best_of(fn, repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (the least disturbed by a noisy machine)."""
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(fn) -> int:
    """Peak traced allocation of one call (NumPy reports its buffers to tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
