"""flows.tracking.metrics.with_retries: a tracking call inside a long task tried again, except where a retry mends
nothing (an absent server already waited for, a stop)."""

from __future__ import annotations

import pytest
import requests

from flows.tracking.metrics import with_retries


def failing(*errors):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "logged"

    return fn, calls


def test_a_passing_hiccup_is_tried_again_after_the_delay():
    fn, calls = failing(RuntimeError("database is locked"))
    slept: list[float] = []
    assert with_retries(fn, attempts=3, delay=0.2, sleep=slept.append) == "logged"
    assert len(calls) == 2 and slept == [0.2]


def test_the_last_attempts_error_is_raised_as_it_was():
    fn, calls = failing(*[RuntimeError(f"try {i}") for i in range(3)])
    with pytest.raises(RuntimeError, match="try 2"):
        with_retries(fn, attempts=3, delay=1, sleep=lambda s: None)
    assert len(calls) == 3


@pytest.mark.parametrize("error", [requests.exceptions.ConnectionError("Max retries exceeded with url: /api"),
                                   KeyboardInterrupt()])
def test_an_absent_server_or_a_stop_is_not_tried_again(error):
    fn, calls = failing(error)
    with pytest.raises(type(error)):
        with_retries(fn, attempts=3, delay=1, sleep=lambda s: pytest.fail("slept"))
    assert len(calls) == 1
