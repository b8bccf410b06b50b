"""Sweep children on a work pool's workers: each grid point a run of its kind's ``sweep-child-<pool>`` deployment.

The parent submits every point at once (a subflow run of the sweep in the Prefect UI), and
whichever worker is free takes it. A worker logs to its own ``MLFLOW_TRACKING_URI``, which must
be the parent's store; the parent finds each child's MLflow run there by the tag ``bp.flow_run``
(the child's Prefect flow run) and reads its outcome back. A child whose flow run crashed (its
worker killed or lost: no heartbeat, see ``flows.deploy.ensure_zombie_automation``) has its
MLflow run marked FAILED with the reason, and the point is submitted again, a bounded number of
times.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from bpcore import kinds
from bpcore.sweep import GridPoint
from flows import tracking

ATTEMPTS = 3  # a point whose worker dies is submitted again, at most this many times in all


@task(cache_policy=NO_CACHE, task_run_name="child {point.name}")
def run_remote_child(point: GridPoint, deployment: str, tracking_uri: str, tags: dict[str, str], data_digest: str,
                     metric: str) -> State | object:
    """Run one grid point as a deployment run and wait for it; its Child, or a Failed state carrying it."""
    from prefect.deployments import run_deployment

    from flows.sweep import ChildFailed

    logger = get_run_logger()
    parameters = {"config": point.config, "tags": tags, "run_name": point.name, "data_digest": data_digest}
    for attempt in range(1, ATTEMPTS + 1):
        flow_run = wait(run_deployment(deployment, parameters=parameters, flow_run_name=point.name, timeout=0).id)
        if not flow_run.state.is_crashed():
            break
        reason = f"flow run {flow_run.id} crashed: {flow_run.state.message}"
        for run_id in fail_running(tracking_uri, str(flow_run.id), reason, point.config["experiment"]):
            logger.warning("%s: MLflow run %s marked FAILED (%s)", point.name, run_id, reason)
        logger.warning("%s: attempt %d of %d crashed (%s)%s", point.name, attempt, ATTEMPTS, flow_run.state.message,
                       "; submitting it again" if attempt < ATTEMPTS else "")
    child = outcome(point, flow_run, tracking_uri, metric)
    if child.status == "finished":
        return child
    failed = ChildFailed(child)
    return Failed(message=str(failed), data=failed)


def wait(flow_run_id, recheck_seconds: float = 60):
    """The flow run once it is final.

    Prefect's event stream says when (``wait_for_flow_run``): no polling, which for eight children
    at once was eight API reads a second competing with the training for the cores. The flow run
    is read again at least every ``recheck_seconds``, in case an event was missed.
    """
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    while True:
        try:
            return run_coro_as_sync(wait_for_flow_run(flow_run_id, timeout=recheck_seconds))
        except FlowRunWaitTimeout:
            continue


def _runs_of(mc, flow_run_id: str, experiment: str, extra: str = ""):
    found = mc.get_experiment_by_name(experiment)
    if found is None:
        return []
    return mc.search_runs([found.experiment_id], f"tags.`bp.flow_run` = '{flow_run_id}'{extra}")


def fail_running(tracking_uri: str, flow_run_id: str, reason: str, experiment: str) -> list[str]:
    """Mark FAILED the RUNNING MLflow runs a crashed flow run left in ``experiment``; their ids."""
    mc = tracking.client(tracking_uri)
    failed = []
    for run in _runs_of(mc, flow_run_id, experiment, " and attributes.status = 'RUNNING'"):
        tracking.mark_failed(mc, run.info.run_id, "failed", reason)
        failed.append(run.info.run_id)
    return failed


def outcome(point: GridPoint, flow_run, tracking_uri: str, metric: str):
    """The Child a worker trained: read from its MLflow run, or the flow run's failure when it opened none."""
    from flows.sweep import Child

    mc = tracking.client(tracking_uri)
    config = point.validated()
    runs = _runs_of(mc, str(flow_run.id), config.experiment)
    if not runs:
        message = flow_run.state.message or flow_run.state.name
        return Child(point, None, "failed", f"flow run {flow_run.id} {flow_run.state.name.lower()}: {message}")
    run = runs[0]
    status = run.data.tags.get("bp.status", "failed")
    curve = tracking.history(mc, run.info.run_id, kinds.get(config.kind).curve[0]).tolist()
    score = run.data.metrics.get(metric) if status == "finished" else None
    return Child(point, run.info.run_id, status, run.data.tags.get("bp.failure_reason"), score, curve)
