"""Processes as /proc shows them: a process's live descendants, and whether a pid still runs; a started process
killed if a test leaves it running."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def children_of(pid: int) -> set[int]:
    """Every live descendant of ``pid``, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def survivors(pids: set[int], within: float, poll: float = 0.1) -> list[int]:
    """Those of ``pids`` still alive after waiting up to ``within`` s for all of them to end."""
    import time

    deadline = time.monotonic() + within
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(poll)
    return left


@contextmanager
def killed_if_left(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """The block runs; ``proc`` still running at its end (the test failed or its wait ran out) is SIGKILLed, so no
    process a test started outlives it."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
