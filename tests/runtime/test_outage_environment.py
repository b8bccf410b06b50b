"""flows.runtime.outage.environment: blocks in several threads that set MLflow's retry variables at once leave
them as they found them, whatever order they leave in."""

from __future__ import annotations

import os
import threading

from flows.runtime import outage

RETRIES = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"


def test_two_threads_overlapping_one_attempt_blocks_restore_the_retries_only_when_both_left(monkeypatch):
    monkeypatch.setenv(RETRIES, "7")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with outage.one_attempt(timeout=5):
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second():
        first_in.wait(10)
        with outage.one_attempt(timeout=10):
            second_in.set()
            first_out.wait(10)
            seen["after the first left"] = os.environ[RETRIES]  # still one attempt: the second block holds it
        seen["after both"] = os.environ.get(RETRIES)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == {"after the first left": "0", "after both": "7"}
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ  # unset before, unset again


def test_many_threads_in_any_order_leave_the_environment_as_it_was(monkeypatch):
    monkeypatch.setenv(RETRIES, "4")
    start = threading.Barrier(8)

    def hold():
        start.wait(10)
        for _ in range(200):
            with outage.one_attempt():
                pass

    threads = [threading.Thread(target=hold) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert os.environ[RETRIES] == "4"
