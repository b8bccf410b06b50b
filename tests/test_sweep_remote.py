"""How a sweep parent waits for a child on a worker: Prefect's event stream, not polling."""

from __future__ import annotations

import threading
import time

import pytest

pytestmark = pytest.mark.usefixtures("prefect_server")


def test_wait_returns_when_the_flow_run_ends_not_at_the_next_recheck():
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import FlowRunCreate
    from prefect.states import Completed, Running

    from flows.sweep_remote import wait

    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("bp-wait-test")
        created = client.request("POST", "/flow_runs/", json=FlowRunCreate(flow_id=flow_id).model_dump(mode="json"))
        flow_run_id = created.json()["id"]

        def finish():  # as a worker would, a second later
            time.sleep(1.0)
            client.set_flow_run_state(flow_run_id, Running(), force=True)
            client.set_flow_run_state(flow_run_id, Completed(), force=True)

        threading.Thread(target=finish, daemon=True).start()
        start = time.monotonic()
        done = wait(flow_run_id, recheck_seconds=60)
        elapsed = time.monotonic() - start
    assert done.state.is_completed()
    assert 0.9 < elapsed < 30  # the end event, not the minute's re-read, ended the wait

    start = time.monotonic()
    assert wait(flow_run_id).state.is_completed() and time.monotonic() - start < 10  # already final: at once
