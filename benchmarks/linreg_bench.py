"""Line-fit benchmark: every figure is a ratio against a baseline measured in the same run.

    python benchmarks/linreg_bench.py [--quick] [--parts abc] [--rows N] [--repeats K]

(a) 1000 iterations on the seed's 100 rows: the seed program's per-point Python loop (baseline)
    vs the vectorised direct path vs the fast path.
(b) 1000 iterations on 10 million generated rows: one vectorised pass over the data (baseline)
    vs the fast path's 1000 iterations vs numpy.linalg.lstsq; wall time and peak memory.
(c) `bp train configs/linreg.yaml` against a plain script doing the floor's work (imports, one
    flow on Prefect's temporary server, one MLflow run, one batch of 1000 metrics), each in a
    fresh process, interleaved; and `bp validate` against a bare interpreter start.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEED_DATA = REPO.parent / "shared" / "data" / "data.csv"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import best_of, peak_bytes  # noqa: E402

from bpcore.config.models import LineData, LineTrainer  # noqa: E402
from bpcore.data.table import load_line_data  # noqa: E402
from bpcore.train.linreg import _direct_steps, fit  # noqa: E402


def seed_loop(points, lr: float, iterations: int):
    """The seed program's style: one Python loop over points per gradient step."""
    b = m = 0.0
    n = float(len(points))
    for _ in range(iterations):
        gb = gm = 0.0
        for x, y in points:
            gb += -(2 / n) * (y - (m * x + b))
            gm += -(2 / n) * x * (y - (m * x + b))
        b, m = b - lr * gb, m - lr * gm
    return b, m


def part_a(repeats: int) -> None:
    seed = load_line_data(LineData(path=str(SEED_DATA)))
    bigger = load_line_data(LineData(rows=10_000), seed=0)
    print("(a) 1000 iterations; baseline = the seed program's per-point Python loop")
    for label, table in (("seed data, 100 rows", seed), ("generated, 10,000 rows", bigger)):
        _paths_vs_loop(label, table, repeats)


def _paths_vs_loop(label: str, table, repeats: int) -> None:
    points = list(zip(table.X[:, 0].tolist(), table.y.tolist()))
    fast_cfg = LineTrainer(learning_rate=1e-4, iterations=1000)
    direct_cfg = LineTrainer(learning_rate=1e-4, iterations=1000, method="direct")
    loop = best_of(lambda: seed_loop(points, 1e-4, 1000), 1 if len(points) > 1000 else repeats)
    direct = best_of(lambda: fit(table.X, table.y, direct_cfg), repeats)
    fast = best_of(lambda: fit(table.X, table.y, fast_cfg), repeats)
    print(f"    {label}")
    print(f"      per-point loop {loop * 1e3:10.2f} ms    1.00x")
    print(f"      vectorised     {direct * 1e3:10.2f} ms {loop / direct:7.1f}x faster")
    print(f"      fast path      {fast * 1e3:10.2f} ms {loop / fast:7.1f}x faster")


