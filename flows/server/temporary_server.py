"""The temporary Prefect server of one ``bp`` process, started by bp itself so that it never outlives it.

With no Prefect API configured (no ``PREFECT_API_URL``, no profile naming one), Prefect would start
a temporary server itself, as a plain child process: a ``bp`` killed outright (SIGKILL, the OOM
killer) would leave it running under init, listening. bp starts ``prefect server start`` instead,
through ``flows.runtime.deathsig`` (the kernel sends the server SIGTERM when bp's main thread ends, however
it ends), on a free loopback port, without the UI and the services a one-process server has no use
for, and points its own Prefect client at it. It starts while bp imports the rest of what a run
needs, and is stopped (after the run's logs and events are sent) before bp prints its last line.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flows.runtime import waiting
from flows.runtime.http import request

HOST = "127.0.0.1"
# loop services for deployments, schedules and workers: a server that lives for one bp run has none
IDLE_SERVICES = ("SCHEDULER", "LATE_RUNS", "FOREMAN", "CANCELLATION_CLEANUP", "PAUSE_EXPIRATIONS", "REPOSSESSOR",
                 "CLEANUP_RECONCILER")


@dataclass
class Server:
    """A running temporary server: its process, API URL and log (its output, read when it fails to start)."""

    proc: subprocess.Popen
    api_url: str
    log: Path

    def wait_ready(self, timeout: float) -> None:
        """Until its API answers; RuntimeError quoting its log if it exits or does not answer within ``timeout`` s."""
        def state() -> str:
            """``up``, ``exited`` or ``starting``."""
            if request("GET", f"{self.api_url}/health", timeout=2)[0] == 200:
                return "up"
            return "exited" if self.proc.poll() is not None else "starting"

        found = waiting.poll(state, lambda s: s != "starting", timeout, every=0.1)
        if found == "up":
            return
        what = (f"exited with code {self.proc.returncode}" if found == "exited"
                else f"did not answer within {timeout:g} s")
        tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
        self.stop()
        raise RuntimeError(f"Prefect's temporary server {what} (PREFECT_SERVER_EPHEMERAL_STARTUP_"
                           f"TIMEOUT_SECONDS bounds its start): {' | '.join(tail)}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; its log is removed."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.unlink(missing_ok=True)


def configured_api() -> str | None:
    """The Prefect API this process is configured to use (environment, profile or settings context), if any."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return str(url) if url else None


def start() -> Server:
    """Launch a temporary server on a free loopback port (it is not ready yet: ``wait_ready``)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_UI_ENABLED": "false",
           **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in IDLE_SERVICES}}
    env.pop("PREFECT_API_URL", None)
    fd, log = tempfile.mkstemp(prefix="bp-prefect-server-", suffix=".log")
    argv = [sys.executable, "-m", "flows.runtime.deathsig", str(os.getpid()), sys.executable, "-m", "prefect", "server",
            "start", "--host", HOST, "--port", str(port), "--no-ui", "--log-level", "WARNING"]
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return Server(proc, f"http://{HOST}:{port}/api", Path(log))


@contextmanager
def pointed_at(server: Server):
    """Prefect's client in this process (and the threads and processes it starts) uses ``server`` inside."""
    from prefect.settings import temporary_settings

    from flows.runtime.outage import environment

    # no UI (and no "View at" links to one); threads without Prefect's context read the environment
    with environment({"PREFECT_API_URL": server.api_url, "PREFECT_UI_URL": ""}), \
            temporary_settings(updates={"api.url": server.api_url, "ui_url": ""}):
        yield
