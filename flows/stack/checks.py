"""What ``bp stack up`` checks before it starts anything: its directory (private), the data root, free ports,
no stack already running there."""

from __future__ import annotations

import os
from pathlib import Path

from bpcore.errors import InputError
from flows.stack import procs
from flows.stack import services as svc


def stack_dir(given: Path) -> Path:
    """``--dir`` resolved; an InputError when it, or a directory above it, is a file."""
    directory = given.expanduser().resolve()
    for path in (directory, *directory.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == directory else f"is under {path}, a file"
                raise InputError(f"--dir {given}: {where}, not a directory")
            break
    return directory


def make_private(directory: Path, given: Path) -> None:
    """DIR (mode 700) and its logs; what an older bp stack left there made its owner's only (700 / 600)."""
    os.umask(0o077)  # everything bp stack up and its services create from now on
    try:
        (directory / "logs").mkdir(parents=True, exist_ok=True)
        for path in (directory, *directory.rglob("*")):
            if not path.is_symlink():
                path.chmod(0o700 if path.is_dir() else 0o600)
    except OSError as exc:
        raise InputError(f"--dir {given}: cannot make it private: {exc.strerror or exc}") from None


def data_root(given: Path | None) -> Path | None:
    if given is None:
        return None
    root = given.expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"--data-root {given}: no such directory")
    return root


def refuse_running(directory: Path, given: Path) -> None:
    running = [r for r in procs.read_records(directory) if procs.alive(r)]
    if running:
        raise InputError(f"a stack already runs in {given} ({', '.join(r['name'] for r in running)}): "
                         f"bp stack down --dir {given} first")


def check_ports(prefect: int, mlflow: int, scheduler: int | None = None) -> None:
    ports = {"--prefect-port": prefect, "--mlflow-port": mlflow}
    if scheduler:
        ports["--scheduler-port"] = scheduler
    for option, port in ports.items():
        twin = next((other for other, p in ports.items() if p == port and other != option), None)
        if twin:
            raise InputError(f"{option} and {twin} are both {port}: each server needs a port of its own")
    for option, port in ports.items():
        if procs.port_in_use(port, svc.HOST):
            raise InputError(f"{option} {port}: {svc.HOST}:{port} is already in use; pick another port")