def part_b(rows: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(25, 70, size=(rows, 1))
    y = 8.0 + 1.3 * X[:, 0] + rng.normal(0, 10, size=rows)
    one_pass = _direct_steps(X, y)
    w0 = np.zeros(1)
    trainer = LineTrainer(learning_rate=1e-4, iterations=1000)
    A = np.column_stack([np.ones(rows), X])

    def lstsq():
        np.linalg.lstsq(np.column_stack([np.ones(rows), X]), y, rcond=None)

    t_pass = best_of(lambda: one_pass(w0, 0.0), repeats)
    t_fast = best_of(lambda: fit(X, y, trainer), repeats)
    t_lstsq = best_of(lstsq, max(1, repeats // 2))
    m_pass = peak_bytes(lambda: one_pass(w0, 0.0))
    m_fast = peak_bytes(lambda: fit(X, y, trainer))
    m_lstsq = peak_bytes(lstsq)
    del A
    data_mb = (X.nbytes + y.nbytes) / 2**20
    print(f"(b) {rows:,} rows ({data_mb:.0f} MiB of data); baseline = one vectorised pass (1 iteration)")
    print(f"    {'':28s}{'time':>10s} {'x pass':>8s} {'peak MiB':>10s} {'x pass':>8s}")
    for name, t, m in (("one vectorised pass", t_pass, m_pass),
                       ("fast path, 1000 iterations", t_fast, m_fast),
                       ("numpy.linalg.lstsq", t_lstsq, m_lstsq)):
        print(f"    {name:28s}{t:9.3f}s {t / t_pass:7.2f}x {m / 2**20:10.1f} {m / max(m_pass, 1):7.2f}x")
    print(f"    (direct path would take ~{1000 * t_pass:.0f} s for 1000 iterations: "
          f"fast path is {1000 * t_pass / t_fast:.0f}x faster)")


FLOOR_SCRIPT = textwrap.dedent('''
    """The floor: imports, one flow on Prefect's temporary server, one MLflow run, 1000 metrics."""
    import sys, time
    from flows.runtime import settings; settings.apply()  # same Prefect/MLflow environment defaults as bp
    import mlflow
    import numpy as np
    from mlflow.entities import Metric
    from prefect import flow

    @flow(name="floor")
    def floor(tracking_uri: str) -> str:
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_experiment("floor")
        x = np.loadtxt(sys.argv[2], delimiter=",")
        b = m = 0.0
        costs = []
        for _ in range(1001):
            r = x[:, 1] - (m * x[:, 0] + b)
            costs.append(float(r @ r / len(r)))
            b, m = b + 1e-4 * 2 * r.mean(), m + 1e-4 * 2 * (x[:, 0] @ r) / len(r)
        with mlflow.start_run() as run:
            ts = int(time.time() * 1000)
            mlflow.MlflowClient().log_batch(run.info.run_id, metrics=[
                Metric("cost", c, ts, i) for i, c in enumerate(costs[:1000])])
        return run.info.run_id

    print("run_id:", floor(sys.argv[1]))
''')


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or "run_id" not in done.stdout and cmd[1] != "-c" and "validate" not in cmd:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return elapsed


def part_c(repeats: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bp-bench-"))
    env = dict(os.environ, PREFECT_HOME=str(work / "prefect"), PYTHONPATH=str(REPO))
    env.pop("MLFLOW_TRACKING_URI", None)
    floor_py = work / "floor.py"
    floor_py.write_text(FLOOR_SCRIPT)
    bp_cmd = [sys.executable, "-m", "flows.cli", "train", str(REPO / "configs" / "linreg.yaml"),
              "--set", f"data.path={SEED_DATA}", "--tracking-uri", f"sqlite:///{work / 'bp.db'}"]
    floor_cmd = [sys.executable, str(floor_py), f"sqlite:///{work / 'floor.db'}", str(SEED_DATA)]
    # warm-up: Prefect's database and both MLflow stores are created once, outside the timings
    timed(bp_cmd, work, env)
    timed(floor_cmd, work, env)
    bp_times, floor_times = [], []
    for _ in range(repeats):
        floor_times.append(timed(floor_cmd, work, env))
        bp_times.append(timed(bp_cmd, work, env))
    bp_med, floor_med = statistics.median(bp_times), statistics.median(floor_times)
    print(f"(c) end to end, median of {repeats} interleaved fresh processes; baseline = plain "
          "one-flow-one-run script")
    print(f"    plain script      {floor_med:6.2f} s   1.00x   ({', '.join(f'{t:.2f}' for t in floor_times)})")
    print(f"    bp train          {bp_med:6.2f} s   {bp_med / floor_med:.3f}x   "
          f"({', '.join(f'{t:.2f}' for t in bp_times)})")
    print(f"    bp train adds     {bp_med - floor_med:+6.2f} s to the floor")

    validate_cmd = [sys.executable, "-m", "flows.cli", "validate", str(REPO / "configs" / "linreg.yaml")]
    bare = statistics.median(timed([sys.executable, "-c", "pass"], work, env) for _ in range(5))
    val = statistics.median(timed(validate_cmd, work, env) for _ in range(5))
    print(f"    bp validate       {val:6.2f} s   ({val / bare:.1f}x a bare interpreter start of {bare:.3f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 1M rows in (b)")
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    repeats = args.repeats or (2 if args.quick else 5)
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    import threadpoolctl

    blas = [f"{p['internal_api']} {p['num_threads']} threads" for p in threadpoolctl.threadpool_info()]
    print(f"numpy {np.__version__}, BLAS: {'; '.join(blas) or 'unknown'}, cores: {os.cpu_count()}")
    if "a" in args.parts:
        part_a(repeats)
    if "b" in args.parts:
        part_b(rows, repeats)
    if "c" in args.parts:
        part_c(max(1, repeats - 2) if not args.quick else 1)


if __name__ == "__main__":
    main()
