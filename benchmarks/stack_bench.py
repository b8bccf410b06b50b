"""Servers benchmark: ratios against baselines measured in the same run.

    python benchmarks/stack_bench.py [--rounds N] [--parts abc] [--children 8] [--epochs 20]

(a) Repeated `bp train configs/linreg.yaml` against a running native stack (`bp stack up`: Prefect
    and MLflow servers) against the baseline, the embedded default (Prefect's temporary server,
    MLflow in sqlite:///mlflow.db), in fresh processes, interleaved. Target: at most 0.4x.
(b) An N-child MNIST sweep (`configs/mnist_lr_sweep.yaml`, N learning rates, E epochs each) on a
    pool of 2 workers against the baseline, a pool of 1 worker, interleaved. Target: at least 1.7x
    faster. Each worker takes one child at a time (`--limit 1`).
(c) Dispatch overhead per child on the worker path: from a child's flow run being created to it
    running (Prefect's state history), median; beside it the same sweep in-process (no pool).

The stack runs from a fresh directory with SQLite files (its default); workers are started here,
two pools: `bench-1` (one worker) and `bench-2` (two workers).
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

LINREG = str(REPO / "configs" / "linreg.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
QUICK = {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    """``bp stack up`` in a fresh directory (no workers: the pools' workers are started by ``workers``)."""

    def __init__(self, root: Path):
        self.dir, self.env = root / "stack", {**os.environ, **QUICK}
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
        self.workers: list[subprocess.Popen] = []

    def worker(self, pool: str, name: str, of: int) -> None:
        """A worker of ``pool``, one of ``of`` sharing the cores, with its BLAS threads as bp stack up sets them."""
        from flows.runtime import blas

        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
        self.workers.append(subprocess.Popen(
            ["prefect", "worker", "start", "--pool", pool, "--type", "process", "--name", name, "--limit", "1"],
            env={**self.client_env, **blas.environment(of), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"},
            cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True))

    def wait_for_pools(self, *names: str, timeout: float = 120) -> None:
        """Until the workers have made their pools on the server."""
        from prefect.settings import temporary_settings

        from flows.runtime import waiting
        from flows.server import pools

        url, auth = self.client_env["PREFECT_API_URL"], self.client_env["PREFECT_API_AUTH_STRING"]
        with temporary_settings(updates={"api.url": url, "api.auth_string": auth}):
            made = waiting.poll(lambda: set(pools.names(url)), lambda found: set(names) <= found, timeout, every=1)
        if not set(names) <= made:
            raise SystemExit(f"the workers did not make pools {names} within {timeout:g} s")

    def down(self) -> None:
        for proc in self.workers:
            proc.terminate()
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
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


def sweep_args(children: int, epochs: int, pool: str | None, experiment: str) -> list[str]:
    rates = [round(0.002 * 1.6 ** i, 6) for i in range(children)]  # all train: 0.002 .. 0.054 for 8
    args = ["sweep", MNIST_SWEEP, "--set", f"sweep.grid.trainer.learning_rate={rates}", "--set",
            f"trainer.epochs={epochs}", "--set", "sweep.model_name=null", "--set", f"experiment={experiment}"]
    return args + (["--pool", pool] if pool else [])


def part_b(stack: Stack, root: Path, rounds: int, children: int, epochs: int) -> list[str]:
    """Returns the parent run ids of the 2-worker sweeps (for part c)."""
    times: dict[str, list[float]] = {"bench-1": [], "bench-2": []}
    parents = []
    for _ in range(rounds):
        for pool in times:
            elapsed, parent = run(sweep_args(children, epochs, pool, f"bench-{pool}"), stack.client_env, root)
            times[pool].append(elapsed)
            if pool == "bench-2":
                parents.append(parent)
    one, two = statistics.median(times["bench-1"]), statistics.median(times["bench-2"])
    print(f"(b) {children}-child MNIST sweep, {epochs} epochs each, whole bp sweep process, median of {rounds}; "
          "baseline = 1 worker")
    print(f"    1 worker    {one:7.1f} s   1.00x   ({_list(times['bench-1'])})")
    print(f"    2 workers   {two:7.1f} s   {one / two:.2f}x faster   ({_list(times['bench-2'])})"
          f"   target >= 1.7x: {'met' if one / two >= 1.7 else 'MISSED'}")
    return parents


def part_c(stack: Stack, root: Path, parents: list[str], children: int, epochs: int) -> None:
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings

    mc = MlflowClient(stack.client_env["MLFLOW_TRACKING_URI"])
    waits = []
    settings = {"api.url": stack.client_env["PREFECT_API_URL"],
                "api.auth_string": stack.client_env["PREFECT_API_AUTH_STRING"]}
    with temporary_settings(updates=settings), \
            get_client(sync_client=True) as prefect:
        for parent in parents:
            for child in mc.search_runs([mc.get_run(parent).info.experiment_id],
                                        f"tags.mlflow.parentRunId = '{parent}'"):
                history = prefect.read_flow_run_states(child.data.tags["bp.flow_run"])
                created = min(s.timestamp for s in history)
                running = min(s.timestamp for s in history if s.type.value == "RUNNING")
                waits.append((running - created).total_seconds())
    in_process, _ = run(sweep_args(children, epochs, None, "bench-in-process"), stack.client_env, root)
    print(f"(c) dispatch per child on the worker path (flow run created -> running), {len(waits)} children: "
          f"median {statistics.median(waits):.1f} s (min {min(waits):.1f}, max {max(waits):.1f}); "
          f"the children wait their turn on busy workers too")
    print(f"    the same sweep in-process (no pool, threads): {in_process:.1f} s")


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--children", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bp-stack-bench-"))
    stack = Stack(root)
    try:
        print(f"cores: {os.cpu_count()}; stack in {stack.dir}")
        if "a" in args.parts:
            part_a(stack, root, args.rounds)
        parents = []
        if "b" in args.parts or "c" in args.parts:
            stack.worker("bench-1", "solo", of=1)
            stack.worker("bench-2", "pair-1", of=2)
            stack.worker("bench-2", "pair-2", of=2)
            stack.wait_for_pools("bench-1", "bench-2")  # a sweep refuses a pool that does not exist
            parents = part_b(stack, root, args.rounds if "b" in args.parts else 1, args.children, args.epochs)
        if "c" in args.parts:
            part_c(stack, root, parents, args.children, args.epochs)
    finally:
        stack.down()


if __name__ == "__main__":
    main()
