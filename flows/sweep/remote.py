"""Sweep children on a work pool's workers: each grid point a run of its kind's ``sweep-child-<pool>`` deployment.

The parent submits the points one after another (each a subflow run of the sweep in the Prefect
UI; whichever worker is free takes it), then watches all of them with one request every few
seconds until each is final. A worker logs to its own ``MLFLOW_TRACKING_URI``, which must be the
parent's store; the parent finds each child's MLflow run there by the tag ``bp.flow_run`` and
reads its outcome back.

What can go wrong on the way, and what happens then:
- the Prefect server answers with an error or not at all (a restart, its database away for a
  while, SQLite's "database is locked" under load): every request is tried again until the
  server has failed for ``BP_SERVER_TIMEOUT`` seconds in a row; then ``ServerLost``;
- a child's flow run crashes (its worker killed or lost: no heartbeat, see
  ``flows.server.automations``): its MLflow run is marked FAILED with the reason and
  the point is submitted again, a bounded number of times;
- the sweep is stopped (Ctrl-C, SIGTERM) or gives up: the children not final are cancelled
  (those not started never start; running ones are stopped by their workers) and their MLflow
  runs marked KILLED with the reason. A child that starts after its sweep ended, because the
  server could not be told in time, finds the sweep over and ends Cancelled without training
  (``sweep_gone``);
- the machine that submits the sweep has no copy of the data (compose mounts it on the workers
  only): the first child to read it records its digest under the sweep's key (a Prefect variable,
  created once), and every other child checks its own copy against it (``agreed_digest``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mlflow.tracking import MlflowClient
from prefect import get_run_logger

from bpcore.sweep import GridPoint
from flows.experiments.membership import SweepMember
from flows.runtime import outage
from flows.sweep.child import Child
from flows.tracking import runs
from flows.tracking import tags as tag

ATTEMPTS = 3  # a point whose worker dies is submitted again, at most this many times in all
POLL_SECONDS = 2.0  # between two reads of every child's state (one request for all of them)
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
T = TypeVar("T")


class ServerLost(Exception):
    """The Prefect server failed every request for longer than the budget."""


class Interrupted(Exception):
    """The children that finished before the sweep stopped or gave up; ``cause`` is why it did."""

    def __init__(self, children: list[Child], cause: BaseException):
        super().__init__(str(cause))
        self.children, self.cause = children, cause


@dataclass
class Submitted:
    """One grid point on the pool: its current flow run and how many times it was submitted."""

    point: GridPoint
    digest: str | None
    attempt: int = 0
    flow_run_id: uuid.UUID | None = None
    state: Any = None  # the flow run's last known state

    @property
    def final(self) -> bool:
        return self.state is not None and self.state.type.value in FINAL


def patiently(call: Callable[[], T], what: str) -> T:
    """``call()``, tried again (1, 2, 4 ... 30 s apart) until it has failed for ``BP_SERVER_TIMEOUT`` s in a row."""
    deadline, pause = time.monotonic() + outage.seconds(), 1.0
    while True:
        try:
            return call()
        except Exception as exc:  # an HTTP error, a refused connection, a timeout: all alike here
            if time.monotonic() + pause > deadline:
                raise ServerLost(f"the Prefect server stopped answering ({what}: {_why(exc)}); gave up after "
                                 f"{outage.seconds():g} s ({outage.VARIABLE})") from exc
            time.sleep(pause)
            pause = min(30.0, pause * 2)


def _why(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def run_on_pool(points: list[GridPoint], digests: list[str | None], deployment: str, mc: MlflowClient,
                tags: dict[str, str] | None, member: SweepMember, metric: str) -> list[Child]:
    """Every grid point as a run of ``deployment``, outcomes in grid order.

    ``digests``: each point's data digest, when this machine has read the data (else None and
    ``data_key`` names the rendezvous where the first child to read it records its digest).
    Raises Interrupted (carrying the children that finished) when stopped or when the server is lost.
    """
    from prefect.client.orchestration import get_client

    children = [Submitted(point, digest) for point, digest in zip(points, digests)]
    logger = get_run_logger()
    try:
        with get_client(sync_client=True) as client:
            for child in children:
                submit(child, deployment, tags, member)
            while not all(child.final for child in children):
                time.sleep(POLL_SECONDS)
                for child in refresh(client, children):
                    if child.state.is_crashed() and child.attempt < ATTEMPTS:
                        reason = f"flow run {child.flow_run_id} crashed: {child.state.message}"
                        for run_id in fail_running(mc, str(child.flow_run_id), reason,
                                                   child.point.config["experiment"]):
                            logger.warning("%s: MLflow run %s marked FAILED (%s)", child.point.name, run_id, reason)
                        logger.warning("%s: attempt %d of %d crashed; submitting it again", child.point.name,
                                       child.attempt, ATTEMPTS)
                        submit(child, deployment, tags, member)
    except BaseException as exc:  # a stop (in a flow run SIGTERM is Prefect's TerminationSignal), the server lost
        why = runs.stop_reason(exc) or str(exc)
        stop(children, mc, f"{why}: the sweep's children still to run were cancelled")
        if isinstance(exc, Exception) and not isinstance(exc, ServerLost):
            raise
        raise Interrupted(_finished(children, mc, metric), exc) from exc
    return [outcome(child, mc, metric) for child in children]


def _finished(children: list[Submitted], mc: MlflowClient, metric: str) -> list[Child]:
    """The outcomes MLflow holds of the children that ended, by their runs there (quickly).

    By MLflow's record, not Prefect's states: a child's run ends a few seconds before its flow run does.
    """
    done = []
    with outage.one_attempt():
        for child in children:
            if child.flow_run_id is None:
                continue
            try:
                ended = _runs_of(mc, str(child.flow_run_id), child.point.config["experiment"],
                                 " and attributes.status != 'RUNNING'")
                if ended:
                    done.append(Child.of_run(child.point, ended[0], mc, metric))
            except Exception:  # MLflow away as well
                pass
    return done


def submit(child: Submitted, deployment: str, tags: dict[str, str] | None, member: SweepMember) -> None:
    """Create the point's next flow run (a subflow of the sweep); idempotent, so a retried request makes one."""
    from prefect.deployments import run_deployment

    child.attempt += 1
    parameters = {"config": child.point.config, "tags": tags, "run_name": child.point.name,
                  "data_digest": child.digest, "sweep": member.model_dump()}
    key = f"{member.parent_run_id}-{child.point.index}-{child.attempt}"
    flow_run = patiently(lambda: run_deployment(deployment, parameters=parameters, flow_run_name=child.point.name,
                                                timeout=0, idempotency_key=key), f"submitting {child.point.name}")
    child.flow_run_id, child.state = flow_run.id, flow_run.state


