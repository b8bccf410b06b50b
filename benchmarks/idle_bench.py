"""Idle benchmark: the CPU a sweep cluster's Dask processes take while no point trains, bp's housekeeping intervals
(``flows.sweep.cluster.IDLE_CONFIG``) against Dask's defaults (the baseline), measured in the same run.

    python benchmarks/idle_bench.py [--seconds S] [--rounds N] [--workers W]

Each measurement is a fresh process that starts a sweep's local cluster as ``bp sweep --parallel W`` does (its
scheduler and nannies in the process, W worker processes), lets it settle, then counts the CPU time the process
and its children take over S idle seconds. The baseline process starts the same cluster without IDLE_CONFIG. A
pool's scheduler, nannies and workers (``bp stack up``) run the same Dask servers with the same settings, and wait
idle far longer. Target: bp's idle cluster at most 0.3x the baseline's CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MEASURE = """
import json, sys, time
import psutil
from flows.sweep import cluster

seconds, workers, baseline = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "baseline"
if baseline:  # Dask's own intervals
    cluster.WORKER_CONFIG = {k: v for k, v in cluster.WORKER_CONFIG.items() if k not in cluster.IDLE_CONFIG}
local = cluster.LocalSweepCluster(workers, None)
local.address()
time.sleep(3)  # the workers' start-up (imports, warm-up) is over


def cpu():
    me = psutil.Process()
    return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])


before = cpu()
time.sleep(seconds)
used = cpu() - before
local.close()
print(json.dumps({"cpu": used}))
"""


def measure(kind: str, seconds: float, workers: int) -> float:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(seconds), str(workers), kind], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["cpu"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    bp, baseline = [], []
    for _ in range(args.rounds):  # interleaved: the machine's noise falls on both
        baseline.append(measure("baseline", args.seconds, args.workers))
        bp.append(measure("bp", args.seconds, args.workers))
    per_minute = 60 / args.seconds
    print(f"idle sweep cluster, {args.workers} workers, {args.seconds:g} s x {args.rounds} rounds (CPU s per minute)")
    print(f"  baseline (Dask's defaults):  {statistics.median(baseline) * per_minute:6.2f}")
    print(f"  bp (IDLE_CONFIG):            {statistics.median(bp) * per_minute:6.2f}")
    ratio = statistics.median(bp) / statistics.median(baseline)
    print(f"  ratio bp / baseline: {ratio:.2f}x (target <= 0.3x): {'met' if ratio <= 0.3 else 'NOT met'}")


if __name__ == "__main__":
    main()
