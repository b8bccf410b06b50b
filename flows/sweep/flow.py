"""A sweep as a Prefect flow: one parent MLflow run, one nested child run per grid point.

Entrypoint ``flows/sweep/flow.py:sweep``. Each child runs its kind's own flow code (a complete
MLflow run: params, histories, model, plots, tags), told that it is a point of this sweep by its
``sweep`` parameter: in a task here, or as a background task on a pool's sweep workers
(``flows.sweep.remote``). Either way the parent reads each child's outcome from its MLflow run.
Children here run side by side on threads: the data is loaded once into the per-process cache,
each child checks it against the digest the parent recorded, and the BLAS thread count is divided
between them so they don't fight over cores. The parent run holds the comparison (table, curves,
best child) and registers the best child's model when it beats the champion.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from threadpoolctl import threadpool_limits

from bpcore import sweep as grid
from bpcore.configfile import validate
from bpcore.loading import fingerprint, readable_here
from bpcore.sweep import GridPoint
from flows.experiments import membership, pipeline
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import run_tags
from flows.experiments.steering import Steer
from flows.runtime import blas
from flows.sweep import champion, cluster, remote, results, skips
from flows.sweep import point as sweep_point
from flows.sweep.child import ON_THE_WORKERS, Child, ChildFailed, record_skipped
from flows.tracking import metrics, runs
from flows.tracking import tags as tag


@task(cache_policy=NO_CACHE)
def load_once(points: list[GridPoint]) -> list[tuple[str, str]]:
    """Load every distinct dataset the children need into the process cache; each point's (source, digest)."""
    return [fingerprint(p.validated()) for p in points]




@dataclass
class Sweeping:
    """What each part of one sweep needs: the MLflow client, the children's tags, what they are told of their sweep
    (``member``), the metric that ranks them, and where they train (``pool``, else the Dask cluster at
    ``scheduler``, else threads here; ``parallel`` at once)."""

    mc: MlflowClient
    tags: dict[str, str] | None
    member: SweepMember
    metric: str
    parallel: int | None = None
    pool: str | None = None
    scheduler: str | None = None


def run_children(points: list[GridPoint], digests: list[str], sweeping: Sweeping, workers: int, skip: bool = False,
                 prune: dict[str, Any] | None = None) -> list[Child]:
    """Every grid point, outcomes in grid order: on the sweep's Dask cluster (one point a worker process), else on
    ``workers`` threads here; BLAS threads shared out between ``workers``.

    ``skip``: a divergence-aware grid: points train smallest learning rate first, and once one
    diverges the larger rates with its other values are skipped (recorded, not trained; those
    training already are told to stop). ``prune``: a search round's pruner and the earlier rounds'
    trials it compares with (``{"prune": kind, "earlier": [...]}``), which may stop a point after an epoch.
    """
    mc, tags, member, metric, scheduler = (sweeping.mc, sweeping.tags, sweeping.member, sweeping.metric,
                                           sweeping.scheduler)
    digest_of = {p.index: d for p, d in zip(points, digests)}
    how = sweep_point.Steering(on_scheduler=scheduler is not None, prune=prune, blas_threads=blas.share(workers))
    steers = {p.index: None if scheduler else Steer() for p in points}  # threads: steered from here
    queue = grid.by_rate(points) if skip else list(points)
    skipped: dict[int, str] = {}  # point index -> why it is not trained
    outcomes: dict[int, Child] = {}
    logger = get_run_logger()
    with threadpool_limits(limits=blas.share(workers), user_api="blas"), _runner(scheduler, workers) as runner:
        running = {}
        try:
            while queue or running:
                while queue and len(running) < workers:
                    p = queue.pop(0)
                    if p.index not in skipped:
                        running[p.index] = runner.submit(sweep_point.train, {
                            "point": p, "tracking_uri": mc.tracking_uri, "tags": tags,
                            "data_digest": digest_of[p.index], "member": member, "metric": metric, "how": how,
                            "steer": steers[p.index]})
                if running:  # else only skipped points were left
                    _wait(list(running.values()), first=True)
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
                            _tell_skipped(runner, steers, member, q, skipped[q.index])
                        skips.announce(logger, child.point, [q for q in fresh if q.index not in running],
                                       [q for q in fresh if q.index in running])
        except BaseException as exc:  # a stop (Ctrl-C, SIGTERM) or an error: the points on the cluster stop too
            if scheduler is not None:
                _stop_all(runner, member, list(running.values()), runs.stop_reason(exc) or f"{type(exc).__name__}")
            raise
    if scheduler is not None:
        _lost_attempts(mc, member, logger)
    for p in points:
        if p.index not in outcomes:  # skipped before it started: recorded as a child all the same
            outcomes[p.index] = record_skipped(p, digest_of[p.index], mc, run_tags(tags, member), skipped[p.index])
    return [outcomes[p.index] for p in points]


