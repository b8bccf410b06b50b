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


def start(directory: Path, records: list[dict], args, api: str, tracking: str, keys, headers, data_root: Path | None,
          wait: Callable) -> None:
    """The sweep pool's scheduler, then N Prefect workers and N sweep workers; each waited for (``wait(records,
    ready, verbose)``, which raises StackError naming one that died or did not answer)."""
    n = args.workers
    address = _start_scheduler(directory, records, args.scheduler_port, args.verbose, wait)
    started = []
    for i in range(1, n + 1):
        worker = f"bp-{socket.gethostname()}-{i}-{secrets.token_hex(3)}"
        argv, env = svc.worker(directory, worker, api, tracking, keys, workers=n, data_root=data_root,
                               scheduler=address)
        started.append(procs.spawn(records, f"worker-{i}", argv, env, directory / "logs" / f"worker-{i}.log",
                                   cwd=Path.cwd(), url=api, worker=worker))
        procs.write_records(directory, records)
    for i in range(1, n + 1):
        argv, env = svc.sweep_worker(directory, api, tracking, keys, address, workers=n, data_root=data_root)
        started.append(procs.spawn(records, f"sweep-worker-{i}", argv, env,
                                   directory / "logs" / f"sweep-worker-{i}.log", cwd=Path.cwd(), url=address,
                                   sweep_worker=address))
        procs.write_records(directory, records)
    progress(f"starting {n} worker{'s' * (n > 1)} on pool {svc.POOL} and {n} sweep worker{'s' * (n > 1)}")
    known: set[str] = set()
    with scheduler_client(directory, address) as client:
        def registered(record: dict) -> bool:
            if "sweep_worker" in record:  # joined: the scheduler counts at least as many as are ready
                joined = len(client.scheduler_info(n_workers=-1)["workers"])
                return joined >= [r for r in started if "sweep_worker" in r].index(record) + 1
            if record["worker"] not in known:
                known.update(svc.registered_workers(api, headers))
            return record["worker"] in known

        wait(started, registered, False)


def _start_scheduler(directory: Path, records: list[dict], port: int, verbose: bool, wait: Callable) -> str:
    """The sweep pool's Dask scheduler (TLS only, certificates made in DIR/dask when missing); its address."""
    from flows.sweep import tls

    tls.make(svc.certs_dir(directory))
    address = f"tls://{svc.HOST}:{port}"
    argv, env = svc.scheduler(directory, port)
    procs.spawn(records, "scheduler", argv, env, directory / "logs" / "scheduler.log", url=address, scheduler=address)
    procs.write_records(directory, records)
    wait(records[-1:], lambda r: procs.port_in_use(port, svc.HOST), verbose)
    return address


@contextmanager
def scheduler_client(directory: Path, address: str):
    """A client of the stack's scheduler, with the stack's certificates."""
    from distributed import Client

    from flows.sweep import tls

    with Client(address, security=tls.security(svc.certs_dir(directory)), timeout=30, set_as_default=False) as client:
        yield client
