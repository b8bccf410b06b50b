"""Learning-rate search: what a search and a divergence-aware grid save, against baselines measured in
the same run, on the bundled MNIST and the line fit.

    python benchmarks/search_bench.py [--parts spd] [--trials 12] [--epochs 20]

(s) Search against grid. Baseline: the MNIST learning-rate grid of `configs/mnist_lr_sweep.yaml`
    widened to 12 log-spaced rates from 1e-4 to 3, every rate trained (skip_above_divergence off).
    Against it: a TPE search of `--trials` trials on the same range with median pruning
    (`sweep.prune: median`). Both with `--parallel 1`: a search told each result before it asks
    the next learns the most from it. Targets: the search's best val_accuracy within 0.3 points of
    the grid's, with at most 40% of the grid's epochs (12 x trainer.epochs). Epochs trained are
    counted from each child's history: its logged epochs, plus the one it diverged in.
(p) Per-trial overhead. Baseline: the same study run by Optuna alone, its own `optimize` loop calling
    bp's trainer (`bpcore.train.sgd.fit_network`) directly, no Prefect, no MLflow, same sampler,
    seed and pruner. bp's cost over it: (bp's search, its parent MLflow run's start to end, minus
    the loop's time) / trials. It also prints whether the two drew the same trials.
(d) Divergence-aware grids. Baseline: the full grid (`sweep.skip_above_divergence=false`), against
    the default (true), for `configs/linreg_lr_sweep.yaml` (iterations) and the widened MNIST grid
    (epochs), both `--parallel 2`: the fraction of training skipped, and whether the best child is
    the same.

Each `bp sweep` is its own process with its own temporary Prefect server and a fresh SQLite store.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LINREG_SWEEP = str(REPO / "configs" / "linreg_lr_sweep.yaml")
MNIST_SWEEP = str(REPO / "configs" / "mnist_lr_sweep.yaml")
LOW, HIGH, RATES = 1.0e-4, 3.0, 12


def widened() -> str:
    """12 log-spaced learning rates from 1e-4 to 3, as the grid's YAML list."""
    step = math.log(HIGH / LOW) / (RATES - 1)
    return "[" + ", ".join(f"{LOW * math.exp(i * step):.4g}" for i in range(RATES)) + "]"


class Sweep:
    """One ``bp sweep`` process in a fresh directory: its parent run and children, read back from its store."""

    def __init__(self, config: str, *overrides: str, parallel: int = 2):
        from mlflow.tracking import MlflowClient

        self.dir = Path(tempfile.mkdtemp(prefix="bp-search-bench-"))
        uri = f"sqlite:///{self.dir / 'mlflow.db'}"
        argv = [sys.executable, "-m", "flows.cli", "sweep", config, "--tracking-uri", uri, "--parallel", str(parallel),
                "--set", "sweep.model_name=null"]
        for item in overrides:
            argv += ["--set", item]
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True)
        self.seconds = time.perf_counter() - start
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        if done.returncode != 0 or not last.startswith("run_id: "):
            raise SystemExit(f"bp sweep {config} {' '.join(overrides)} failed ({done.returncode}):\n"
                             f"{done.stderr[-3000:]}")
        self.mc = MlflowClient(uri)
        self.parent = self.mc.get_run(last.removeprefix("run_id: "))
        self.children = self.mc.search_runs([self.parent.info.experiment_id],
                                            f"tags.mlflow.parentRunId = '{self.parent.info.run_id}'", max_results=1000)

    @property
    def run_seconds(self) -> float:
        info = self.parent.info
        return (info.end_time - info.start_time) / 1000

    def best(self, metric: str) -> float:
        return self.parent.data.metrics[f"best_{metric.removeprefix('best_')}"]

    def trained(self, key: str, offset: int = 0) -> int:
        """Steps trained over all children: ``key``'s logged steps (less ``offset`` each: the line fit's step 0),
        plus the one a diverged child broke in."""
        total = 0
        for child in self.children:
            logged = len(self.mc.get_metric_history(child.info.run_id, key))
            total += max(0, logged - offset) + (child.data.tags.get("bp.status") == "diverged")
        return total

    def rates(self) -> list[float]:
        return sorted(float(c.data.params["trainer.learning_rate"]) for c in self.children)

    def statuses(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for child in self.children:
            found[child.data.tags["bp.status"]] = found.get(child.data.tags["bp.status"], 0) + 1
        return found


def optuna_alone(trials: int, epochs: int) -> tuple[float, float, list[float], int]:
    """The same study by Optuna alone: (seconds, best val_accuracy, the rates drawn, epochs trained)."""
    import optuna

    from bpcore.kinds import load, load_config
    from bpcore.search.study import _pruner, startup_trials
    from bpcore.train.sgd import fit_network

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = load_config(MNIST_SWEEP, [f"trainer.epochs={epochs}"]).model_copy(update={"sweep": None})
    splits = load(base)  # read once, as bp's per-process cache does
    epochs_done = [0]

    def objective(trial) -> float:
        lr = trial.suggest_float("trainer.learning_rate", LOW, HIGH, log=True)
        trainer = base.trainer.model_copy(update={"learning_rate": lr})

        def on_epoch(stats):
            epochs_done[0] += 1
            trial.report(stats.val_accuracy, stats.epoch)
            return ("pruned", "") if trial.should_prune() else None

        fit = fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, trainer, base.seed, on_epoch)
        if fit.status == "pruned":
            raise optuna.TrialPruned()
        if fit.diverged:
            epochs_done[0] += 1
            raise optuna.TrialPruned()  # as bp tells a diverged trial (bpcore.search.study.Search.tell)
        return max(e.val_accuracy for e in fit.epochs)

    sampler = optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=startup_trials(trials))
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=_pruner("median"))
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - start
    complete = [t.value for t in study.trials if t.value is not None and not math.isnan(t.value)]
    return seconds, max(complete), sorted(t.params["trainer.learning_rate"] for t in study.trials), epochs_done[0]


