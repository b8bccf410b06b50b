"""The steps every experiment's flow takes, in order: start, load, track; the kind's flow trains and logs between.

    mc = pipeline.start(tracking_uri, sweep)          # this process's settings; the MLflow client of the run
    data = pipeline.load(config, data_digest, sweep)  # bad data fails here, before any MLflow run opens
    with pipeline.tracked(config, data, mc, tags, run_name, sweep) as run:
        ...                                           # the kind's tasks, logging through run.client to run.id
        run.ended(Trained(...))
    return run.outcome                                # the RunResult, or a Failed state when it diverged

A divergence ends the flow run Failed, still carrying the run id and what was logged; any other
error inside the block marks the MLflow run FAILED and is raised as RunFailed.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State
from pydantic import BaseModel

from bpcore import kinds
from bpcore.config.models import Config
from bpcore.errors import DataError, InputError
from flows.experiments import steering
from flows.experiments.membership import SweepMember
from flows.runtime import internals, outage, settings, terminal
from flows.tracking import runs
from flows.tracking import tags as tag


class RunResult(BaseModel):
    """What a training flow hands back: the MLflow run and its outcome, without reading MLflow again.

    metrics: the single-valued metrics the run logged.
    """

    run_id: str | None = None
    status: str = "finished"  # finished / diverged / failed; a sweep child's also pruned / skipped
    reason: str | None = None
    metrics: dict[str, float] = {}


class Trained(BaseModel):
    """What a kind's flow records of its training with ``Run.ended``: status, reason, the single-valued metrics."""

    status: str = "finished"
    reason: str | None = None
    metrics: dict[str, float] = {}


@dataclass
class Run:
    """The open MLflow run of a training flow: its id, and the one client every task of the run logs through."""

    id: str
    client: MlflowClient
    trained: Trained | None = None
    outcome: RunResult | State | None = None

    def ended(self, trained: Trained) -> None:
        """Record what the training came to; the run is ended by ``tracked`` as the block closes."""
        self.trained = trained


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
    return kinds.load(config)


def check_digest(data, expected: str | None) -> None:
    """Refuse data whose sha256 differs from the one the caller recorded (a sweep's, read where its flow runs;
    ``bp resume``'s, from the run's record)."""
    if expected and data.digest != expected:
        raise DataError(f"{data.source}: data differs from what was recorded: expected sha256 {expected}, "
                        f"read {data.digest} (on {socket.gethostname()})")


def default_name(config: Config) -> str:
    """``lr=0.0002`` when the config has a learning rate, else the kind."""
    rate = getattr(getattr(config, "trainer", None), "learning_rate", None)
    return f"lr={rate:g}" if isinstance(rate, float | int) else config.kind


def run_tags(tags: dict[str, str] | None, sweep: SweepMember | None = None) -> dict[str, str]:
    """The caller's tags, plus the Prefect flow run whose code trains it (``bp.flow_run``: how a sweep finds a
    child a worker trained), ``bp.deployment`` when a deployment started that flow run, and a sweep
    child's place in its sweep."""
    from prefect.runtime import deployment, flow_run

    found = {tag.FLOW_RUN: flow_run.id, tag.DEPLOYMENT: deployment.name if started_by_deployment() else None}
    return {**{key: str(value) for key, value in found.items() if value}, **(sweep.tags() if sweep else {}),
            **(tags or {})}


