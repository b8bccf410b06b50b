"""How bp ends an MLflow run: its outcome tagged first (``bp.status``, ``bp.failure_reason``), then its status, and
the tags made to agree with the status when two processes end the run at once."""

from __future__ import annotations

from contextlib import nullcontext

import mlflow
from mlflow.entities import RunTag
from mlflow.tracking import MlflowClient

from flows.runtime import outage
from flows.tracking import tags as tag
from flows.tracking.metrics import unbroken


def end(mc: MlflowClient, run_id: str, run_status: str, bp_status: str, reason: str | None,
         quick: bool = False) -> None:
    """Tag the outcome (``bp.status``, the reason), then end the run: never its status without its reason.

    When the tags cannot be written, the run is ended only if the server answers one more, quick
    request, and then the tags are written again; else it stays RUNNING for the next bp to reap.
    ``quick``: every request tried once (a stop, or a server known to be gone).

    Two processes may end one run at once (a sweep or a reaper marking FAILED a run it took for lost, while the
    run's own process finishes it): the status is the last one written, and its writer then makes the tags
    its own (``_agree``), so a run's status, ``bp.status`` and ``bp.failure_reason`` always tell one story.
    """
    tags = [RunTag(tag.STATUS, bp_status)] + ([RunTag(tag.FAILURE_REASON, reason)] if reason is not None else [])
    with unbroken(mc):  # a second Ctrl-C or signal waits until the run is marked
        _end_now(mc, run_id, run_status, tags, quick)
        if quick:
            return
        try:
            _agree(mc, run_id, run_status, bp_status, reason)
        except Exception:  # the run is ended and tagged: a store that fails this check now loses nothing
            pass


def forget_reason(mc: MlflowClient, run_id: str) -> None:
    """No ``bp.failure_reason`` on a run that ended without one (another process may have written it first)."""
    from mlflow.exceptions import MlflowException

    try:
        mc.delete_tag(run_id, tag.FAILURE_REASON)
    except MlflowException:  # none there: the usual case
        pass


AGREE_ATTEMPTS = 3  # reads of a run just ended, to see its tags match the status it ended with


def _agree(mc: MlflowClient, run_id: str, run_status: str, bp_status: str, reason: str | None) -> None:
    """While the run's status is still ``run_status``, its tags say ``bp_status`` and ``reason``: a process that
    ended it a moment earlier may have written its own tags after ours. A status another process wrote since is
    that process's to tag."""
    for _ in range(AGREE_ATTEMPTS):
        run = mc.get_run(run_id)
        found = run.data.tags
        if run.info.status != run_status or (found.get(tag.STATUS), found.get(tag.FAILURE_REASON)) == (
                bp_status, reason):
            return
        mc.set_tag(run_id, tag.STATUS, bp_status)
        if reason is None:
            forget_reason(mc, run_id)
        else:
            mc.set_tag(run_id, tag.FAILURE_REASON, reason)


def _end_now(mc: MlflowClient, run_id: str, run_status: str, tags: list[RunTag], quick: bool) -> None:
    with outage.one_attempt() if quick else nullcontext():
        try:
            mc.log_batch(run_id, tags=tags)
        except Exception as exc:
            failed = exc
        else:
            _terminate(mc, run_id, run_status)
            return
    with outage.one_attempt():
        try:
            _terminate(mc, run_id, run_status)
        except Exception:
            raise failed from None
    mc.log_batch(run_id, tags=tags)  # the server is back: the reason follows the status


def _terminate(mc: MlflowClient, run_id: str, run_status: str) -> None:
    """End the run with ``run_status`` (the thread's active run: leaving it, even if the write fails)."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(run_status)
    else:
        mc.set_terminated(run_id, run_status)
