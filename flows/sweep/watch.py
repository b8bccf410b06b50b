"""Whether a sweep's Dask scheduler still answers, seen from both ends.

Dask notices a scheduler that is killed (its clients' futures are cancelled, its workers close) but not one that
is frozen or cut off: its clients and workers wait on it for good. The sweep's flow pings it while its points
train and gives up after ``BP_SERVER_TIMEOUT`` s without an answer (``SchedulerWatch``); a point asks it for its
sweep's word after every epoch with the same budget (``answered``), so neither end waits longer than the
other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from flows.runtime import outage

T = TypeVar("T")
PING_EVERY = 2.0  # s between the sweep's pings of its scheduler


class SchedulerLost(Exception):
    """The sweep's Dask scheduler is gone (killed, frozen, unreachable): its points cannot be followed."""


def answered(call: Callable[[], T], timeout: float, what: str) -> T:
    """``call()``'s value, or SchedulerLost once it has not returned within ``timeout`` s (the call is left to end
    on its own thread: a request to a frozen scheduler cannot be taken back)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="bp-scheduler-request", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise SchedulerLost(f"{what} did not answer for {timeout:.0f} s ({outage.VARIABLE})")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


class SchedulerWatch:
    """Pings the scheduler of ``client`` every PING_EVERY s on a thread of its own; ``check`` raises SchedulerLost
    when the client lost its connection (Dask has cancelled the sweep's futures) or the latest ping has gone
    unanswered for ``timeout`` s (default ``BP_SERVER_TIMEOUT``)."""

    def __init__(self, client, address: str, timeout: float | None = None):
        self.client, self.address = client, address
        self.timeout = outage.seconds() if timeout is None else timeout
        self._answered = time.monotonic()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._ping, name="bp-scheduler-watch", daemon=True)
        self._thread.start()

    def _ping(self) -> None:
        while not self._closed.wait(PING_EVERY):
            try:
                self.client.get_metadata(["bp-ping"], None)
            except Exception:  # a lost connection shows in the client's status
                continue
            self._answered = time.monotonic()

    def check(self) -> None:
        """Raise SchedulerLost if the scheduler is gone; else nothing."""
        if self.client.status not in ("running", "newly-created"):
            raise SchedulerLost(f"the sweep lost its connection to the Dask scheduler at {self.address} "
                                f"(client {self.client.status})")
        silent = time.monotonic() - self._answered
        if silent > self.timeout:
            raise SchedulerLost(f"the Dask scheduler at {self.address} did not answer for {silent:.0f} s "
                                f"({outage.VARIABLE} is {self.timeout:.0f})")

    def close(self) -> None:
        self._closed.set()
