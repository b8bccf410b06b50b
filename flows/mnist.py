"""The MNIST experiment as a Prefect flow: load digits -> train the network -> log to MLflow.

Entrypoint ``flows/mnist.py:mnist``. Per-epoch metrics are logged while training runs, so the
MLflow UI shows the curves grow; a progress bar runs on a terminal and a progress artifact in
the Prefect UI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from bpcore.config import MnistConfig
from bpcore.mnist import MnistSplits, load_mnist
from bpcore.training import EpochStats, NetFit, fit_network
from flows import tracking
from flows.outcome import diverged_state
from flows.progress import EpochBar, PrefectProgress


@task(cache_policy=NO_CACHE)
def load_digits(config: MnistConfig) -> MnistSplits:
    """Load, split and scale the digits the config names."""
    return load_mnist(config.data, config.seed, config.trainer.dtype)


@task(cache_policy=NO_CACHE)
def train(splits: MnistSplits, config: MnistConfig, tracking_uri: str, run_id: str, in_sweep: bool) -> NetFit:
    """Mini-batch SGD; every epoch's figures go to MLflow as soon as the epoch ends."""
    mc = tracking.client(tracking_uri)
    bar = EpochBar(config.trainer.epochs, quiet=in_sweep)
    progress = PrefectProgress(config.trainer.epochs, key="mnist-training",
                               description=f"MLflow run {run_id}: epochs done")

    def on_epoch(stats: EpochStats) -> None:
        ts = tracking.now_ms()
        values = {"cost": stats.cost, "train_accuracy": stats.train_accuracy,
                  "train_seconds": stats.train_seconds}
        if stats.val_accuracy is not None:
            values["val_accuracy"] = stats.val_accuracy
        metrics = [Metric(k, float(v), ts, stats.epoch) for k, v in values.items()]
        tracking.with_retries(lambda: mc.log_batch(run_id, metrics=metrics))
        bar.update(stats)
        progress.update(stats)

    try:
        return fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y,
                           config.trainer, config.seed, on_epoch)
    finally:
        bar.close()


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_results(tracking_uri: str, run_id: str, splits: MnistSplits, fit: NetFit) -> None:
    """Final figures and plots: curves, confusion matrix, misclassified digits."""
    from flows import plots  # matplotlib: prewarmed by bp while Prefect's server starts

    mc = tracking.client(tracking_uri)
    epochs = fit.epochs
    if epochs:
        mlflow.log_figure(plots.training_curves([e.epoch for e in epochs], [e.cost for e in epochs],
                                                [e.train_accuracy for e in epochs],
                                                [e.val_accuracy for e in epochs]), "plots/curves.png")
    if fit.diverged or not epochs:
        return
    final = {"final_cost": epochs[-1].cost}
    if splits.test_X is not None and len(splits.test_y):
        final["test_accuracy"] = float((fit.net.predict(splits.test_X) == splits.test_y).mean())
    if len(splits.val_y):
        predicted = fit.net.predict(splits.val_X)
        final["best_val_accuracy"] = max(e.val_accuracy for e in epochs)
        mlflow.log_figure(plots.confusion_matrix(splits.val_y, predicted), "plots/confusion_matrix.png")
        mlflow.log_figure(plots.misclassified(splits.val_images, splits.val_y, predicted),
                          "plots/misclassified.png")
    tracking.log_values(mc, run_id, final, step=epochs[-1].epoch)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_model(run_id: str, splits: MnistSplits, fit: NetFit) -> None:
    """The network as a pyfunc model reading raw pixels 0-255 and returning digits."""
    from flows.models import log_network_model

    example = splits.val_images[:3] if len(splits.val_images) else (splits.train_X[:3] * 255).round()
    with tempfile.TemporaryDirectory() as tmp:
        log_network_model(run_id, Path(tmp), fit.net, example, input_scale=1 / 255, output="class")


@flow(name="mnist", log_prints=False)
def mnist(config: MnistConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None) -> str:
    """Train a backpropagation network on MNIST digits and track it in MLflow; returns the run id."""
    logger = get_run_logger()
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    splits = load_digits(config)
    name = run_name or f"lr={config.trainer.learning_rate:g}"
    try:
        dataset = tracking.array_dataset(splits.train_X, splits.train_y, splits.source, splits.digest)
        with tracking.tracked_run(config, splits.source, splits.digest, dataset, tracking_uri, name, tags) as run_id:
            fit = train(splits, config, tracking_uri, run_id, "mlflow.parentRunId" in (tags or {}))
            log_results(tracking_uri, run_id, splits, fit)
            if fit.diverged:
                raise tracking.Diverged(run_id, fit.message)
            log_model(run_id, splits, fit)
    except tracking.Diverged as exc:
        return diverged_state(exc)
    last = fit.epochs[-1]
    val = f", validation accuracy {last.val_accuracy:.2%}" if last.val_accuracy is not None else ""
    logger.info("finished %d epochs in %.1f s: cost %.4f%s (MLflow run %s)", last.epoch, last.train_seconds,
                last.cost, val, run_id)
    return run_id