def _lost_attempts(mc: MlflowClient, member: SweepMember, logger) -> None:
    """Mark FAILED the runs of points whose worker process died as they trained (killed, out of memory): Dask
    trained those points again on another worker, and nothing else would end the lost attempts' runs."""
    from flows.tracking import reap

    try:
        experiment = mc.get_run(member.parent_run_id).info.experiment_id
        for run_id, reason in reap.reap(mc.tracking_uri, [experiment], checked=True):
            logger.warning("a worker process was lost as it trained: its point was trained again, and its MLflow run "
                           "%s is marked FAILED (%s)", run_id, reason)
    except Exception as exc:  # the store away: the next bp reaps them (bp runs --reap)
        logger.warning("could not check for points whose worker was lost (%s): bp runs --reap marks them", exc)


def _runner(scheduler: str | None, workers: int):
    """The task runner the points go to: the Dask cluster at ``scheduler``, else ``workers`` threads here."""
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


def _wait(futures: list, first: bool = False, timeout: float | None = None) -> None:
    """Until the first of ``futures`` is done (``first``), or all of them, or ``timeout`` s: Prefect's futures of
    either runner (the futures they wrap, Dask's or the standard library's, both call back when done)."""
    wrapped = [f.wrapped_future for f in futures]
    done = threading.Event()

    def check(_=None) -> None:
        if (any if first else all)(w.done() for w in wrapped):
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
        runner.client.set_metadata(sweep_point.stop_key(member), f"{reason}: its sweep was stopped")
        _wait(running, timeout=STOP_GRACE)
    except BaseException:  # a second stop, or the cluster gone: the next bp reaps what is left RUNNING
        pass


def _child_of(point: GridPoint, future) -> Child:
    """The child a finished task hands back (a child that did not finish ended its task Failed, carrying it)."""
    future.wait()  # done: its final state, read back
    outcome = future.state.result(raise_on_failure=False)
    if isinstance(outcome, ChildFailed):
        return outcome.child
    return _crashed(point, outcome) if isinstance(outcome, BaseException) else outcome


def _crashed(point: GridPoint, exc: BaseException) -> Child:
    """A child task that failed without handing back its outcome (an error outside its flow's code)."""
    return Child(point, None, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:500])


