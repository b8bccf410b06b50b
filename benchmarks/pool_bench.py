"""Sweeps on a pool: ratios against baselines measured in the same run.

    python benchmarks/pool_bench.py [--rounds 3] [--parts adcm] [--points 32] [--growth 8,32,128]
                                    [--children 8] [--epochs 20] [--mnist-rounds 1]

Everything runs against one `bp stack up --workers 2` (SQLite, its default): two Prefect process
workers on pool `bp` (a pool sweep's flow run runs on one) and a Dask scheduler with two sweep workers
(`bp sweep-worker`, the points); (m)'s baseline against a second stack, `--workers 1`.

(a) A `--points`-point line-fit sweep (`configs/linreg_lr_sweep.yaml`, learning rates 1e-5 ..
    3.2e-4, all finish) on the pool against the baseline, the same sweep in-process (a line fit's
    points one at a time in the bp process), interleaved, whole `bp sweep` processes. Target: at most 1.2x.
(d) Dispatch with a free worker: from the sweep's flow submitting its points (its log line "N children,
    ...", just before) to a point's MLflow run opening (its flow code has started and loaded the data), for
    the first two points of each pool sweep of (a) (both workers idle then). Target: median at most 0.1 s.
(c) Cost growth: sweeps of 1 and of each `--growth` count of points on the pool, and the same in-process
    (the baseline: what the stores' own growth costs); seconds per point
    beyond the fixed cost (the 1-point sweep): (T(n) - T(1)) / (n - 1). It must not grow with n.
(m) An N-child MNIST sweep (E epochs) on 2 sweep workers against the baseline, 1 sweep worker (a
    stack of its own, all the cores its own), interleaved. Target: at least 95% of the ceiling. Beside it,
    in the same rounds, the machine's own ceiling for that ratio: the same N trainings
    (`fit_network`, no Prefect, no MLflow, data loaded before the clock starts) in one process with
    every core's BLAS thread against two processes of one BLAS thread each, half the points each.
    What the pool reaches is also printed as a fraction of that ceiling.
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

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")


class Stack:
    """``bp stack up --workers N`` in a fresh directory; ``down`` stops it."""

    def __init__(self, root: Path, workers: int = 2):
        self.root, self.dir = root, root / f"stack-{workers}"
        self.env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL")}
        up = subprocess.run([sys.executable, "-m", "flows.cli", "stack", "up", "--dir", str(self.dir), "--workers",
                             str(workers), "--prefect-port", str(free_port()), "--mlflow-port", str(free_port()),
                             "--scheduler-port", str(free_port())], env=self.env, cwd=root, capture_output=True,
                            text=True)
        if up.returncode != 0:
            raise SystemExit(f"bp stack up failed:\n{up.stderr[-3000:]}")
        lines = [line.removeprefix("export ") for line in up.stdout.splitlines() if line.startswith("export ")]
        self.client_env = {**self.env, **dict(shlex.split(line)[0].split("=", 1) for line in lines)}

    def talk_to(self) -> None:
        """Point this bench process's Prefect and MLflow clients at the stack (Prefect reads them at import)."""
        os.environ.update({k: self.client_env[k] for k in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING",
                                                           "MLFLOW_TRACKING_URI")})

    def down(self) -> None:
        subprocess.run([sys.executable, "-m", "flows.cli", "stack", "down", "--dir", str(self.dir), "--grace", "5"],
                       env=self.env, capture_output=True, text=True)


