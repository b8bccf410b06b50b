"""One point of a sweep trained in a task run of the sweep's flow run, wherever the task runner puts it: a
thread of the ``bp sweep`` process, or a process of the sweep's Dask cluster.

The point's kind's flow code runs inside the task (its tasks nest under it) and its outcome is the
task's return value. What may stop the point early travels with it: a search's pruner (``Judge``,
built from the trials of the earlier rounds, which ride as the task's argument) and, on Dask, the
sweep's word on the scheduler (``Client.set_metadata``): skipped (a smaller learning rate diverged),
stopped (the sweep was stopped), or superseded (the point was rescheduled: one point, one finished run),
read after every epoch. A scheduler that does not answer within ``BP_SERVER_TIMEOUT`` fails the point (its sweep
gives up on the scheduler as long); one that answers late makes the point ask MLflow whether its sweep gave up
meanwhile.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import Cancelled, Failed, State
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from bpcore.errors import one_line
from bpcore.search.grid import GridPoint
from flows.experiments import steering
from flows.experiments.membership import SweepMember
from flows.experiments.steering import Steer
from flows.runtime import outage
from flows.sweep.child import Child, ChildFailed, train_point
from flows.sweep.watch import answered
from flows.tracking import runs
from flows.tracking import tags as tag

WORD = "bp-sweep"  # the scheduler's metadata a sweep steers its points by: [WORD, parent run, resumptions] -> word
DECIDED = "decided"  # a point's attempt once its sweep has its outcome: any other attempt of it stops
STALLED = 5.0  # s: a scheduler that took longer to answer may have been given up on by its sweep meanwhile


class Steering(BaseModel):
    """How a point may be stopped early: ``on_scheduler`` (its sweep's word is read from the Dask scheduler),
    ``prune`` (``{"prune": "median", "earlier": [trials]}``: the search's pruner and what it compares with),
    and the BLAS threads it trains with (None: as the worker's environment says)."""

    on_scheduler: bool = False
    prune: dict[str, Any] | None = None
    blas_threads: int | None = 1


def word_key(member: SweepMember) -> list[str]:
    """Where a sweep's word to its points is kept on the scheduler: ``{"stop": reason, "skip": {index: reason},
    "attempt": {index: id}, "ended": {index: run id}}`` (one request reads it all); a resumed sweep's is its own, not
    the stopped one's, whose stop would hold on a long-lived scheduler (a pool's)."""
    return [WORD, member.parent_run_id, str(member.resumed)]


def skip_key(member: SweepMember, point: GridPoint) -> list[str]:
    """Where a sweep writes that ``point`` is skipped (its reason) on the scheduler."""
    return [*word_key(member), "skip", str(point.index)]


def stop_key(member: SweepMember) -> list[str]:
    """Where a sweep writes that all its points stop (its reason) on the scheduler."""
    return [*word_key(member), "stop"]


def attempt_key(member: SweepMember, point: GridPoint) -> list[str]:
    """Where the attempt of ``point`` that is the point's (the latest to start) writes its id."""
    return [*word_key(member), "attempt", str(point.index)]


class ScheduledSteer(Steer):
    """A steer that also reads its sweep's word from the Dask scheduler (one request each time it is asked): the
    point skipped (a result, as in a sweep in this process), the whole sweep stopped, or this attempt no longer
    the point's (a later attempt started: Dask rescheduled the point, taking this worker for lost). The last two
    end the run KILLED with the reason, as a stopped process's."""

    def __init__(self, judge, member: SweepMember, point: GridPoint, attempt: str):
        super().__init__(judge)
        self.key, self.index, self.attempt = word_key(member), str(point.index), attempt
        self.parent = member.parent_run_id

    def check(self) -> steering.Stop | None:
        if stop := super().check():
            return stop
        from distributed import get_client

        client, asked = get_client(), time.monotonic()
        word = answered(lambda: client.get_metadata(self.key, None), outage.seconds(),
                        "the sweep's Dask scheduler") or {}
        if time.monotonic() - asked > STALLED:
            self._given_up()
        if reason := word.get("stop"):
            raise runs.stop_request(reason)()
        if word.get("attempt", {}).get(self.index, self.attempt) != self.attempt:
            raise runs.stop_request("another attempt of this point started (its sweep took this worker for lost): "
                                    "this one stops")()
        if reason := word.get("skip", {}).get(self.index):
            self.cancel(reason)
            return super().check()
        return None

    def _given_up(self) -> None:
        """After a scheduler's long silence: stop if the sweep, or this run, ended meanwhile (the sweep gave up on its
        scheduler, marking its points' runs FAILED)."""
        mc, active = MlflowClient(), mlflow.active_run()
        for run_id, what in ((self.parent, "its sweep"), (active.info.run_id if active else None, "this run")):
            status = mc.get_run(run_id).info.status if run_id else "RUNNING"
            if status != "RUNNING":
                raise runs.stop_request(f"{what} ended ({status}) while the sweep's Dask scheduler did not answer: "
                                        "this attempt stops")()


@task(cache_policy=NO_CACHE, task_run_name="child {point.name}")
def train(point: GridPoint, tracking_uri: str | None, tags: dict[str, str] | None, data_digest: str | None,
          member: SweepMember, metric: str, how: Steering, steer: Steer | None = None,
          resume: str | None = None) -> Child | State:
    """Train one point with its kind's own flow code; its outcome. A child that did not finish, nor stopped as its
    sweep decided, ends the task Failed, carrying the child all the same.

    ``steer``: a steer of this process's (a sweep on threads, which cancels it itself); else one is made here.
    ``resume``: the point's run cut short (a resumed sweep's), which it goes on in from its checkpoint.
    """
    attempt = None
    if steer is None and how.on_scheduler:
        over, attempt, ended, again = _begin(member, point)
        if over:  # its sweep stopped, or decided, before this attempt began: no run opens
            return Cancelled(message=over)
        if ended:  # an earlier attempt ended it, its worker lost before the sweep had the result: that outcome
            return _outcome(Child.read(point, ended, MlflowClient(tracking_uri), metric))
        if again:  # an earlier attempt's worker was lost as it trained: its run goes on here, from its checkpoint
            resume = _cut_short(MlflowClient(tracking_uri), member, point) or resume
    steer = steer or _steer(point, member, how, attempt)
    try:
        with threadpool_limits(limits=how.blas_threads, user_api="blas"):
            result = train_point(point.validated(), tracking_uri, {**(tags or {}), tag.POINT: str(point.index)},
                                 point.name, data_digest, member, steer, resume)
    except runs.StopRequested as stop:  # its sweep was stopped: the run is KILLED with the reason, nothing more
        return Cancelled(message=stop.reason)
    except Exception as exc:  # a child's crash is that child's outcome, not the sweep's
        return _outcome(Child(point, None, "failed", one_line(exc, named=True)))
    if attempt and result.run_id:
        _ended(member, point, result.run_id)
    return _outcome(Child.of_result(point, result, MlflowClient(tracking_uri), metric))


def _steer(point: GridPoint, member: SweepMember, how: Steering, attempt: str | None) -> Steer:
    judge = None
    if how.prune:
        from bpcore.search.study import Judge

        judge = Judge(how.prune["prune"], how.prune["earlier"])
    if how.on_scheduler:
        return ScheduledSteer(judge, member, point, attempt or "")
    return Steer(judge)


def _begin(member: SweepMember, point: GridPoint) -> tuple[str | None, str, str | None, bool]:
    """Make a new attempt the point's (the latest started wins): why it must not train (its sweep stopped), or None;
    the attempt's id; the run of an earlier attempt that ended the point, if one did (Dask computes a task
    again when the worker holding its result is lost before the sweep fetched it); and whether an earlier attempt
    began (its worker lost as it trained)."""
    from distributed import get_client

    client = get_client()
    word = client.get_metadata(word_key(member), None) or {}
    if reason := word.get("stop"):
        return reason, "", None, False
    if ended := word.get("ended", {}).get(str(point.index)):
        return None, "", ended, False
    attempt = uuid.uuid4().hex
    client.set_metadata(attempt_key(member, point), attempt)
    return None, attempt, None, str(point.index) in word.get("attempt", {})


def _cut_short(mc: MlflowClient, member: SweepMember, point: GridPoint) -> str | None:
    """The run of the point's attempt that was lost as it trained (the latest one opened), or None: it never opened
    one."""
    from flows.sweep.earlier import KEPT

    experiment = mc.get_run(member.parent_run_id).info.experiment_id
    found = mc.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{member.parent_run_id}' and "
                           f"tags.`{tag.POINT}` = '{point.index}'", order_by=["attributes.start_time DESC"])
    lost = [run for run in found if run.data.tags.get(tag.STATUS) not in KEPT]
    return lost[0].info.run_id if lost else None


def _ended(member: SweepMember, point: GridPoint, run_id: str) -> None:
    """Record on the scheduler that the point ended, in MLflow run ``run_id``."""
    from distributed import get_client

    get_client().set_metadata([*word_key(member), "ended", str(point.index)], run_id)


def _outcome(child: Child) -> Child | State:
    """A finished (or pruned, or skipped) child as the task's result; any other ends the task Failed, carrying the
    child all the same."""
    if child.status in ("finished", steering.PRUNED, steering.SKIPPED):
        return child
    failed = ChildFailed(child)
    return Failed(message=str(failed), data=failed)
