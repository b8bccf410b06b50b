"""The server walk-throughs of README.md and docs/servers.md, run as written, line after line, in a shell.

Each block runs in a fresh directory holding the repository's ``configs/`` on the default ports, as a
newcomer's shell would run it (``set -e``: the first line that fails stops it, and is named). Its ``pip
install`` line is not run (tests reach no package index): it must be the install of the ``servers`` extra the
test environment already has.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, python_env
from support.stack import STACK

pytestmark = [pytest.mark.stack, pytest.mark.slow]

INSTALL = 'pip install -e ".[servers]"'
PORTS = (4200, 5000, 8786)  # the defaults the blocks use


def bash_block(page: Path, heading: str) -> list[str]:
    """The lines of the first ```bash block after ``heading`` in ``page``."""
    text = page.read_text()
    after = text[text.index(heading):]
    return after.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()


def run_block(lines: list[str], where: Path) -> subprocess.CompletedProcess:
    """The block in bash, from ``where``: stopped at the first failing line, which it names on stderr."""
    assert lines[0].split("#")[0].strip() == INSTALL, lines[0]
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "bp-pipeline[servers]" in extras["dev"]  # what that line installs, the tests have
    busy = [port for port in PORTS if _listening(port)]
    assert not busy, f"the walk-through needs ports {PORTS} free; in use: {busy}"
    (where / "configs").symlink_to(REPO / "configs")
    env = {k: v for k, v in python_env().items() if not k.startswith(("PREFECT_API_", "BP_"))}
    env["PREFECT_HOME"] = str(where / "prefect-home")  # a newcomer's profile: nothing set yet
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # this Python's bp
    script = "set -eo pipefail\ntrap 'echo \"failed: $BASH_COMMAND\" >&2' ERR\n" + "\n".join(lines[1:]) + "\n"
    try:
        return subprocess.run(["bash", "-c", script], cwd=where, env=env, capture_output=True, text=True,
                              timeout=900, stdin=subprocess.DEVNULL)
    finally:
        if (where / ".bp-stack" / "pids.json").exists():  # the block failed before its bp stack down
            subprocess.run([*STACK, "down", "--dir", str(where / ".bp-stack"), "--grace", "0"], cwd=where,
                           env=env, capture_output=True, timeout=120)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_readme_server_block_runs_as_written(tmp_path):
    assert shutil.which("bash")
    done = run_block(bash_block(REPO / "README.md", "## On servers"), tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert re.search(r"^linreg/linreg: .*, work pool 'bp'$", done.stdout, re.M), done.stdout
    run_ids = re.findall(r"^run_id: ([0-9a-f]{32})$", done.stdout, re.M)
    assert len(run_ids) == 1, done.stdout
    assert not (tmp_path / ".bp-stack" / "pids.json").exists()  # bp stack down stopped all it started
    mc = MlflowClient(f"sqlite:///{tmp_path / '.bp-stack' / 'mlflow.db'}")  # the stack's store, read after it stopped
    parent = mc.get_run(run_ids[0])
    assert parent.info.status == "FINISHED" and parent.data.tags["bp.sweep"] == "parent"
    children = mc.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{run_ids[0]}'")
    assert len(children) == 8


def test_the_servers_page_first_block_runs_as_written(tmp_path):
    done = run_block(bash_block(REPO / "docs" / "servers.md", "## One machine, no Docker"), tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    status = [line for line in done.stdout.splitlines() if re.match(r"^\S+\s+\d+\s+up\b", line)]
    assert {line.split()[0] for line in status} >= {"prefect-server", "mlflow-server", "scheduler"}, done.stdout
    assert len(status) == 2 + 1 + 2 + 2, done.stdout  # servers, the scheduler, 2 workers, 2 sweep workers
    assert not (tmp_path / ".bp-stack" / "pids.json").exists()
