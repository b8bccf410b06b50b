"""What a sweep learns of each child, however the child ran (on a thread here, or on a worker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bpcore.sweep import GridPoint


@dataclass
class Child:
    """A child's grid point and its outcome: its MLflow run, status, reason, score and comparison curve."""

    point: GridPoint
    run_id: str | None
    status: str  # finished / diverged / failed / cancelled
    reason: str | None = None
    score: float | None = None  # the sweep's metric, when the child finished and logged it
    curve: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, point: GridPoint, result: Any, metric: str) -> Child:
        """From the RunResult a training flow handed back (``flows.experiments.skeleton``)."""
        score = result.metrics.get(metric) if result.status == "finished" else None
        return cls(point, result.run_id, result.status, result.reason, score, result.curve)


class ChildFailed(Exception):
    """A child that did not finish: its task ends Failed carrying this, and the parent reads ``child`` off it."""

    def __init__(self, child: Child):
        super().__init__(f"{child.point.name}: {child.status}: {child.reason}")
        self.child = child

    def __repr__(self) -> str:  # what Prefect shows of the failed state: not the whole curve
        return f"ChildFailed({str(self)!r})"
