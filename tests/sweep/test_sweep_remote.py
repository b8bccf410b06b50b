"""The pool side of a sweep, piece by piece on the session's Prefect server: requests that ride out a server
that fails a while, children cancelled when the sweep stops, a child that finds its sweep over, and the
children agreeing on the data's digest when the submitting machine has no copy of it."""

from __future__ import annotations

import time

import pytest

from bpcore.errors import DataError
from flows.experiments import membership
from flows.experiments.pipeline import check_digest
from flows.runtime import outage
from flows.sweep import remote as sweep_remote

pytestmark = pytest.mark.usefixtures("prefect_server")


def new_flow_run(client, state=None):
    from prefect.client.schemas.actions import FlowRunCreate

    flow_id = client.create_flow_from_name("bp-pool-test")
    created = client.request("POST", "/flow_runs/", json=FlowRunCreate(flow_id=flow_id).model_dump(mode="json"))
    flow_run_id = created.json()["id"]
    if state is not None:
        client.set_flow_run_state(flow_run_id, state, force=True)
    return flow_run_id


def test_requests_ride_out_errors_then_give_up_after_the_budget(monkeypatch):
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("503 database is locked")
        return "answered"

    assert sweep_remote.patiently(flaky, "reading") == "answered" and len(calls) == 3

    def refused():
        raise ConnectionError("refused")

    monkeypatch.setenv(outage.VARIABLE, "4")
    start = time.monotonic()
    with pytest.raises(sweep_remote.ServerLost) as lost:
        sweep_remote.patiently(refused, "reading the states")
    assert 2 < time.monotonic() - start < 8
    assert str(lost.value).startswith("the Prefect server stopped answering (reading the states: ConnectionError: "
                                      "refused); gave up after 4 s (BP_SERVER_TIMEOUT)")


def test_a_stop_cancels_the_children_not_final(tracking_uri):
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Running, Scheduled

    from bpcore.sweep import GridPoint

    point = GridPoint(index=0, name="lr=1", values={}, config={"experiment": "pool-stop"})
    with get_client(sync_client=True) as client:
        waiting = sweep_remote.Submitted(point, None, 1, new_flow_run(client, Scheduled()))
        running = sweep_remote.Submitted(point, None, 1, new_flow_run(client, Running()))
        done = sweep_remote.Submitted(point, None, 1, new_flow_run(client, Completed()))
        for child in (waiting, running, done):
            child.state = client.read_flow_run(child.flow_run_id).state
        sweep_remote.stop([waiting, running, done], tracking_uri, "stopped by SIGTERM: cancelled")
        states = [client.read_flow_run(c.flow_run_id).state for c in (waiting, running, done)]
    assert [s.type.value for s in states] == ["CANCELLED", "CANCELLING", "COMPLETED"]
    assert states[0].message == "stopped by SIGTERM: cancelled"


def test_a_child_whose_sweep_is_over_does_not_start(tracking_uri):
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.states import Failed, Running

    from flows.tracking.store import ensure_store

    ensure_store(tracking_uri)
    mc = MlflowClient(tracking_uri)
    parent = mc.create_run(mc.create_experiment(f"pool-gone-{time.time_ns()}")).info.run_id
    with get_client(sync_client=True) as client:
        live, ended = new_flow_run(client, Running()), new_flow_run(client, Failed(message="gave up"))
    member = membership.SweepMember(parent_run_id=parent, flow_run_id=str(live))
    assert membership.sweep_gone(member, mc) is None
    assert membership.sweep_gone(member.model_copy(update={"flow_run_id": str(ended)}), mc) == (
        f"its sweep's flow run {ended} ended Failed before this point started")
    mc.set_terminated(parent, "FAILED")
    assert membership.sweep_gone(member, mc) == (
        f"its sweep's MLflow run {parent} ended FAILED before this point started")


def test_children_agree_on_the_digest_of_data_the_submitter_lacks():
    key = membership.digest_key(f"{time.time_ns():032x}")
    assert membership.agreed_digest(key, "a" * 64) == "a" * 64  # the first to read it sets it
    assert membership.agreed_digest(key, "a" * 64) == "a" * 64
    other = membership.agreed_digest(key, "b" * 64)  # a worker with another copy: its points fail, naming both

    class Read:
        source, digest = "/data/data.csv", "b" * 64

    with pytest.raises(DataError, match=f"/data/data.csv: data differs from what was recorded: expected sha256 "
                                        f"{'a' * 64}, read {'b' * 64}"):
        check_digest(Read, other)
    assert membership.forget_digest(key) == "a" * 64 and membership.forget_digest(key) is None
