"""Prefect's client for bp's own requests, with a busy server's answers tried again within milliseconds.

A Prefect server on SQLite answers HTTP 503 when a write meets another one: its update and delete
routes read the row first in a deferred transaction, and SQLite refuses to turn that read into a
write once another writer has committed (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
The request did nothing and can simply be sent again. Prefect's client does so after 2, 4, 8 ...
seconds, which under a sweep's load stalls a worker for seconds at a time on a request that
would succeed a few milliseconds later. Here a 503 is sent again after PAUSES (jittered, by tenacity),
and only then handed to Prefect's client with its own back-off.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
import tenacity

from flows.runtime import internals

PAUSES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.5, 1.0, 1.0)  # seconds, about 3.7 s in all
BUSY = 503
T = TypeVar("T")


def pause(attempt: int) -> float:
    """The pause after the ``attempt``-th busy answer (from 1), jittered so that two writers do not meet again (tenacity
    asks for the last attempt's too, before its stop says there is none)."""
    return PAUSES[min(attempt, len(PAUSES)) - 1] * random.uniform(0.5, 1.5)


def resend(send: Callable[[], T], refused: Callable[[T], bool], sleep: Callable[[float], None] = time.sleep) -> T:
    """``send()``, sent again after each of the PAUSES while ``refused`` says its answer is a busy one; the last
    answer (an exception from ``send`` is raised at once)."""
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(len(PAUSES) + 1),
                             wait=lambda state: pause(state.attempt_number), retry=tenacity.retry_if_result(refused),
                             retry_error_callback=lambda state: state.outcome.result(), sleep=sleep)(send)


class BusyRetry(httpx.HTTPTransport):
    """An httpx transport that sends a request answered 503 again after each of the PAUSES."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return resend(lambda: super(BusyRetry, self).handle_request(request), _refused)


def _refused(response: httpx.Response) -> bool:
    if response.status_code != BUSY:
        return False
    response.read()  # a refused answer is dropped: its connection goes back to the pool
    response.close()
    return True


class AsyncBusyRetry(httpx.AsyncHTTPTransport):
    """The same, for Prefect's asynchronous client."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async def drop(state: tenacity.RetryCallState) -> None:  # a refused answer's connection back to the pool
            response = state.outcome.result()
            await response.aread()
            await response.aclose()

        return await tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(len(PAUSES) + 1), wait=lambda state: pause(state.attempt_number),
            retry=tenacity.retry_if_result(lambda response: response.status_code == BUSY), before_sleep=drop,
            retry_error_callback=lambda state: state.outcome.result(),
        )(super().handle_async_request, request)


def client(asynchronous: bool = False):
    """A Prefect client (a context manager; ``asynchronous``: Prefect's async one) on this process's settings,
    whose 503s are retried here.

    The synchronous one is kept open, one a thread and set of settings: Prefect's client retries a
    refused connection (a server restarting) only once it has connected, so a new one for each
    request would fail at once through a restart. ``release()`` closes the calling thread's.
    """
    if asynchronous:
        return _new(asynchronous=True)
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    key = (str(api.url), api.auth_string.get_secret_value() if api.auth_string else None,
           api.key.get_secret_value() if api.key else None)
    clients = _kept.__dict__.setdefault("clients", {})
    if key not in clients:
        made = _new(asynchronous=False)
        made.__enter__()  # entered once: each caller's ``with`` enters and leaves it again, and it stays open
        clients[key] = made
    return clients[key]


def release() -> None:
    """Close the clients the calling thread kept (a thread that is about to end)."""
    for kept in getattr(_kept, "clients", {}).values():
        kept.__exit__(None, None, None)
    _kept.clients = {}


_kept = threading.local()


def _new(asynchronous: bool):
    """Prefect's client with a transport of ours, given the TLS context and connection limits its own would use;
    the TLS context, which takes milliseconds to load, is made once a process."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_ENABLE_HTTP2

    verify = internals.prefect_tls_context()
    transport = (AsyncBusyRetry if asynchronous else BusyRetry)(
        verify=verify, http2=bool(PREFECT_API_ENABLE_HTTP2.value()),
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=25))
    return get_client(sync_client=not asynchronous, httpx_settings={"transport": transport, "verify": verify})
