"""A sweep as a Prefect flow: one parent MLflow run, one nested child run per grid point.

Entrypoint ``flows/sweep/flow.py:sweep``. Each child runs its kind's own flow code (a complete
MLflow run: params, histories, model, plots, tags), told that it is a point of this sweep by its
``sweep`` parameter: in a task run of this flow run, in this process or on a Dask cluster's worker
processes (``flows.sweep.local``): the one ``bp sweep`` starts, or a pool's (``bp sweep --pool`` makes this
flow run on a pool's worker, ``flows.cli.pool``). The data is loaded once where the flow runs to
record its digest, and each child checks what it read against it.
The parent run holds the comparison (table, curves, best child) and registers the best child's
model when it beats the champion.
"""

from __future__ import annotations

from typing import Any

from mlflow.tracking import MlflowClient
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from bpcore.kinds import fingerprint, validate
from bpcore.search import grid
from bpcore.search.grid import GridPoint
from flows.experiments import pipeline
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import run_tags
from flows.runtime import terminal
from flows.sweep import champion, results
from flows.sweep.child import Child
from flows.sweep.earlier import children_of
from flows.sweep.local import Interrupted, Sweeping, at_once, own_cluster, pool_scheduler, run_children, where
from flows.tracking import metrics, runs
from flows.tracking import tags as tag


@task(cache_policy=NO_CACHE)
def load_once(points: list[GridPoint]) -> list[tuple[str, str]]:
    """Load every distinct dataset the children need into the process cache; each point's (source, digest)."""
    return [fingerprint(p.validated()) for p in points]


@flow(name="sweep", log_prints=False)
def sweep(config: dict[str, Any], tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, parallel: int | None = None,
          points: list[GridPoint] | None = None, scheduler: str | None = None,
          resume: str | None = None) -> results.SweepResult:
    """Train every grid point of the config's ``sweep`` as a nested MLflow run; returns the parent's outcome.

    ``config``: the resolved sweep config as plain values; ``parallel``: children trained at once
    (default: the number of cores here, or the workers of the pool's cluster); ``points``: the grid as
    already expanded by the caller (else it is expanded here); ``scheduler``: the address of the Dask
    cluster whose workers train them (``bp sweep`` starts one; else the pool's, when this flow run's worker
    names one, ``flows.sweep.tls``; else one is started for the flow when several points train at once).
    ``resume``: the parent run of this sweep, stopped or failed, to finish (``bp resume``): its children's outcomes
    stand, those cut short go on in their runs, the rest train; with the ``parallel`` it had (its ``bp.at_once``),
    a search draws the same trials again.
    """
    model = validate(config, source="sweep config")
    mc = pipeline.start(tracking_uri)
    metric, goal = grid.objective(model)
    searching = model.sweep.search != "grid"
    if searching:  # the trials are drawn as the search goes: the parent records the base config's data
        points = []
        prints = [fingerprint(model.model_copy(update={"sweep": None}))]
        name = f"{model.sweep.search} search of {model.sweep.trials}"
    else:
        points = points or grid.expand(model)
        prints = load_once(points)
        name = f"sweep of {len(points)}"
    parent_tags = {**run_tags(tags), tag.SWEEP: "parent"}  # its flow run (and deployment) as any run's
    with runs.tracked_run(model, prints[0][0], prints[0][1], None, mc, run_name or name, parent_tags,
                          resume) as parent_id:
        resumed = int(mc.get_run(parent_id).data.tags.get(tag.RESUMED, "0")) if resume else 0
        sweeping = Sweeping(mc, tags, SweepMember(parent_run_id=parent_id, resumed=resumed), metric, parallel,
                            scheduler or pool_scheduler(), children_of(mc, parent_id) if resume else None)
        try:
            at_a_time = at_once(parallel, model.sweep.trials if searching else len(points), model.kind,
                                sweeping.scheduler)
            mc.set_tag(parent_id, tag.AT_ONCE, str(at_a_time))  # what a resumption trains with
            with own_cluster(sweeping, at_a_time):
                if searching:
                    children = _search(model, sweeping, at_a_time)
                else:
                    children = _train(points, [d for _, d in prints], sweeping, at_a_time,
                                      grid.skips_above_divergence(model))
        except Interrupted as stopped:
            results.summarise(mc, parent_id, model.kind, stopped.children, metric, goal)
            if isinstance(stopped.cause, Exception):  # the cluster or a server lost: the parent FAILED, naming it
                raise runs.RunFailed(parent_id, str(stopped.cause)) from stopped.cause
            raise stopped.cause from None  # a stop: the parent KILLED, as the process was told
        result, best = results.conclude(mc, parent_id, model.kind, children, metric, goal)
        if model.sweep.model_name:
            result.registry = champion.register_best(mc, parent_id, model.sweep.model_name, best, metric, goal,
                                                     prints[0][1])
    terminal.logger().info("best: %s (%s %s, MLflow run %s)", best.point.name, metric, best.score, best.run_id)
    return result


def _train(points: list[GridPoint], digests: list[str], sweeping: Sweeping, workers: int,
           skip: bool) -> list[Child]:
    """The children, ``workers`` at a time; ``skip``: above a learning rate that diverged, not trained."""
    terminal.logger().info("%d children, %d at a time %s (MLflow run %s)", len(points), workers,
                          where(sweeping, workers), sweeping.member.parent_run_id)
    return run_children(points, digests, sweeping, workers, skip=skip)


def _search(model, sweeping: Sweeping, at_a_time: int) -> list[Child]:
    """A random or tpe search in rounds of as many trials as train at once (``at_a_time``). Each round's results
    are told to the study in trial order before the next is asked: the same config, in rounds of the same
    size, draws the same trials. A pruned search's trials are judged where they train, against the earlier
    rounds' trials (``Judge``, built from the task's arguments), and their epochs told to the study here after
    the round."""
    from bpcore.search.space import stable_limit
    from bpcore.search.study import Search

    mc, parent_id = sweeping.mc, sweeping.member.parent_run_id
    stable = stable_limit(model)
    if stable is not None:
        metrics.log_values(mc, parent_id, {"max_stable_lr": stable})
    search = Search(model, stable=stable)
    terminal.logger().info("%s search: %d trials, %d at a time %s (MLflow run %s)", model.sweep.search,
                          model.sweep.trials, at_a_time, where(sweeping, at_a_time), parent_id)
    children: list[Child] = []
    while search.remaining:
        batch = search.ask(at_a_time)
        digests = [digest for _, digest in load_once(batch)]
        prune = {"prune": search.prune, "earlier": search.earlier(batch[0])} if search.pruner else None
        try:
            done = run_children(batch, digests, sweeping, at_a_time, prune=prune)
        except Interrupted as stopped:  # the earlier rounds' children go into the summary too
            raise Interrupted(children + stopped.children, stopped.cause) from stopped.cause
        _replay(search, done, mc)
        for child in done:
            search.tell(child.point, child.score, child.status)
        children += done
    return children


def _replay(search, done: list[Child], mc: MlflowClient) -> None:
    """The epochs the round's trials reported where they trained, reported to the study here (up to a pruning)."""
    from bpcore.search.space import PRUNED_ON

    if search.pruner is None:
        return
    for child in done:
        if child.run_id:
            search.replay(child.point, [float(v) for v in metrics.history(mc, child.run_id, PRUNED_ON)])