@flow(name="sweep", log_prints=False)
def sweep(config: dict[str, Any], tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, parallel: int | None = None,
          points: list[GridPoint] | None = None, pool: str | None = None,
          scheduler: str | None = None) -> results.SweepResult:
    """Train every grid point of the config's ``sweep`` as a nested MLflow run; returns the parent's outcome.

    ``config``: the resolved sweep config as plain values; ``parallel``: children trained at once
    (default: the number of cores); ``points``: the grid as already expanded by the caller (else
    it is expanded here); ``pool`` (else the config's ``sweep.pool``): the work pool whose workers
    train the children, each a background task its sweep workers take (else in-process); ``scheduler``: the
    address of the Dask cluster whose workers train them in-process (``flows.sweep.cluster``; else threads).
    With a pool and data this machine cannot read, the workers read it and agree on its digest.
    """
    model = validate(config, source="sweep config")
    mc = pipeline.start(tracking_uri)
    metric, goal = grid.objective(model)
    pool = pool or model.sweep.pool
    searching = model.sweep.search != "grid"
    if searching:  # the trials are drawn as the search goes: the parent records the base config's data
        points = []
        base = model.model_copy(update={"sweep": None})
        here, prints = True, [fingerprint(base)]
        name = f"{model.sweep.search} search of {model.sweep.trials}"
    else:
        points = points or grid.expand(model)
        here = not pool or all(readable_here(p.validated()) for p in points)
        prints = load_once(points) if here else [(str(p.validated().data.path), None) for p in points]
        name = f"sweep of {len(points)}"
    parent_tags = {**run_tags(tags), tag.SWEEP: "parent"}  # its flow run (and deployment) as any run's
    with runs.tracked_run(model, prints[0][0], prints[0][1] or ON_THE_WORKERS, None, mc, run_name or name,
                          parent_tags) as parent_id:
        member = _member(parent_id, pool, here)
        sweeping = Sweeping(mc, tags, member, metric, parallel, pool, None if pool else scheduler)
        try:
            at_a_time = at_once(parallel, model.sweep.trials if searching else len(points), model.kind)
            with _own_cluster(sweeping, at_a_time):
                if searching:
                    children = _search(model, sweeping)
                else:
                    children = _train(points, [d for _, d in prints], sweeping, grid.skips_above_divergence(model))
        except remote.Interrupted as stopped:
            results.summarise(mc, parent_id, model.kind, stopped.children, metric, goal)
            if isinstance(stopped.cause, Exception):  # the server lost: the parent FAILED, naming it
                raise runs.RunFailed(parent_id, str(stopped.cause)) from stopped.cause
            raise stopped.cause from None  # a stop: the parent KILLED, as the process was told
        digest = prints[0][1] or _agreed(member.data_key, parent_id, mc)
        result, best = results.conclude(mc, parent_id, model.kind, children, metric, goal)
        if model.sweep.model_name and digest:
            result.registry = champion.register_best(mc, parent_id, model.sweep.model_name, best, metric, goal,
                                                     digest)
    get_run_logger().info("best: %s (%s %s, MLflow run %s)", best.point.name, metric, best.score, best.run_id)
    return result


def _member(parent_id: str, pool: str | None, here: bool) -> SweepMember:
    """What the children are told of this sweep: its parent run; on a pool, its flow run and, when this machine
    cannot read the data, the key the workers agree on its digest under."""
    from prefect.runtime import flow_run

    return SweepMember(parent_run_id=parent_id, flow_run_id=str(flow_run.id) if pool and flow_run.id else None,
                       data_key=None if here else membership.digest_key(parent_id))


def _train(points: list[GridPoint], digests: list[str | None], sweeping: Sweeping, skip: bool) -> list[Child]:
    """The children on the pool's sweep workers, or here; ``skip``: above a learning rate that diverged, not trained."""
    logger, member = get_run_logger(), sweeping.member
    if sweeping.pool:
        logger.info("%d children as background tasks on the sweep workers of pool %r (MLflow run %s)", len(points),
                    sweeping.pool, member.parent_run_id)
        return remote.run_on_pool(points, digests, sweeping.pool, sweeping.mc, sweeping.tags, member,
                                  sweeping.metric, skip=skip)
    workers = at_once(sweeping.parallel, len(points), points[0].config["kind"])
    logger.info("%d children, %d at a time %s, %d BLAS thread(s) each (MLflow run %s)", len(points), workers,
                _where(sweeping), blas.share(workers), member.parent_run_id)
    return run_children(points, digests, sweeping, workers, skip=skip)


def at_once(parallel: int | None, points: int, kind: str) -> int:
    """How many of ``points`` train at once here: ``--parallel``, else as many as cores for a kind whose points are
    worth processes (else one), at most one a point."""
    from bpcore import kinds

    default = (os.cpu_count() or 1) if kinds.get(kind) is not None and kinds.get(kind).processes else 1
    return max(1, min(parallel or default, points))


