"""A sweep as a Prefect flow: one parent MLflow run, one nested child run per grid point.

Entrypoint ``flows/sweep.py:sweep``. Each child runs the experiment's own flow code in a task
(a complete MLflow run: params, histories, model, plots, tags) tagged ``mlflow.parentRunId``. Children
run side by side on threads: the data is loaded once into the per-process cache, which every
child then reads, and the BLAS thread count is divided between them so they don't fight over
cores. The parent run holds the comparison (table, curves, best child) and registers the best
child's model.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State
from prefect.task_runners import ThreadPoolTaskRunner
from threadpoolctl import threadpool_limits

from bpcore import sweep as grid
from bpcore.config import Config
from bpcore.loading import fingerprint
from flows import flow_for, tracking

CHAMPION = "champion"
# the curve each kind's children are compared by: the line fit's cost flattens near the same
# value for every stable learning rate, its excess over the least-squares optimum does not
CURVE = {"linreg": ("excess_cost", "iteration"), "mnist": ("cost", "epoch"), "chain": ("cost", "iteration")}


@dataclass
class Child:
    """What a sweep learns of one child: its grid point, MLflow run and outcome."""

    index: int
    name: str
    values: dict
    run_id: str | None
    status: str  # finished / diverged / failed
    reason: str | None = None
    score: float | None = None  # the sweep's metric, when the child logged it


@task(cache_policy=NO_CACHE)
def load_once(configs: list[Config]) -> tuple[str | None, str | None]:
    """Load every distinct dataset the children need into the process cache; the first one's fingerprint."""
    prints = [fingerprint(c) for c in configs]
    return prints[0]


@task(cache_policy=NO_CACHE, task_run_name="child {name}")
def run_child(index: int, name: str, values: dict, config: Config, tracking_uri: str,
              tags: dict[str, str]) -> Child:
    """Train one grid point with the experiment's own flow code; never raises for a failed child.

    The flow's body runs inside this task (its tasks nest under it), not as a subflow run: on
    SQLite, Prefect's API answers concurrent subflow creations with 503 "database is locked",
    retried only after about 2 s, which cost a line-fit sweep more than its children's training.
    """
    try:
        result = flow_for(config.kind).fn(config, tracking_uri, tags, name)
    except tracking.RunFailed as exc:
        return Child(index, name, values, exc.run_id, exc.status, exc.reason)
    except Exception as exc:  # a child's crash is that child's outcome, not the sweep's
        return Child(index, name, values, None, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0])
    return outcome(result, index, name, values)


