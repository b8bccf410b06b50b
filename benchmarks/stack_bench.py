"""Servers benchmark: a ratio against a baseline measured in the same run.

    python benchmarks/stack_bench.py [--rounds N]

(a) Repeated `bp train configs/linreg.yaml` against a running native stack (`bp stack up`: Prefect
    and MLflow servers) against the baseline, the embedded default (Prefect's temporary server,
    MLflow in sqlite:///mlflow.db), in fresh processes, interleaved. Target: at most 0.4x.

Sweeps on a pool (children on sweep workers: 2 workers against 1, dispatch, cost per point) are
measured by `benchmarks/pool_bench.py`. The stack runs from a fresh directory with SQLite files (its
default) and no workers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from timing import free_port  # noqa: E402  (benchmarks/, this script's directory)

LINREG = str(REPO / "configs" / "linreg.yaml")


def run(argv: list[str], env: dict, cwd: Path) -> tuple[float, str]:
    """Run ``bp ARGV``; (seconds, the MLflow run id of its last line)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *argv], env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not last.startswith("run_id: "):
        raise SystemExit(f"bp {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, last.removeprefix("run_id: ")


class Stack:
    """``bp stack up`` in a fresh directory, no workers."""

    def __init__(self, root: Path):
        self.dir, self.env = root / "stack", dict(os.environ)
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env.pop("PREFECT_API_URL", None)
        up = subprocess.run([sys.executable, "-m", "flows.cli", "stack", "up", "--dir", str(self.dir), "--workers", "0",
                             "--prefect-port", str(free_port()), "--mlflow-port", str(free_port())],
                            env=self.env, cwd=root, capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(f"bp stack up failed:\n{up.stderr[-3000:]}")
        lines = [line.removeprefix("export ") for line in up.stdout.splitlines() if line.startswith("export ")]
        exports = dict(shlex.split(line)[0].split("=", 1) for line in lines)
        self.client_env = {**self.env, **exports}  # what a user's shell has after the export lines

    def down(self) -> None:
        subprocess.run([sys.executable, "-m", "flows.cli", "stack", "down", "--dir", str(self.dir)], env=self.env,
                       capture_output=True, text=True)


def part_a(stack: Stack, root: Path, rounds: int) -> None:
    embedded_env = {k: v for k, v in stack.env.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")}
    work = root / "embedded"
    work.mkdir()
    run(["train", LINREG], embedded_env, work)  # warm-up: the stores exist before the timings
    run(["train", LINREG], stack.client_env, root)
    embedded, served = [], []
    for _ in range(rounds):
        embedded.append(run(["train", LINREG], embedded_env, work)[0])
        served.append(run(["train", LINREG], stack.client_env, root)[0])
    e, s = statistics.median(embedded), statistics.median(served)
    print(f"(a) bp train configs/linreg.yaml, median of {rounds} interleaved; baseline = embedded default")
    print(f"    embedded (temporary Prefect server, sqlite)  {e:6.2f} s   1.00x   ({_list(embedded)})")
    print(f"    against the native stack                     {s:6.2f} s   {s / e:.2f}x   ({_list(served)})"
          f"   target <= 0.4x: {'met' if s / e <= 0.4 else 'MISSED'}")


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bp-stack-bench-"))
    stack = Stack(root)
    try:
        print(f"cores: {os.cpu_count()}; stack in {stack.dir}")
        part_a(stack, root, args.rounds)
    finally:
        stack.down()


if __name__ == "__main__":
    main()
