"""The line-fitting experiment as a Prefect flow: load -> train -> log to MLflow.

Entrypoint ``flows/experiments/linreg.py:linreg``. Parameters are the validated config and a tracking URI:
plain, JSON-serialisable values, so the flow runs the same from ``bp train`` or a deployment.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bpcore.config.models import LineTrainer, LinRegConfig
from bpcore.data.table import Table
from bpcore.train import linreg as gd
from flows.experiments import pipeline
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import Run, RunResult, Trained, alongside, logging_task
from flows.tracking import datasets, metrics


@task(cache_policy=NO_CACHE)
def train(table: Table, trainer: LineTrainer) -> tuple[gd.LineFit, float]:
    """Gradient descent on the table; returns the fit and its wall time in seconds."""
    start = time.perf_counter()
    fit = gd.fit(table.X, table.y, trainer)
    return fit, time.perf_counter() - start


@logging_task
def log_final(run: Run, table: Table, fit: gd.LineFit, seconds: float, ts: int,
              model_id: str | None) -> dict[str, float]:
    """The weights and diagnostics, with each curve's last point, at the last step; returns the single values.

    ``model_id``: the model trained here, which these figures are linked to (as MLflow links a model
    logged at a step to that step's metrics).
    """
    values = {"lambda_max": fit.lambda_max, "max_stable_lr": fit.max_stable_lr,
              "least_squares_cost": fit.optimum_cost, "train_seconds": seconds}
    if not fit.diverged:
        values.update(final_cost=fit.cost[-1], intercept=fit.b)
        if fit.w.size == 1:
            values["slope"] = fit.w[0]
        else:
            values.update({f"slope.{name}": w for name, w in zip(table.feature_names, fit.w)})
    last = {key: curve[-1] for key, curve in _curves(fit).items()}
    metrics.log_values(run.client, run.id, {**values, **last}, step=fit.cost.size - 1, timestamp_ms=ts,
                       model_id=model_id)
    return {key: float(value) for key, value in values.items()}


@logging_task
def log_curves(run: Run, fit: gd.LineFit, ts: int) -> None:
    """The cost and excess-cost curves at every step before the last (log_final logs the last), batched."""
    for key, curve in _curves(fit).items():
        metrics.log_history(run.client, run.id, key, curve[:-1], timestamp_ms=ts)


def _curves(fit: gd.LineFit) -> dict[str, np.ndarray]:
    # cost minus the least-squares optimum: on a log axis, learning rates that all flatten
    # near the same cost still differ by orders of magnitude
    return {"cost": fit.cost, "excess_cost": fit.excess_cost}


@logging_task
def log_plots(run: Run, table: Table, fit: gd.LineFit) -> None:
    """plots/cost.png, and plots/fit.png (the line through the data) when training finished."""
    from flows.experiments import plots  # matplotlib is slow to import: bp's start-up prewarms it

    title = f"cost: {fit.status}, {fit.cost.size - 1} iterations"
    run.client.log_figure(run.id, plots.cost_curve(fit.cost, title), "plots/cost.png")
    if fit.diverged:
        return
    if fit.w.size == 1:
        fig = plots.line_fit(table.X[:, 0], table.y, fit.w[0], fit.b,
                             table.feature_names[0], table.target_name)
    else:
        fig = plots.predicted_vs_actual(table.y, table.X @ fit.w + fit.b, table.target_name)
    run.client.log_figure(run.id, fig, "plots/fit.png")


@logging_task
def log_model(run: Run, table: Table, fit: gd.LineFit) -> str:
    """The fitted line as a pyfunc model under ``model``, produced at the last step; returns its model id."""
    from flows.tracking.models import log_line_model  # mlflow.pyfunc's import is prewarmed by bp too

    with tempfile.TemporaryDirectory() as tmp:
        return log_line_model(run.id, Path(tmp), table, fit.w, fit.b, step=fit.cost.size - 1).model_id


@flow(name="linreg", log_prints=False)
def linreg(config: LinRegConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
           run_name: str | None = None, data_digest: str | None = None,
           sweep: SweepMember | None = None, resume: str | None = None) -> RunResult:
    """Fit a line by gradient descent and track it in MLflow; returns the run's id and outcome.

    ``data_digest``: when given, the data read must have this sha256 (else the flow fails, naming the
    file); ``sweep``: the sweep this run is a point of; ``resume``: an ended run of this config to reopen and
    train again from the start (a line fit takes seconds: it keeps no checkpoint).

    The curves (two 1000-point batches, mostly the tracking server's time) and the plots are made
    on Prefect's thread pool while this thread logs the model, and then the last step's figures.
    MLflow links a model to the run's metrics at the step it was logged at, reading every metric's
    history back to find them; the curves stop one step short and the last step is logged after
    the model, so it finds none and log_final links them itself.
    """
    mc = pipeline.start(tracking_uri, sweep)
    table = pipeline.load(config, data_digest, sweep)
    with pipeline.tracked(config, table, mc, tags, run_name, sweep, datasets.table_dataset(table), resume) as run:
        if stop := pipeline.stopped_before_training():
            run.ended(Trained(status=stop.status, reason=stop.reason))
        else:
            fit, seconds = train(table, config.trainer)
            ts = metrics.now_ms()
            with alongside(log_curves.submit(run, fit, ts), log_plots.submit(run, table, fit)):
                model_id = None if fit.diverged else log_model(run, table, fit)
                values = log_final(run, table, fit, seconds, ts, model_id)
            run.ended(Trained(status=fit.status, reason=fit.message if fit.diverged else None, metrics=values))
    return run.outcome
