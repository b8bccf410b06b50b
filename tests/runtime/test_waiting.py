"""flows.runtime.waiting.poll: ask until the awaited answer, or the deadline, which still reports the last state."""

from __future__ import annotations

import time

import pytest

from flows.runtime import waiting


def test_asks_until_done_pausing_between_asks():
    answers, slept = iter([1, 2, 3, 4]), []
    assert waiting.poll(lambda: next(answers), lambda a: a == 3, timeout=60, every=0.5, sleep=slept.append) == 3
    assert slept == [0.5, 0.5]


def test_a_deadline_reports_the_last_answer_asked_at_it():
    asked = []
    started = time.monotonic()
    last = waiting.poll(lambda: asked.append(time.monotonic()) or len(asked), lambda a: False, timeout=0.3, every=0.1)
    assert last == len(asked) >= 3
    assert asked[-1] - started >= 0.3 - 0.01  # the last ask is at the deadline, not before it


def test_an_error_from_ask_ends_the_wait():
    def ask():
        raise ProcessLookupError("gone")

    with pytest.raises(ProcessLookupError):
        waiting.poll(ask, lambda a: True, timeout=60, every=1, sleep=lambda s: pytest.fail("slept"))
