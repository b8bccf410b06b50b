"""What a sweep learns of each child, however the child ran (on a thread here, or on a worker): read from the
child's MLflow run, the one record of its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlflow.tracking import MlflowClient

from bpcore import kinds
from bpcore.config.models import Config
from bpcore.search.grid import GridPoint
from flows.experiments import steering
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import RunResult
from flows.experiments.registry import flow_for
from flows.tracking import metrics, runs
from flows.tracking import tags as tag


@dataclass
class Child:
    """A child's grid point and its outcome: its MLflow run, status, reason, score and comparison curve."""

    point: GridPoint
    run_id: str | None
    status: str  # finished / diverged / failed / cancelled; pruned (by a search) / skipped (above a divergence)
    reason: str | None = None
    score: float | None = None  # the sweep's metric, when the child finished (or was pruned) and logged it
    curve: list[float] = field(default_factory=list)

    @classmethod
    def read(cls, point: GridPoint, run_id: str, mc: MlflowClient, metric: str) -> Child:
        """The child whose MLflow run is ``run_id``."""
        return cls.of_run(point, mc.get_run(run_id), mc, metric)

    @classmethod
    def of_result(cls, point: GridPoint, result: RunResult, mc: MlflowClient, metric: str) -> Child:
        """The child whose flow handed back ``result``: its outcome as is, and its comparison curve from its run."""
        curve = (metrics.history(mc, result.run_id, kinds.get(point.validated().kind).curve[0]).tolist()
                 if result.run_id else [])
        score = result.metrics.get(metric) if result.status in ("finished", steering.PRUNED) else None
        return cls(point, result.run_id, result.status, result.reason, score, curve)

    @classmethod
    def of_run(cls, point: GridPoint, run, mc: MlflowClient, metric: str) -> Child:
        """The child of an MLflow run already read: its status and reason tags, its score, its comparison curve."""
        status = run.data.tags.get(tag.STATUS, "failed")
        curve = metrics.history(mc, run.info.run_id, kinds.get(point.validated().kind).curve[0]).tolist()
        score = run.data.metrics.get(metric) if status in ("finished", steering.PRUNED) else None
        return cls(point, run.info.run_id, status, run.data.tags.get(tag.FAILURE_REASON), score, curve)


class ChildFailed(Exception):
    """A child that did not finish: its task ends Failed carrying this, and the parent reads ``child`` off it."""

    def __init__(self, child: Child):
        super().__init__(f"{child.point.name}: {child.status}: {child.reason}")
        self.child = child

    def __repr__(self) -> str:  # what Prefect shows of the failed state: not the whole curve
        return f"ChildFailed({str(self)!r})"

    def __reduce__(self):  # rebuilt from its child, not its message: it travels back from a Dask worker
        return ChildFailed, (self.child,)


def record_skipped(point: GridPoint, digest: str, mc: MlflowClient, tags: dict[str, str], reason: str) -> Child:
    """A point not trained, above a learning rate that diverged: a KILLED child run with its config and reason."""
    config = point.validated()
    run_id = runs.record_untrained(config, str(config.data.path), digest, mc, point.name,
                                   {**tags, tag.POINT: str(point.index)}, steering.SKIPPED, reason)
    return Child(point, run_id, steering.SKIPPED, reason)


def train_point(config: Config, tracking_uri: str | None, tags: dict[str, str] | None, run_name: str,
                data_digest: str | None, sweep: SweepMember, steer: steering.Steer | None = None,
                resume: str | None = None) -> RunResult:
    """Run a point's kind's flow code in the calling task run (the flow's tasks nest under it, not under a
    flow run of its own), under ``steer`` if given: the point's outcome as its flow hands it back (its
    MLflow run id, status, reason and single-valued metrics; ``failed`` with the reason when an error
    ended the run). ``resume``: the point's run cut short, which it goes on in."""
    try:
        with steering.steered(steer):
            again = {"resume": resume} if resume else {}  # a kind's flow takes resume only if it can go on
            outcome = flow_for(config.kind).fn(config=config, tracking_uri=tracking_uri, tags=tags,
                                               run_name=run_name, data_digest=data_digest, sweep=sweep, **again)
    except runs.RunFailed as failed:  # an error inside the run: the run is FAILED with the reason
        return RunResult(run_id=failed.run_id, status=failed.status, reason=failed.reason)
    if isinstance(outcome, RunResult):
        return outcome
    # a run that diverged ends its flow Failed, carrying the Diverged error (its run id, reason and result)
    diverged = outcome.result(raise_on_failure=False)
    result = getattr(diverged, "result", None)
    if isinstance(result, RunResult):
        return result
    return RunResult(run_id=getattr(diverged, "run_id", None), status=getattr(diverged, "status", "failed"),
                     reason=getattr(diverged, "reason", None) or str(diverged))
