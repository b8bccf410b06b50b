"""The BLAS side of the network benchmark: which library and how many threads, and the float32 matrix-multiply
peak that bp's FLOP rate is held against (see network_bench.py)."""

from __future__ import annotations

import os

import numpy as np
from timing import best_of

MATMUL_SIZES = (512, 1024, 2048)
SIZES = (784, 128, 10)  # the network's layers: shaped_gflops times products of their shapes


def blas_info() -> dict:
    """numpy's BLAS as threadpoolctl sees it (the first BLAS loaded: numpy's own)."""
    import threadpoolctl

    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return blas[0] if blas else {"internal_api": "unknown", "version": "?", "num_threads": os.cpu_count()}


def matmul_gflops(size: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    out = np.empty((size, size), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm-up
    return 2 * size**3 / best_of(lambda: np.matmul(a, b, out=out), repeats) / 1e9


def part_peak(repeats: int, blas: dict) -> float:
    rates = {n: matmul_gflops(n, repeats) for n in MATMUL_SIZES}
    peak = max(rates.values())
    print(f"(1) float32 np.matmul peak, best of {repeats}; BLAS {blas['internal_api']} {blas.get('version', '?')}, "
          f"{blas['num_threads']} threads")
    print("    " + "   ".join(f"{n}: {g:6.1f} GFLOP/s" for n, g in rates.items()))
    print(f"    peak {peak:.1f} GFLOP/s (the baseline for (4), measured again beside each of its epochs)")
    shaped = shaped_gflops(repeats)
    print("    at this network's own batch-128 shapes (what its big products can reach at best): "
          + ", ".join(f"{name} {g:.1f} GFLOP/s ({g / peak:.0%})" for name, g in shaped.items()))
    return peak


def shaped_gflops(repeats: int, n: int = 128) -> dict[str, float]:
    """The two large products of a batch-n step, alone: forward X @ W1 and the gradient X.T @ delta1."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    W = rng.standard_normal((SIZES[0], SIZES[1]), dtype=np.float32)
    D = rng.standard_normal((n, SIZES[1]), dtype=np.float32)
    flops, calls = 2 * n * SIZES[0] * SIZES[1], 50  # back to back, as in training: BLAS threads stay awake

    def rate(product) -> float:
        return calls * flops / best_of(lambda: [product() for _ in range(calls)], repeats) / 1e9

    return {f"X@W1 ({n}x{SIZES[0]}x{SIZES[1]})": rate(lambda: X @ W),
            f"X.T@delta1 ({SIZES[0]}x{n}x{SIZES[1]})": rate(lambda: X.T @ D)}


def set_threads(n: int | None, blas: dict) -> int:
    """Limit BLAS to ``n`` threads (if given) and return the thread count every library is to use."""
    if n is None:
        return int(blas["num_threads"])
    import threadpoolctl

    threadpoolctl.threadpool_limits(limits=n, user_api="blas")
    blas["num_threads"] = n
    return n


def versions(threads: int) -> str:
    found = []
    for mod in ("torch", "sklearn"):
        try:
            found.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            found.append(f"{mod} not installed")
    return f"numpy {np.__version__}, {', '.join(found)}; {threads} threads everywhere, {os.cpu_count()} cores"
