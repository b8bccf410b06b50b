"""Two processes ending one run at once (a sweep marking a child KILLED as it stops, the child's own process
finishing it): the run's status, ``bp.status`` and ``bp.failure_reason`` always tell one story."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from flows.tracking import ending, runs
from flows.tracking import tags as tag

STOPPED = "stopped by SIGTERM: the sweep's children still to run were cancelled"


@pytest.fixture
def run_id(tracking_uri) -> str:
    mc = MlflowClient(tracking_uri)
    experiment = runs.experiment_id_of(mc, "run-end")
    return mc.create_run(experiment, tags={tag.STATUS: "running"}).info.run_id


def outcome(mc: MlflowClient, run_id: str) -> tuple[str, str | None, str | None]:
    run = mc.get_run(run_id)
    return run.info.status, run.data.tags.get(tag.STATUS), run.data.tags.get(tag.FAILURE_REASON)


def finish(mc: MlflowClient, run_id: str) -> None:
    """What a run's own process does as it finishes."""
    ending.end(mc, run_id, "FINISHED", "finished", None)


def test_a_run_its_process_finishes_after_the_sweep_marked_it_is_finished_without_a_reason(tracking_uri, run_id):
    mc = MlflowClient(tracking_uri)
    assert runs.mark_failed(mc, run_id, "failed", STOPPED, run_status="KILLED")
    finish(mc, run_id)
    assert outcome(mc, run_id) == ("FINISHED", "finished", None)


def test_a_run_that_ended_keeps_its_outcome_when_the_sweep_marks_it_late(tracking_uri, run_id):
    mc = MlflowClient(tracking_uri)
    finish(mc, run_id)
    assert not runs.mark_failed(mc, run_id, "failed", STOPPED, run_status="KILLED")
    assert outcome(mc, run_id) == ("FINISHED", "finished", None)


class Between(MlflowClient):
    """A client that lets another process end the run between writing its tags and ending it."""

    def __init__(self, uri: str, meanwhile):
        super().__init__(uri)
        self.meanwhile = meanwhile

    def set_terminated(self, run_id, status=None, end_time=None):
        meanwhile, self.meanwhile = self.meanwhile, None
        if meanwhile:
            meanwhile()
        return super().set_terminated(run_id, status, end_time)


def test_a_sweep_that_ends_the_run_last_makes_the_tags_its_own(tracking_uri, run_id):
    mc = MlflowClient(tracking_uri)
    sweep = Between(tracking_uri, lambda: finish(mc, run_id))  # the child finishes between the sweep's two writes
    runs.mark_failed(sweep, run_id, "failed", STOPPED, run_status="KILLED")
    assert outcome(mc, run_id) == ("KILLED", "failed", STOPPED)


def test_a_child_that_ends_the_run_last_makes_the_tags_its_own(tracking_uri, run_id):
    mc = MlflowClient(tracking_uri)
    child = Between(tracking_uri, lambda: runs.mark_failed(mc, run_id, "failed", STOPPED, run_status="KILLED"))
    finish(child, run_id)  # the sweep marks it between the child's two writes
    assert outcome(mc, run_id) == ("FINISHED", "finished", None)
