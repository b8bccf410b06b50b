"""flows.server.busy: a busy SQLite server's 503 sent again within milliseconds, then handed on as it came."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flows.server import busy


def test_a_busy_answer_is_sent_again_after_short_jittered_pauses_then_handed_on():
    slept: list[float] = []
    answers = iter([503, 503, 200])
    assert busy.resend(lambda: next(answers), lambda a: a == busy.BUSY, sleep=slept.append) == 200
    assert len(slept) == 2 and busy.PAUSES[0] * 0.5 <= slept[0] <= busy.PAUSES[0] * 1.5

    slept.clear()
    sent = []
    assert busy.resend(lambda: sent.append(1) or 503, lambda a: a == busy.BUSY, sleep=slept.append) == 503
    assert len(sent) == len(busy.PAUSES) + 1 and len(slept) == len(busy.PAUSES)
    assert sum(slept) <= 1.5 * sum(busy.PAUSES) < 6  # seconds: then Prefect's own back-off takes over


def test_an_error_while_sending_is_raised_at_once():
    slept: list[float] = []

    def send():
        raise httpx.ConnectError("refused")

    with pytest.raises(httpx.ConnectError):
        busy.resend(send, lambda a: True, sleep=slept.append)
    assert slept == []


def test_the_asynchronous_transport_drops_busy_answers_and_returns_the_first_other(monkeypatch):
    statuses = iter([503, 503, 201])
    closed = []

    class Answer(httpx.Response):
        async def aclose(self):
            closed.append(self.status_code)
            await super().aclose()

    async def parent(self, request):
        return Answer(next(statuses))

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", parent)
    monkeypatch.setattr(busy, "PAUSES", (0.0, 0.0, 0.0))
    response = asyncio.run(busy.AsyncBusyRetry().handle_async_request(httpx.Request("GET", "http://127.0.0.1/")))
    assert response.status_code == 201 and closed == [503, 503]
