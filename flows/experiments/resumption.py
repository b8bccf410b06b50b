"""What ``bp resume RUN_ID`` may go on with: a run that was stopped (KILLED) or failed, read from its record.

The run is trained on by its kind's own flow (``resume=RUN_ID``), in the same MLflow run: a network from its
checkpoint (``flows.experiments.checkpoints``), a line fit or a chain from the start. Its data must still have the
recorded digest and it trains with the recorded BLAS thread count, as ``bp reproduce`` does, so it ends as an
uninterrupted run of its config would.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from bpcore.errors import InputError
from flows.experiments import reproduce, steering
from flows.experiments.reproduce import Recorded
from flows.tracking import tags as tag

RESUMABLE = ("KILLED", "FAILED")


def resumable(run_id: str, mc: MlflowClient) -> tuple[Recorded, int | None]:
    """Run ``run_id``'s record when it can be resumed, and for a sweep's parent how many points it trained at a time;
    else InputError saying why, in one line.

    A RUNNING run whose process on this host is gone is marked FAILED first (as ``bp runs --reap`` does), then
    resumed; one whose process lives, or lived on another host, is refused.
    """
    recorded = reproduce.read_record(run_id, mc, sweeps=True)  # refuses a skipped child, names a bad id
    run = mc.get_run(run_id)
    if run.info.status == "RUNNING":
        from flows.tracking.reap import reap

        reap(mc.tracking_uri, [run.info.experiment_id], checked=True)
        run = mc.get_run(run_id)
    status, outcome = run.info.status, run.data.tags.get(tag.STATUS, "")
    why = run.data.tags.get(tag.FAILURE_REASON)
    if outcome == "diverged":
        raise InputError(f"run {run_id} diverged ({why}): resumed, it would diverge again; bp train its "
                         "config.yaml with a lower learning rate")
    if status == "RUNNING":
        raise InputError(f"run {run_id} is still RUNNING (process {run.data.tags.get(tag.WORKER, 'unknown')}): "
                         "stop it first; a run whose process is gone on another machine is marked FAILED by bp "
                         "runs --reap there")
    if status not in RESUMABLE:
        done = "pruned by its search" if outcome == steering.PRUNED else status
        raise InputError(f"run {run_id} is {done}: nothing to resume (bp reproduce {run_id} trains it again)")
    at_once = run.data.tags.get(tag.AT_ONCE, "")
    return recorded, int(at_once) if at_once.isdigit() else None

