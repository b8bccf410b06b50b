"""docker-compose.yml on a real Docker engine: the compose section of docs/servers.md, done as a user would.

Marker ``compose``, left out of the default run (it needs a Docker engine and about ten minutes);
``.ci/run`` starts a private engine (``../shared/tools/docker-standin.sh``) and runs
``python -m pytest -m compose`` against it, through ``DOCKER_HOST``. No engine is a failure, not a
skip. The project is a copy of the checkout's compose files with a ``.env`` of its own, so the
commands of docs/servers.md (``docker compose ...`` in the project directory) run here word for word.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from support import REPO, SEED_DATA, bp, python_env
from support.stack import free_port
from test_compose import COPIED, compose_binary, example_settings, write_env

pytestmark = pytest.mark.compose

TAG = "compose-test"


def docker(*argv: str, env: dict | None = None, timeout: float = 600, check: bool = True,
           cwd=None, stdin=None) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *argv], capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd,
                          stdin=stdin)
    if check and done.returncode != 0:
        pytest.fail(f"docker {' '.join(argv)} failed ({done.returncode}): {(done.stderr or done.stdout)[-3000:]}")
    return done


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> dict[str, str]:
    """The environment that reaches the Docker engine, with the Compose v2 binary as ``docker compose``."""
    if shutil.which("docker") is None:
        pytest.fail("no docker client on PATH (apt-get install docker.io); these tests need a Docker engine")
    config = tmp_path_factory.mktemp("docker-config")
    (config / "cli-plugins").mkdir()
    (config / "cli-plugins" / "docker-compose").symlink_to(compose_binary())
    env = {**python_env(), "DOCKER_CONFIG": str(config)}
    info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                          env=env, timeout=60)
    if info.returncode != 0:
        pytest.fail(f"no Docker engine answers at {os.environ.get('DOCKER_HOST', 'the default socket')} "
                    f"({info.stderr.strip()[-300:]}); start one: eval \"$(../shared/tools/docker-standin.sh up)\"")
    return env


@dataclass
class Project:
    dir: Path
    env: dict[str, str]  # for docker compose in dir
    settings: dict[str, str]  # its .env
    data: Path

    def compose(self, *argv: str, timeout: float = 600, check: bool = True, stdin=None):
        return docker("compose", *argv, env=self.env, timeout=timeout, check=check, cwd=self.dir, stdin=stdin)

    @property
    def client(self) -> dict[str, str]:
        """What a client on the host exports (the export lines of docs/servers.md)."""
        return {**python_env(), "PREFECT_API_URL": f"http://127.0.0.1:{self.settings['PREFECT_PORT']}/api",
                "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{self.settings['MLFLOW_PORT']}",
                "PREFECT_API_AUTH_STRING": self.settings["PREFECT_AUTH_STRING"]}

    def bp(self, *argv: str, env: dict | None = None, timeout: float = 900, wait: bool = True):
        return bp(*argv, env={**self.client, **(env or {})}, cwd=self.dir, timeout=timeout, wait=wait)

    def labelled(self, kind: str) -> list[str]:
        """The project's containers, volumes or networks still on the engine."""
        label = f"label=com.docker.compose.project={self.env['COMPOSE_PROJECT_NAME']}"
        command = {"container": ["ps", "-aq"], "volume": ["volume", "ls", "-q"], "network": ["network", "ls", "-q"]}
        return docker(*command[kind], "--filter", label, env=self.env).stdout.split()


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory) -> Project:
    """The project image built, the stack up with two workers and two sweep workers (Dask workers of the pool's
    scheduler); ``docker compose down -v`` after."""
    built = docker("build", "--network", "host", "-t", f"bp-pipeline:{TAG}", str(REPO), env=engine, timeout=1500)
    assert built.returncode == 0
    directory = tmp_path_factory.mktemp("compose-project")
    for name in [*COPIED, "configs"]:
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, directory / name)
    data = tmp_path_factory.mktemp("compose-data")
    shutil.copy(SEED_DATA, data / "data.csv")
    data.chmod(0o755)  # the image's user (not root) reads it through the bind mount
    (data / "data.csv").chmod(0o644)
    settings = {**example_settings(), "PREFECT_AUTH_STRING": f"bp:{secrets.token_hex(24)}",
                "MLFLOW_ADMIN_PASSWORD": secrets.token_hex(16), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
                "PREFECT_PORT": str(free_port()), "MLFLOW_PORT": str(free_port()), "BP_DATA_DIR": str(data),
                "BP_IMAGE_TAG": TAG}
    write_env(directory / ".env", settings)
    env = {**engine, "COMPOSE_PROJECT_NAME": f"bp-test-{secrets.token_hex(3)}"}
    stack = Project(directory, env, settings, data)
    try:
        started = time.monotonic()
        stack.compose("up", "-d", "--no-build", "--scale", "worker=2", "--scale", "sweep-worker=2", "--wait",
                      timeout=900)
        print(f"compose up --wait: {time.monotonic() - started:.0f} s")
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=300)


