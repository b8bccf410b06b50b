"""The tracked-training skeleton every experiment's flow shares.

Resolve the tracking URI, load the data (checking it against a digest the caller recorded),
open the MLflow run, hand over to the kind's own training-and-logging body, and turn a
divergence into a Failed flow state that still carries the run id and what was logged. A kind's
flow keeps only what is particular to it: its tasks and its body.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel

from bpcore import kinds, loading
from bpcore.config import Config
from bpcore.errors import DataError, InputError
from flows.experiments import membership
from flows.runtime import outage, settings, speedups
from flows.tracking import runs
from flows.tracking import tags as tag


class RunResult(BaseModel):
    """What a training flow hands back: the MLflow run and its outcome, without reading MLflow again.

    metrics: the single-valued metrics the run logged (what a sweep ranks by); curve: the history
    of its kind's comparison metric, in step order.
    """

    run_id: str | None = None
    status: str = "finished"  # finished / diverged / failed
    reason: str | None = None
    metrics: dict[str, float] = {}
    curve: list[float] = []


class Trained(BaseModel):
    """What a kind's body returns: status, the single-valued metrics it logged, its metric histories."""

    status: str = "finished"
    reason: str | None = None
    metrics: dict[str, float] = {}
    histories: dict[str, list[float]] = {}


# body(config, data, tracking_uri, run_id, tags) -> Trained; runs inside the open MLflow run
Body = Callable[[Any, Any, str, str, dict[str, str]], Trained]


class _OutcomeNotCrash(logging.Filter):
    """A flow run that ends Failed with an outcome of bp's own (a divergence, bad input) is one line in its logs.

    Prefect's engine logs any failed flow run's exception with its traceback ("Engine execution exited
    with unexpected exception"): on a worker every diverged sweep child would print a page of it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, runs.RunFailed | InputError):
            record.msg, record.args = f"flow run ended Failed: {exc}", ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("prefect.flow_runs").addFilter(_OutcomeNotCrash())


def logging_task(fn):
    """A task that writes to MLflow: retried twice, a second apart, unless it failed waiting for an absent server."""
    return task(fn, retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE,
                retry_condition_fn=outage.retry_unless_unreachable)


@task(cache_policy=NO_CACHE)
def load_data(config: Config) -> Any:
    """Load the data the config names (through its kind's per-process cache)."""
    return loading.load(config)


def check_digest(data, expected: str | None) -> None:
    """Refuse data whose sha256 differs from the one the caller recorded (a sweep's parent or first child,
    a reproduction)."""
    if expected and data.digest != expected:
        raise DataError(f"{data.source}: data differs from what was recorded: expected sha256 {expected}, "
                        f"read {data.digest} (on {socket.gethostname()})")


def default_name(config: Config) -> str:
    """``lr=0.0002`` when the config has a learning rate, else the kind."""
    rate = getattr(getattr(config, "trainer", None), "learning_rate", None)
    return f"lr={rate:g}" if isinstance(rate, float | int) else config.kind


def run_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """The caller's tags, plus the Prefect flow run whose code trains it (``bp.flow_run``: how a sweep finds a
    child a worker trained) and ``bp.deployment`` when a deployment started that flow run."""
    from prefect.runtime import deployment, flow_run

    found = {tag.FLOW_RUN: flow_run.id, tag.DEPLOYMENT: deployment.name if started_by_deployment() else None}
    return {**{key: str(value) for key, value in found.items() if value}, **(tags or {})}


def started_by_deployment() -> bool:
    """Whether a deployment created this flow run, from the flow run in context.

    Not ``prefect.runtime.deployment.id``: in Prefect 3.9 it reads the flow run back from the API
    whenever no deployment started it, two round trips on every ``bp train``.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def prepare_store(tracking_uri: str) -> None:
    """Create a new SQLite store once, and mark FAILED the runs of dead processes on this host (a killed worker's)."""
    from flows.tracking.reap import reap
    from flows.tracking.store import ensure_store

    ensure_store(tracking_uri)
    for run_id, reason in reap(tracking_uri):
        get_run_logger().warning("MLflow run %s marked FAILED: %s", run_id, reason)


@contextmanager
def alongside(*futures) -> Iterator[None]:
    """Run the block while ``futures`` (tasks submitted to Prefect's thread pool) run; then wait for them all.

    A future that failed raises once all are done, so the run is marked FAILED with its reason; an
    error in the block wins over theirs. Nothing is left writing to a run after it has ended, but
    on a stop (Ctrl-C, a signal), which is not waited on.
    """
    try:
        yield
    except Exception:
        _wait(futures)
        raise
    # anything else (Ctrl-C, a signal) goes up at once: the run is marked now, not after their last retry
    _wait(futures)
    for future in futures:
        future.result()


def _wait(futures) -> None:
    for future in futures:
        future.wait()


def tracked_training(config: Config, tracking_uri: str | None, tags: dict[str, str] | None,
                     run_name: str | None, data_digest: str | None, body: Body,
                     dataset: Callable[[Any], Any] | None = None, data_key: str | None = None) -> RunResult | State:
    """One tracked training run of ``config``: the shared part of every kind's flow.

    Returns the RunResult, or a Failed state carrying a Diverged (with its RunResult) when the
    body reports divergence; any other error inside the run marks it FAILED and is raised as
    RunFailed. Bad data raises DataError before any run opens. ``data_key``: a sweep's key under
    which its children agree on the data's digest (when the machine that submitted it had none).
    A sweep child on a worker whose sweep is already over ends Cancelled without training.
    """
    settings.apply()  # a worker's flow-run process starts here, not in bp's command line
    speedups.no_notebook_probe()
    tracking_uri = runs.resolve_tracking_uri(tracking_uri)
    if started_by_deployment() and "mlflow.parentRunId" not in (tags or {}):  # no bp command (nor sweep) ran first
        prepare_store(tracking_uri)
    if started_by_deployment() and (gone := membership.sweep_gone(tags or {}, tracking_uri)):
        get_run_logger().warning("not trained: %s", gone)
        return Cancelled(message=gone)
    data = load_data(config)
    if data_key:
        data_digest = membership.agreed_digest(data_key, data.digest)
    check_digest(data, data_digest)
    kind = kinds.get(config.kind)
    try:
        with runs.tracked_run(config, data.source, data.digest, dataset(data) if dataset else None,
                                  tracking_uri, run_name or default_name(config), run_tags(tags)) as run_id:
            trained = body(config, data, tracking_uri, run_id, tags or {})
            result = RunResult(run_id=run_id, status=trained.status, reason=trained.reason,
                               metrics=trained.metrics, curve=trained.histories.get(kind.curve[0], []))
            if trained.status == "diverged":
                raise runs.Diverged(run_id, trained.reason or "diverged", result)
    except runs.Diverged as exc:
        return diverged_state(exc)
    shown = ", ".join(f"{k} {v:.6g}" for k, v in trained.metrics.items() if k in kind.metrics)
    get_run_logger().info("finished: %s (MLflow run %s)", shown, run_id)
    return result


def diverged_state(exc: runs.Diverged) -> State:
    """Log the reason once and end the flow run Failed, carrying the exception (and its run id)."""
    get_run_logger().warning("%s (MLflow run %s)", exc.reason, exc.run_id)
    return Failed(message=exc.reason, data=exc)
