"""Session fixtures of the stack tests: a private PostgreSQL cluster, and ``bp stack up`` on it.

tests/conftest.py registers this module as a plugin; its helpers are imported from ``support.stack``.
``postgres``: a cluster created in a temp dir, on a free 127.0.0.1 port, removed after. It trusts
connections over its own unix socket and asks a password (scram-sha-256) over TCP, so a test that
connects through the URL also checks that the password travels and is never printed. PostgreSQL
missing is a failure, not a skip: the stack tests are what CI runs them for.
``stack``: the MLflow server, the Prefect server and two workers on that cluster, started once
for the session by ``bp stack up`` and stopped by ``bp stack down`` (which must leave nothing) right after the last
test that uses it, not at the session's end: idle, it costs about 3 CPU s a minute that the other tests need.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SUPERUSER = "postgres"
REPO = Path(__file__).resolve().parents[2]
STACK = [sys.executable, "-m", "flows.cli", "stack"]  # `bp stack` (support.BP + "stack": support imports this module)


def pg_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: on PATH, else Debian's /usr/lib/postgresql/<version>/bin (newest)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    # the server refuses to run as root; as another user, it runs as that user
    return ["runuser", "-u", SUPERUSER, "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(_as_postgres(argv), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        pytest.fail(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """``postgresql://postgres:PASSWORD@127.0.0.1:PORT`` of a private cluster started for this session."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL is not installed: no initdb on PATH nor in /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql); the stack tests need it")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.fail("running as root, PostgreSQL must run as user postgres, but runuser is not installed")
    root = Path(tempfile.mkdtemp(prefix="bp-pg-"))  # not under pytest's 0700 tree: user postgres must enter it
    password = secrets.token_urlsafe(16)
    data, pwfile, log = root / "data", root / "pwfile", root / "postgres.log"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, SUPERUSER, SUPERUSER)
        shutil.chown(pwfile, SUPERUSER, SUPERUSER)
    port = free_port()
    _run([str(bindir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
          "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"], "initdb")
    pwfile.unlink()
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = False
    try:
        _run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"],
             f"pg_ctl start (log: {log})")
        started = True
        yield f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}"
    finally:
        if started:
            _run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "pg_ctl stop")
        shutil.rmtree(root, ignore_errors=True)


# the client and --auth variables bp stack reads; a test sets those it wants
STACK_VARIABLES = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "BP_MLFLOW_ADMIN_PASSWORD", "BP_MLFLOW_ADMIN_USERNAME",
                   "BP_PREFECT_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                   "PREFECT_API_AUTH_STRING", "MLFLOW_FLASK_SERVER_SECRET_KEY", "BP_DATA_ROOT")


def bp_stack(*argv: str, env: dict[str, str] | None = None, timeout: float = 420) -> subprocess.CompletedProcess:
    """``bp stack ARGV`` in a subprocess from the checkout (flow runs of its workers start there too); ``up`` on a
    free scheduler port unless given one (stacks of several tests may run at once)."""
    base = {k: v for k, v in os.environ.items() if k not in STACK_VARIABLES}
    if argv[:1] == ("up",) and "--scheduler-port" not in argv:
        argv = (*argv, "--scheduler-port", str(free_port()))
    return subprocess.run([*STACK, *argv], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**base, **(env or {})}, stdin=subprocess.DEVNULL)


# the scheduler looks for due runs every 60 s by default: too slow for a test of an interval schedule
FAST_SCHEDULER = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}


def exported(stdout: str) -> dict[str, str]:
    """The ``export NAME=VALUE`` lines ``bp stack up`` ends with, as a dict (values unquoted as a shell would)."""
    import shlex

    lines = [line.removeprefix("export ") for line in stdout.splitlines() if line.startswith("export ")]
    return dict(shlex.split(line)[0].split("=", 1) for line in lines)


def prefect_settings(client: dict) -> dict[str, str]:
    """Prefect settings for a client of a stack, from the variables ``bp stack up`` exports (``client``)."""
    return {"api.url": client["PREFECT_API_URL"], "api.auth_string": client["PREFECT_API_AUTH_STRING"]}


@contextmanager
def prefect_client(client: dict):
    """A Prefect client of a stack's server (Prefect read its settings at import: the env var alone won't do)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import temporary_settings

    with temporary_settings(updates=prefect_settings(client)), get_client(sync_client=True) as prefect:
        yield prefect


@dataclass(frozen=True)
class Stack:
    """A running ``bp stack``: where it lives, its URLs, what ``up`` printed and recorded."""
    dir: Path
    prefect_api: str  # http://127.0.0.1:P/api
    mlflow_uri: str  # http://127.0.0.1:P
    database_url: str
    stdout: str
    stderr: str
    records: list[dict]

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs to use this stack: what ``bp stack up`` printed to export."""
        return exported(self.stdout)

    @property
    def auth_string(self) -> str:
        return self.env["PREFECT_API_AUTH_STRING"]


STOPS = pytest.StashKey()  # fixture name -> how to stop what it started while it runs, then STOPPED
STOPPED = object()


def stop_after_its_last_test(request, name: str, stop) -> None:
    """Call ``stop`` right after the last test that uses session fixture ``name``, not at the session's
    end: an idle stack costs about 3 CPU s a minute that the other tests need. Its tests run one after another
    (tests/conftest.py groups them and keeps each group together); one asking for it afterwards fails saying so."""
    request.config.stash.setdefault(STOPS, {})[name] = stop


def stop_once(config, name: str) -> None:
    """Stop what session fixture ``name`` started, once."""
    stops = config.stash.get(STOPS, {})
    if stops.get(name) not in (None, STOPPED):
        stop, stops[name] = stops[name], STOPPED
        stop()


def pytest_runtest_setup(item):
    for name, stop in item.config.stash.get(STOPS, {}).items():
        if stop is STOPPED and name in item.fixturenames:
            pytest.fail(f"the session's {name} was stopped after its last test: tests using it must run together "
                        "(tests/conftest.py groups them)")


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    for name in list(item.config.stash.get(STOPS, {})):
        if name in item.fixturenames and (nextitem is None or name not in nextitem.fixturenames):
            stop_once(item.config, name)


@pytest.fixture(scope="session")
def stack(postgres, tmp_path_factory, request) -> Iterator[Stack]:
    """``bp stack up --workers 2`` on the session's Postgres, free ports; ``bp stack down`` after its last test (or
    at the session's end), nothing left."""
    from flows.stack import procs as stack_procs

    directory = tmp_path_factory.mktemp("bp-stack")
    prefect_port, mlflow_port = free_port(), free_port()
    up = bp_stack("up", "--dir", str(directory), "--workers", "2", "--database-url", postgres,
                  "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port),
                  "--scheduler-port", str(free_port()), env=FAST_SCHEDULER)
    if up.returncode != 0:
        bp_stack("down", "--dir", str(directory))
        pytest.fail(f"bp stack up failed (exit {up.returncode}):\n{up.stderr[-4000:]}")
    records = json.loads((directory / stack_procs.PIDS_FILE).read_text())["services"]

    def down() -> None:
        done = bp_stack("down", "--dir", str(directory), timeout=180)
        left = [r for r in records if stack_procs.group(r)]
        stack_procs.stop(left, 5)  # never leave a server behind, even when down failed
        assert done.returncode == 0 and not left, f"bp stack down left {left}: {done.stdout}{done.stderr}"

    stop_after_its_last_test(request, "stack", down)
    try:
        yield Stack(directory, f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}", postgres,
                    up.stdout, up.stderr, records)
    finally:
        stop_once(request.config, "stack")  # unless its last test did