def services(project: Project) -> list[dict]:
    out = project.compose("ps", "-a", "--format", "json").stdout.strip()
    return json.loads(out) if out.startswith("[") else [json.loads(line) for line in out.splitlines() if line]


def test_up_with_two_workers_and_the_deploy_and_certs_jobs_exited_0(project):
    found = services(project)
    by_service = {}
    for container in found:
        by_service.setdefault(container["Service"], []).append(container)
    for job in ("deploy", "certs"):
        assert [c["ExitCode"] for c in by_service[job]] == [0] and by_service[job][0]["State"] == "exited", job
    for name in ("worker", "sweep-worker"):
        assert len(by_service[name]) == 2 and all(c["State"] == "running" for c in by_service[name]), name
    for name in ("postgres", "mlflow", "prefect-server", "scheduler"):
        assert by_service[name][0]["Health"] == "healthy", by_service[name]
    assert all(
        not p.get("PublishedPort") for p in by_service["scheduler"][0].get("Publishers") or [])  # compose network only
    logs = project.compose("logs", "deploy").stdout
    assert "linreg/linreg: on demand, work pool 'bp'" in logs
    joined = project.compose("logs", "sweep-worker").stdout  # each took the scheduler's TLS, with the certificates
    assert joined.count("sweep worker of the scheduler at tls://scheduler:8786") == 2, joined[-3000:]


def test_the_pool_certificates_are_the_image_users_only(project):
    shown = project.compose("exec", "-T", "scheduler", "stat", "-c", "%n %a %U",
                            "/certs", "/certs/ca.pem", "/certs/member.pem", "/certs/member-key.pem").stdout
    assert shown.split("\n")[:4] == ["/certs 700 bp", "/certs/ca.pem 600 bp", "/certs/member.pem 600 bp",
                                     "/certs/member-key.pem 600 bp"], shown


def test_bp_train_from_the_host(project):
    done = project.bp("train", "configs/linreg.yaml", "--set", "experiment=compose-train")
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1].removeprefix("run_id: ")
    run = MlflowClient(project.client["MLFLOW_TRACKING_URI"]).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["bp.status"] == "finished"


def test_the_readme_pool_sweep_from_the_host_with_the_data_only_on_the_workers(project):
    assert not Path("/data/data.csv").exists()  # the host has no /data: only the workers' mount
    done = project.bp("sweep", "configs/linreg_lr_sweep.yaml", "--pool", "bp", "--set", "data.path=/data/data.csv",
                      "--set", "experiment=compose-sweep", "--set", "sweep.model_name=null",
                      "--set", "sweep.grid.trainer.learning_rate=[1.0e-4, 2.0e-4]")
    mc = MlflowClient(project.client["MLFLOW_TRACKING_URI"])
    assert done.returncode == 0, (done.stderr[-3000:], project.compose(
        "logs", "--tail", "60", "worker", "sweep-worker", "scheduler").stdout[-6000:])
    runs = mc.search_runs([mc.get_experiment_by_name("compose-sweep").experiment_id])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.tags["bp.data_digest"] for r in runs} == {hashlib.sha256(SEED_DATA.read_bytes()).hexdigest()}


