"""The MNIST experiment as a Prefect flow: load digits -> train the network -> log to MLflow.

Entrypoint ``flows/experiments/mnist.py:mnist``. Per-epoch metrics are logged while training runs, so the
MLflow UI shows the curves grow; a progress bar runs on a terminal and a progress artifact in
the Prefect UI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bpcore.config import MnistConfig
from bpcore.mnist import MnistSplits
from bpcore.training import EpochStats, NetFit, fit_network
from flows.experiments.progress import EpochBar, PrefectProgress
from flows.experiments.skeleton import RunResult, Trained, logging_task, tracked_training
from flows.tracking import datasets, metrics, runs


@task(cache_policy=NO_CACHE)
def train(splits: MnistSplits, config: MnistConfig, tracking_uri: str, run_id: str, in_sweep: bool) -> NetFit:
    """Mini-batch SGD; every epoch's figures go to MLflow as soon as the epoch ends."""
    mc = runs.client(tracking_uri)
    bar = EpochBar(config.trainer.epochs, quiet=in_sweep)
    progress = PrefectProgress(config.trainer.epochs, key="mnist-training",
                               description=f"MLflow run {run_id}: epochs done")

    def on_epoch(stats: EpochStats) -> None:
        ts = metrics.now_ms()
        values = {"cost": stats.cost, "train_accuracy": stats.train_accuracy,
                  "train_seconds": stats.train_seconds}
        if stats.val_accuracy is not None:
            values["val_accuracy"] = stats.val_accuracy
        batch = [Metric(k, float(v), ts, stats.epoch) for k, v in values.items()]
        metrics.with_retries(lambda: metrics.log_batch(mc, run_id, metrics=batch))
        bar.update(stats)
        progress.update(stats)

    try:
        return fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y,
                           config.trainer, config.seed, on_epoch)
    finally:
        bar.close()


@logging_task
def log_results(tracking_uri: str, run_id: str, splits: MnistSplits, fit: NetFit) -> dict[str, float]:
    """Final figures and plots: curves, confusion matrix, misclassified digits; returns the final values."""
    from flows.experiments import plots  # matplotlib: prewarmed by bp while Prefect's server starts

    mc = runs.client(tracking_uri)
    epochs = fit.epochs
    if epochs:
        mlflow.log_figure(plots.training_curves([e.epoch for e in epochs], [e.cost for e in epochs],
                                                [e.train_accuracy for e in epochs],
                                                [e.val_accuracy for e in epochs]), "plots/curves.png")
    if fit.diverged or not epochs:
        return {}
    final = {"final_cost": epochs[-1].cost}
    if splits.test_X is not None and len(splits.test_y):
        final["test_accuracy"] = float((fit.net.predict(splits.test_X) == splits.test_y).mean())
    if len(splits.val_y):
        predicted = fit.net.predict(splits.val_X)
        final["best_val_accuracy"] = max(e.val_accuracy for e in epochs)
        mlflow.log_figure(plots.confusion_matrix(splits.val_y, predicted), "plots/confusion_matrix.png")
        mlflow.log_figure(plots.misclassified(splits.val_images, splits.val_y, predicted),
                          "plots/misclassified.png")
    metrics.log_values(mc, run_id, final, step=epochs[-1].epoch)
    return final


@logging_task
def log_model(run_id: str, splits: MnistSplits, fit: NetFit) -> None:
    """The network as a pyfunc model reading raw pixels 0-255 and returning digits, produced at the last epoch."""
    from flows.tracking.models import log_network_model

    example = splits.val_images[:3] if len(splits.val_images) else (splits.train_X[:3] * 255).round()
    with tempfile.TemporaryDirectory() as tmp:
        log_network_model(run_id, Path(tmp), fit.net, example, input_scale=1 / 255, output="class",
                          step=fit.epochs[-1].epoch if fit.epochs else 0)


def fit_and_log(config: MnistConfig, splits: MnistSplits, tracking_uri: str, run_id: str, tags: dict) -> Trained:
    """Train (logging each epoch as it ends), then the final figures, plots and, unless it diverged, the model."""
    fit = train(splits, config, tracking_uri, run_id, "mlflow.parentRunId" in tags)
    final = log_results(tracking_uri, run_id, splits, fit)
    if not fit.diverged:
        log_model(run_id, splits, fit)
    epochs, last = fit.epochs, {}
    if epochs:  # the last epoch's figures: what a sweep can rank by besides the final ones
        last = {"train_accuracy": epochs[-1].train_accuracy, "train_seconds": epochs[-1].train_seconds}
        if epochs[-1].val_accuracy is not None:
            last["val_accuracy"] = epochs[-1].val_accuracy
    histories = {"cost": [e.cost for e in epochs], "train_accuracy": [e.train_accuracy for e in epochs]}
    return Trained(status=fit.status, reason=fit.message if fit.diverged else None,
                   metrics={**last, **final}, histories=histories)


@flow(name="mnist", log_prints=False)
def mnist(config: MnistConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, data_digest: str | None = None, data_key: str | None = None) -> RunResult:
    """Train a backpropagation network on MNIST digits and track it in MLflow; returns the run's id and outcome.

    ``data_digest``: when given, the digits read must have this sha256 (else the flow fails, naming the file).
    """
    return tracked_training(config, tracking_uri, tags, run_name, data_digest, fit_and_log, _dataset, data_key)


def _dataset(splits: MnistSplits):
    return datasets.array_dataset(splits.train_X, splits.train_y, splits.source, splits.digest)
