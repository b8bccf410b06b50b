"""What a resumed sweep finds of its children in MLflow (``bp resume PARENT``): the outcomes that stand, and the runs
that were cut short and go on.

A child that finished, diverged, was pruned or skipped is kept as it is; one stopped or failed otherwise (its run
KILLED or FAILED) resumes in its own run, from its checkpoint; a point with no run trains anew. A point is known by
its child's ``bp.point`` tag (its index), else, for runs recorded without it, by its name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from bpcore.search.grid import GridPoint
from flows.experiments import steering
from flows.tracking import tags as tag

KEPT = ("finished", "diverged", steering.PRUNED, steering.SKIPPED)  # a child's outcome that stands


@dataclass
class Earlier:
    """The children a sweep had when it stopped, by point index and (untagged) by name."""

    by_index: dict[int, list[Run]] = field(default_factory=dict)
    by_name: dict[str, list[Run]] = field(default_factory=dict)

    def kept(self, point: GridPoint) -> Run | None:
        """The child run whose outcome stands for ``point`` (the latest, if several), or None."""
        done = [run for run in self._of(point) if run.data.tags.get(tag.STATUS) in KEPT]
        return max(done, key=lambda run: run.info.start_time) if done else None

    def resumed(self, point: GridPoint) -> str | None:
        """The run that goes on for ``point``, cut short as it trained (the latest attempt's), or None."""
        if self.kept(point) is not None:
            return None
        cut = [run for run in self._of(point) if run.info.status in ("KILLED", "FAILED")]
        return max(cut, key=lambda run: run.info.start_time).info.run_id if cut else None

    def _of(self, point: GridPoint) -> list[Run]:
        return self.by_index.get(point.index) or self.by_name.get(point.name, [])


def children_of(mc: MlflowClient, parent_id: str) -> Earlier:
    """Every child run of the sweep whose parent run is ``parent_id``."""
    experiment = mc.get_run(parent_id).info.experiment_id
    earlier, token = Earlier(), None
    while True:
        page = mc.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=1000,
                              page_token=token)
        for run in page:
            index = run.data.tags.get(tag.POINT, "")
            if index.isdigit():
                earlier.by_index.setdefault(int(index), []).append(run)
            else:
                earlier.by_name.setdefault(run.info.run_name, []).append(run)
        token = page.token
        if not token:
            return earlier
