"""A small per-process cache of loaded data, so a pre-flight load and the flow share one read."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LoadCache(Generic[V]):
    """Least-recently-used, at most ``size`` entries, safe across threads.

    Keys say what a result depends on (file paths, sizes, modification times, config), so a
    changed file is a miss. Cached values must not be mutated: loaders return read-only arrays.
    """

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: V) -> V:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry (tests use it to start from a cold cache, as a fresh process does)."""
        with self._lock:
            self._items.clear()
