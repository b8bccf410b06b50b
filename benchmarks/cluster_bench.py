"""Cluster benchmark: what a sweep's local Dask cluster costs in CPU to start and to keep while no point trains, bp's
settings against Dask's defaults (the baselines), measured in the same run.

    python benchmarks/cluster_bench.py [--seconds S] [--rounds N] [--workers W]

Each measurement is a fresh process that starts a sweep's local cluster as ``bp sweep --parallel W`` does (its
scheduler and nannies in the process, W worker processes), and counts the CPU time the process and its children
take: until the workers are up (start), then over S idle seconds once they have settled (idle).

- start: bp's workers fork from one process that imported and warmed what a point needs
  (``cluster.LOCAL_CONFIG``, ``internals.forkserver_workers``); the baseline spawns each worker afresh, Dask's
  default, each importing and warming it all itself. Target: at most 0.7x the baseline's CPU with two workers.
- idle: bp's housekeeping intervals (``cluster.IDLE_CONFIG``) against Dask's defaults. A pool's scheduler, nannies
  and workers (``bp stack up``) run the same Dask servers with the same settings, and wait idle far longer.
  Target: at most 0.3x the baseline's CPU.
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


def cpu():
    me = psutil.Process()
    return sum(sum(p.cpu_times()[:2]) for p in [me, *me.children(recursive=True)])


if baseline:  # Dask's own intervals, and workers spawned afresh
    cluster.WORKER_CONFIG = {k: v for k, v in cluster.WORKER_CONFIG.items() if k not in cluster.IDLE_CONFIG}
    cluster.LOCAL_CONFIG = {"distributed.worker.multiprocessing-method": "spawn"}
local = cluster.LocalSweepCluster(workers, None)
local.address()
start = cpu()
time.sleep(3)  # anything the workers still do after joining is over
before = cpu()
time.sleep(seconds)
idle = cpu() - before
local.close()
print(json.dumps({"start": start, "idle": idle}))
"""


def measure(kind: str, seconds: float, workers: int) -> dict:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(seconds), str(workers), kind], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(name: str, what: str, bp: list[float], baseline: list[float], scale: float, target: float) -> None:
    print(f"{name}")
    print(f"  baseline ({what}):  {statistics.median(baseline) * scale:6.2f}")
    print(f"  bp:  {statistics.median(bp) * scale:6.2f}")
    ratio = statistics.median(bp) / statistics.median(baseline)
    print(f"  ratio bp / baseline: {ratio:.2f}x (target <= {target:g}x): {'met' if ratio <= target else 'NOT met'}")


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
    print(f"sweep cluster of {args.workers} workers, {args.rounds} rounds")
    report("start, CPU s (process and children, until the workers are up)", "spawned workers",
           [m["start"] for m in bp], [m["start"] for m in baseline], 1, 0.7)
    report(f"idle, CPU s per minute (over {args.seconds:g} s)", "Dask's intervals", [m["idle"] for m in bp],
           [m["idle"] for m in baseline], 60 / args.seconds, 0.3)


if __name__ == "__main__":
    main()
