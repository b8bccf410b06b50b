"""Dispatch benchmark: how long a sweep point waits from its submission to its body starting, on one
`bp stack up` (SQLite), for the two ways Prefect runs work on other processes; ratios in one run.

    python benchmarks/dispatch_bench.py [--runs 8] [--points 32] [--work 0.5]

(a) Baseline: a flow run of a deployment on a process worker, which is how a sweep child on a pool
    runs today. The time runs from the flow run's creation to its body, with the worker free. The
    worker starts a Python process per flow run, and that process imports MLflow, pandas and Prefect.
(b) A background task (`Task.delay()`) on a warm task worker (`prefect.task_worker.serve`: one
    process that has already imported everything). The time runs from `delay()` to the body
    starting, with the worker free.
(d) As (b), for a task with no parameters whose key is in its tags: nothing goes to Prefect's
    parameter storage, which is a local folder unless a shared storage block is set.
(e) `--fits` real line fits (the linreg flow's body, tracked on the stack's MLflow): on 2 threads in
    this warm process (baseline, what an in-process sweep does) against the 2 task workers.
(c) `--points` background tasks of `--work` seconds each, delayed at once onto 2 task workers
    (limit 1 each). Reported: the wall time against the work alone (points x work / 2), and the
    overhead per point that remains when the queue is never empty.

The body is `benchmarks/dispatch_probe.py`. It writes the time it starts to a file; the bench and the
workers share one clock, this machine's.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stack_bench import Stack  # noqa: E402 (the benchmarks' own stack helper)

SERVE = ("import dispatch_probe as p; from prefect.task_worker import serve; "
         "serve(p.probe_task, p.tagged_task, p.line_fit_task, limit=1)")


def wait_mark(marks: Path, token: str, timeout: float = 180) -> float:
    """The time the body for ``token`` started, once it has."""
    from flows.runtime import waiting

    path = marks / token
    text = waiting.poll(lambda: path.read_text() if path.exists() else "", bool, timeout, every=0.01)
    if not text:
        raise SystemExit(f"no body started for {token} within {timeout:g} s")
    return float(text)


def finish(future, timeout: float) -> None:
    """Until ``future``'s task run has ended. The server records task-run states from events, after the
    worker reports them, so a run that is already running can still read as having no state for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return future.wait(timeout=timeout)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def task_workers(stack: Stack, n: int, env: dict) -> list[subprocess.Popen]:
    from flows.runtime import blas

    procs = []
    for i in range(n):
        log = open(stack.dir / f"task-worker-{i}.log", "wb")  # noqa: SIM115 (closed with the process)
        procs.append(subprocess.Popen([sys.executable, "-c", SERVE], cwd=HERE, env={**env, **blas.environment(n)},
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return procs


def part_a(marks: Path, runs: int) -> list[float]:
    from dispatch_probe import probe_flow
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.deployments.runner import EntrypointType

    probe_flow.to_deployment(name="probe", entrypoint_type=EntrypointType.MODULE_PATH,
                             work_pool_name="bench-1").apply(work_pool_name="bench-1")
    waits = []
    with get_client(sync_client=True) as client:
        for _ in range(runs + 1):  # the first is a warm-up: the worker's first poll
            token = uuid.uuid4().hex
            start = time.time()
            flow_run = run_deployment("dispatch-probe/probe", parameters={"token": token}, timeout=0)
            waits.append(wait_mark(marks, token) - start)
            while not client.read_flow_run(flow_run.id).state.is_final():  # the worker is free again
                time.sleep(0.2)
    return waits[1:]


def part_b(marks: Path, runs: int, tagged: bool = False) -> tuple[list[float], list[float]]:
    """(seconds in ``delay()``, seconds to the body) of each submission; ``tagged``: the key in a tag."""
    from dispatch_probe import probe_task, tagged_task
    from prefect import tags

    def submit(token: str):
        if not tagged:
            return probe_task.delay(token)
        with tags(f"bp.point={token}"):
            return tagged_task.delay()

    submits, waits = [], []
    for _ in range(runs + 1):  # the first is a warm-up: the task workers' subscriptions
        token = uuid.uuid4().hex
        start = time.time()
        future = submit(token)
        submits.append(time.time() - start)
        waits.append(wait_mark(marks, token) - start)
        finish(future, 120)
    return submits[1:], waits[1:]


def part_c(marks: Path, points: int, work: float) -> tuple[float, float]:
    """(seconds until every point was submitted, seconds until every point had finished)."""
    from dispatch_probe import probe_task

    tokens = [uuid.uuid4().hex for _ in range(points)]
    start = time.time()
    futures = [probe_task.delay(token, work) for token in tokens]
    submitted = time.time() - start
    for future in futures:
        finish(future, 600)
    return submitted, time.time() - start


def part_e(marks: Path, fits: int, tracking_uri: str) -> tuple[float, float]:
    """(seconds for ``fits`` line fits on 2 threads here, seconds for them on the 2 task workers)."""
    from concurrent.futures import ThreadPoolExecutor

    from dispatch_probe import fit_line, line_fit_task
    from threadpoolctl import threadpool_limits

    from flows.runtime import blas

    rates = [round(2e-5 * 1.1 ** i, 9) for i in range(fits)]  # all below the largest stable rate, 3.8e-4
    fit_line(rates[0], tracking_uri)  # warm-up: this process's imports and first MLflow requests
    finish(line_fit_task.delay(uuid.uuid4().hex, rates[0], tracking_uri), 300)
    finish(line_fit_task.delay(uuid.uuid4().hex, rates[0], tracking_uri), 300)
    start = time.time()
    with threadpool_limits(limits=blas.share(2), user_api="blas"), ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda lr: fit_line(lr, tracking_uri), rates))
    here = time.time() - start
    start = time.time()
    futures = [line_fit_task.delay(uuid.uuid4().hex, lr, tracking_uri) for lr in rates]
    for future in futures:
        finish(future, 600)
    return here, time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=8, help="submissions timed one at a time in (a) and (b)")
    ap.add_argument("--points", type=int, default=32, help="tasks delayed at once in (c)")
    ap.add_argument("--work", type=float, default=0.5, help="seconds of work per task in (c)")
    ap.add_argument("--fits", type=int, default=16, help="line fits in (e)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed bench still stops its stack and workers

    with tempfile.TemporaryDirectory(prefix="bp-dispatch-bench-") as tmp:
        root, marks = Path(tmp), Path(tmp) / "marks"
        marks.mkdir()
        stack = Stack(root)
        stack.client_env["BP_PROBE_DIR"] = str(marks)
        stack.client_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        # this process talks to the stack too, before Prefect is imported: its event subscriptions (which
        # a future's wait() listens on) run on threads that see the environment, not temporary settings
        os.environ.update({k: stack.client_env[k] for k in
                           ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_URI", "BP_PROBE_DIR")})
        procs: list[subprocess.Popen] = []
        try:
            stack.worker("bench-1", "bench-1-1", 1)
            stack.wait_for_pools("bench-1")
            a = part_a(marks, args.runs)
            procs = task_workers(stack, 2, stack.client_env)
            b_submit, b = part_b(marks, args.runs)
            d_submit, d = part_b(marks, args.runs, tagged=True)
            submitted, c = part_c(marks, args.points, args.work)
            e_here, e_pool = part_e(marks, args.fits, stack.client_env["MLFLOW_TRACKING_URI"])
        finally:
            for proc in procs:
                proc.terminate()
            stack.down()
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"cores: {os.cpu_count()}; medians of {args.runs}, one submission at a time, the worker free")
    print(f"(a) flow run on a process worker (baseline)   {ma:6.2f} s   1.00x   (min {min(a):.2f}, max {max(a):.2f})")
    print(f"(b) background task on a warm task worker     {mb:6.2f} s   {mb / ma:.3f}x   (min {min(b):.2f}, "
          f"max {max(b):.2f})   target <= 0.5 s: {'met' if mb <= 0.5 else 'MISSED'}")
    print(f"    of which delay() itself: {statistics.median(b_submit) * 1000:.0f} ms (the parameters stored, the "
          "task run created)")
    print(f"(d) as (b), no parameters (the key in a tag)   {statistics.median(d):6.2f} s   "
          f"{statistics.median(d) / ma:.3f}x   delay() {statistics.median(d_submit) * 1000:.0f} ms")
    ideal = args.points * args.work / 2
    print(f"(c) {args.points} tasks of {args.work:g} s delayed at once on 2 task workers: {c:.2f} s against "
          f"{ideal:.2f} s of work per worker = {c / ideal:.2f}x; {(c - ideal) / (args.points / 2):.3f} s a point "
          f"beyond the work; submitting them took {submitted:.2f} s ({submitted / args.points * 1000:.0f} ms a point)")
    print(f"(e) {args.fits} real line fits (configs/linreg.yaml, each its own MLflow run on the stack): 2 threads in "
          f"one warm process (baseline) {e_here:.2f} s, 2 task workers {e_pool:.2f} s = {e_pool / e_here:.2f}x; "
          f"{e_here / args.fits:.2f} and {e_pool / args.fits:.2f} s a fit")


if __name__ == "__main__":
    main()
