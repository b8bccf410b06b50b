"""The processes ``bp stack`` starts: spawned in their own sessions, recorded, found again, stopped.

A record is ``{name, pid, start, log, url}``: ``start`` is the kernel's start time of the process
(clock ticks since boot, from /proc), so a pid the kernel has since given to another process is
never mistaken for ours. Each service leads its own process group (``start_new_session``): a
server's children (uvicorn) are stopped with it. Linux only (/proc).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from bpcore.errors import InputError
from flows.runtime import processes, waiting
from flows.runtime.stops import signals_held

PIDS_FILE = "pids.json"


class StackError(Exception):
    """A service did not start or stop; the message names it and quotes its log. Exit code 1."""


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None when it is gone or a zombie."""
    found = processes.stat(pid)
    return found.start if found is not None and found.alive else None


def ours(record: dict) -> bool:
    """Whether the record can name a process of the stack at all: a pid above 1 (``kill(0)`` and ``killpg(0)``
    signal the caller's own group, 1 is init), not this process or its group, with a real start time."""
    pid, start = record["pid"], record["start"]
    return pid > 1 and start >= 0 and pid not in (os.getpid(), os.getpgrp())


def alive(record: dict) -> bool:
    """The recorded process still runs: same pid, same start time."""
    return ours(record) and start_time(record["pid"]) == record["start"]


def group(record: dict) -> list[int]:
    """The live processes of the record's process group that started no earlier than its leader.

    Nothing if the pid now belongs to another process (another start time): the kernel gave it away,
    so the group of that id is not ours. A dead leader's group lives on while any member does.
    """
    if not ours(record):
        return []
    leader = start_time(record["pid"])
    if leader is not None and leader != record["start"]:
        return []
    members = []
    for pid in processes.pids():
        found = processes.stat(pid)
        if found is not None and found.alive and found.group == record["pid"] and found.start >= record["start"]:
            members.append(pid)
    return members


def spawn(records: list[dict], name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None,
          **extra) -> dict:
    """Start ``argv`` in the background in a new session, output appended to ``log``; its record, appended
    to ``records`` as soon as the process exists (a stop that comes meanwhile still finds it there).

    Files it creates are its owner's only (umask 077): the stack's databases hold every run.
    """
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out, signals_held():
        out.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} bp stack: starting {name}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, umask=0o077)
        # /proc/<pid> is there once Popen returns (it waited for the exec): the start time at once
        record = {"name": name, "pid": proc.pid, "start": start_time(proc.pid), "log": str(log), **extra}
        records.append(record)
    if record["start"] is None:
        record["start"] = -1  # exited already: recorded anyway, so the failure is reported with its log
    return record


def stop(records: list[dict], timeout: float) -> list[dict]:
    """SIGTERM each record's process group, wait up to ``timeout`` s, then SIGKILL what is left; what was killed."""
    for record in records:
        _signal_group(record, signal.SIGTERM)
    def running() -> bool:
        return any(group(r) for r in records)

    waiting.poll(running, lambda busy: not busy, timeout, every=0.2)
    killed = [r for r in records if group(r)]
    for record in killed:
        _signal_group(record, signal.SIGKILL)
    waiting.poll(running, lambda busy: not busy, 10, every=0.1)
    return killed


def _signal_group(record: dict, signum: int) -> None:
    # the group id is the leader's pid, reserved by the kernel while any member lives: checked just before
    if ours(record) and group(record):
        try:
            os.killpg(record["pid"], signum)
        except ProcessLookupError:
            pass


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Something listens on host:port (bound the way the servers bind, with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def tail(log: str | Path, lines: int = 20) -> str:
    """The last lines of a log file (or a note that there is none)."""
    try:
        text = Path(log).read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def reason(log: str | Path) -> str | None:
    """The line of a log most likely to say why a service stopped: its last exception, else its last error line."""
    lines = [line.strip() for line in tail(log, 200).splitlines() if line.strip()]
    for pattern in (r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*:", r"(?i)\berror\b"):
        found = [line for line in lines if re.search(pattern, line)]
        if found:
            return found[-1][:300]
    return None


def read_records(directory: Path) -> list[dict]:
    """The records of DIR/pids.json ([] when there is none); an InputError naming the file and the entry at fault
    when it is not what ``bp stack`` writes (torn, or edited by hand)."""
    path = directory / PIDS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    fix = "fix it, or remove it once none of the stack's processes runs"
    try:
        services = json.loads(text)["services"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a record of bp stack (a JSON object with a list \"services\"); {fix}") from None
    if not isinstance(services, list):
        raise InputError(f"{path}: \"services\" is not a list; {fix}")
    for number, record in enumerate(services, start=1):
        if problem := _problem(record):
            raise InputError(f"{path}: service {number}: {problem}; {fix}")
    return services


def _problem(record) -> str | None:
    """What makes ``record`` no record of a process ``bp stack`` started, or None."""
    if not isinstance(record, dict):
        return "not an object"
    for key, kind in (("name", str), ("pid", int), ("start", int), ("log", str)):
        value = record.get(key)
        if value is None:
            return f"{key} is missing"
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{key} {value!r} is not {'a whole number' if kind is int else 'text'}"
    if record["pid"] <= 1:
        return f"pid {record['pid']} is no process bp stack started"
    return None


# the order DIR/pids.json lists the services in (and ``status`` prints them), whatever order they started in
ORDER = ("prefect-server", "mlflow-server", "scheduler", "worker-", "sweep-worker-")


def _rank(record: dict) -> int:
    return next((i for i, kind in enumerate(ORDER) if record["name"].startswith(kind)), len(ORDER))


def write_records(directory: Path, records: list[dict]) -> None:
    """Atomically replace DIR/pids.json (written after every start, so ``down`` finds a half-started stack)."""
    path = directory / PIDS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"services": sorted(records, key=_rank)}, indent=2) + "\n")
    os.replace(tmp, path)
