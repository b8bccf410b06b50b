"""Which process a pid is now, from Linux's /proc: its state, process group and start time.

A pid is reused by the kernel once its process is gone; the start time (clock ticks since boot, an
exact integer) tells a process from a later one with the same pid. The standard library has no
reader for these; one small parser here serves the stack's pid records and the reaping of runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class Stat(NamedTuple):
    """Fields of /proc/<pid>/stat: ``state`` (R, S, Z, ...), ``group`` (process group id), ``start`` (ticks)."""

    state: str
    group: int
    start: int

    @property
    def alive(self) -> bool:
        """Neither a zombie nor dead."""
        return self.state not in ("Z", "X")


def stat(pid: int) -> Stat | None:
    """Process ``pid``'s state, group and start time; None when there is no such process (or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
        return None
    # after the command name, which may hold spaces and ")": field 3 of proc(5) on, the state first
    fields = text[text.rindex(")") + 2:].split()
    return Stat(fields[0], int(fields[2]), int(fields[19]))


def pids() -> list[int]:
    """Every process id /proc lists now."""
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def started_at(ticks: int) -> float | None:
    """A start time in clock ticks since boot as seconds since the epoch; None when /proc cannot tell the boot."""
    try:
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
