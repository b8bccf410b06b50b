"""The line-fitting experiment as a Prefect flow: load -> train -> log to MLflow.

Entrypoint ``flows/linreg.py:linreg``. Parameters are the validated config and a tracking URI:
plain, JSON-serialisable values, so the flow runs the same from ``bp train`` or a deployment.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from bpcore import linreg as gd
from bpcore.config import LineTrainer, LinRegConfig
from bpcore.data import Table, load_line_data
from flows import tracking
from flows.outcome import diverged_state


@task(cache_policy=NO_CACHE)
def load_data(config: LinRegConfig) -> Table:
    """Load the table the config names."""
    return load_line_data(config.data, config.seed)


@task(cache_policy=NO_CACHE)
def train(table: Table, trainer: LineTrainer) -> tuple[gd.LineFit, float]:
    """Gradient descent on the table; returns the fit and its wall time in seconds."""
    start = time.perf_counter()
    fit = gd.fit(table.X, table.y, trainer)
    return fit, time.perf_counter() - start


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_metrics(tracking_uri: str, run_id: str, table: Table, fit: gd.LineFit, seconds: float,
                ts: int) -> None:
    """The cost history (batched), the weights and the diagnostics."""
    mc = tracking.client(tracking_uri)
    tracking.log_history(mc, run_id, "cost", fit.cost, timestamp_ms=ts)
    # cost minus the least-squares optimum: on a log axis, learning rates that all flatten
    # near the same cost still differ by orders of magnitude
    tracking.log_history(mc, run_id, "excess_cost", fit.excess_cost, timestamp_ms=ts)
    values = {"lambda_max": fit.lambda_max, "max_stable_lr": fit.max_stable_lr,
              "least_squares_cost": fit.optimum_cost, "train_seconds": seconds}
    if not fit.diverged:
        values.update(final_cost=fit.cost[-1], intercept=fit.b)
        if fit.w.size == 1:
            values["slope"] = fit.w[0]
        else:
            values.update({f"slope.{name}": w for name, w in zip(table.feature_names, fit.w)})
    tracking.log_values(mc, run_id, values, step=fit.cost.size - 1, timestamp_ms=ts)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_plots(table: Table, fit: gd.LineFit) -> None:
    """plots/cost.png, and plots/fit.png (the line through the data) when training finished."""
    from flows import plots  # matplotlib costs ~1 s to import: bp's start-up prewarms it

    title = f"cost: {fit.status}, {fit.cost.size - 1} iterations"
    mlflow.log_figure(plots.cost_curve(fit.cost, title), "plots/cost.png")
    if fit.diverged:
        return
    if fit.w.size == 1:
        fig = plots.line_fit(table.X[:, 0], table.y, fit.w[0], fit.b,
                             table.feature_names[0], table.target_name)
    else:
        fig = plots.predicted_vs_actual(table.y, table.X @ fit.w + fit.b, table.target_name)
    mlflow.log_figure(fig, "plots/fit.png")


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_model(run_id: str, table: Table, fit: gd.LineFit) -> None:
    """The fitted line as a pyfunc model under ``model``."""
    from flows.models import log_line_model  # mlflow.pyfunc's import is prewarmed by bp too

    with tempfile.TemporaryDirectory() as tmp:
        log_line_model(run_id, Path(tmp), table, fit.w, fit.b)


@flow(name="linreg", log_prints=False)
def linreg(config: LinRegConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
           run_name: str | None = None) -> str:
    """Fit a line by gradient descent and track it in MLflow; returns the MLflow run id."""
    logger = get_run_logger()
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    table = load_data(config)
    name = run_name or f"lr={config.trainer.learning_rate:g}"
    try:
        dataset = tracking.table_dataset(table)
        with tracking.tracked_run(config, table.source, table.digest, dataset, tracking_uri, name, tags) as run_id:
            fit, seconds = train(table, config.trainer)
            log_metrics(tracking_uri, run_id, table, fit, seconds, tracking.now_ms())
            log_plots(table, fit)
            if fit.diverged:
                raise tracking.Diverged(run_id, fit.message)
            log_model(run_id, table, fit)
    except tracking.Diverged as exc:
        return diverged_state(exc)
    logger.info("finished: cost %.10g, b = %.10g, w = %s (MLflow run %s)",
                fit.cost[-1], fit.b, np.array2string(fit.w, precision=10), run_id)
    return run_id
