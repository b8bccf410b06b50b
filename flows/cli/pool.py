"""``bp sweep CONFIG --pool NAME``: the sweep as a flow run on a work pool, followed from this terminal.

The sweep's flow runs where the pool's workers are (they know their Dask scheduler: ``flows.sweep.tls``), so
this machine needs neither the data nor a route to the scheduler, and the sweep outlives this process: a
laptop that sleeps, or a killed ``bp sweep``, loses nothing. The flow run is made from the pool's sweep
deployment (``sweep/pool-<NAME>``, registered here when missing or changed) with the config as parameters.
Following it prints its logs as they arrive, then the results table (the flow run's ``sweep-results``
artifact) and the parent's ``run_id:`` line; the exit code is the final state's. Ctrl-C or SIGTERM cancels
the flow run: its worker stops the flow, whose points stop after their epoch and end KILLED.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from flows.cli import exits
from flows.cli.flow_logs import FlowRunLogs

POLL_SECONDS = 1.0
CANCEL_WAIT = 60.0  # s a cancelled sweep is followed until its flow run says Cancelled (its points stop meanwhile)


def deployment_name(pool: str) -> str:
    return f"pool-{pool}"


@dataclass
class Submitted:
    """A sweep's flow run on a pool: its id, its name, where the pool is, and the experiment its runs go to."""

    flow_run_id: str
    name: str
    pool: str
    experiment: str


def submit(config: dict[str, Any], run_name: str, parallel: int | None, tags: dict[str, str] | None,
           pool: str, resume: str | None = None) -> Submitted:
    """A flow run of the sweep on ``pool``, made from the pool's sweep deployment (registered when missing);
    ``resume``: the parent run of a sweep it finishes."""
    from prefect.client.orchestration import get_client
    from prefect.deployments.runner import EntrypointType

    from flows.sweep.flow import sweep

    deployment = sweep.to_deployment(name=deployment_name(pool), work_pool_name=pool, tags=["bp", "sweep"],
                                     entrypoint_type=EntrypointType.MODULE_PATH,
                                     description=f"bp: the sweeps bp sweep --pool {pool} submits")
    deployment_id = deployment.apply(work_pool_name=pool)
    parameters = {"config": config, "run_name": run_name, "parallel": parallel, "tags": tags, "resume": resume}
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters, tags=["bp", "sweep"])
    return Submitted(str(run.id), run.name, pool, config["experiment"])


def follow(submitted: Submitted, tracking_uri: str, render: exits.Render, verbose: bool = False) -> int:
    """Print the flow run's logs until it ends; then its results and ``run_id:``; the exit code of its state.
    Ctrl-C or SIGTERM meanwhile cancels it (followed until it is Cancelled, or ``CANCEL_WAIT`` s)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        logs = FlowRunLogs(client, submitted.flow_run_id, verbose)
        try:
            state = _until_final(client, logs)
        except (KeyboardInterrupt, exits.Stopped) as stop:
            code = exits.INTERRUPTED if isinstance(stop, KeyboardInterrupt) else stop.code
            why = "interrupted (Ctrl-C)" if isinstance(stop, KeyboardInterrupt) else str(stop)
            _cancel(client, submitted.flow_run_id, f"bp sweep was {why}: the sweep is cancelled")
            print(f"bp: {why}: cancelling flow run {submitted.name}; its points stop after their epoch",
                  file=sys.stderr)
            state = _until_final(client, logs, CANCEL_WAIT)
            if state is not None and state.is_cancelled():
                parent = _parent(submitted, tracking_uri)
                then = f"; resume with: bp resume {parent.info.run_id} --pool {submitted.pool}" if parent else ""
                print(f"bp: flow run {submitted.name} cancelled{then}", file=sys.stderr)
            return code
        except ServerLost:
            from flows.runtime import outage
            from flows.server.prefect_api import configured

            print(f"bp: the Prefect server at {configured()[0]} stopped answering (waited about "
                  f"{outage.seconds():g} s, {outage.VARIABLE}): no longer following flow run {submitted.name}, "
                  "which its worker runs on", file=sys.stderr)
            return exits.FAILED
    return _outcome(submitted, state, tracking_uri, render)


def _away(exc: BaseException) -> bool:
    """Whether a Prefect client call failed because the server is away (no answer, or 5xx while it restarts)."""
    import httpx

    from flows.runtime import outage

    status = getattr(getattr(exc, "response", None), "status_code", 0)
    return isinstance(exc, httpx.TransportError) or status >= 500 or outage.unreachable(exc)


class ServerLost(Exception):
    """The Prefect server failed every request for longer than ``BP_SERVER_TIMEOUT``."""


def _log_batch_seconds() -> float:
    """How long a process's log records may wait before Prefect sends them to the server (its batch interval), and a
    second more."""
    from prefect.settings import get_current_settings

    return float(get_current_settings().logging.to_api.batch_interval) + 1.0


def _until_final(client, logs: FlowRunLogs, timeout: float | None = None):
    """The flow run's final state once it has one, its logs printed meanwhile (None after ``timeout`` s).
    ServerLost once the server has not answered for ``BP_SERVER_TIMEOUT`` s in a row."""
    from prefect.settings import temporary_settings

    # the loop keeps the server's budget itself, a poll at a time: calls that first retried on their own (Prefect's
    # retries span about the budget) made the follower give up after two or three budgets (42 s for 15)
    with temporary_settings(updates={"client.max_retries": 0}):
        return _poll(client, logs, timeout)


def _poll(client, logs: FlowRunLogs, timeout: float | None):
    """``_until_final``'s loop, each call trying once."""
    from flows.runtime import outage

    deadline = None if timeout is None else time.monotonic() + timeout
    failing_since = None
    while True:
        asked = time.monotonic()
        try:
            run = client.read_flow_run(logs.flow_run_id)
            logs.show()
            failing_since = None
        except Exception as exc:
            if not _away(exc):
                raise
            failing_since = failing_since or asked  # unanswered since it was asked
            if time.monotonic() - failing_since > outage.seconds():
                raise ServerLost(str(exc)) from exc
            run = None
        if run is not None and run.state is not None and run.state.is_final():
            if run.state.is_completed():  # its workers send their last records a batch interval later (a stopped
                time.sleep(_log_batch_seconds())  # one's servers may be going away: its state is what counts)
            try:
                logs.show(final=True)  # what it logged as it ended
            except Exception as exc:  # the server went away meanwhile (bp stack down): the state is what counts
                if not _away(exc):
                    raise
            return run.state
        if deadline is not None and time.monotonic() > deadline:
            return None
        time.sleep(POLL_SECONDS)


