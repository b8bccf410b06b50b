"""A sweep's results on its parent run: the table (MLflow table, CSV), every child's curve on one plot,
the counts and the best child."""

from __future__ import annotations

import csv
import io
from typing import Any

from mlflow.tracking import MlflowClient
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel

from bpcore import kinds
from bpcore.search import grid
from flows.experiments.pipeline import logging_task
from flows.runtime import outage, terminal
from flows.sweep.child import Child
from flows.tracking import metrics, runs
from flows.tracking import tags as tag


def best_child(children: list[Child], goal: str) -> Child | None:
    """The finished child with the best score (the first of equals), or None."""
    best = None
    for child in children:
        scored = child.status == "finished" and child.score is not None
        if scored and grid.better(child.score, best.score if best else None, goal):
            best = child
    return best


def table(children: list[Child], metric: str) -> list[dict]:
    """One row per child: grid point, swept values, status, the metric, run id, reason."""
    return [{"point": c.point.name, **{k: _cell(v) for k, v in c.point.values.items()}, "status": c.status,
             metric: c.score, "run_id": c.run_id or "", "reason": c.reason or ""} for c in children]


def _cell(value):
    return value if isinstance(value, int | float | str) else str(value)


@logging_task
def log_comparison(mc: MlflowClient, parent_id: str, kind: str, children: list[Child], metric: str,
                   best: Child | None) -> None:
    """The parent's table (MLflow table + CSV), every child's curve on one plot, counts and the best child."""
    from flows.experiments import plots

    rows = table(children, metric)
    mc.log_table(parent_id, {key: [row[key] for row in rows] for key in rows[0]}, artifact_file="sweep/results.json")
    mc.log_text(parent_id, _csv(rows), "sweep/results.csv")
    key, xlabel = kinds.get(kind).curve
    curves = [(c.point.name, c.curve, c.status) for c in children if c.curve]
    mc.log_figure(parent_id, plots.sweep_curves(curves, key, xlabel), "plots/sweep.png")
    values = {"children": len(children), **_counts(children)}
    if best is not None:
        values[best_name(metric)] = best.score
        mc.set_tag(parent_id, tag.BEST_CHILD, best.run_id)
        mc.set_tag(parent_id, tag.BEST_POINT, best.point.name)
    metrics.log_values(mc, parent_id, values)


def best_name(metric: str) -> str:
    """The parent's metric for its best child's score: ``best_final_cost``; ``best_val_accuracy`` stays itself."""
    return metric if metric.startswith("best_") else f"best_{metric}"


def _counts(children: list[Child]) -> dict[str, int]:
    """How many children finished, diverged and failed (and, when any, were pruned or skipped)."""
    counts = {status: sum(c.status == status for c in children) for status in ("finished", "diverged", "failed")}
    return counts | {status: n for status in ("pruned", "skipped") if (n := sum(c.status == status for c in children))}


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def summarise(mc: MlflowClient, parent_id: str, kind: str, children: list[Child], metric: str, goal: str) -> None:
    """On a stop, the parent's comparison of the children that ended (quickly; not through Prefect's API)."""
    if not children:
        return
    try:
        with outage.one_attempt(timeout=10):
            log_comparison.fn(mc, parent_id, kind, children, metric, best_child(children, goal))
    except Exception as exc:  # the store is away too: the stop goes on
        terminal.logger().warning("could not log the comparison of the %d children that ended: %s", len(children), exc)


def _no_winner(children: list[Child]) -> str:
    counts = _counts(children)
    early = "".join(f", {counts[s]} {s}" for s in ("pruned", "skipped") if s in counts)
    return (f"no child finished with a score: {counts['diverged']} diverged, {counts['failed']} failed{early}, "
            f"{counts['finished']} finished without the metric")


class SweepResult(BaseModel):
    """What the sweep flow hands back: the parent run, one row per child, and what became of the best."""

    run_id: str
    metric: str
    goal: str
    rows: list[dict[str, Any]]
    best: str | None = None
    registry: str | None = None


def conclude(mc: MlflowClient, parent_id: str, kind: str, children: list[Child], metric: str,
             goal: str) -> tuple[SweepResult, Child]:
    """Log the comparison on the parent and the results table as a Prefect artifact; the result and the best child.

    No child with a score: RunFailed, carrying the result, so the parent is marked FAILED with the counts.
    """
    best = best_child(children, goal)
    log_comparison(mc, parent_id, kind, children, metric, best)
    rows = table(children, metric)
    create_table_artifact(table=rows, key="sweep-results",
                          description=f"sweep {parent_id}: {metric} ({goal}) per grid point")
    result = SweepResult(run_id=parent_id, metric=metric, goal=goal, rows=rows, best=best.point.name if best else None)
    if best is None:
        raise runs.RunFailed(parent_id, _no_winner(children), result)
    return result, best