@contextmanager
def _own_cluster(sweeping: Sweeping, workers: int) -> Iterator[None]:
    """A Dask cluster of ``workers`` processes for the block, when the sweep trains several points at a time here and
    was given none (a flow run a deployment started: ``bp sweep`` starts one beside Prefect's server)."""
    if sweeping.pool or sweeping.scheduler or workers < 2:
        yield
        return
    from flows.server.temporary_server import configured_api

    local = cluster.LocalSweepCluster(workers, configured_api())
    try:
        sweeping.scheduler = local.address()
        yield
    finally:
        local.close()


def _where(sweeping: Sweeping) -> str:
    return "on worker processes" if sweeping.scheduler else "on threads of this process"


def _search(model, sweeping: Sweeping) -> list[Child]:
    """A random or tpe search here, or on the pool's sweep workers, in rounds of as many trials as train at once
    (here ``--parallel``; on a pool ``--parallel`` if given, else its sweep workers at the start). Each round's
    results are told to the study in trial order before the next is asked: the same config, in rounds of the
    same size, draws the same trials. A pruned search's trials are judged where they train, against the earlier
    rounds' trials (``Judge``), and their epochs told to the study here after the round."""
    from bpcore import stability
    from bpcore.search import Search

    mc, member, parent_id, pool = sweeping.mc, sweeping.member, sweeping.member.parent_run_id, sweeping.pool
    stable = stability.for_search(model)
    if stable is not None:
        metrics.log_values(mc, parent_id, {"max_stable_lr": stable})
    search = Search(model, stable=stable)
    if pool:  # --parallel pins the rounds (and so the trials drawn); else the sweep workers there are now
        workers = max(1, sweeping.parallel or remote.Pool(pool, member).workers() or 1)
        get_run_logger().info("%s search: %d trials in rounds of %d on the sweep workers of pool %r (MLflow run %s)",
                              model.sweep.search, model.sweep.trials, workers, pool, parent_id)
    else:
        workers = at_once(sweeping.parallel, model.sweep.trials, model.kind)
        get_run_logger().info("%s search: %d trials, %d at a time %s, %d BLAS thread(s) each (MLflow run %s)",
                              model.sweep.search, model.sweep.trials, workers, _where(sweeping),
                              blas.share(workers), parent_id)
    children: list[Child] = []
    while search.remaining:
        batch = search.ask(workers)
        digests = [digest for _, digest in load_once(batch)]
        try:
            if pool:
                done = remote.run_on_pool(batch, digests, pool, mc, sweeping.tags, member, sweeping.metric,
                                          prune=_away(search, batch[0], mc, parent_id))
            else:
                prune = {"prune": search.prune, "earlier": search.earlier(batch[0])} if search.pruner else None
                done = run_children(batch, digests, sweeping, workers, prune=prune)
        except remote.Interrupted as stopped:  # the earlier rounds' children go into the summary too
            raise remote.Interrupted(children + stopped.children, stopped.cause) from stopped.cause
        _replay(search, done, mc)
        for child in done:
            search.tell(child.point, child.score, child.status)
        children += done
    return children


def _away(search, first: GridPoint, mc: MlflowClient, parent_id: str) -> dict[str, str] | None:
    """What a pool's workers need to prune this round's trials as the study here would: the pruner, the goal,
    and the earlier rounds' trials, logged on the parent run (``sweep/study/round-<n>.json``: no size limit)."""
    if search.pruner is None:
        return None
    path = f"sweep/study/round-{first.index}.json"
    mc.log_dict(parent_id, {"trials": search.earlier(first)}, path)
    return {"prune": search.prune, "study": path}


def _replay(search, done: list[Child], mc: MlflowClient) -> None:
    """The epochs the round's trials reported on their workers, reported to the study here (up to a pruning)."""
    from bpcore.search import PRUNED_ON

    if search.pruner is None:
        return
    for child in done:
        if child.run_id:
            search.replay(child.point, [float(v) for v in metrics.history(mc, child.run_id, PRUNED_ON)])


def _agreed(key: str | None, parent_id: str, mc: MlflowClient) -> str | None:
    """The data digest the workers agreed on, recorded on the parent (None when no child read the data)."""
    digest = membership.forget_digest(key) if key else None
    if digest:
        mc.set_tag(parent_id, tag.DATA_DIGEST, digest)
    return digest
