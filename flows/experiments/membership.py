"""A run that is one point of a sweep: what it is told of its sweep (an explicit flow parameter)."""

from __future__ import annotations

from pydantic import BaseModel

from flows.tracking import tags as tag


class SweepMember(BaseModel):
    """A training flow's ``sweep`` parameter: the run is a child of the sweep's MLflow run ``parent_run_id``;
    ``resumed``: how many times ``bp resume`` went on with that sweep (its word to its points is each time anew)."""

    parent_run_id: str
    resumed: int = 0

    def tags(self) -> dict[str, str]:
        """The child run's tags that place it in its sweep (MLflow's parent link, the compare view's)."""
        return {"mlflow.parentRunId": self.parent_run_id, tag.SWEEP: "child"}
