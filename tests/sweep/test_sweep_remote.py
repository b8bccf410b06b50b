"""The pool side of a sweep, piece by piece on the session's Prefect server (no sweep worker runs): requests that
ride out a server that fails a while, points cancelled when the sweep stops, a point whose worker's heartbeat
stops, a point that ended, a training point stopped when its sweep ends, a child that finds its sweep over, and
the children agreeing on the data's digest when the submitting machine has no copy of it."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time

import pytest
from support import REPO

from bpcore.errors import DataError
from flows.experiments import membership
from flows.experiments.pipeline import check_digest
from flows.runtime import outage
from flows.sweep import remote as sweep_remote

pytestmark = pytest.mark.usefixtures("prefect_server")


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


def _pool_sweep(tracking_uri, name: str, points: int):
    """A parent MLflow run, ``points`` linreg points submitted as a pool sweep's (no worker takes them)."""
    from mlflow import MlflowClient

    from bpcore.config import to_dict
    from bpcore.configfile import load_config
    from bpcore.sweep import GridPoint
    from flows.tracking.store import ensure_store

    ensure_store(tracking_uri)
    mc = MlflowClient(tracking_uri)
    experiment = f"{name}-{time.time_ns()}"
    config = to_dict(load_config(str(REPO / "configs" / "linreg.yaml"), [f"experiment={experiment}"]))
    parent = mc.create_run(mc.create_experiment(experiment)).info.run_id
    member = membership.SweepMember(parent_run_id=parent)
    api = sweep_remote.Pool("unit", member)
    children = [sweep_remote.Submitted(GridPoint(index=i, name=f"lr={i}", values={}, config=config), None, None,
                                       member) for i in range(points)]
    for child in children:
        sweep_remote.submit(api, child)
    return mc, api, children, sweep_remote.Experiments(mc)


def _child_run(mc, child, status: str = "RUNNING", flow_run=None) -> str:
    """An MLflow run as the point's worker opens it: tagged with the point's variable (and the sweep's flow run)."""
    experiment = mc.get_experiment_by_name(child.point.config["experiment"]).experiment_id
    tags = {"bp.point": child.variable, "bp.status": "running", **({"bp.flow_run": str(flow_run)} if flow_run else {})}
    run_id = mc.create_run(experiment, tags=tags).info.run_id
    if status != "RUNNING":
        mc.set_tag(run_id, "bp.status", "finished")
        mc.set_terminated(run_id, status)
    return run_id


