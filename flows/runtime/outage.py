"""A server that stops answering: how long bp waits for it, and how it gives up.

``BP_SERVER_TIMEOUT`` (seconds, default 120) is the one setting, for the MLflow server and for
the Prefect server. MLflow's client retries a
request that finds no server with exponential back-off; bp sizes those retries so that one request
gives up after about that long, which also rides out a server restart of a few seconds without
losing a step. bp's own retries (a task's, a per-epoch write's) are for errors a second try can
mend, and never retry a request that has already waited that long: the run fails with one line
naming the server, and its MLflow run, which cannot be marked while the server is away, is marked
FAILED by the next ``bp`` once it is back (``flows.tracking.reap``).

On a stop (Ctrl-C, SIGTERM) the run is marked once, without waiting for an absent server, so the
process ends within seconds.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from bpcore.errors import causes

VARIABLE = "BP_SERVER_TIMEOUT"
DEFAULT_SECONDS = 120.0
REQUEST_TIMEOUT = 30  # s: one request to a server that accepts it and never answers
_MAX_RETRIES = 10  # MLflow refuses more


def seconds() -> float:
    """The budget from ``BP_SERVER_TIMEOUT`` (a positive number), else the default."""
    try:
        value = float(os.environ.get(VARIABLE, ""))
    except ValueError:
        return DEFAULT_SECONDS
    return value if 0 < value < float("inf") else DEFAULT_SECONDS


def retries_for(budget: float) -> tuple[int, int]:
    """(retries, back-off factor) whose waits add up to at least ``budget`` s (urllib3's schedule: no wait
    before the first retry, then factor * 2**(k-1) before the k-th, at most 120 s each)."""
    factor = 1
    while factor < 120:  # beyond, every wait is the 120 s cap: as long as MLflow's 10 retries can wait
        waited = 0.0
        for k in range(1, _MAX_RETRIES + 1):
            waited += 0 if k <= 1 else min(120.0, factor * 2 ** (k - 1))
            if waited >= budget:
                return k, factor
        factor *= 2
    return _MAX_RETRIES, 120


def prefect_retries_for(budget: float) -> int:
    """How many times Prefect's client may retry a request (waiting 2, 4, 8 ... s) within ``budget`` s; at least 1."""
    count, waited = 0, 0.0
    while waited + 2 ** (count + 1) <= budget:
        count += 1
        waited += 2**count
    return max(1, count)


def client_settings(budget: float | None = None) -> dict[str, str]:
    """MLflow's (and Prefect's) client retry variables for a request that gives up after about ``budget`` s."""
    budget = seconds() if budget is None else budget
    count, factor = retries_for(budget)
    return {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(count), "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(factor),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
            "PREFECT_CLIENT_MAX_RETRIES": str(prefect_retries_for(budget))}


def configure() -> None:
    """Set MLflow's and Prefect's client retry variables in this process from the budget.

    ``BP_SERVER_TIMEOUT`` given: they follow it. Not given: MLflow's own variables, if set, are kept.
    """
    explicit = bool(os.environ.get(VARIABLE, "").strip())
    for name, value in client_settings().items():
        if explicit:
            os.environ[name] = value
        else:
            os.environ.setdefault(name, value)


_held_lock = threading.Lock()
_held: dict[str, tuple[int, str | None]] = {}  # variable -> (blocks holding it set, its value before the first)


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """These environment variables set inside the block; each back to what it was once every block that set it
    (in any thread) has left. MLflow reads its retry variables at each request: while a block holds them, every
    thread's requests try once. The blocks are a run's marking on the way out (a stop, or a server known gone),
    when the other threads' requests are stopping too; MLflow 3.17 takes no retry limit per request."""
    with _held_lock:
        for name, value in values.items():
            count, before = _held.get(name, (0, os.environ.get(name)))
            _held[name] = (count + 1, before)
            os.environ[name] = value
    try:
        yield
    finally:
        with _held_lock:
            for name in values:
                count, before = _held.pop(name)
                if count > 1:
                    _held[name] = (count - 1, before)
                elif before is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = before


def one_attempt(timeout: int = 5):
    """MLflow requests made inside try once, ``timeout`` s at most: for marking a run on the way out."""
    return environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout)})


def unreachable(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) says the server could not be reached or never answered.

    MLflow's client raises a plain MlflowException quoting requests' error ("Max retries exceeded"), so its
    text is read too; the rest is known by class, as requests, urllib3 and httpx (Prefect's client) export them.
    """
    kinds = _transport_errors()
    return any(isinstance(cause, kinds) or "Max retries exceeded" in str(cause) or "Connection refused" in str(cause)
               for cause in causes(exc))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The errors of a request that found no server, or no answer in time (builtin ConnectionError covers a
    refused connection and http.client's RemoteDisconnected)."""
    import httpx
    import requests
    import urllib3

    return (ConnectionError, TimeoutError, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
            urllib3.exceptions.MaxRetryError, urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError,
            httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)


def retry_unless_unreachable(task, task_run, state) -> bool:
    """A Prefect task's ``retry_condition_fn``: retry a failure, but not one that already waited for the server."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as error:  # the result could not be read back: judge by that error
        exc = error
    return not unreachable(exc if isinstance(exc, BaseException) else None)
