"""The workers ``bp stack up`` starts: the sweep pool's Dask scheduler (TLS only, certificates made in DIR/dask),
N Prefect process workers of pool ``bp`` (the deployments' and pool sweeps' flow runs, told the scheduler's
address) and N sweep workers joined to the scheduler (``bp sweep-worker``)."""

from __future__ import annotations

import secrets
import socket
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from flows.stack import procs
from flows.stack import services as svc


def progress(message: str) -> None:
    print(f"bp stack: {message}", file=sys.stderr, flush=True)


def spawn_scheduler(directory: Path, records: list[dict], port: int) -> str:
    """Start the sweep pool's Dask scheduler (TLS only, certificates made in DIR/dask when missing); its address.
    It needs neither server, so it starts beside them."""
    from flows.sweep import tls

    tls.make(svc.certs_dir(directory))
    address = f"tls://{svc.HOST}:{port}"
    argv, env = svc.scheduler(directory, port)
    procs.spawn(records, "scheduler", argv, env, directory / "logs" / "scheduler.log", url=address, scheduler=address)
    procs.write_records(directory, records)
    return address


def scheduler_up(record: dict) -> bool:
    return procs.port_in_use(int(record["url"].rsplit(":", 1)[1]), svc.HOST)


def spawn_sweep_workers(directory: Path, records: list[dict], args, api: str, tracking: str, keys, address: str,
                        data_root: Path | None) -> list[dict]:
    """Start N sweep workers on the scheduler once it and both servers answer (a sweep worker checks them as it
    starts); joining takes each seconds of imports, so they start before the pool is made and the workers start."""
    n, started = args.workers, []
    for i in range(1, n + 1):
        argv, env = svc.sweep_worker(directory, api, tracking, keys, address, workers=n, data_root=data_root)
        started.append(procs.spawn(records, f"sweep-worker-{i}", argv, env,
                                   directory / "logs" / f"sweep-worker-{i}.log", cwd=Path.cwd(), url=address,
                                   sweep_worker=address))
        procs.write_records(directory, records)
    return started


def spawn_workers(directory: Path, records: list[dict], args, api: str, tracking: str, keys, address: str,
                  data_root: Path | None) -> list[dict]:
    """Start N Prefect process workers of pool ``bp`` (its server up and the pool made: a worker that finds no pool
    makes one with Prefect's defaults)."""
    n, started = args.workers, []
    for i in range(1, n + 1):
        worker = f"bp-{socket.gethostname()}-{i}-{secrets.token_hex(3)}"
        argv, env = svc.worker(directory, worker, api, tracking, keys, workers=n, data_root=data_root,
                               scheduler=address)
        started.append(procs.spawn(records, f"worker-{i}", argv, env, directory / "logs" / f"worker-{i}.log",
                                   cwd=Path.cwd(), url=api, worker=worker))
        procs.write_records(directory, records)
    progress(f"starting {n} worker{'s' * (n > 1)} on pool {svc.POOL} and {n} sweep worker{'s' * (n > 1)}")
    return started


def wait_ready(directory: Path, started: list[dict], api: str, headers, address: str, wait: Callable) -> None:
    """Until each Prefect worker is registered with the server and each sweep worker joined the scheduler (``wait(
    records, ready, verbose)`` raises StackError naming one that died or did not answer)."""
    known: set[str] = set()
    sweepers = [r for r in started if "sweep_worker" in r]
    with scheduler_client(directory, address) as client:
        def registered(record: dict) -> bool:
            if "sweep_worker" in record:  # joined: the scheduler counts at least as many as are ready
                joined = len(client.scheduler_info(n_workers=-1)["workers"])
                return joined >= sweepers.index(record) + 1
            if record["worker"] not in known:
                known.update(svc.registered_workers(api, headers))
            return record["worker"] in known

        wait(started, registered, False)


@contextmanager
def scheduler_client(directory: Path, address: str):
    """A client of the stack's scheduler, with the stack's certificates."""
    from distributed import Client

    from flows.sweep import tls

    with Client(address, security=tls.security(svc.certs_dir(directory)), timeout=30, set_as_default=False) as client:
        yield client