def bp_sweep(stack: Stack, args: list[str]) -> tuple[float, str]:
    """One whole ``bp sweep ARGS`` process: (seconds, the parent's MLflow run id)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flows.cli", "sweep", *args], env=stack.client_env, cwd=stack.root,
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0 or not last.startswith("run_id: "):
        raise SystemExit(f"bp sweep {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed, last.removeprefix("run_id: ")


def line_sweep(points: int, experiment: str, pool: str | None) -> list[str]:
    rates = "[" + ", ".join(f"{1.0e-5 * (1 + i * 31 / max(1, points - 1)):.6g}" for i in range(points)) + "]"
    args = [LINREG_SWEEP, "--set", f"sweep.grid.trainer.learning_rate={rates}", "--set", "sweep.model_name=null",
            "--set", f"experiment={experiment}"]
    return args + (["--pool", pool] if pool else [])


def dispatch(parent: str, first: int = 2) -> list[float]:
    """Seconds from the sweep's flow submitting its points to each of the ``first`` points' MLflow runs opening."""
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    mc = MlflowClient()
    run = mc.get_run(parent)
    children = mc.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'", max_results=1000)
    with get_client(sync_client=True) as prefect:
        logs = prefect.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(
            any_=[run.data.tags["bp.flow_run"]])), limit=200)
    submitted = next(log.timestamp.timestamp() for log in logs if " children, " in log.message)
    opened = sorted(c.info.start_time / 1000 for c in children)[:first]
    return [t - submitted for t in opened]


def part_a(stack: Stack, rounds: int, points: int) -> list[str]:
    times: dict[str, list[float]] = {"in-process": [], "pool": []}
    parents = []
    bp_sweep(stack, line_sweep(2, "bench-warm", "bp"))  # warm-up: stores, experiments, workers' first imports
    for i in range(rounds):
        times["in-process"].append(bp_sweep(stack, line_sweep(points, f"bench-in-{i}", None))[0])
        elapsed, parent = bp_sweep(stack, line_sweep(points, f"bench-pool-{i}", "bp"))
        times["pool"].append(elapsed)
        parents.append(parent)
    here, pool = statistics.median(times["in-process"]), statistics.median(times["pool"])
    print(f"(a) {points}-point line-fit sweep, whole bp sweep process, median of {rounds} interleaved; "
          "baseline = in-process")
    print(f"    in-process              {here:7.1f} s   1.00x   ({_list(times['in-process'])})")
    print(f"    on 2 sweep workers      {pool:7.1f} s   {pool / here:.2f}x   ({_list(times['pool'])})"
          f"   target <= 1.2x: {'met' if pool / here <= 1.2 else 'MISSED'}")
    return parents


def part_d(parents: list[str]) -> None:
    waits = [w for parent in parents for w in dispatch(parent)]
    median = statistics.median(waits)
    print(f"(d) dispatch with a free worker (points submitted -> the point's MLflow run open), {len(waits)} points: "
          f"median {median:.2f} s (min {min(waits):.2f}, max {max(waits):.2f})"
          f"   target <= 0.1 s: {'met' if median <= 0.1 else 'MISSED'}")


def part_c(stack: Stack, counts: list[int]) -> None:
    per_point: dict[str | None, list[float]] = {"bp": [], None: []}
    fixed: dict[str | None, float] = {}
    for pool in per_point:  # the same counts in-process: what the stores' growth costs without the pool
        fixed[pool] = statistics.median([bp_sweep(stack, line_sweep(1, f"bench-one-{pool}-{i}", pool))[0]
                                         for i in range(2)])
        for n in counts:
            elapsed, _ = bp_sweep(stack, line_sweep(n, f"bench-growth-{pool}-{n}", pool))
            per_point[pool].append((elapsed - fixed[pool]) / (n - 1))
    print(f"(c) cost growth: seconds a point beyond the fixed cost (a 1-point sweep: {fixed['bp']:.1f} s on the pool, "
          f"{fixed[None]:.1f} s in-process); baseline = the same sweep in-process")
    for n, pool, here in zip(counts, per_point["bp"], per_point[None]):
        print(f"    {n:4d} points   pool {pool:.3f} s   in-process {here:.3f} s   pool / in-process {pool / here:.2f}x")


def train_alone(rates: list[float], epochs: int) -> None:
    """A process of the ceiling (``--train``): load the data, say ready, train ``rates`` on "go" (timed by
    ``ceiling``, from the common start to the last process's end)."""
    from bpcore.data.mnist.load import load_mnist
    from bpcore.kinds import load_config
    from bpcore.train.sgd import fit_network

    configs = [load_config(MNIST_SWEEP, [f"trainer.learning_rate={r}", f"trainer.epochs={epochs}", "sweep=null"])
               for r in rates]
    splits = load_mnist(configs[0].data, configs[0].seed, configs[0].trainer.dtype) if configs else None
    print("ready", flush=True)
    sys.stdin.readline()
    for c in configs:
        fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, c.trainer, c.seed, None)


