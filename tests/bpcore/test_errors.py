"""bpcore.errors: an exception's one-line text, and the chain of what it was raised from."""

from __future__ import annotations

import pytest

from bpcore.errors import causes, one_line


def test_one_line_collapses_whitespace_names_empty_messages_and_cuts():
    assert one_line(ValueError("bad\n  value\tat row 3")) == "bad value at row 3"
    assert one_line(ValueError("")) == "ValueError"
    assert one_line(KeyError("k"), named=True) == "KeyError: 'k'"
    assert one_line(RuntimeError("x" * 900)) == "x" * 500
    assert len(one_line(RuntimeError("x" * 900), limit=10, named=True)) == 10


def test_causes_walks_cause_then_context_then_an_exception_held_in_args_and_stops_on_a_loop():
    inner = ConnectionRefusedError(111, "Connection refused")
    held = OSError("wrapper holding", inner)  # as requests' errors hold urllib3's
    try:
        try:
            raise held
        except OSError as exc:
            raise RuntimeError("context") from exc
    except RuntimeError as outer:
        assert list(causes(outer)) == [outer, held, inner]
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert list(causes(a)) == [a, b]
    assert list(causes(None)) == []


@pytest.mark.parametrize("limit", [1, 20])
def test_one_line_never_exceeds_its_limit(limit):
    assert len(one_line(OSError("a long\nmessage " * 10), limit=limit, named=True)) <= limit
