"""The one-neuron-per-layer chain as a Prefect flow: watch the chain rule descend in MLflow.

Entrypoint ``flows/experiments/chain.py:chain``. Every step logs the cost, each activation, weight and bias,
and every partial derivative (``dC_dw3``, ``dC_db3``, ``dC_da2``, ...), so the MLflow UI can plot
any of them against the step.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bpcore.config.models import ChainConfig
from bpcore.train.chain import Chain, descend
from bpcore.train.network import Network
from flows.experiments import pipeline
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import Run, RunResult, Trained, alongside, logging_task
from flows.tracking import metrics


@task(cache_policy=NO_CACHE)
def train(config: ChainConfig) -> tuple[Chain, list[dict[str, float]]]:
    """Gradient descent on the chain's one example; one record of every partial per step."""
    chain = Chain.create(config.trainer.layers, np.random.default_rng(config.seed))
    history = descend(chain, config.data.x, config.data.y, config.trainer.learning_rate,
                      config.trainer.iterations)
    return chain, history


@logging_task
def log_model(run: Run, chain: Chain, history: list[dict[str, float]]) -> str:
    """The chain as a pyfunc model (x -> a(L)), produced at the last step; returns its model id."""
    from flows.tracking.models import log_network_model

    L = len(chain.w)
    net = Network((1,) * (L + 1), "sigmoid", "quadratic",
                  [np.array([[w]]) for w in chain.w], [np.array([b]) for b in chain.b])
    with tempfile.TemporaryDirectory() as tmp:
        return log_network_model(run.id, Path(tmp), net, np.array([[history[0]["a0"]]]), 1.0, "activation",
                                 step=len(history) - 1).model_id


@logging_task
def log_final(run: Run, history: list[dict[str, float]], ts: int, model_id: str) -> dict[str, float]:
    """``final_cost`` and every quantity's last value, at the last step, linked to the model."""
    final = {"final_cost": history[-1]["cost"]}
    metrics.log_values(run.client, run.id, {**history[-1], **final}, step=len(history) - 1, timestamp_ms=ts,
                       model_id=model_id)
    return final


@logging_task
def log_history(run: Run, history: list[dict[str, float]], ts: int) -> None:
    """Every recorded quantity at every step before the last (log_final logs the last), batched."""
    for key in history[0]:
        metrics.log_history(run.client, run.id, key, [h[key] for h in history[:-1]], timestamp_ms=ts)


@logging_task
def log_plots(run: Run, history: list[dict[str, float]]) -> None:
    """plots/cost.png and plots/partials.png."""
    from flows.experiments import plots

    cost = np.array([h["cost"] for h in history])
    run.client.log_figure(run.id, plots.cost_curve(cost, "chain: cost (a(L) - y)^2"), "plots/cost.png")
    run.client.log_figure(run.id, plots.chain_partials(history), "plots/partials.png")


@flow(name="chain", log_prints=False)
def chain(config: ChainConfig, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, data_digest: str | None = None, sweep: SweepMember | None = None,
          resume: str | None = None) -> RunResult:
    """Descend the chain on one example and track every partial derivative; returns the run's id and outcome.
    ``resume``: an ended run of this config to reopen and train again from the start (no checkpoint: it is quick).

    The model is logged first: MLflow links a model to the run's metrics at the step it was logged at
    by reading back the history of every metric the run has (a score of them here); logged before
    any, it reads none, and log_final links the last step's figures itself. The histories (the bulk
    of the logging) are then written on Prefect's thread pool while this thread draws the plots.
    """
    mc = pipeline.start(tracking_uri, sweep)
    example = pipeline.load(config, data_digest, sweep)
    with pipeline.tracked(config, example, mc, tags, run_name, sweep, resume=resume) as run:
        trained, history = train(config)
        model_id = log_model(run, trained, history)
        ts = metrics.now_ms()
        final = log_final(run, history, ts, model_id)
        with alongside(log_history.submit(run, history, ts)):
            log_plots(run, history)
        run.ended(Trained(metrics=final))
    return run.outcome
