"""Where a sweep's points train: one after another in this process (``--parallel 1``), else on a Dask cluster (its
own, ``flows.sweep.cluster``, or its pool's scheduler), each point a task run of the sweep's flow run whose
outcome is the task's return value. Skips and stops reach a point after its epoch (through its steer here, or
the scheduler's metadata on the cluster); a point whose worker process died is trained again by Dask, and its
lost attempt's run is marked FAILED."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient
from prefect.task_runners import ThreadPoolTaskRunner
from threadpoolctl import threadpool_limits

from bpcore.errors import one_line
from bpcore.search import grid
from bpcore.search.grid import GridPoint
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import run_tags
from flows.experiments.steering import Steer
from flows.runtime import blas, stops, terminal
from flows.sweep import cluster, skips, tls
from flows.sweep import point as sweep_point
from flows.sweep.child import Child, ChildFailed, record_skipped
from flows.sweep.earlier import Earlier
from flows.sweep.watch import SchedulerLost, SchedulerWatch, answered
from flows.tracking import runs


class Interrupted(Exception):
    """The children that ended before the sweep stopped or gave up; ``cause`` is why it did."""

    def __init__(self, children: list[Child], cause: BaseException):
        super().__init__(str(cause))
        self.children, self.cause = children, cause


@dataclass
class Sweeping:
    """What each part of one sweep needs: the MLflow client, the children's tags, what they are told of their sweep
    (``member``), the metric that ranks them, and where they train (the Dask cluster at ``scheduler``, else
    this process; ``parallel`` at once); when it resumes, what it had done (``earlier``)."""

    mc: MlflowClient
    tags: dict[str, str] | None
    member: SweepMember
    metric: str
    parallel: int | None = None
    scheduler: str | None = None
    earlier: Earlier | None = None  # a resumed sweep's children so far


def pool_scheduler() -> str | None:
    """The scheduler of the pool whose worker runs this flow run (its environment names it), or None."""
    found = tls.from_environment()
    return found[0] if found else None


def run_children(points: list[GridPoint], digests: list[str], sweeping: Sweeping, workers: int, skip: bool = False,
                 prune: dict[str, Any] | None = None) -> list[Child]:
    """Every grid point, outcomes in grid order: on the sweep's Dask cluster (one point a worker process), else in
    this process (``workers`` is then 1: ``own_cluster`` starts a cluster for more); BLAS threads shared out
    between ``workers`` on this machine (a pool's workers have their own share).

    ``skip``: a divergence-aware grid: points train smallest learning rate first, and once one
    diverges the larger rates with its other values are skipped (recorded, not trained; those
    training already are told to stop). ``prune``: a search round's pruner and the earlier rounds'
    trials it compares with (``{"prune": kind, "earlier": [...]}``), which may stop a point after an epoch.
    A stop (Ctrl-C, SIGTERM) or a lost cluster raises Interrupted with the children that ended.
    """
    mc, member, scheduler = sweeping.mc, sweeping.member, sweeping.scheduler
    digest_of = {p.index: d for p, d in zip(points, digests)}
    share = blas.share(workers) if scheduler is None or cluster.started_here(scheduler) else None
    how = sweep_point.Steering(on_scheduler=scheduler is not None, prune=prune, blas_threads=share)
    steers = {p.index: None if scheduler else Steer() for p in points}  # in this process: steered from here
    outcomes: dict[int, Child] = {}
    skipped: dict[int, str] = {}  # point index -> why it is not trained
    resume = _kept(points, sweeping, skip, outcomes, skipped)
    with threadpool_limits(limits=share, user_api="blas"), _runner(scheduler, workers) as runner:
        running: dict[int, Any] = {}
        watch = SchedulerWatch(runner.client, scheduler) if scheduler is not None else None
        try:
            _drive(points, grid.by_rate(points) if skip else list(points), skip, workers, outcomes, skipped, running,
                   lambda p: runner.submit(sweep_point.train, {
                       "point": p, "tracking_uri": mc.tracking_uri, "tags": sweeping.tags,
                       "data_digest": digest_of[p.index], "member": member, "metric": sweeping.metric, "how": how,
                       "steer": steers[p.index], "resume": resume.get(p.index)}),
                   lambda p, reason: _tell_skipped(runner, steers, member, p, reason), watch)
        except BaseException as exc:  # a stop (Ctrl-C, SIGTERM) or an error: the points on the cluster stop too
            if isinstance(exc, SchedulerLost):  # nothing reaches the points: their runs are marked here
                _lost_attempts(mc, member, outcomes, terminal.logger(), f"{exc}, as this point trained")
            elif scheduler is not None:
                _stop_all(runner, member, list(running.values()), runs.stop_reason(exc) or f"{type(exc).__name__}")
            raise Interrupted([outcomes[p.index] for p in points if p.index in outcomes], exc) from exc
        finally:
            if watch is not None:
                watch.close()
        if scheduler is not None:  # an attempt that lingers (its worker frozen, cut off) stops at its next epoch
            _fence(runner, member, points)
    if scheduler is not None:
        _lost_attempts(mc, member, outcomes, terminal.logger())
    for p in points:
        if p.index not in outcomes:  # skipped before it started: recorded as a child all the same
            outcomes[p.index] = record_skipped(p, digest_of[p.index], mc, run_tags(sweeping.tags, member),
                                               skipped[p.index])
    return [outcomes[p.index] for p in points]


def _kept(points: list[GridPoint], sweeping: Sweeping, skip: bool, outcomes: dict[int, Child],
          skipped: dict[int, str]) -> dict[int, str]:
    """A resumed sweep's outcomes that stand (``Earlier``), put in ``outcomes`` (a kept divergence skips the rates above
    it, as it did); the run each of its cut-short points goes on in, by point index."""
    earlier = sweeping.earlier
    if earlier is None:
        return {}
    for p in points:
        if (run := earlier.kept(p)) is not None:
            outcomes[p.index] = Child.of_run(p, run, sweeping.mc, sweeping.metric)
    for child in [c for c in outcomes.values() if skip and c.status == "diverged"]:
        for q in grid.above(child.point, points):
            if q.index not in outcomes:
                skipped.setdefault(q.index, grid.skip_reason(child.point))
    return {p.index: run_id for p in points if p.index not in outcomes and (run_id := earlier.resumed(p))}


def _drive(points: list[GridPoint], queue: list[GridPoint], skip: bool, workers: int, outcomes: dict[int, Child],
           skipped: dict[int, str], running: dict[int, Any], submit, tell_skipped,
           watch: SchedulerWatch | None) -> None:
    """Keep ``workers`` points training until every point has an outcome or is skipped (``run_children``); a
    scheduler that ``watch`` finds gone raises SchedulerLost."""
    logger, ended = terminal.logger(), threading.Event()
    while queue or running:
        while queue and len(running) < workers:
            p = queue.pop(0)
            if p.index not in skipped and p.index not in outcomes:  # outcomes: a resumed sweep's that stand
                with stops.signals_held():  # a stop inside Prefect's submission is taken for its error, not a stop
                    running[p.index] = submit(p)
                running[p.index].wrapped_future.add_done_callback(lambda _: ended.set())
        if running and not any(f.wrapped_future.done() for f in running.values()):  # else nothing to wait for
            ended.wait(None if watch is None else 1.0)
        ended.clear()  # before the done futures are read: one that ends after this sets it again
        if watch is not None:
            watch.check()
            if any(f.wrapped_future.cancelled() for f in running.values()):  # Dask drops them with the connection
                raise SchedulerLost(f"the Dask scheduler at {watch.address} cancelled the sweep's points "
                                    "(its connection was lost)")
        for index in [i for i, f in running.items() if f.wrapped_future.done()]:
            child = _child_of(next(p for p in points if p.index == index), running.pop(index))
            outcomes[index] = child
            if index in skipped:  # told to stop as it trained
                skips.told_ended(logger, child.point, child.status)
            if skip and child.status == "diverged":
                fresh = [q for q in grid.above(child.point, points)
                         if q.index not in skipped and q.index not in outcomes]
                for q in fresh:
                    skipped[q.index] = grid.skip_reason(child.point)
                    tell_skipped(q, skipped[q.index])
                skips.announce(logger, child.point, [q for q in fresh if q.index not in running],
                               [q for q in fresh if q.index in running])


def _fence(runner, member: SweepMember, points: list[GridPoint]) -> None:
    """``points`` are decided: any attempt of one still training somewhere stops without logging more."""
    try:
        for p in points:
            runner.client.set_metadata(sweep_point.attempt_key(member, p), sweep_point.DECIDED)
    except Exception:  # the cluster gone: nothing trains there any more
        pass


def _lost_attempts(mc: MlflowClient, member: SweepMember, outcomes: dict[int, Child], logger,
                   why: str | None = None) -> None:
    """Mark FAILED the runs of attempts whose worker was lost as they trained (killed, out of memory, frozen past
    the scheduler's timeout) that no later attempt went on in (a point's next attempt resumes the run its lost one
    opened; one lost before it logged anything may leave a run of its own): nothing else ends them.
    Every point's last attempt has ended its run, so a child of this sweep still RUNNING is such an attempt.
    ``why``: the sweep lost its scheduler, and with it every point still training (the reason they record)."""
    decided = {child.run_id for child in outcomes.values() if child.run_id}
    try:
        experiment = mc.get_run(member.parent_run_id).info.experiment_id
        lingering = mc.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{member.parent_run_id}' and "
                                   "attributes.status = 'RUNNING'", max_results=1000)
        for run in lingering:
            if run.info.run_id in decided:
                continue
            reason = why or (f"its worker was lost as it trained (killed, or frozen past the scheduler's timeout): the "
                             f"point {run.info.run_name} was trained again")
            if runs.mark_failed(mc, run.info.run_id, "failed", reason):
                logger.warning("%s; its MLflow run %s is marked FAILED", reason, run.info.run_id)
    except Exception as exc:  # the store away: the next bp reaps those of this host (bp runs --reap)
        logger.warning("could not check for points whose worker was lost (%s)", exc)


def _runner(scheduler: str | None, workers: int):
    """The task runner the points go to: the Dask cluster at ``scheduler``, else a thread of this process."""
    if scheduler is None:
        return ThreadPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=scheduler, client_kwargs={"security": cluster.security_for(scheduler)})


def _tell_skipped(runner, steers: dict[int, Steer | None], member: SweepMember, p: GridPoint, reason: str) -> None:
    """Skip a point that may be training: through its steer here, or through the scheduler its worker reads."""
    if steers[p.index] is not None:
        steers[p.index].cancel(reason)
    else:
        runner.client.set_metadata(sweep_point.skip_key(member, p), reason)


def _wait(futures: list, timeout: float) -> None:
    """Until all of ``futures`` are done, or ``timeout`` s: Prefect's futures of either runner (the futures they wrap,
    Dask's or the standard library's, both call back when done)."""
    wrapped = [f.wrapped_future for f in futures]
    done = threading.Event()

    def check(_=None) -> None:
        if all(w.done() for w in wrapped):
            done.set()

    for w in wrapped:
        w.add_done_callback(check)
    check()
    done.wait(timeout)


STOP_GRACE = 15.0  # s a sweep being stopped waits for its training points to stop after their epoch


def _stop_all(runner, member: SweepMember, running: list, reason: str) -> None:
    """Tell every point of the sweep to stop (each ends KILLED with ``reason`` after the epoch it is in) and wait
    for those training, a little; the points not started are cancelled."""
    try:
        answered(lambda: runner.client.set_metadata(sweep_point.stop_key(member), f"{reason}: its sweep was stopped"),
                 STOP_GRACE, "the sweep's Dask scheduler")
        _wait(running, timeout=STOP_GRACE)
    except BaseException:  # a second stop, or the cluster gone: the next bp reaps what is left RUNNING
        pass


def _child_of(point: GridPoint, future) -> Child:
    """The child a finished task hands back (a child that did not finish ended its task Failed, carrying it)."""
    future.wait()  # done: its final state, read back
    outcome = future.state.result(raise_on_failure=False)
    if isinstance(outcome, ChildFailed):
        return outcome.child
    if isinstance(outcome, Child):
        return outcome
    if isinstance(outcome, BaseException):
        return _crashed(point, outcome)
    return Child(point, None, "failed", (future.state.message or future.state.name)[:500])  # cancelled, no child


def _crashed(point: GridPoint, exc: BaseException) -> Child:
    """A child task that failed without handing back its outcome (an error outside its flow's code)."""
    return Child(point, None, "failed", one_line(exc, named=True))


def at_once(parallel: int | None, points: int, kind: str, scheduler: str | None = None) -> int:
    """How many of ``points`` train at once: ``--parallel``; else on a pool's cluster (``scheduler``) as many as it
    has workers now, here as many as cores for a kind whose points are worth processes (else one); at most one
    a point."""
    from bpcore import kinds

    if scheduler is not None and not cluster.started_here(scheduler):
        default = parallel or cluster.worker_count(scheduler)
    else:
        declared = kinds.get(kind)
        default = (os.cpu_count() or 1) if declared is not None and declared.processes else 1
    return max(1, min(parallel or default, points))


@contextmanager
def own_cluster(sweeping: Sweeping, workers: int) -> Iterator[None]:
    """A Dask cluster of ``workers`` processes for the block, when the sweep trains several points at a time here and
    was given none (a flow run a deployment started: ``bp sweep`` starts one beside Prefect's server)."""
    if sweeping.scheduler or workers < 2:
        yield
        return
    from flows.server.temporary_server import configured_api

    local = cluster.LocalSweepCluster(workers, configured_api())
    try:
        sweeping.scheduler = local.address()
        yield
    finally:
        local.close()


def where(sweeping: Sweeping, workers: int) -> str:
    """Where the points train, for the log; with the BLAS threads each has when they are shared out here."""
    if sweeping.scheduler and not cluster.started_here(sweeping.scheduler):
        return f"on the workers of the pool's cluster {sweeping.scheduler}"
    threads = f", {blas.share(workers)} BLAS thread(s) each"
    return ("on worker processes" if sweeping.scheduler else "in this process") + threads