def started_by_deployment() -> bool:
    """Whether a deployment created this flow run, from the flow run in context.

    Not ``prefect.runtime.deployment.id``: it reads the flow run back from the API whenever no
    deployment started it, round trips on every ``bp train``.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return bool(context and context.flow_run and context.flow_run.deployment_id)


def prepare_store(tracking_uri: str) -> None:
    """Check the store, create a new SQLite one, and mark FAILED the runs of dead processes on this host (a killed
    worker's): what ``bp`` does before a run, for a flow run a worker started."""
    from flows.tracking import store
    from flows.tracking.reap import reap

    store.check_store(tracking_uri)
    store.ensure_store(tracking_uri)
    for run_id, reason in reap(tracking_uri, checked=True):
        terminal.logger().warning("MLflow run %s marked FAILED: %s", run_id, reason)


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


def start(tracking_uri: str | None, sweep: SweepMember | None = None) -> MlflowClient:
    """Begin a training flow: bp's settings in this process, and the MLflow client of the run to come.

    A flow run a deployment started on a worker (not a sweep's point: its sweep did this) also
    creates a new SQLite store and marks FAILED the runs of dead processes on this host.
    """
    settings.apply()  # a worker's flow-run process starts here, not in bp's command line
    internals.no_notebook_probe()
    mc = runs.client(tracking_uri)
    if started_by_deployment() and sweep is None:
        prepare_store(mc.tracking_uri)
    return mc


def load(config: Config, data_digest: str | None = None, sweep: SweepMember | None = None) -> Any:
    """The config's data, checked against ``data_digest`` when the caller recorded one (a sweep's, read where its
    flow runs). Bad data raises DataError."""
    data = load_data(config)
    check_digest(data, data_digest)
    return data


@contextmanager
def tracked(config: Config, data: Any, mc: MlflowClient, tags: dict[str, str] | None, run_name: str | None,
            sweep: SweepMember | None = None, dataset: Any = None, resume: str | None = None) -> Iterator[Run]:
    """Open the MLflow run of ``config`` on ``data`` (logged as ``dataset`` when given) and yield its handle.

    As the block closes the run ends FINISHED, or FAILED when the training recorded a divergence (a sweep
    child stopped early: FINISHED when pruned, KILLED when skipped, ``bp.status`` saying which);
    ``run.outcome`` is then the RunResult, or a Failed state carrying the Diverged (with the run id).
    ``resume``: the id of an ended run to reopen and go on with instead (``bp resume``).
    """
    kind = kinds.get(config.kind)
    name = run_name or default_name(config)
    handle = None
    try:
        with runs.tracked_run(config, data.source, data.digest, dataset, mc, name, run_tags(tags, sweep),
                              resume) as run_id:
            handle = Run(run_id, mc)
            yield handle
            trained = handle.trained
            if trained is None:
                raise RuntimeError("the flow's block ended without recording its training (run.ended)")
            handle.outcome = RunResult(run_id=run_id, status=trained.status, reason=trained.reason,
                                       metrics=trained.metrics)
            if trained.status == "diverged":
                raise runs.Diverged(run_id, trained.reason or "diverged", handle.outcome)
            if trained.status in EARLY:  # a sweep's decision: a result (pruned) or not trained on (skipped)
                raise runs.Ended(EARLY[trained.status], trained.status, trained.reason or trained.status)
    except runs.Diverged as exc:
        handle.outcome = diverged_state(exc)
        return
    shown = ", ".join(f"{k} {v:.6g}" for k, v in trained.metrics.items() if k in kind.metrics)
    if trained.status in EARLY:
        terminal.logger().info("%s: %s (MLflow run %s)", trained.status, trained.reason, handle.id)
    else:
        terminal.logger().info("finished: %s (MLflow run %s)", shown, handle.id)


EARLY = {steering.PRUNED: "FINISHED", steering.SKIPPED: "KILLED"}  # a sweep child's early end: its run's status


def stopped_before_training() -> steering.Stop | None:
    """A sweep child skipped after its run opened, before it trained (its sweep's steer says why), or None."""
    steer = steering.current()
    return steer.check() if steer is not None else None


def diverged_state(exc: runs.Diverged) -> State:
    """Log the reason once and end the flow run Failed, carrying the exception (and its run id)."""
    terminal.logger().warning("%s (MLflow run %s)", exc.reason, exc.run_id)
    return Failed(message=exc.reason, data=exc)