def refresh(client, children: list[Submitted]) -> list[Submitted]:
    """Read every unfinished child's state in one request; the children that became final."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    waiting = {c.flow_run_id: c for c in children if not c.final}
    flow_runs = patiently(lambda: client.read_flow_runs(flow_run_filter=FlowRunFilter(
        id=FlowRunFilterId(any_=list(waiting))), limit=len(waiting)), "reading the children's states")
    became = []
    for run in flow_runs:
        child = waiting[run.id]
        child.state = run.state
        if child.final:
            became.append(child)
    return became


def stop(children: list[Submitted], mc: MlflowClient, reason: str) -> None:
    """Cancel every child not final (one quick request each) and mark its MLflow run KILLED with ``reason``.

    Plain requests of a few seconds, not Prefect's client, which retries each for a minute: this
    runs on the way out, perhaps with the server away.
    """
    from flows.runtime.http import request
    from flows.server import prefect_api

    waiting = [c for c in children if c.flow_run_id is not None and not c.final]
    if not waiting:
        return
    url, auth = prefect_api.configured()
    for child in waiting:
        started = child.state is not None and child.state.type.value in ("RUNNING", "PENDING")
        # a started flow run is stopped by its worker (SIGTERM); one not started never will be
        kind = "CANCELLING" if started else "CANCELLED"
        state = {"type": kind, "name": kind.title(), "message": reason}
        if url:  # a child the server could not be told of finds its sweep over when it starts (sweep_gone)
            request("POST", f"{url.rstrip('/')}/flow_runs/{child.flow_run_id}/set_state", prefect_api.headers(auth),
                    {"state": state, "force": True}, timeout=3)
    with outage.one_attempt():
        for child in waiting:
            try:
                for run in _runs_of(mc, str(child.flow_run_id), child.point.config["experiment"],
                                    " and attributes.status = 'RUNNING'"):
                    runs.mark_failed(mc, run.info.run_id, "failed", reason, run_status="KILLED")
            except Exception:  # MLflow away too: the next bp on the worker's machine reaps it
                pass


def _runs_of(mc, flow_run_id: str, experiment: str, extra: str = ""):
    found = mc.get_experiment_by_name(experiment)
    if found is None:
        return []
    return mc.search_runs([found.experiment_id], f"tags.`{tag.FLOW_RUN}` = '{flow_run_id}'{extra}")


def fail_running(mc: MlflowClient, flow_run_id: str, reason: str, experiment: str) -> list[str]:
    """Mark FAILED the RUNNING MLflow runs a crashed flow run left in ``experiment``; their ids."""
    failed = []
    for run in _runs_of(mc, flow_run_id, experiment, " and attributes.status = 'RUNNING'"):
        runs.mark_failed(mc, run.info.run_id, "failed", reason)
        failed.append(run.info.run_id)
    return failed


def outcome(child: Submitted, mc: MlflowClient, metric: str) -> Child:
    """The Child a worker trained: read from its MLflow run, or the flow run's failure when it opened none."""
    config = child.point.validated()
    found = _runs_of(mc, str(child.flow_run_id), config.experiment)
    state = child.state
    if not found:
        message = state.message or state.name
        status = "cancelled" if state.is_cancelled() else "failed"
        return Child(child.point, None, status, f"flow run {child.flow_run_id} {state.name.lower()}: {message}")
    return Child.of_run(child.point, found[0], mc, metric)


# -- the child's side, in the flow a worker runs --------------------------------------------------


