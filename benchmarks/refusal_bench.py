"""How long ``bp`` takes to refuse a Prefect server that is not there, against the same refusal made after Prefect's
and MLflow's imports and the tracking store's creation (the baseline: what each command did before its checks came
first), measured in the same run, rounds interleaved.

    python benchmarks/refusal_bench.py [--rounds 3]

Each case runs in a fresh empty directory with ``PREFECT_API_URL`` (a free port, nothing listening) and its auth
string in the environment; bp must exit 2 with one line and leave the directory empty. Target: at most 0.25x the
baseline's wall time for every command.
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

from timing import free_port  # benchmarks/, this script's directory

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
CASES = {
    "train": ["train", str(CONFIGS / "linreg.yaml")],
    "sweep": ["sweep", str(CONFIGS / "linreg_lr_sweep.yaml")],
    "sweep --pool": ["sweep", str(CONFIGS / "linreg_lr_sweep.yaml"), "--pool", "bp"],
    "deploy": ["deploy", str(CONFIGS / "linreg.yaml")],
    "serve": ["serve", str(CONFIGS / "linreg.yaml")],
}
# the baseline: Prefect and MLflow imported and the default store made before the command's own checks
AFTER_IMPORTS = """
import sys
import mlflow, prefect
from flows.tracking import store
store.ensure_store("sqlite:///mlflow.db")
from flows.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
TARGET = 0.25


def timed(argv: list[str], env: dict[str, str], baseline: bool) -> float:
    """Wall seconds of one refusal; AssertionError unless it is the one-line refusal (and, for bp, nothing made)."""
    command = [sys.executable, "-c", AFTER_IMPORTS, *argv] if baseline else [sys.executable, "-m", "flows.cli", *argv]
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=120)
        took = time.perf_counter() - start
        assert done.returncode == 2 and "no server answers there" in done.stderr, done.stderr[-2000:]
        assert baseline or not os.listdir(directory), os.listdir(directory)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
           "PREFECT_API_AUTH_STRING": "bp:not-checked", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    times: dict[tuple[str, bool], list[float]] = {(case, b): [] for case in CASES for b in (True, False)}
    for _ in range(args.rounds):
        for case, argv in CASES.items():
            for baseline in (True, False):
                times[(case, baseline)].append(timed(argv, env, baseline))
    worst = 0.0
    print(f"refusing a Prefect server that is not there, medians of {args.rounds} (wall s)")
    for case in CASES:
        before, after = statistics.median(times[(case, True)]), statistics.median(times[(case, False)])
        worst = max(worst, after / before)
        print(f"  bp {case:13s} baseline (after the imports) {before:5.2f}  bp {after:5.2f}  {after / before:4.2f}x")
    print(f"worst {worst:.2f}x (target at most {TARGET}x): {'met' if worst <= TARGET else 'MISSED'}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
