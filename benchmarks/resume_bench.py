"""Resume benchmark: what checkpoints cost a training, and what a resumption saves, each against a
baseline measured in the same run.

    python benchmarks/resume_bench.py [--rounds 3] [--parts cr] [--set KEY=VALUE ...]

(c) Checkpoint overhead: the config's network (`configs/mnist.yaml` on the 5,000 bundled digits) trained
    `--epochs` epochs in this process, `--rounds` times, its checkpoint written to a run of a SQLite MLflow store
    after every second epoch as `bp train` writes it (`flows.experiments.checkpoints.Keeper`: the state copied on
    the training thread, serialised and logged as an artifact on a thread of its own while the next epoch
    trains). Epochs that train while a checkpoint is written, against the baseline: the epochs in between, of the
    same trainings: each written epoch over the epoch just before it, the median of those ratios (a machine's speed
    drifts between trainings), plus the copy taken on the training thread. Target: at most 1.03x an epoch.
(r) Resumption: `bp train configs/mnist.yaml --set trainer.epochs=30` from scratch (baseline) against the same
    command SIGKILLed once its run has logged epoch 20, then `bp resume` of that run; both in fresh processes
    against one Prefect server this benchmark starts (a server's start is neither's cost). Timed two ways:
    the bp process, and the MLflow run (start to end; for the resumption, its reopening to its end). Target: the
    resumption at most 0.40x the training from scratch. Ten of thirty epochs is 0.33x of the training alone;
    what a run does besides training (the data loaded and checked, params, plots, the model) is paid again.
`--set` changes the config for both parts (a larger network, `--set trainer.hidden=[1024,1024]`, makes the epochs
the larger share).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MNIST = str(REPO / "configs" / "mnist.yaml")


def part_c(rounds: int, epochs: int, overrides: list[str]) -> None:
    import numpy as np
    from mlflow.tracking import MlflowClient

    from bpcore.data.mnist.load import load_mnist
    from bpcore.kinds import load_config
    from bpcore.train import checkpoint
    from bpcore.train.sgd import fit_network
    from flows.experiments.checkpoints import Keeper

    config = load_config(MNIST, [*overrides, f"trainer.epochs={epochs}"])
    splits = load_mnist(config.data, config.seed, config.trainer.dtype)
    after: dict[str, list[float]] = {"nothing written (baseline)": [], "a checkpoint written": []}
    captures: list[float] = []
    pairs: list[float] = []  # each written epoch's time over the time of the epoch just before it
    with tempfile.TemporaryDirectory() as tmp:
        mc = MlflowClient(f"sqlite:///{tmp}/mlflow.db")
        experiment = mc.create_experiment("bench", artifact_location=f"{tmp}/artifacts")
        for _ in range(rounds):
            keeper = Keeper(mc, mc.create_run(experiment).info.run_id, 2)
            fit = fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, config.trainer,
                              config.seed, on_checkpoint=keeper)
            keeper.close()
            rng = np.random.default_rng(0)
            for _ in range(epochs):  # the copy fit_network takes after each epoch, outside the epoch's own time
                start = time.perf_counter()
                checkpoint.capture(epochs, fit.net.W, fit.net.b, fit.net.W, rng, fit.epochs, None, None)
                captures.append(time.perf_counter() - start)
            ends = [0.0] + [e.train_seconds for e in fit.epochs]  # epoch k took ends[k] - ends[k - 1]
            for epoch in range(3, epochs + 1, 2):  # an odd epoch, a checkpoint written as it trains, beside the even
                # one before it, nothing written (the first two warm up)
                written, before = ends[epoch] - ends[epoch - 1], ends[epoch - 1] - ends[epoch - 2]
                after["a checkpoint written"].append(written)
                after["nothing written (baseline)"].append(before)
                pairs.append(written / before)
        size = statistics.median(f.stat().st_size for f in Path(tmp, "artifacts").rglob("state.npz"))
    base, written = (statistics.median(v) for v in after.values())
    taken = statistics.median(captures)
    ratio = statistics.median(pairs) + taken / base
    print(f"(c) {rounds} trainings of {epochs} epochs, {config.trainer.hidden} on {len(splits.train_y)} digits; the "
          "checkpoint of every even epoch written to MLflow as the next one trains; medians:")
    print(f"    an epoch after which nothing was written (baseline) {base * 1000:7.1f} ms")
    print(f"    an epoch while a checkpoint is written               {written * 1000:7.1f} ms")
    print(f"    the state taken on the training thread               {taken * 1000:7.2f} ms")
    print(f"    an epoch with its checkpoint, over the epoch before  {ratio:.3f}x (median of {len(pairs)} pairs, "
          f"the copy added)   target <= 1.03x: {'met' if ratio <= 1.03 else 'MISSED'}   ({size / 1e6:.2f} MB each)")


def bp(work: Path, env: dict[str, str], *args: str, kill_at: int | None = None) -> tuple[float, str]:
    """``bp ARGS`` in ``work``; (process seconds, the run id). ``kill_at``: SIGKILL it once its run logged that
    epoch (the run id is then read from the store)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=work, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if kill_at is not None:
        run_id = _wait_for_epoch(work / "mlflow.db", kill_at, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return time.perf_counter() - start, run_id
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode != 0 or not last.startswith("run_id: "):
        raise SystemExit(f"bp {' '.join(args)} failed ({proc.returncode}):\n{err[-3000:]}")
    return elapsed, last.removeprefix("run_id: ")


def _wait_for_epoch(db: Path, epoch: int, proc: subprocess.Popen) -> str:
    while proc.poll() is None:
        time.sleep(0.02)
        try:
            found = sqlite3.connect(db).execute(
                "select m.run_uuid from metrics m join runs r on r.run_uuid = m.run_uuid where r.status = 'RUNNING' "
                "and m.key = 'cost' and m.step >= ? limit 1", (epoch,)).fetchone()
        except sqlite3.Error:  # not created yet
            continue
        if found:
            return found[0]
    raise SystemExit(f"bp ended ({proc.returncode}) before its run logged epoch {epoch}:\n{proc.stderr.read()[-3000:]}")


def run_seconds(work: Path, run_id: str, resumed: bool) -> float:
    from mlflow.tracking import MlflowClient

    run = MlflowClient(f"sqlite:///{work / 'mlflow.db'}").get_run(run_id)
    began = int(run.data.tags["bp.resumed_at"]) if resumed else run.info.start_time
    return (run.info.end_time - began) / 1000


def part_r(rounds: int, overrides: list[str]) -> None:
    from flows.server import temporary_server

    sets = [item for o in [*overrides, "trainer.epochs=30"] for item in ("--set", o)]
    server = temporary_server.start()
    server.wait_ready(180)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PREFECT_API_URL"] = server.api_url
    times: dict[str, list[tuple[float, float]]] = {"from scratch (baseline)": [], "resumed after 20": []}
    try:
        for r in range(rounds):
            work = Path(tempfile.mkdtemp(prefix="bp-resume-bench-"))
            scratch, run_id = bp(work, env, "train", MNIST, *sets)
            times["from scratch (baseline)"].append((scratch, run_seconds(work, run_id, False)))
            _, killed = bp(work, env, "train", MNIST, *sets, kill_at=20)
            resumed, again = bp(work, env, "resume", killed)
            assert again == killed, (again, killed)
            times["resumed after 20"].append((resumed, run_seconds(work, killed, True)))
            print(f"  round {r + 1}: scratch {scratch:.1f} s, resume {resumed:.1f} s", flush=True)
    finally:
        server.stop()
    (base_p, base_r), (res_p, res_r) = [[statistics.median(t[i] for t in v) for i in (0, 1)] for v in times.values()]
    print(f"(r) a 30-epoch run, median of {rounds} (one Prefect server for all):")
    print(f"    trained from scratch (baseline)   process {base_p:6.1f} s   run {base_r:6.1f} s")
    print(f"    killed after epoch 20, resumed    process {res_p:6.1f} s   run {res_r:6.1f} s")
    print(f"    resumed / from scratch            process {res_p / base_p:.2f}x   run {res_r / base_r:.2f}x   "
          f"target <= 0.40x: process {'met' if res_p / base_p <= 0.4 else 'MISSED'}, "
          f"run {'met' if res_r / base_r <= 0.4 else 'MISSED'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", default="cr")
    ap.add_argument("--epochs", type=int, default=20, help="epochs a training in part (c)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    if "c" in args.parts:
        part_c(args.rounds, args.epochs, args.overrides)
    if "r" in args.parts:
        part_r(args.rounds, args.overrides)


if __name__ == "__main__":
    main()
