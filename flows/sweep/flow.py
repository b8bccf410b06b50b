"""A sweep as a Prefect flow: one parent MLflow run, one nested child run per grid point.

Entrypoint ``flows/sweep/flow.py:sweep``. Each child runs its kind's own flow code (a complete
MLflow run: params, histories, model, plots, tags), told that it is a point of this sweep by its
``sweep`` parameter: in a task run of this flow run, in this process or on the sweep's Dask cluster
(``flows.sweep.local``), or as a background task on a pool's sweep workers (``flows.sweep.remote``).
The data is loaded once here to record its digest, and each child checks what it read against it.
The parent run holds the comparison (table, curves, best child) and registers the best child's
model when it beats the champion.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from bpcore import sweep as grid
from bpcore.configfile import validate
from bpcore.loading import fingerprint, readable_here
from bpcore.sweep import GridPoint
from flows.experiments import membership, pipeline
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import run_tags
from flows.runtime import blas
from flows.sweep import champion, remote, results
from flows.sweep.child import ON_THE_WORKERS, Child
from flows.sweep.local import Sweeping, at_once, own_cluster, run_children, where
from flows.tracking import metrics, runs
from flows.tracking import tags as tag


@task(cache_policy=NO_CACHE)
def load_once(points: list[GridPoint]) -> list[tuple[str, str]]:
    """Load every distinct dataset the children need into the process cache; each point's (source, digest)."""
    return [fingerprint(p.validated()) for p in points]




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
            with own_cluster(sweeping, at_a_time):
                if searching:
                    children = _search(model, sweeping, at_a_time)
                else:
                    children = _train(points, [d for _, d in prints], sweeping, at_a_time,
                                      grid.skips_above_divergence(model))
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


def _train(points: list[GridPoint], digests: list[str | None], sweeping: Sweeping, workers: int,
           skip: bool) -> list[Child]:
    """The children on the pool's sweep workers, or here ``workers`` at a time; ``skip``: above a learning rate that
    diverged, not trained."""
    logger, member = get_run_logger(), sweeping.member
    if sweeping.pool:
        logger.info("%d children as background tasks on the sweep workers of pool %r (MLflow run %s)", len(points),
                    sweeping.pool, member.parent_run_id)
        return remote.run_on_pool(points, digests, sweeping.pool, sweeping.mc, sweeping.tags, member,
                                  sweeping.metric, skip=skip)
    logger.info("%d children, %d at a time %s, %d BLAS thread(s) each (MLflow run %s)", len(points), workers,
                where(sweeping), blas.share(workers), member.parent_run_id)
    return run_children(points, digests, sweeping, workers, skip=skip)


def _search(model, sweeping: Sweeping, at_a_time: int) -> list[Child]:
    """A random or tpe search here, or on the pool's sweep workers, in rounds of as many trials as train at once
    (here ``at_a_time``; on a pool ``--parallel`` if given, else its sweep workers at the start). Each round's
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
        workers = at_a_time
        get_run_logger().info("%s search: %d trials, %d at a time %s, %d BLAS thread(s) each (MLflow run %s)",
                              model.sweep.search, model.sweep.trials, workers, where(sweeping),
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