def _cancel(client, flow_run_id: str, message: str) -> None:
    """Cancel the flow run: at once if no worker has started it, else through its worker (Cancelling)."""
    from prefect.states import Cancelled, Cancelling

    state = client.read_flow_run(flow_run_id).state
    if state is None or state.is_final():
        return
    started = state.is_running() or state.is_cancelling()
    client.set_flow_run_state(flow_run_id, Cancelling(message=message) if started else Cancelled(message=message),
                              force=True)


def _outcome(submitted: Submitted, state, tracking_uri: str, render: exits.Render) -> int:
    """What the terminal shows of a finished flow run: its failure in one line, the results table, ``run_id:``."""
    parent = _parent(submitted, tracking_uri)
    rows = _rows(submitted.flow_run_id)
    if not state.is_completed():
        reason = (parent.data.tags.get("bp.failure_reason") if parent else None) or " ".join(
            (state.message or "").split())
        print(f"bp: flow run {submitted.name} {state.name.lower()}: {reason}", file=sys.stderr)
    code = exits.FINISHED if state.is_completed() else exits.FAILED
    if rows:
        from flows.sweep.results import SweepResult

        registry = parent.data.tags.get("bp.registry") if parent else None
        result = SweepResult(run_id=parent.info.run_id if parent else "", metric="", goal="", rows=rows,
                             registry=registry)
        shown = render(result)
        code = code or shown
    if parent is not None:
        print(f"run_id: {parent.info.run_id}")
    elif state.is_completed():
        print(f"bp: no MLflow run of flow run {submitted.name} in {tracking_uri}: the pool's workers log to "
              "another store (export the MLFLOW_TRACKING_URI they use)", file=sys.stderr)
    return code


def _parent(submitted: Submitted, tracking_uri: str):
    """The sweep's parent MLflow run (tagged with its flow run), or None if this store has none."""
    from mlflow.tracking import MlflowClient

    mc = MlflowClient(tracking_uri)
    experiment = mc.get_experiment_by_name(submitted.experiment)
    if experiment is None:
        return None
    found = mc.search_runs([experiment.experiment_id], f"tags.`bp.flow_run` = '{submitted.flow_run_id}' and "
                           "tags.`bp.sweep` = 'parent'", max_results=1)
    return found[0] if found else None


def _rows(flow_run_id: str) -> list[dict]:
    """The results table the flow run recorded (its ``sweep-results`` artifact), or [] if it made none."""
    import json

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    for artifact in found:
        if artifact.key == "sweep-results" and artifact.data:
            data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            return data if isinstance(data, list) else []
    return []


def detached(submitted: Submitted, tracking_uri: str, wait: float = 30.0) -> int:
    """``--detach``: the flow run, and its parent MLflow run once a worker has opened it (waited for ``wait`` s)."""
    deadline = time.monotonic() + wait
    parent = _parent(submitted, tracking_uri)
    while parent is None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        parent = _parent(submitted, tracking_uri)
    print(f"flow_run: {submitted.flow_run_id}")
    if parent is None:
        print(f"bp: no worker of pool {submitted.pool!r} has opened its MLflow run yet: it will be tagged "
              f"bp.flow_run={submitted.flow_run_id}", file=sys.stderr)
        return exits.FINISHED
    print(f"run_id: {parent.info.run_id}")
    return exits.FINISHED
