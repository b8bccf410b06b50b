"""The MNIST experiment as a Prefect flow: load digits -> train the network -> log to MLflow.

Entrypoint ``flows/experiments/mnist.py:mnist``. Per-epoch metrics are logged while training runs, so the
MLflow UI shows the curves grow; a progress bar runs on a terminal and a progress artifact in
the Prefect UI.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
from mlflow.entities import Metric
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bpcore.config.models import MnistConfig
from bpcore.data.mnist.load import MnistSplits
from bpcore.train.checkpoint import TrainingState
from bpcore.train.sgd import CLASSES, EpochStats, NetFit, fit_network
from flows.experiments import checkpoints, pipeline, steering
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import Run, RunResult, Trained, logging_task
from flows.experiments.progress import EpochBar, PrefectProgress
from flows.runtime import terminal
from flows.tracking import datasets, metrics


@task(cache_policy=NO_CACHE)
def train(splits: MnistSplits, config: MnistConfig, run: Run, in_sweep: bool,
          start: TrainingState | None = None) -> NetFit:
    """Mini-batch SGD; every epoch's figures go to MLflow as soon as the epoch ends, and its checkpoint as often as
    ``trainer.checkpoint_every`` says (and on a stop). ``start``: the checkpoint a resumed run goes on from."""
    bar = EpochBar(config.trainer.epochs, quiet=in_sweep)
    keeper = checkpoints.Keeper(run.client, run.id, config.trainer.checkpoint_every, terminal.logger().warning)
    progress = PrefectProgress(config.trainer.epochs, key="mnist-training",
                               description=f"MLflow run {run.id}: epochs done")
    steer = steering.current()

    def on_epoch(stats: EpochStats) -> tuple[str, str] | None:
        values = _figures(stats)
        # asked first: an attempt its sweep stopped, or that another took over (its worker taken for lost), logs no more
        stop = steer.report(stats.epoch, values) if steer is not None else None
        ts = metrics.now_ms()
        batch = [Metric(k, float(v), ts, stats.epoch) for k, v in values.items()]
        metrics.with_retries(lambda: metrics.log_batch(run.client, run.id, metrics=batch))
        bar.update(stats)
        progress.update(stats)
        return (stop.status, stop.reason) if stop else None

    def on_start(fit: NetFit) -> None:  # the stability limit of the starting weights, as the line fit logs its own
        if fit.sharpness is not None:
            limit = {"max_stable_lr": fit.max_stable_lr} if math.isfinite(fit.max_stable_lr) else {}
            metrics.log_values(run.client, run.id, {"sharpness": fit.sharpness.sharpness, **limit}, step=0)

    if start is not None and steer is not None:  # a resumed trial: its search judges it on every epoch, as before
        for stats in start.epochs:
            steer.report(stats["epoch"], _figures(EpochStats(**stats)))
    try:
        fit = fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, config.trainer, config.seed,
                          on_epoch, on_start, resume=start, on_checkpoint=keeper)
    except BaseException:  # stopped, or failed: what it trained is kept for bp resume
        keeper.stopped()
        raise
    finally:
        bar.close()
    keeper.close()
    return fit


def _figures(stats: EpochStats) -> dict[str, float]:
    """An epoch's metrics as logged, and as a sweep's search judges them."""
    values = {"cost": stats.cost, "train_accuracy": stats.train_accuracy, "train_seconds": stats.train_seconds}
    return values | ({"val_accuracy": stats.val_accuracy} if stats.val_accuracy is not None else {})


@logging_task
def log_results(run: Run, splits: MnistSplits, fit: NetFit) -> dict[str, float]:
    """Final figures and plots: curves, confusion matrix, misclassified digits; returns the final values."""
    from flows.experiments import plots  # matplotlib: prewarmed by bp while Prefect's server starts

    epochs = fit.epochs
    if epochs:
        run.client.log_figure(run.id, plots.training_curves([e.epoch for e in epochs], [e.cost for e in epochs],
                                                [e.train_accuracy for e in epochs],
                                                [e.val_accuracy for e in epochs]), "plots/curves.png")
    if fit.diverged or not epochs or fit.status == steering.SKIPPED:
        return {}
    final = {"final_cost": epochs[-1].cost}
    if splits.test_X is not None and len(splits.test_y):
        final["test_accuracy"] = float((fit.net.predict(splits.test_X) == splits.test_y).mean())
    if len(splits.val_y):
        predicted = fit.net.predict(splits.val_X)
        final["best_val_accuracy"] = max(e.val_accuracy for e in epochs)
        run.client.log_figure(run.id, plots.confusion_matrix(splits.val_y, predicted), "plots/confusion_matrix.png")
        run.client.log_figure(run.id, plots.misclassified(splits.val_images, splits.val_y, predicted),
                              "plots/misclassified.png")
    metrics.log_values(run.client, run.id, final, step=epochs[-1].epoch)
    return final


@logging_task
def log_model(run: Run, splits: MnistSplits, fit: NetFit) -> None:
    """The network as a pyfunc model reading raw pixels 0-255 and returning digits, produced at the last epoch."""
    from flows.tracking.models import log_network_model

    example = splits.val_images[:3] if len(splits.val_images) else (splits.train_X[:3] * 255).round()
    with tempfile.TemporaryDirectory() as tmp:
        log_network_model(run.id, Path(tmp), fit.net, example, input_scale=1 / 255, output="class",
                          step=fit.epochs[-1].epoch if fit.epochs else 0)


def _checkpoint(run: Run, splits: MnistSplits, config: MnistConfig) -> TrainingState | None:
    """The checkpoint a resumed run goes on from (None: it trains from the start), said in its log."""
    sizes = [splits.train_X.shape[1], *config.trainer.hidden, CLASSES]
    state, said = checkpoints.latest(run.client, run.id, sizes, np.dtype(config.trainer.dtype))
    terminal.logger().info(said)
    return state


def last_epoch(fit: NetFit) -> dict[str, float]:
    """The last epoch's figures: what a sweep can rank by besides the final ones."""
    if not fit.epochs:
        return {}
    last = fit.epochs[-1]
    figures = {"train_accuracy": last.train_accuracy, "train_seconds": last.train_seconds}
    return figures | ({"val_accuracy": last.val_accuracy} if last.val_accuracy is not None else {})


