"""How ``bp sweep --pool`` shows the flow run it follows, and what it takes for the Prefect server being away."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from uuid import uuid4

import httpx

from flows.cli import flow_logs, pool
from flows.cli.flow_logs import FlowRunLogs


def record(message: str, level: int = 20, task: bool = True, name: str = "prefect.task_runs"):
    return SimpleNamespace(message=message, level=level, task_run_id=uuid4() if task else None, name=name,
                           timestamp=datetime(2026, 12, 6, 12, 0, 1, tzinfo=UTC))


def test_a_task_runs_routine_end_is_left_out_unless_verbose():
    routine = record("Finished in state Completed()")
    assert flow_logs.rendered(routine, verbose=False) is None
    assert flow_logs.rendered(routine, verbose=True).endswith("prefect.task_runs - Finished in state Completed()")
    failed = record("Finished in state Failed('lr=2: diverged')", level=40)
    assert "| ERROR   | " in flow_logs.rendered(failed, verbose=False)  # not routine: a failure is always shown


def test_lines_name_their_task_run_and_keep_to_one_line_unless_verbose():
    told = record("diverged at epoch 1: cost inf\nTraceback (most recent call last): ...", level=30)
    line = flow_logs.rendered(told, verbose=False, task="child lr=2")
    assert line.endswith("| WARNING | Task run 'child lr=2' - diverged at epoch 1: cost inf")
    assert "Traceback" in flow_logs.rendered(told, verbose=True, task="child lr=2")
    flow = record("4 children, 2 at a time", task=False, name="prefect.flow_runs")
    assert flow_logs.rendered(flow, verbose=False).endswith("| INFO    | Flow run - 4 children, 2 at a time")


def test_the_server_away_is_told_from_other_errors():
    assert pool._away(httpx.ConnectError("refused"))
    response = httpx.Response(503, request=httpx.Request("GET", "http://127.0.0.1:4200/api/flow_runs/x"))
    assert pool._away(httpx.HTTPStatusError("busy", request=response.request, response=response))
    missing = httpx.Response(404, request=response.request)
    assert not pool._away(httpx.HTTPStatusError("gone", request=missing.request, response=missing))
    assert not pool._away(ValueError("a bug of ours"))


def test_a_warning_told_twice_is_shown_once_unless_verbose(capsys):
    """Prefect's engine logs a failed flow run's reason twice: the follower shows it once."""
    twice = [record("flow run ended Failed: the Dask scheduler did not answer", level=30, task=False,
                    name="prefect.flow_runs") for _ in range(2)]
    for number, log in enumerate(twice):
        log.id = number
    again = record("epoch 1", task=False, name="prefect.flow_runs")  # INFO lines are not merged
    again.id = 2
    ready = SimpleNamespace(read_logs=lambda **_: twice + [again, SimpleNamespace(**{**vars(again), "id": 3})])
    FlowRunLogs(ready, str(uuid4())).show()
    shown = capsys.readouterr().err.splitlines()
    assert len([line for line in shown if "did not answer" in line]) == 1 and len(shown) == 3, shown
    FlowRunLogs(ready, str(uuid4()), verbose=True).show()
    assert len(capsys.readouterr().err.splitlines()) == 4


def test_the_flow_runs_own_end_is_left_to_the_followers_last_line():
    ended = record("Finished in state Failed('Flow run encountered an exception: RunFailed: lost')", task=False,
                   name="prefect.flow_runs")
    assert flow_logs.rendered(ended, verbose=False) is None and "RunFailed" in flow_logs.rendered(ended, verbose=True)


def test_a_task_runs_record_waits_a_little_for_its_task_runs_name(capsys):
    """A worker's records can reach the server before the task run they name: the follower shows them at its next
    poll, named, or unnamed once they have waited UNNAMED, or when the flow run has ended."""
    from prefect.exceptions import ObjectNotFound

    fresh = record("finished: final_cost 99 (MLflow run abc)")
    fresh.id, fresh.timestamp = 1, datetime.now(UTC)
    known: dict = {}

    def read_task_run(task_run_id):
        if task_run_id not in known:
            raise ObjectNotFound(http_exc=None)
        return SimpleNamespace(name=known[task_run_id])

    client = SimpleNamespace(read_logs=lambda **_: [fresh], read_task_run=read_task_run)
    logs = FlowRunLogs(client, str(uuid4()))
    logs.show()
    assert capsys.readouterr().err == ""  # not yet: its task run is unknown
    known[fresh.task_run_id] = "child lr=0.1"
    logs.show()
    assert "Task run 'child lr=0.1' - finished: final_cost 99" in capsys.readouterr().err
    stale = record("finished: final_cost 1")  # older than UNNAMED: shown unnamed rather than never
    stale.id = 2
    FlowRunLogs(SimpleNamespace(read_logs=lambda **_: [stale], read_task_run=read_task_run), str(uuid4())).show()
    assert "prefect.task_runs - finished: final_cost 1" in capsys.readouterr().err
    ended = FlowRunLogs(SimpleNamespace(read_logs=lambda **_: [fresh], read_task_run=lambda _: read_task_run(None)),
                       str(uuid4()))
    ended.show(final=True)
    assert "finished: final_cost 99" in capsys.readouterr().err


def test_the_follower_gives_up_on_a_server_gone_after_its_budget_not_a_multiple(monkeypatch, capsys):
    """Each call tries once (the loop keeps the budget, a poll at a time): with BP_SERVER_TIMEOUT=1.5 the follower
    gives up after about 1.5 s, with one line naming the server."""
    import time
    from contextlib import contextmanager

    from prefect.settings import get_current_settings

    from flows.cli import exits
    from flows.runtime import outage
    from flows.server import prefect_api

    retries = []

    class Gone:
        def read_flow_run(self, flow_run_id):
            retries.append(get_current_settings().client.max_retries)
            raise httpx.ConnectError("All connection attempts failed")

    @contextmanager
    def client(sync_client):
        yield Gone()

    monkeypatch.setenv(outage.VARIABLE, "1.5")
    monkeypatch.setattr(pool, "POLL_SECONDS", 0.1)
    monkeypatch.setattr("prefect.client.orchestration.get_client", client)
    monkeypatch.setattr(prefect_api, "configured", lambda: ("http://127.0.0.1:9/api", None))
    began = time.monotonic()
    code = pool.follow(pool.Submitted(str(uuid4()), "quiet-fox", "bp", "e"), "sqlite:///x.db", None)
    took = time.monotonic() - began
    assert code == exits.FAILED and 1.5 <= took < 2.5, took
    assert set(retries) == {0} and len(retries) > 5, retries
    assert capsys.readouterr().err.startswith("bp: the Prefect server at http://127.0.0.1:9/api stopped answering")