def test_a_sweep_worker_container_killed_mid_point_loses_no_point(project):
    sweep = project.bp("sweep", "configs/mnist_lr_sweep.yaml", "--pool", "bp", "--set", "experiment=compose-kill",
                       "--set", "trainer.epochs=25", "--set", "data.limit=500", "--set", "sweep.model_name=null",
                       "--set", "sweep.grid.trainer.learning_rate=[0.01, 0.02, 0.05]", wait=False)
    mc = MlflowClient(project.client["MLFLOW_TRACKING_URI"])
    victim, deadline = None, time.monotonic() + 300
    try:
        while victim is None:
            assert time.monotonic() < deadline and sweep.poll() is None, sweep.communicate()[1][-3000:]
            found = mc.get_experiment_by_name("compose-kill")
            for run in mc.search_runs([found.experiment_id], "attributes.status = 'RUNNING' and "
                                      "tags.`bp.sweep` = 'child'") if found else []:
                if mc.get_metric_history(run.info.run_id, "cost"):
                    victim = run
            time.sleep(1)
        host = victim.data.tags["bp.worker"].rsplit(":", 1)[0]  # a container's hostname is its short id
        docker("kill", host, env=project.env)
        out, err = sweep.communicate(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.send_signal(signal.SIGTERM)
            sweep.communicate(timeout=60)
    assert sweep.returncode == 0, err[-3000:]
    parent = out.strip().splitlines()[-1].removeprefix("run_id: ")
    children = mc.search_runs([victim.info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
    assert not [c for c in children if c.info.status == "RUNNING"] and len(children) == 3
    moved = mc.get_run(victim.info.run_id)  # the killed point went on in its own run, from its checkpoint
    assert (moved.info.status, moved.data.tags.get("bp.resumed")) == ("FINISHED", "1"), moved.data.tags
    finished = sorted(c.info.run_name for c in children if c.info.status == "FINISHED")
    assert finished == ["lr=0.01", "lr=0.02", "lr=0.05"], finished


def docs_block(heading: str, index: int) -> str:
    """The ``index``-th bash block under a heading of docs/servers.md, where the README sends users for compose."""
    text = (REPO / "docs" / "servers.md").read_text()
    section = text.split(f"\n{heading}\n", 1)[1].split("\n#", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)[index]


def inventory(project: Project) -> dict[str, list[str]]:
    """Every run of the MLflow server, with its artifacts' paths (what a restore must bring back)."""
    mc = MlflowClient(project.client["MLFLOW_TRACKING_URI"])
    found = {}
    for experiment in mc.search_experiments():
        for run in mc.search_runs([experiment.experiment_id]):
            found[run.info.run_id] = sorted(f.path for f in mc.list_artifacts(run.info.run_id))
    return found


def test_the_documented_backup_and_restore_keep_every_run_and_artifact(project):
    before = inventory(project)
    assert len(before) >= 4 and all(before.values())
    shell = {**project.env, "PATH": os.environ["PATH"]}
    backup = subprocess.run(["bash", "-euo", "pipefail", "-c", docs_block("## Backup", 0)], cwd=project.dir,
                            env=shell, capture_output=True, text=True, timeout=600)
    assert backup.returncode == 0, backup.stderr[-3000:]
    project.compose("down", "-v", "--timeout", "20")  # the volumes are gone: only the backup is left
    assert not project.labelled("volume")
    restore = subprocess.run(["bash", "-euo", "pipefail", "-c", docs_block("## Backup", 1)], cwd=project.dir,
                             env=shell, capture_output=True, text=True, timeout=900)
    assert restore.returncode == 0, restore.stderr[-3000:]
    project.compose("up", "-d", "--no-build", "--scale", "worker=2", "--scale", "sweep-worker=2", "--wait", timeout=900)
    assert inventory(project) == before


def test_the_auth_profile_asks_for_credentials(project):
    project.compose("rm", "--stop", "--force", "mlflow")
    auth = {**project.env, "COMPOSE_PROFILES": "auth"}
    docker("compose", "up", "-d", "--no-build", "--wait", "mlflow-auth", env=auth, cwd=project.dir, timeout=600)
    uri = project.client["MLFLOW_TRACKING_URI"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
    assert refused.value.code == 401
    login = {"MLFLOW_TRACKING_USERNAME": project.settings["MLFLOW_ADMIN_USERNAME"],
             "MLFLOW_TRACKING_PASSWORD": project.settings["MLFLOW_ADMIN_PASSWORD"]}
    done = project.bp("train", "configs/chain.yaml", "--set", "experiment=compose-auth", env=login)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = done.stdout.strip().splitlines()[-1].removeprefix("run_id: ")
    os.environ.update(login)  # MLflow's client reads the credentials from the environment
    try:
        assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    finally:
        for name in login:
            os.environ.pop(name, None)


def test_down_v_leaves_no_container_volume_or_network(project):
    auth = {**project.env, "COMPOSE_PROFILES": "auth"}
    docker("compose", "down", "-v", "--remove-orphans", "--timeout", "20", env=auth, cwd=project.dir, timeout=300)
    assert (project.labelled("container"), project.labelled("volume"), project.labelled("network")) == ([], [], [])