def blas_threads(workers: int) -> int:
    """BLAS threads per child: the cores shared out, at least one each."""
    return max(1, (os.cpu_count() or 1) // workers)


def outcome(result, index: int, name: str, values: dict) -> Child:
    """What a child's flow body returned: its MLflow run id, or a Failed state carrying RunFailed."""
    if isinstance(result, str):
        return Child(index, name, values, result, "finished")
    exc = result.result(raise_on_failure=False) if isinstance(result, State) else result
    if isinstance(exc, tracking.RunFailed):
        return Child(index, name, values, exc.run_id, exc.status, exc.reason)
    return Child(index, name, values, None, "failed", str(exc))


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def score_children(tracking_uri: str, children: list[Child], metric: str) -> list[Child]:
    """Each finished child's value of the sweep's metric, read back from MLflow."""
    mc = tracking.client(tracking_uri)
    for child in children:
        if child.run_id is not None and child.status == "finished":
            child.score = mc.get_run(child.run_id).data.metrics.get(metric)
    return children


def best_child(children: list[Child], goal: str) -> Child | None:
    """The finished child with the best score (the first of equals), or None."""
    best = None
    for child in children:
        if child.score is not None and grid.better(child.score, best.score if best else None, goal):
            best = child
    return best


def table(children: list[Child], metric: str) -> list[dict]:
    """One row per child: grid point, swept values, status, the metric, run id."""
    return [{"point": c.name, **{k: _cell(v) for k, v in c.values.items()}, "status": c.status,
             metric: c.score, "run_id": c.run_id or "", "reason": c.reason or ""} for c in children]


def _cell(value):
    return value if isinstance(value, int | float | str) else str(value)


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_comparison(tracking_uri: str, parent_id: str, kind: str, children: list[Child], metric: str,
                   best: Child | None) -> None:
    """The parent's table (MLflow table + CSV), every child's curve on one plot, counts and the best child."""
    from flows import plots

    mc = tracking.client(tracking_uri)
    rows = table(children, metric)
    mlflow.log_table({key: [row[key] for row in rows] for key in rows[0]}, artifact_file="sweep/results.json")
    mlflow.log_text(_csv(rows), "sweep/results.csv")
    key, xlabel = CURVE[kind]
    curves = [(c.name, tracking.history(mc, c.run_id, key), c.status) for c in children if c.run_id]
    mlflow.log_figure(plots.sweep_curves(curves, key, xlabel), "plots/sweep.png")
    values = {"children": len(children), **_counts(children)}
    if best is not None:
        values[f"best_{metric}"] = best.score
        mc.set_tag(parent_id, "bp.best_child", best.run_id)
        mc.set_tag(parent_id, "bp.best_point", best.name)
    tracking.log_values(mc, parent_id, values)


def _counts(children: list[Child]) -> dict[str, int]:
    """How many children finished, diverged and failed."""
    return {status: sum(c.status == status for c in children) for status in ("finished", "diverged", "failed")}


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@task(cache_policy=NO_CACHE)  # no retries: a retry after the version was created would register it twice
def register_best(tracking_uri: str, parent_id: str, name: str, best: Child, metric: str, goal: str) -> bool:
    """Register the best child's model under ``name``; move ``champion`` to it only if it beats the champion.

    The champion's score is its run's value of the same metric; a champion whose run lacks that
    metric is beaten by any score. Returns whether the alias moved.
    """
    mc = tracking.client(tracking_uri)
    version = mlflow.register_model(_model_uri(mc, best.run_id), name,
                                    tags={"bp.sweep": parent_id, f"bp.{metric}": str(best.score)})
    try:
        current = mc.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:  # no champion yet
        current = None
    previous = mc.get_run(current.run_id).data.metrics.get(metric) if current is not None else None
    moved = grid.better(best.score, previous, goal)
    if moved:
        mc.set_registered_model_alias(name, CHAMPION, version.version)
    mc.set_tag(parent_id, "bp.registered_model", f"{name}/{version.version}")
    mc.set_tag(parent_id, "bp.champion_moved", str(moved).lower())
    get_run_logger().info("registered %s version %s (%s %s); champion %s", name, version.version, metric,
                          best.score, "moved to it" if moved else f"kept (its {metric}: {previous})")
    return moved


def _model_uri(mc, run_id: str) -> str:
    """The run's logged model (``models:/m-...``; MLflow 3 keeps it outside the run's artifacts)."""
    outputs = mc.get_run(run_id).outputs
    models = outputs.model_outputs if outputs is not None else []
    return f"models:/{models[0].model_id}" if models else f"runs:/{run_id}/model"


@flow(name="sweep", log_prints=False)
def sweep(config: Config, tracking_uri: str | None = None, tags: dict[str, str] | None = None,
          run_name: str | None = None, parallel: int | None = None) -> str:
    """Train every grid point of ``config.sweep`` as a nested MLflow run; returns the parent run id.

    ``parallel``: children trained at once (default: the number of cores).
    """
    logger = get_run_logger()
    tracking_uri = tracking.resolve_tracking_uri(tracking_uri)
    points = grid.expand(config)
    metric, goal = grid.objective(config)
    workers = max(1, min(parallel or os.cpu_count() or 1, len(points)))
    source, digest = load_once([p.config for p in points])
    parent_tags = {**(tags or {}), "bp.sweep": "parent"}
    with tracking.tracked_run(config, source or "none", digest or "", None, tracking_uri,
                              run_name or f"sweep of {len(points)}", parent_tags) as parent_id:
        child_tags = {**(tags or {}), "mlflow.parentRunId": parent_id, "bp.sweep": "child"}
        threads = blas_threads(workers)
        logger.info("%d children, %d at a time, %d BLAS thread(s) each (MLflow run %s)",
                    len(points), workers, threads, parent_id)
        with threadpool_limits(limits=threads, user_api="blas"), ThreadPoolTaskRunner(max_workers=workers) as runner:
            futures = [runner.submit(run_child, {"index": p.index, "name": p.name, "values": p.values,
                                                 "config": p.config, "tracking_uri": tracking_uri,
                                                 "tags": child_tags}) for p in points]
            children = [f.result() for f in futures]
        children = score_children(tracking_uri, children, metric)
        best = best_child(children, goal)
        log_comparison(tracking_uri, parent_id, config.kind, children, metric, best)
        create_table_artifact(table=table(children, metric), key="sweep-results",
                              description=f"sweep {parent_id}: {metric} ({goal}) per grid point")
        if best is None:
            raise tracking.RunFailed(parent_id, _no_winner(children))
        if config.sweep.model_name:
            register_best(tracking_uri, parent_id, config.sweep.model_name, best, metric, goal)
    logger.info("best: %s (%s %s, MLflow run %s)", best.name, metric, best.score, best.run_id)
    return parent_id


def _no_winner(children: list[Child]) -> str:
    counts = _counts(children)
    return (f"no child finished with a score: {counts['diverged']} diverged, {counts['failed']} failed, "
            f"{counts['finished']} finished without the metric")


def results_text(parent_id: str, tracking_uri: str | None = None) -> str:
    """The parent's results table as aligned text (what ``bp sweep`` prints)."""
    tracking.client(tracking_uri)  # the store the runs:/ URI below is read from
    text = mlflow.artifacts.load_text(f"runs:/{parent_id}/sweep/results.csv")
    rows = list(csv.reader(io.StringIO(text)))
    keep = [i for i, head in enumerate(rows[0]) if head != "reason"]
    rows = [[row[i] for i in keep] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