@flow(name="mnist", log_prints=False)
def mnist(config: MnistConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, data_digest: str | None = None, sweep: SweepMember | None = None,
          resume: str | None = None) -> RunResult:
    """Train a backpropagation network on MNIST digits and track it in MLflow; returns the run's id and outcome.

    Each epoch is logged as it ends; then the final figures, plots and, when it trained to the end, the model
    (a sweep may stop a child early: pruned by its search, or skipped above a rate that diverged).
    ``data_digest``: when given, the digits read must have this sha256 (else the flow fails, naming the
    file); ``sweep``: the sweep this run is a point of; ``resume``: an ended run of this config to reopen and
    go on with from its checkpoint (``bp resume``).
    """
    mc = pipeline.start(tracking_uri, sweep)
    splits = pipeline.load(config, data_digest, sweep)
    dataset = datasets.array_dataset(splits.train_X, splits.train_y, splits.source, splits.digest)
    with pipeline.tracked(config, splits, mc, tags, run_name, sweep, dataset, resume) as run:
        if stop := pipeline.stopped_before_training():
            run.ended(Trained(status=stop.status, reason=stop.reason))
        else:
            start = _checkpoint(run, splits, config) if resume else None
            fit = train(splits, config, run, sweep is not None, start)
            final = log_results(run, splits, fit)
            if fit.status == "finished":  # a diverged, pruned or skipped network is no model to use
                log_model(run, splits, fit)
            run.ended(Trained(status=fit.status, reason=None if fit.status == "finished" else fit.message,
                              metrics={**last_epoch(fit), **final}))
    return run.outcome