def _task_state(task_run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_task_run(task_run_id).state


def _worker(child, beats: int = 0) -> None:
    """What a worker writes as it takes the point: its claim, then ``beats`` counts in its variable."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableUpdate

    from flows.sweep import points as sweep_points

    assert sweep_points._claim(child.variable)
    if beats:
        with get_client(sync_client=True) as client:
            value = client.read_variable_by_name(child.variable).value
            client.update_variable(VariableUpdate(name=child.variable, value={**value, "beat": beats}))


def _end(child, run_id: str | None, reason: str | None) -> None:
    """What a worker writes as the point ends."""
    from flows.sweep import points as sweep_points

    assert sweep_points._ended(child.variable, run_id, reason, lambda **_: "its state") == "its state"


def test_a_stop_cancels_the_points_not_started_and_kills_those_training(tracking_uri):
    mc, api, (waiting, training), experiment = _pool_sweep(tracking_uri, "pool-stop", 2)
    _worker(training)
    training.beat = 1
    run_id = _child_run(mc, training)
    assert set(api.variables()) == {waiting.variable, training.variable, f"{training.variable}-claim"}
    sweep_remote.stop(api, [waiting, training], mc, experiment, "stopped by SIGTERM: cancelled")
    assert api.variables() == {}  # a worker that takes either finds its sweep over; the claim is gone too
    state = _task_state(waiting.task_run_id)
    assert state.type.value == "CANCELLED" and state.message == "stopped by SIGTERM: cancelled"
    run = mc.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["bp.failure_reason"] == "stopped by SIGTERM: cancelled"


def test_a_point_whose_heartbeat_stops_is_failed_crashed_and_delayed_again(tracking_uri):
    """And the points not started are delayed again: the dead worker may have taken one in reserve."""
    mc, api, (child, queued), experiment = _pool_sweep(tracking_uri, "pool-lost", 2)
    logger = logging.getLogger("test")
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    first, task_run, reserved = child.variable, child.task_run_id, queued.task_run_id
    with get_client(sync_client=True) as client:
        flow_run = new_flow_run(client, Running())  # the sweep's: its points' MLflow runs name it
    run_id = _child_run(mc, child, flow_run=flow_run)
    _worker(child)  # its claim: the point has started
    sweep_remote.watch(api, [child, queued], mc, experiment, "final_cost", logger)
    assert child.beat == 1 and child.attempt == 1 and queued.attempt == 1 and queued.beat == 0
    child.seen -= sweep_remote.lease() + 1  # no new count for longer than the lease
    sweep_remote.watch(api, [child, queued], mc, experiment, "final_cost", logger)
    run = mc.get_run(run_id)
    assert run.info.status == "FAILED"
    assert "attempt 1 lost: its worker sent no heartbeat for 30 s (BP_POINT_LEASE): the worker is gone" in \
        run.data.tags["bp.failure_reason"]
    assert _task_state(task_run).type.value == "CRASHED"
    with get_client(sync_client=True) as client:  # one point lost is not its sweep lost
        assert client.read_flow_run(flow_run).state.type.value == "RUNNING"
    assert child.attempt == 2 and child.variable != first and child.task_run_id != task_run and not child.final
    # the point not started: a new task run of the same variable (the first to claim it trains), the old Cancelled
    assert queued.attempt == 1 and queued.task_run_id != reserved and _task_state(reserved).type.value == "CANCELLED"
    # the old attempts' variables gone: they cannot train now
    assert set(api.variables()) == {child.variable, queued.variable}


def test_a_point_whose_run_was_reaped_before_its_lease_ran_out_is_delayed_again(tracking_uri):
    """A bp on the dead worker's machine (a replacement worker starting) may mark the run FAILED as its process's
    before the sweep sees the heartbeat stop: the point was lost all the same, not failed, and is trained again."""
    from flows.tracking.reap import reap

    mc, api, (child,), experiment = _pool_sweep(tracking_uri, "pool-reaped", 1)
    run_id = _child_run(mc, child)
    worker = subprocess.Popen(["true"])  # the worker's process: gone
    worker.wait()
    mc.set_tag(run_id, "bp.worker", f"{socket.gethostname()}:{worker.pid}")
    _worker(child)
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    [(reaped_id, reason)] = reap(tracking_uri, [mc.get_run(run_id).info.experiment_id])
    assert reaped_id == run_id
    first = child.variable
    child.seen -= sweep_remote.lease() + 1
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    assert child.attempt == 2 and child.variable != first and not child.final and child.lost == 1
    run = mc.get_run(run_id)  # the reaper's reason kept: it names the process
    assert run.info.status == "FAILED" and run.data.tags["bp.failure_reason"] == reason


def test_a_point_that_failed_on_its_worker_is_its_outcome_not_a_loss(tracking_uri):
    """A run its worker ended FAILED (bad data, say) whose end the Prefect server missed is the point's result."""
    from flows.tracking import runs

    mc, api, (child,), experiment = _pool_sweep(tracking_uri, "pool-failed", 1)
    run_id = _child_run(mc, child)
    _worker(child)
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    runs.mark_failed(mc, run_id, "failed", "data/data.csv row 3: not a number")
    child.seen -= sweep_remote.lease() + 1
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    assert child.final and child.attempt == 1 and child.child.status == "failed" and child.child.run_id == run_id


def test_a_point_that_ended_is_read_from_its_mlflow_run(tracking_uri):
    mc, api, (child,), experiment = _pool_sweep(tracking_uri, "pool-ended", 1)
    run_id = _child_run(mc, child, "FINISHED")
    _worker(child, 2)
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    assert child.beat == 3 and not child.final  # the claim and two counts
    _end(child, run_id, None)
    assert api.variables()[f"{child.variable}-ended"] == {"run_id": run_id, "reason": None}
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    assert child.final and child.child.run_id == run_id and child.child.status == "finished"
    assert api.variables() == {}  # the point's variable, its claim and its end


def test_a_sweep_ends_once_its_points_task_runs_show_their_ends(tracking_uri, monkeypatch):
    """A worker writes a point's end before its task run's final state is recorded: the sweep waits for that state
    (at most SETTLE_SECONDS), so its flow run never ends while Prefect shows a point unfinished."""
    mc, api, (child,), experiment = _pool_sweep(tracking_uri, "pool-settle", 1)
    _worker(child)
    _end(child, _child_run(mc, child, "FINISHED"), None)
    sweep_remote.watch(api, [child], mc, experiment, "final_cost", logging.getLogger("test"))
    assert child.final and _task_state(child.task_run_id).type.value == "SCHEDULED"  # no worker reported it
    late = threading.Timer(1.5, sweep_remote._set_state, (api, f"/task_runs/{child.task_run_id}", "COMPLETED", "done"))
    late.start()
    start = time.monotonic()
    sweep_remote.settle(api, [child])
    assert 1.5 <= time.monotonic() - start < 5 and _task_state(child.task_run_id).type.value == "COMPLETED"
    start = time.monotonic()
    sweep_remote.settle(api, [child])  # already shown ended: no wait
    assert time.monotonic() - start < 1
    sweep_remote._set_state(api, f"/task_runs/{child.task_run_id}", "RUNNING", "never reported")
    monkeypatch.setattr(sweep_remote, "SETTLE_SECONDS", 1.0)
    start = time.monotonic()
    sweep_remote.settle(api, [child])  # a state that never comes: the sweep ends all the same
    assert 1 <= time.monotonic() - start < 3


def test_a_point_stops_where_it_is_once_its_sweep_has_ended(tracking_uri, monkeypatch):
    from mlflow import MlflowClient

    from flows.sweep import points as sweep_points
    from flows.tracking import runs
    from flows.tracking.store import ensure_store

    monkeypatch.setattr(sweep_points, "BEAT_SECONDS", 0.2)
    ensure_store(tracking_uri)
    mc = MlflowClient(tracking_uri)
    parent = mc.create_run(mc.create_experiment(f"pool-beat-{time.time_ns()}")).info.run_id
    mc.set_tag(parent, "bp.failure_reason", "stopped by SIGTERM")
    member = membership.SweepMember(parent_run_id=parent)
    caught, after = [], []

    def train() -> None:
        beat = sweep_points.Beat("bp-point-none", {"beat": 0}, member, mc)  # its variable missing: beats fail
        beat.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # training, a Python instruction at a time
                sum(range(1000))
        except runs.StopRequested as exc:
            caught.append(str(exc))
        finally:
            beat.stop()
        time.sleep(1)
        after.append("no stop raised after the point ended")

    thread = threading.Thread(target=train)
    thread.start()
    time.sleep(1)
    assert not caught  # its sweep still runs
    mc.set_terminated(parent, "KILLED")
    thread.join(30)
    assert caught == ["stopped by SIGTERM"] and after


def new_flow_run(client, state=None):
    from prefect.client.schemas.actions import FlowRunCreate

    flow_id = client.create_flow_from_name("bp-pool-test")
    created = client.request("POST", "/flow_runs/", json=FlowRunCreate(flow_id=flow_id).model_dump(mode="json"))
    flow_run_id = created.json()["id"]
    if state is not None:
        client.set_flow_run_state(flow_run_id, state, force=True)
    return flow_run_id


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


def test_points_waiting_while_a_worker_is_free_are_taken_for_lost(monkeypatch):
    """A server restarted between two of the sweep's requests has forgotten its queue, unnoticed: points that wait
    while a worker has nothing to do (busy ones hold one in reserve at most) are delayed again after the lease."""
    from bpcore.sweep import GridPoint

    member = membership.SweepMember(parent_run_id="0" * 32)
    api = sweep_remote.Pool("unit", member)
    monkeypatch.setattr(api, "workers", lambda: 2)
    point = GridPoint(index=0, name="p", values={}, config={})
    children = [sweep_remote.Submitted(point, None, None, member, attempt=1, beat=b) for b in (3, 0, 0)]
    assert not api.stalled(children, 100.0, 30.0)  # one in training, one worker free, two waiting: it starts
    assert not api.stalled(children, 120.0, 30.0)
    assert not api.stalled(children, 131.0, 30.0, progressed=True)  # a point moved: the queue is alive
    assert not api.stalled(children, 140.0, 30.0) and not api.stalled(children, 165.0, 30.0)
    assert api.stalled(children, 171.0, 30.0)
    children[2].beat = 1  # two in training, one in reserve: all as it should be
    assert not api.stalled(children[:2] + children[2:], 200.0, 30.0) and not api.stalled(children, 300.0, 30.0)


def test_only_one_task_run_of_a_point_claims_it():
    from flows.sweep import points as sweep_points

    name = f"bp-point-{time.time_ns():032x}-0-1"
    assert sweep_points._claim(name) is True
    assert sweep_points._claim(name) is False  # a second task run of the point, delayed again: it does not train


def test_a_point_too_large_for_a_prefect_variable_is_one_clear_error(tracking_uri):
    from prefect.types import MAX_VARIABLE_VALUE_LENGTH

    from bpcore.errors import InputError

    assert sweep_remote.VALUE_LIMIT == MAX_VARIABLE_VALUE_LENGTH
    mc, api, (child,), experiment = _pool_sweep(tracking_uri, "pool-large", 1)
    child.tags = {"note": "x" * 6000}
    start = time.monotonic()
    with pytest.raises(InputError, match=r"sweep point lr=0: its config is \d+ characters as JSON, more than the "
                                         r"5000 a Prefect variable holds"):
        sweep_remote.submit(api, child)
    assert time.monotonic() - start < 5  # not retried as if the server were away


@pytest.fixture
def busy_server():
    """A local HTTP server that answers 503 (as Prefect on SQLite does for a write that met another) to the first
    two requests of each path, then 200 with ``{}``; its ``hits`` count the requests per path."""
    import http.server
    import json

    hits: dict[str, int] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            hits[self.path] = hits.get(self.path, 0) + 1
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps({"exception_message": "Service Unavailable"} if hits[self.path] <= 2 else {}).encode()
            self.send_response(503 if hits[self.path] <= 2 else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = do_DELETE = answer

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.hits = hits
    yield server
    server.shutdown()
    server.server_close()


def test_a_busy_server_is_asked_again_at_once(busy_server):
    """bp's own Prefect requests (the workers' through their client, the sweep's through ``Pool.call``) send a 503
    again within milliseconds: Prefect's client, whose own retries are off here, would return it."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_CLIENT_CSRF_SUPPORT_ENABLED,
        PREFECT_CLIENT_MAX_RETRIES,
        temporary_settings,
    )

    from flows.server import busy

    url = f"http://127.0.0.1:{busy_server.server_address[1]}/api"
    with temporary_settings({PREFECT_API_URL: url, PREFECT_CLIENT_MAX_RETRIES: 0,
                             PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: False}):
        with busy.client() as client:
            answer = client.request("PATCH", "/variables/name/x", json={"value": 1})
    assert answer.status_code == 200 and busy_server.hits["/api/variables/name/x"] == 3
    api = sweep_remote.Pool("unit", membership.SweepMember(parent_run_id="0" * 32))
    api.url = url
    assert api.call("DELETE", "/variables/name/y") == {} and busy_server.hits["/api/variables/name/y"] == 3


def test_points_are_delayed_a_few_at_a_time_as_workers_take_them(monkeypatch):
    """Two points waiting a worker, at least four: not every point of a long sweep queued on the server at once."""
    from bpcore.sweep import GridPoint
    from flows.sweep.child import Child

    member = membership.SweepMember(parent_run_id="0" * 32)
    api = sweep_remote.Pool("unit", member)
    delayed = []

    def submit(api, child):
        child.attempt += 1
        delayed.append(child.point.index)

    monkeypatch.setattr(sweep_remote, "submit", submit)
    children = [sweep_remote.Submitted(GridPoint(index=i, name=f"p{i}", values={}, config={}), None, None, member)
                for i in range(12)]
    sweep_remote.top_up(api, children, 2)
    assert delayed == [0, 1, 2, 3]
    sweep_remote.top_up(api, children, None)  # the server did not say how many: four wait already
    assert delayed == [0, 1, 2, 3]
    children[0].beat = 1  # started
    children[1].child = Child(children[1].point, None, "finished", None)  # ended
    sweep_remote.top_up(api, children, 2)
    assert delayed == [0, 1, 2, 3, 4, 5]
    sweep_remote.top_up(api, children, 5)  # three more workers: ten points waiting
    assert delayed == list(range(12))
