"""Sweep benchmark: ratios against baselines measured in the same run, in fresh processes, interleaved.

    python benchmarks/sweep_bench.py [--rounds N] [--parts abc]

(a) `bp sweep configs/linreg_lr_sweep.yaml` (8 learning rates, default --parallel) against the
    baseline `bp train configs/linreg.yaml` (one run). Target: the sweep costs at most 1.5x.
(b) `bp sweep configs/mnist_lr_sweep.yaml --set trainer.epochs=5` with `--parallel 2` against
    the baseline `--parallel 1`. Timed two ways: the whole process, and the sweep itself (the
    parent MLflow run's start to end, which leaves out imports and Prefect's server start).
    Target: --parallel 2 at least 1.6x faster. Two grids: the shipped one (its 2.0 diverges in
    the first epoch, so three trainings share two slots: 1.5x at best), and four rates that all
    train (0.005, 0.01, 0.02, 0.05: 2x at best).
(c) Reference for (b): the same trainings without Prefect or MLflow, one after another with 2
    BLAS threads (baseline) against two at a time on threads with 1 BLAS thread each.

Every process gets a fresh working directory (so a fresh mlflow.db); Prefect's own database is
the user's, already created (its first creation costs 16-23 s once per machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LINREG = str(REPO / "configs" / "linreg.yaml")
LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
GRIDS = {"shipped grid": (), "four that train": ("--set", "sweep.grid.trainer.learning_rate=[0.005,0.01,0.02,0.05]")}


def bp(*args: str) -> tuple[float, float | None]:
    """Run ``bp ARGS`` in a fresh directory; (process seconds, parent-run seconds or None)."""
    work = Path(tempfile.mkdtemp(prefix="bp-sweep-bench-"))
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", *args], cwd=work, env=env,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not last.startswith("run_id: "):
        raise SystemExit(f"bp {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{work / 'mlflow.db'}").get_run(last.removeprefix("run_id: "))
    return elapsed, (run.info.end_time - run.info.start_time) / 1000


def interleaved(rounds: int, cases: dict[str, tuple[str, ...]]) -> dict[str, list[tuple[float, float]]]:
    """Each case once per round, in turn, so drifts in machine load hit every case alike."""
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, args in cases.items():
            results[name].append(bp(*args))
            print(f"  round {r + 1} {name}: {results[name][-1][0]:.1f} s process, "
                  f"{results[name][-1][1]:.1f} s run", flush=True)
    return results


def median(values) -> float:
    return statistics.median(values)


def part_a(rounds: int) -> None:
    print("(a) 8-point line-fit sweep vs one bp train (baseline)")
    res = interleaved(rounds, {"train": ("train", LINREG), "sweep": ("sweep", LINREG_SWEEP)})
    train, sweep = median(t for t, _ in res["train"]), median(t for t, _ in res["sweep"])
    print(f"    bp train (baseline)  {train:6.1f} s   (median of {rounds})")
    print(f"    bp sweep, 8 points   {sweep:6.1f} s   = {sweep / train:.2f}x the baseline   target <= 1.5x: "
          f"{'met' if sweep / train <= 1.5 else 'MISSED'}")


def part_b(rounds: int) -> None:
    print("(b) 4-point MNIST sweep, 5 epochs each: --parallel 2 vs --parallel 1 (baseline)")
    for grid, extra in GRIDS.items():
        print(f"  {grid}")
        base = ("sweep", MNIST_SWEEP, "--set", "trainer.epochs=5", *extra)
        res = interleaved(rounds, {"parallel 1": (*base, "--parallel", "1"),
                                   "parallel 2": (*base, "--parallel", "2")})
        for i, what in enumerate(("whole process", "sweep (parent run)")):
            one, two = median(r[i] for r in res["parallel 1"]), median(r[i] for r in res["parallel 2"])
            print(f"    {grid}, {what:18s}: --parallel 1 (baseline) {one:5.1f} s, --parallel 2 {two:5.1f} s: "
                  f"{one / two:.2f}x faster   target >= 1.6x: {'met' if one / two >= 1.6 else 'MISSED'}")


def part_c(rounds: int) -> None:
    print("(c) the trainings alone (no Prefect, no MLflow): 2 at a time on threads vs one after another")
    from threadpoolctl import threadpool_limits

    from bpcore.configfile import load_config
    from bpcore.mnist import load_mnist
    from bpcore.sweep import expand
    from bpcore.training import fit_network

    for grid, extra in GRIDS.items():
        points = expand(load_config(MNIST_SWEEP, ["trainer.epochs=5", *extra[1::2]]))
        c = points[0].config
        splits = load_mnist(c.data, c.seed, c.trainer.dtype)

        def train(point, splits=splits) -> None:
            fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, point.validated().trainer,
                        point.validated().seed, None)

        serial, threaded = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            for p in points:
                train(p)
            serial.append(time.perf_counter() - start)
            with threadpool_limits(limits=1, user_api="blas"):
                start = time.perf_counter()
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(train, points))
                threaded.append(time.perf_counter() - start)
        one, two = median(serial), median(threaded)
        print(f"    {grid}: one after another (baseline) {one:.2f} s, two at a time {two:.2f} s: "
              f"{one / two:.2f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (medians are printed)")
    ap.add_argument("--parts", default="abc")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores; Python {sys.version.split()[0]}")
    for part in args.parts:
        {"a": part_a, "b": part_b, "c": part_c}[part](args.rounds)


if __name__ == "__main__":
    main()
