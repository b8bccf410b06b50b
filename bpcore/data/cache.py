"""A small per-process cache of loaded data, so a pre-flight load and the flow share one read."""

from __future__ import annotations

import threading
import weakref
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
        _EVERY.add(self)

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
        """Forget every entry."""
        with self._lock:
            self._items.clear()


_EVERY: weakref.WeakSet[LoadCache] = weakref.WeakSet()


def forget_all() -> None:
    """Empty every load cache of this process, as a new process starts (tests start each from there)."""
    for cache in list(_EVERY):
        cache.clear()
