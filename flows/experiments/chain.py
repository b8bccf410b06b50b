"""The one-neuron-per-layer chain as a Prefect flow: watch the chain rule descend in MLflow.

Entrypoint ``flows/experiments/chain.py:chain``. Every step logs the cost, each activation, weight and bias,
and every partial derivative (``dC_dw3``, ``dC_db3``, ``dC_da2``, ...), so the MLflow UI can plot
any of them against the step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bpcore.chain import Chain, descend
from bpcore.config import ChainConfig
from bpcore.network import Network
from flows.experiments.skeleton import RunResult, Trained, alongside, logging_task, tracked_training
from flows.tracking import metrics, runs


@task(cache_policy=NO_CACHE)
def train(config: ChainConfig) -> tuple[Chain, list[dict[str, float]]]:
    """Gradient descent on the chain's one example; one record of every partial per step."""
    chain = Chain.create(config.trainer.layers, np.random.default_rng(config.seed))
    history = descend(chain, config.data.x, config.data.y, config.trainer.learning_rate,
                      config.trainer.iterations)
    return chain, history


@logging_task
def log_model(run_id: str, chain: Chain, history: list[dict[str, float]]) -> str:
    """The chain as a pyfunc model (x -> a(L)), produced at the last step; returns its model id."""
    from flows.tracking.models import log_network_model

    L = len(chain.w)
    net = Network((1,) * (L + 1), "sigmoid", "quadratic",
                  [np.array([[w]]) for w in chain.w], [np.array([b]) for b in chain.b])
    with tempfile.TemporaryDirectory() as tmp:
        return log_network_model(run_id, Path(tmp), net, np.array([[history[0]["a0"]]]), 1.0, "activation",
                                 step=len(history) - 1).model_id


@logging_task
def log_final(tracking_uri: str, run_id: str, history: list[dict[str, float]], ts: int,
              model_id: str) -> dict[str, float]:
    """``final_cost`` and every quantity's last value, at the last step, linked to the model."""
    final = {"final_cost": history[-1]["cost"]}
    metrics.log_values(runs.client(tracking_uri), run_id, {**history[-1], **final}, step=len(history) - 1,
                        timestamp_ms=ts, model_id=model_id)
    return final


@logging_task
def log_history(tracking_uri: str, run_id: str, history: list[dict[str, float]], ts: int) -> None:
    """Every recorded quantity at every step before the last (log_final logs the last), batched."""
    mc = runs.client(tracking_uri)
    for key in history[0]:
        metrics.log_history(mc, run_id, key, [h[key] for h in history[:-1]], timestamp_ms=ts)


@logging_task
def log_plots(history: list[dict[str, float]]) -> None:
    """plots/cost.png and plots/partials.png."""
    from flows.experiments import plots

    cost = np.array([h["cost"] for h in history])
    mlflow.log_figure(plots.cost_curve(cost, "chain: cost (a(L) - y)^2"), "plots/cost.png")
    mlflow.log_figure(plots.chain_partials(history), "plots/partials.png")


def descend_and_log(config: ChainConfig, example, tracking_uri: str, run_id: str, tags: dict) -> Trained:
    """Descend; log the chain as a model, the last step's figures linked to it, every history and the plots.

    The model comes first: MLflow links a model to the run's metrics at the step it was logged at by
    reading back the history of every metric the run has (a score of them here); logged before any,
    it reads none, and log_final links the last step's figures itself. The histories (the bulk of
    the logging) are then written on Prefect's thread pool while this thread draws the plots.
    """
    trained, history = train(config)
    model_id = log_model(run_id, trained, history)
    ts = metrics.now_ms()
    final = log_final(tracking_uri, run_id, history, ts, model_id)
    with alongside(log_history.submit(tracking_uri, run_id, history, ts)):
        log_plots(history)
    return Trained(metrics=final, histories={"cost": [h["cost"] for h in history]})


@flow(name="chain", log_prints=False)
def chain(config: ChainConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, data_digest: str | None = None, data_key: str | None = None) -> RunResult:
    """Descend the chain on one example and track every partial derivative; returns the run's id and outcome."""
    return tracked_training(config, tracking_uri, tags, run_name, data_digest, descend_and_log, data_key=data_key)
