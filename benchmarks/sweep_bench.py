"""Sweep benchmark: ratios against baselines measured in the same run, in fresh processes, interleaved.

    python benchmarks/sweep_bench.py [--rounds N] [--parts abc]

(a) `bp sweep configs/linreg_lr_sweep.yaml` (8 learning rates, default --parallel) against the
    baseline `bp train configs/linreg.yaml` (one run). Target: the sweep costs at most 1.5x.
(b) `bp sweep configs/mnist_lr_sweep.yaml --set trainer.epochs=5` with `--parallel 2` (two worker
    processes of the sweep's Dask cluster) against the baseline `--parallel 1` (in the bp process).
    Timed two ways: the whole process, and the sweep itself (the parent MLflow run's start to end,
    which leaves out imports and Prefect's server start). Target: --parallel 2 at least 1.5x faster
    on four rates that all train (0.005, 0.01, 0.02, 0.05: 2x at best); the shipped grid (its 2.0
    diverges in the first epoch, so three trainings share two slots) is shown too.
(c) The ceiling for (b): the same trainings without Prefect or MLflow, one after another in one
    process with the machine's BLAS threads (baseline), against two processes at once with 1 BLAS
    thread each (two cores give less than 2x: memory bandwidth and the cores' shared caches).

Every process gets a fresh working directory (so a fresh mlflow.db); Prefect's own database is
the user's, already created (its first creation, once per machine, is no sweep's cost).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
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
            target = f"   target >= 1.5x: {'met' if one / two >= 1.5 else 'MISSED'}" if extra else ""
            print(f"    {grid}, {what:18s}: --parallel 1 (baseline) {one:5.1f} s, --parallel 2 {two:5.1f} s: "
                  f"{one / two:.2f}x faster{target}")


def part_c(rounds: int) -> None:
    print("(c) the trainings alone (no Prefect, no MLflow): 2 processes at once vs one after another (baseline)")
    for grid, extra in GRIDS.items():
        serial, parallel = [], []
        for _ in range(rounds):
            serial.append(_trainings(extra, processes=1))
            parallel.append(_trainings(extra, processes=2))
        one, two = median(serial), median(parallel)
        print(f"    {grid}: one after another (baseline) {one:.2f} s, two processes at a time {two:.2f} s: "
              f"{one / two:.2f}x faster (the ceiling)")


TRAIN_ALONE = """
import sys, time
from bpcore.kinds import load_config
from bpcore.data.mnist.load import load_mnist
from bpcore.search.grid import expand
from bpcore.train.sgd import fit_network

points = expand(load_config(sys.argv[1], sys.argv[4:]))[int(sys.argv[2])::int(sys.argv[3])]
config = points[0].validated()
splits = load_mnist(config.data, config.seed, config.trainer.dtype)
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
for point in points:
    c = point.validated()
    fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, c.trainer, c.seed, None)
print(time.perf_counter() - start, flush=True)
"""


def _trainings(extra: tuple[str, ...], processes: int) -> float:
    """Seconds to train the grid's points in ``processes`` processes at once (each its share of them, its share of
    the BLAS threads), timed from a common start once every process has loaded its data."""
    from flows.runtime import blas

    env = {**os.environ, **{name: str(blas.share(processes)) for name in blas.VARIABLES}}
    overrides = ["trainer.epochs=5", *extra[1::2]]
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN_ALONE, MNIST_SWEEP, str(i), str(processes), *overrides],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
             for i in range(processes)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.stdout.readline()
        proc.wait()
    return time.perf_counter() - start


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