def part_s(trials: int, epochs: int) -> tuple[Sweep, Sweep]:
    grid = Sweep(MNIST_SWEEP, f"sweep.grid.trainer.learning_rate={widened()}", f"trainer.epochs={epochs}",
                 "sweep.skip_above_divergence=false", "experiment=bench-grid", parallel=1)
    search = Sweep(MNIST_SWEEP, "sweep.grid=null", "sweep.search=tpe", f"sweep.trials={trials}",
                   f"sweep.space.trainer.learning_rate={{log_uniform: [{LOW}, {HIGH}]}}", "sweep.prune=median",
                   f"trainer.epochs={epochs}", "experiment=bench-search", parallel=1)
    full = RATES * epochs
    g_best, s_best = grid.best("val_accuracy") * 100, search.best("val_accuracy") * 100
    g_epochs, s_epochs = grid.trained("val_accuracy"), search.trained("val_accuracy")
    print(f"(s) MNIST, {epochs} epochs a child; baseline = the widened grid ({RATES} log-spaced rates "
          f"{LOW:g}..{HIGH:g}, every one trained)")
    print(f"    grid               best val_accuracy {g_best:6.2f}%   epochs {g_epochs:4d} of {full}   "
          f"{grid.run_seconds:6.1f} s   {grid.statuses()}")
    print(f"    tpe + median, {trials:2d}  best val_accuracy {s_best:6.2f}%   epochs {s_epochs:4d} of {full} "
          f"({s_epochs / full:.0%})   {search.run_seconds:6.1f} s   {search.statuses()}")
    gap = g_best - s_best
    print(f"    best within 0.3 points of the grid's: {gap:+.2f} points, {'met' if gap <= 0.3 else 'MISSED'};   "
          f"at most 40% of the grid's epochs: {s_epochs / full:.0%}, {'met' if s_epochs <= 0.4 * full else 'MISSED'}")
    return grid, search


def part_p(search: Sweep, trials: int, epochs: int) -> None:
    seconds, best, rates, epochs_done = optuna_alone(trials, epochs)
    same = all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(rates, search.rates())) and len(rates) == trials
    per_trial = (search.run_seconds - seconds) / trials
    print(f"(p) per-trial overhead; baseline = Optuna alone (optimize calling fit_network, no tracking): "
          f"{seconds:.1f} s, best {best * 100:.2f}%, {epochs_done} epochs")
    print(f"    bp's search (parent run) {search.run_seconds:.1f} s ({search.run_seconds / seconds:.2f}x; "
          f"whole process {search.seconds:.1f} s): {per_trial:+.2f} s a trial over Optuna alone;   "
          f"same trials drawn: {same}")


def part_d(epochs: int, mnist_full: Sweep | None) -> None:
    print("(d) divergence-aware grids, --parallel 2; baseline = the full grid (sweep.skip_above_divergence=false)")
    cases = [("linreg_lr_sweep.yaml", LINREG_SWEEP, (), "cost", 1),
             (f"MNIST widened, {epochs} epochs", MNIST_SWEEP,
              (f"sweep.grid.trainer.learning_rate={widened()}", f"trainer.epochs={epochs}"), "val_accuracy", 0)]
    for name, config, overrides, key, offset in cases:
        metric = "final_cost" if key == "cost" else "best_val_accuracy"
        full = Sweep(config, *overrides, "sweep.skip_above_divergence=false", "experiment=bench-full")
        aware = Sweep(config, *overrides, "experiment=bench-aware")
        a, b = full.trained(key, offset), aware.trained(key, offset)
        same = full.parent.data.tags.get("bp.best_point") == aware.parent.data.tags.get("bp.best_point")
        print(f"    {name:28s} full {a:6d} {'iterations' if key == 'cost' else 'epochs'}, {full.run_seconds:5.1f} s "
              f"{full.statuses()}")
        print(f"    {'':28s} aware {b:5d}, {aware.run_seconds:5.1f} s {aware.statuses()}: "
              f"{1 - b / a:.0%} of the training skipped ({aware.run_seconds / full.run_seconds:.2f}x the time);  "
              f"same best ({aware.parent.data.tags.get('bp.best_point')}, {metric} {aware.best(metric):.6g}): {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="spd")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    import os

    print(f"cores: {os.cpu_count()}")
    search = None
    if "s" in args.parts or "p" in args.parts:
        _, search = part_s(args.trials, args.epochs)
    if "p" in args.parts:
        part_p(search, args.trials, args.epochs)
    if "d" in args.parts:
        part_d(args.epochs, None)


if __name__ == "__main__":
    main()
