"""What a sweep tells one of its children while it trains: stop here, pruned by the search, or skipped because
a smaller learning rate diverged.

A sweep that trains its children in this process hands each a ``Steer`` (``steered``), and the
kind's flow code asks it before training and after every epoch (``current``). A run that
trains alone has none: ``current()`` is None and nothing is asked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

PRUNED = "pruned"  # stopped early by the search: a result, the MLflow run FINISHED
SKIPPED = "skipped"  # not trained on, above a learning rate that diverged: the MLflow run KILLED


@dataclass(frozen=True)
class Stop:
    """Why a child stops training: ``status`` (PRUNED or SKIPPED) and the reason its run records."""

    status: str
    reason: str


class Steer:
    """One child's line to its sweep: ``cancel`` (from any thread) skips it; ``report`` hands the search an epoch's
    figures (``judge(epoch, figures)`` returns why the trial is pruned there, or None)."""

    def __init__(self, judge: Callable[[int, dict[str, float]], str | None] | None = None):
        self.judge = judge
        self._cancelled: str | None = None
        self._lock = threading.Lock()

    def cancel(self, reason: str) -> None:
        with self._lock:
            self._cancelled = self._cancelled or reason

    def check(self) -> Stop | None:
        """Skipped by now, or None."""
        with self._lock:
            return Stop(SKIPPED, self._cancelled) if self._cancelled else None

    def report(self, epoch: int, figures: dict[str, float]) -> Stop | None:
        """After ``epoch``: skipped, pruned, or None (go on)."""
        if stop := self.check():
            return stop
        reason = self.judge(epoch, figures) if self.judge is not None else None
        return Stop(PRUNED, reason) if reason else None


_current: ContextVar[Steer | None] = ContextVar("bp_steer", default=None)


def current() -> Steer | None:
    """The steer of the child training in this context (None: not a steered sweep child)."""
    return _current.get()


@contextmanager
def steered(steer: Steer | None) -> Iterator[None]:
    """The flow code called in the block trains under ``steer``."""
    token = _current.set(steer)
    try:
        yield
    finally:
        _current.reset(token)
