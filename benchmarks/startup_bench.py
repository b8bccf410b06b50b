"""What each start-up speed-up of ``flows.runtime.internals`` buys, measured in fresh processes in one run.

    python benchmarks/startup_bench.py [--rounds N]

Each trick is timed against its own baseline, the same process without it, rounds interleaved
(median of N, default 3):
- no_notebook_probe: the ``import IPython`` MLflow's REST client makes on its first request,
  after MLflow is imported (baseline: the import; with the trick it fails at once);
- fewer_collections: importing MLflow, Prefect and pandas with the collector's default thresholds
  (baseline) and with bp's;
- leave: from the end of ``main`` to the process's exit, after those imports: the interpreter's
  own exit (baseline) against ``internals.leave``;
- warm_package_map: MLflow's scan of the installed packages, which the first logged model needs
  (bp runs it in a thread while Prefect's server starts; baseline: zero, it is what moves off
  the critical path).
A trick that buys less than 0.1 s does not belong in bp.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IPYTHON = """
import time, mlflow
{trick}
t = time.perf_counter()
try:
    import IPython
except ImportError:
    pass
print(time.perf_counter() - t)
"""
IMPORTS = """
import time
t = time.perf_counter()
{trick}
import mlflow, prefect, pandas, mlflow.pyfunc
print(time.perf_counter() - t)
"""
EXIT = """
import time, sys
import mlflow, prefect, pandas, mlflow.pyfunc, prefect.flows
from flows.runtime import internals
print(time.time(), flush=True)
{trick}
"""
PACKAGE_MAP = """
import time
from flows.runtime import internals
import mlflow.utils.requirements_utils
t = time.perf_counter()
internals.warm_package_map()
print(time.perf_counter() - t)
"""


def run(code: str) -> float:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def exit_seconds(trick: str) -> float:
    """Seconds from the script's last line to the process's end (the parent's clock: the child prints it)."""
    proc = subprocess.Popen([sys.executable, "-c", EXIT.format(trick=trick)], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    printed = float(proc.stdout.readline())
    proc.wait()
    return time.time() - printed


CASES = {
    "no_notebook_probe": (lambda: run(IPYTHON.format(trick="")),
                          lambda: run(IPYTHON.format(trick="from flows.runtime import internals; "
                                                           "internals.no_notebook_probe()"))),
    "fewer_collections": (lambda: run(IMPORTS.format(trick="")),
                          lambda: run(IMPORTS.format(trick="import gc; gc.set_threshold(10_000, 50, 100)"))),
    "leave": (lambda: exit_seconds(""), lambda: exit_seconds("internals.leave(0, grace=10)")),
    "warm_package_map": (lambda: run(PACKAGE_MAP), lambda: 0.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"start-up speed-ups, median of {args.rounds} interleaved rounds (seconds; baseline = without the trick)")
    for name, (baseline, trick) in CASES.items():
        base, fast = [], []
        for _ in range(args.rounds):
            base.append(baseline())
            fast.append(trick())
        b, f = statistics.median(base), statistics.median(fast)
        verdict = "keep" if b - f >= 0.1 else "REMOVE (buys < 0.1 s)"
        print(f"  {name:<18} baseline {b:6.3f}  with it {f:6.3f}  buys {b - f:6.3f} s  "
              f"({f / b if b else 0:.2f}x)  {verdict}")


if __name__ == "__main__":
    main()