def ceiling(rates: list[float], epochs: int, processes: int) -> float:
    """Seconds for ``rates`` trained by ``processes`` processes at once, the cores' BLAS threads shared out
    between them as between sweep workers, from a common start (imports and data already loaded)."""
    from flows.runtime import blas

    procs = [subprocess.Popen([sys.executable, __file__, "--train", ",".join(map(str, rates[k::processes])),
                               "--epochs", str(epochs)], env={**os.environ, **blas.environment(processes)},
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for k in range(processes)]
    for proc in procs:
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("a ceiling process did not start")
    start = time.perf_counter()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.wait()
    return time.perf_counter() - start


def part_m(stacks: dict[str, Stack], rounds: int, children: int, epochs: int) -> None:
    rates = [round(0.002 * 1.6 ** i, 6) for i in range(children)]  # all train: 0.002 .. 0.054 for 8
    from mlflow.tracking import MlflowClient

    times: dict[str, list[float]] = {"bench-1": [], "bp": []}
    parents: dict[str, list[float]] = {"bench-1": [], "bp": []}  # the parent runs' own durations
    alone: dict[int, list[float]] = {1: [], 2: []}  # the ceiling: the trainings alone, 1 process and 2
    for i in range(rounds):
        for processes in alone:
            alone[processes].append(ceiling(rates, epochs, processes))
        for pool in times:
            args = [MNIST_SWEEP, "--set", f"sweep.grid.trainer.learning_rate={rates}", "--set",
                    f"trainer.epochs={epochs}", "--set", "sweep.model_name=null", "--set",
                    f"experiment=bench-mnist-{pool}-{i}", "--pool", "bp"]
            elapsed, parent = bp_sweep(stacks[pool], args)
            times[pool].append(elapsed)
            info = MlflowClient(stacks[pool].client_env["MLFLOW_TRACKING_URI"]).get_run(parent).info
            parents[pool].append((info.end_time - info.start_time) / 1000)
    one, two = statistics.median(times["bench-1"]), statistics.median(times["bp"])
    in_one, in_two = statistics.median(parents["bench-1"]), statistics.median(parents["bp"])
    print(f"(m) {children}-child MNIST sweep, {epochs} epochs each, whole bp sweep process, median of {rounds}; "
          "baseline = 1 sweep worker")
    print(f"    1 sweep worker    {one:7.1f} s   1.00x   ({_list(times['bench-1'])})")
    print(f"    2 sweep workers   {two:7.1f} s   {one / two:.2f}x faster   ({_list(times['bp'])})")
    print(f"    of which the parent MLflow run (the children's training, the comparison): {in_one:.1f} s and "
          f"{in_two:.1f} s, {in_one / in_two:.2f}x; the rest, {one - in_one:.1f} s and {two - in_two:.1f} s, is the "
          "bp sweep process's own start and end")
    solo, pair = statistics.median(alone[1]), statistics.median(alone[2])
    print(f"    ceiling, the trainings alone (no Prefect, no MLflow): 1 process {solo:.1f} s "
          f"({_list(alone[1])}), 2 processes {pair:.1f} s ({_list(alone[2])}): {solo / pair:.2f}x; "
          f"the pool reaches {one / two / (solo / pair):.0%} of it   target >= 95%: "
          f"{'met' if one / two >= 0.95 * solo / pair else 'MISSED'}")


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", default="adcm")
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--growth", default="8,32,128")
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--mnist-rounds", type=int, default=1, help="rounds of (m), each two sweeps of minutes")
    ap.add_argument("--train", help=argparse.SUPPRESS)  # a process of (m)'s ceiling: these learning rates
    args = ap.parse_args()
    if args.train is not None:
        return train_alone([float(r) for r in args.train.split(",") if r], args.epochs)
    root = Path(tempfile.mkdtemp(prefix="bp-pool-bench-"))
    stack = Stack(root)
    stack.talk_to()
    alone = None
    try:
        print(f"cores: {os.cpu_count()}; bp stack up --workers 2 in {stack.dir}")
        parents = part_a(stack, args.rounds, args.points) if "a" in args.parts or "d" in args.parts else []
        if "d" in args.parts:
            part_d(parents)
        if "c" in args.parts:
            part_c(stack, [int(n) for n in args.growth.split(",")])
        if "m" in args.parts:
            alone = Stack(root, workers=1)
            part_m({"bp": stack, "bench-1": alone}, args.mnist_rounds, args.children, args.epochs)
    finally:
        stack.down()
        if alone is not None:
            alone.down()


if __name__ == "__main__":
    main()
