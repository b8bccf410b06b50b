"""Waiting with a deadline: ask again every few moments until the answer is the one awaited, or time is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


def poll(ask: Callable[[], T], done: Callable[[T], bool], timeout: float, every: float,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """``ask()`` every ``every`` s until ``done`` of its answer is true or ``timeout`` s have passed; the last answer.

    ``ask`` is called at least once, and once more at the deadline, so a timeout still reports the
    state it ended in. An exception from ``ask`` ends the wait (it is how an awaited process that
    died says so).
    """
    deadline = time.monotonic() + timeout
    return tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda answer: not done(answer)),
        stop=lambda state: time.monotonic() >= deadline,
        wait=lambda state: max(0.0, min(every, deadline - time.monotonic())),
        retry_error_callback=lambda state: state.outcome.result(), sleep=sleep)(ask)
