"""``bp stack up|down|status``: real servers and workers on 127.0.0.1, started and stopped by the tests.

Server starts are few (each costs 10-25 s on two cores): the session's Postgres stack (two
workers), one SQLite stack with --auth and a worker (which runs a flow that ``down`` must cancel
cleanly), one start that fails on purpose. The refusals start nothing.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from support import BP, bp, python_env, refused
from support.procs import killed_if_left
from support.stack import REPO, STACK, bp_stack, free_port

from flows.stack import procs as stack_procs

pytestmark = pytest.mark.stack

MLFLOW_PASSWORD = "a-long-enough-admin-password"  # test-only secrets
PREFECT_AUTH = "bp:prefect-test-secret"


def get(url: str, credentials: str | None = None, body: dict | None = None) -> tuple[int, object]:
    """(status, parsed JSON or text); a POST when ``body`` is given."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def workers_of(prefect_api: str, credentials: str | None = None) -> set[str]:
    status, answer = get(f"{prefect_api}/work_pools/bp/workers/filter", credentials, body={})
    assert status == 200, answer
    return {w["name"] for w in answer}


def unrelated_process() -> subprocess.Popen:
    """A process of its own session that ``bp stack down`` must leave alone."""
    return subprocess.Popen(["sleep", "600"], start_new_session=True)


def record_of(proc: subprocess.Popen, name: str, start: int | None = None) -> dict:
    return {"name": name, "pid": proc.pid, "start": stack_procs.start_time(proc.pid) if start is None else start,
            "log": "/dev/null", "url": "http://127.0.0.1:1"}


def private(directory) -> list[str]:
    """What under ``directory`` (itself included) another user of the machine could read or enter."""
    return [str(p) for p in [directory, *directory.rglob("*")] if not p.is_symlink() and p.stat().st_mode & 0o077]


def test_up_on_postgres_with_two_workers(stack):
    lines = stack.stdout.strip().splitlines()
    auth = stack.auth_string
    assert lines[-3:] == [f"export PREFECT_API_URL={stack.prefect_api}",
                          f"export MLFLOW_TRACKING_URI={stack.mlflow_uri}",
                          f"export PREFECT_API_AUTH_STRING={auth}"]
    # made on first start, kept for the owner only; never in the logs
    user, _, secret = auth.partition(":")
    assert user == "bp" and len(secret) >= 32
    assert json.loads((stack.dir / "secrets.json").read_text())["prefect_auth_string"] == auth
    assert not private(stack.dir), "readable by other users"
    assert not [p for p in (stack.dir / "logs").iterdir() if secret in p.read_text(errors="replace")]
    assert f"Prefect UI: {stack.prefect_api.removesuffix('/api')}" in stack.stdout
    assert f"MLflow UI:  {stack.mlflow_uri}" in stack.stdout
    password = stack.database_url.split(":")[2].split("@")[0]
    assert password not in stack.stdout + stack.stderr
    assert password not in (stack.dir / stack_procs.PIDS_FILE).read_text()
    assert "postgresql://postgres:***@127.0.0.1" in stack.stderr  # what it did, redacted
    # started as soon as each could be (the scheduler beside the servers), listed (and shown by status) by kind
    assert [r["name"] for r in stack.records] == ["prefect-server", "mlflow-server", "scheduler", "worker-1",
                                                  "worker-2", "sweep-worker-1", "sweep-worker-2"]

    assert get(f"{stack.prefect_api}/health") == (200, True)  # open: the health check needs no credentials
    status, ui = get(f"{stack.prefect_api.removesuffix('/api')}/ui-settings")
    assert status == 200 and ui["api_url"] == stack.prefect_api  # the UI calls this server, not port 4200
    assert get(f"{stack.mlflow_uri}/health")[0] == 200
    # a real API call: MLflow answers 403 to a Host it does not allow, Prefect sees its own database
    assert get(f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=5")[0] == 200

    import psycopg

    with psycopg.connect(stack.database_url + "/postgres") as conn:
        databases = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
    assert {"mlflow", "prefect"} <= databases
    for database, table in (("mlflow", "experiments"), ("prefect", "flow_run")):
        with psycopg.connect(f"{stack.database_url}/{database}") as conn:
            assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] == table, database

    workers = [r for r in stack.records if "worker" in r]
    assert len(workers) == 2
    for record in workers:  # one flow run at a time each, as compose's workers
        assert b"\0--limit\x001\0" in open(f"/proc/{record['pid']}/cmdline", "rb").read()
    assert {r["worker"] for r in workers} <= workers_of(stack.prefect_api, auth)
    status, pool = get(f"{stack.prefect_api}/work_pools/bp", auth)
    assert status == 200 and pool["type"] == "process" and not pool["is_paused"]
    # flow runs start where `bp stack up` ran (here the checkout), so a config's relative paths mean the same
    assert pool["base_job_template"]["variables"]["properties"]["working_dir"]["default"] == str(REPO)
    # the engine started directly (no workspace supervisor: a second interpreter per flow run) with the stack's Python
    command = pool["base_job_template"]["variables"]["properties"]["command"]["default"]
    assert command == f"{sys.executable} -m prefect.engine", command

    status = bp_stack("status", "--dir", str(stack.dir))
    assert status.returncode == 0, status.stderr
    rows = [line.split() for line in status.stdout.strip().splitlines()]
    assert [(row[0], int(row[1]), row[2]) for row in rows] == [(r["name"], r["pid"], "up") for r in stack.records]
    assert [row[0] for row in rows] == ["prefect-server", "mlflow-server", "scheduler", "worker-1", "worker-2",
                                        "sweep-worker-1", "sweep-worker-2"]
    # the scheduler: TLS only, its certificates private; the sweep workers joined it, their share of the cores each
    from flows.runtime import blas
    from flows.stack.workers import scheduler_client

    scheduler = next(r for r in stack.records if r["name"] == "scheduler")
    assert scheduler["url"].startswith("tls://127.0.0.1:") and scheduler["url"] in status.stdout
    certs = stack.dir / "dask"
    assert oct(certs.stat().st_mode & 0o777) == "0o700"
    assert {oct(p.stat().st_mode & 0o777) for p in certs.iterdir()} == {"0o600"}
    with scheduler_client(stack.dir, scheduler["url"]) as client:
        assert len(client.scheduler_info(n_workers=-1)["workers"]) == 2
    for record in [r for r in stack.records if "sweep_worker" in r]:
        environ = open(f"/proc/{record['pid']}/environ", "rb").read()
        assert f"\0--scheduler\0{scheduler['url']}\0".encode() in open(f"/proc/{record['pid']}/cmdline", "rb").read()
        assert f"OMP_NUM_THREADS={blas.environment(2)['OMP_NUM_THREADS']}".encode() in environ
    for record in workers:  # their sweeps' flow runs learn the scheduler from them
        environ = open(f"/proc/{record['pid']}/environ", "rb").read()
        assert f"BP_DASK_SCHEDULER={scheduler['url']}\0".encode() in environ


def test_status_judges_by_what_answers(stack, tmp_path):
    """A server restarted by hand (its recorded pid gone) that answers is up; a recorded one that is gone is not."""
    directory = tmp_path / "copy"
    directory.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    records = [{**r, "pid": int(gone.stdout), "start": 1} if r["name"] == "mlflow-server" else r
               for r in stack.records]
    stack_procs.write_records(directory, records)
    (directory / "secrets.json").write_text((stack.dir / "secrets.json").read_text())
    status = bp_stack("status", "--dir", str(directory))
    rows = {line.split()[0]: line for line in status.stdout.splitlines()}
    assert status.returncode == 0, status.stdout
    assert "up, not the recorded process" in rows["mlflow-server"] and " up " in rows["worker-1"]
    stack_procs.write_records(directory, [{**records[1], "health": "http://127.0.0.1:1/health"}])
    status = bp_stack("status", "--dir", str(directory))
    assert status.returncode == 1 and " down " in status.stdout, status.stdout


def test_the_prefect_api_refuses_strangers(stack, tmp_path):
    """Without its auth string no one can submit work, and a web page of another origin cannot call it."""
    api, auth = stack.prefect_api, stack.auth_string
    marker = tmp_path / "pwned"
    assert get(f"{api}/flow_runs/filter", body={})[0] == 401
    assert get(f"{api}/flow_runs/filter", "bp:not-the-auth-string", body={})[0] == 401
    status, flow = get(f"{api}/flows/", body={"name": "stranger"})
    assert status == 401
    step = {"prefect.deployments.steps.run_shell_script": {"script": f"touch {marker}"}}  # ran on a worker, once
    deployment = {"name": "stranger", "flow_id": "00000000-0000-0000-0000-000000000000", "work_pool_name": "bp",
                  "pull_steps": [step]}
    assert get(f"{api}/deployments/", body=deployment)[0] == 401
    status, flows = get(f"{api}/flows/filter", auth, body={"flows": {"name": {"any_": ["stranger"]}}})
    assert status == 200 and flows == []  # nothing was made
    # a browser's preflight from another origin is refused; the UI's own origin is allowed
    for origin, allowed in (("http://evil.example", False), (stack.prefect_api.removesuffix("/api"), True)):
        request = urllib.request.Request(f"{api}/flow_runs/filter", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = response.status, response.headers.get("access-control-allow-origin")
        except urllib.error.HTTPError as exc:
            answer = exc.code, exc.headers.get("access-control-allow-origin")
        assert answer == ((200, origin) if allowed else (400, None)), (origin, answer)
    # MLflow likewise refuses other origins and Host headers it does not serve
    request = urllib.request.Request(f"{stack.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1",
                                     headers={"Host": "evil.example:5000"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    time.sleep(3)  # a worker polls every 2 s: had anything been queued, it would have run by now
    assert not marker.exists()


def test_sqlite_with_auth_up_status_down(tmp_path):
    directory = tmp_path / "stack"
    prefect_port, mlflow_port = free_port(), free_port()
    env = {"BP_MLFLOW_ADMIN_PASSWORD": MLFLOW_PASSWORD, "BP_PREFECT_AUTH_STRING": PREFECT_AUTH}
    bystander = unrelated_process()
    started = time.monotonic()
    try:
        up = bp_stack("up", "--dir", str(directory), "--workers", "1", "--auth", "--scheduler-port", str(free_port()),
                      "--prefect-port", str(prefect_port), "--mlflow-port", str(mlflow_port), env=env)
        up_seconds = time.monotonic() - started
        records = json.loads((directory / stack_procs.PIDS_FILE).read_text())["services"] if up.returncode == 0 else []
        try:
            assert up.returncode == 0, up.stderr
            lines = up.stdout.strip().splitlines()
            api, tracking = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{mlflow_port}"
            assert lines[-5:] == [f"export PREFECT_API_URL={api}", f"export MLFLOW_TRACKING_URI={tracking}",
                                  f"export PREFECT_API_AUTH_STRING={PREFECT_AUTH}",
                                  "export MLFLOW_TRACKING_USERNAME=admin",
                                  f"export MLFLOW_TRACKING_PASSWORD={MLFLOW_PASSWORD}"]
            # the secrets given are printed for the client to export, and nowhere else but DIR/secrets.json
            elsewhere = up.stderr + "".join(p.read_text(errors="replace") for p in directory.rglob("*")
                                            if p.is_file() and p.suffix in (".ini", ".log", ".json")
                                            and p.name != "secrets.json")
            assert MLFLOW_PASSWORD not in elsewhere and PREFECT_AUTH not in elsewhere
            assert {"mlflow.db", "prefect.db", "basic_auth.db"} <= {p.name for p in directory.iterdir()}
            assert not private(directory), "the admin's password hash and every run, readable by other users"

            search = f"{tracking}/api/2.0/mlflow/experiments/search?max_results=5"
            assert get(search)[0] == 401
            assert get(search, f"admin:{MLFLOW_PASSWORD}")[0] == 200
            # bp's store check asks an authenticated endpoint (/health is open): missing or wrong, one line
            train = [*BP, "train", str(REPO / "configs" / "linreg.yaml"),
                     "--tracking-uri", tracking]
            wrong = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong-password"}
            for extra, fragment in (({}, "the server asks for credentials: set MLFLOW_TRACKING_USERNAME"),
                                    (wrong, "the server refuses the credentials given (user admin)")):
                done = bp(*train[len(BP):], env={**python_env(), **extra}, cwd=tmp_path, timeout=60)
                refused(done, f"tracking URI {tracking}: {fragment}", prefix="bp: ")
            assert get(f"{api}/flow_runs/filter", body={})[0] == 401
            # the worker authenticated to register: it got the auth string
            assert {r["worker"] for r in records if "worker" in r} <= workers_of(api, PREFECT_AUTH)

            status = bp_stack("status", "--dir", str(directory))
            # the servers, the scheduler, the worker, the sweep worker (it joined the scheduler to be up)
            assert status.returncode == 0 and status.stdout.count(" up ") == 5, status.stdout

            client = {"PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": PREFECT_AUTH}
            seen = start_slow_flow_run(tmp_path / "flow", client)
            assert seen["heartbeat"] == "30"  # flow runs on the workers send heartbeats (zombie detection)
        finally:
            down = bp_stack("down", "--dir", str(directory), "--grace", "2", timeout=180)  # DIR has the secrets
        assert down.returncode == 0, down.stderr
        # the flow run did not finish within --grace: cancelled through Prefect, its process got SIGTERM and cleaned up
        assert "cancelling 1 flow run(s)" in down.stderr, down.stderr
        assert (tmp_path / "flow" / "stopped").read_text() == "TerminationSignal"
        with sqlite3.connect(directory / "prefect.db") as db:
            assert db.execute("SELECT state_type FROM flow_run").fetchall() == [("CANCELLED",)]
        with sqlite3.connect(directory / "mlflow.db") as db:  # the flow logged with the worker's credentials
            statuses = db.execute("SELECT status FROM runs WHERE run_uuid = ?", (seen["run_id"],)).fetchall()
        assert statuses == [("FAILED",)]  # MLflow's `with start_run()` saw the TerminationSignal: never RUNNING
        stopped = [line.split()[0] for line in down.stdout.splitlines()]
        assert stopped == ["worker-1", "sweep-worker-1", "prefect-server", "mlflow-server", "scheduler"]
        assert not [r for r in records if stack_procs.group(r)]
        assert bystander.poll() is None  # not ours: still running
        assert not (directory / stack_procs.PIDS_FILE).exists()
        assert bp_stack("status", "--dir", str(directory)).returncode == 1
        print(f"sqlite --auth stack: up {up_seconds:.1f} s")
    finally:
        bystander.kill()
        bystander.wait()


SLOW_FLOW = """
import json
import os
import time
from pathlib import Path

import mlflow
from prefect import flow


@flow
def slow(seconds: int = 300):
    here = Path.cwd()  # the deployment's working_dir
    try:
        with mlflow.start_run() as run:
            seen = {"run_id": run.info.run_id, "heartbeat": os.environ.get("PREFECT_FLOWS_HEARTBEAT_FREQUENCY")}
            (here / "started").write_text(json.dumps(seen))
            for i in range(seconds):
                mlflow.log_metric("tick", i, step=i)
                time.sleep(1)
    except BaseException as exc:
        (here / "stopped").write_text(type(exc).__name__)
        raise
"""

DEPLOY_AND_RUN = """
import sys
from pathlib import Path

sys.path.insert(0, ".")
from prefect.deployments import run_deployment
from slow_flow import slow

slow.to_deployment(name="slow", work_pool_name="bp", job_variables={"working_dir": str(Path.cwd())}).apply()
run_deployment("slow/slow", timeout=0)
"""


def start_slow_flow_run(where, env: dict[str, str]) -> dict:
    """Deploy a 5-minute flow on pool bp, run it, wait until a worker executes it; its MLflow run id and heartbeat."""
    where.mkdir()
    (where / "slow_flow.py").write_text(SLOW_FLOW)
    done = subprocess.run([sys.executable, "-c", DEPLOY_AND_RUN], cwd=where, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 120
    while not (where / "started").exists():
        assert time.monotonic() < deadline, "no worker started the flow run within 120 s"
        time.sleep(0.5)
    time.sleep(0.2)  # the file is written in one call; let it land
    return json.loads((where / "started").read_text())


def test_a_service_that_fails_to_start_is_named_and_the_rest_stopped(tmp_path):
    directory = tmp_path / "stack"
    (directory / "prefect.db").mkdir(parents=True)  # SQLite cannot open a directory: the Prefect server exits
    up = bp_stack("up", "--dir", str(directory), "--workers", "0",
                  "--prefect-port", str(free_port()), "--mlflow-port", str(free_port()), timeout=300)
    assert up.returncode == 1, up.stdout + up.stderr
    first = up.stderr.split("bp: ", 1)[1].splitlines()[0]
    assert first.startswith("prefect-server exited while starting: ") and "unable to open database file" in first
    assert str(directory / "logs" / "prefect-server.log") in up.stderr
    assert not (directory / stack_procs.PIDS_FILE).exists()
    assert not processes_of(directory)  # the MLflow server it had started is gone too


@pytest.mark.parametrize("when", ["servers starting", "a worker started"])
def test_sigterm_during_up_leaves_nothing_behind(tmp_path, when):
    directory = tmp_path / "stack"
    up = subprocess.Popen([*STACK, "up", "--dir", str(directory), "--workers", "2", "--prefect-port", str(free_port()),
                           "--mlflow-port", str(free_port()), "--scheduler-port", str(free_port())],
                          cwd=REPO, env=python_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    with killed_if_left(up):
        while True:
            assert time.monotonic() < deadline and up.poll() is None, up.communicate()[1][-3000:]
            try:
                names = [r["name"] for r in stack_procs.read_records(directory)]
            except Exception:  # being written
                names = []
            if (when == "a worker started" and "worker-1" in names) or (when != "a worker started" and
                                                                         "mlflow-server" in names):
                break
            time.sleep(0.05)
        up.send_signal(signal.SIGTERM)
        out, err = up.communicate(timeout=120)
    assert up.returncode == 128 + signal.SIGTERM, err[-3000:]
    time.sleep(1)
    assert not processes_of(directory), f"left running after SIGTERM: {processes_of(directory)}"
    assert not (directory / stack_procs.PIDS_FILE).exists()


def processes_of(directory) -> list[int]:
    """Live processes whose command line or environment names ``directory`` (the stack's services do)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and stack_procs.start_time(int(entry)) is not None:
            try:
                text = open(f"/proc/{entry}/cmdline", "rb").read() + open(f"/proc/{entry}/environ", "rb").read()
            except OSError:
                continue
            if str(directory).encode() in text:
                found.append(int(entry))
    return found


def test_refusals_are_one_line_and_exit_2(tmp_path):
    directory = str(tmp_path / "stack")
    ports = ["--prefect-port", str(free_port()), "--mlflow-port", str(free_port())]
    up = ("up", "--dir", directory, *ports)

    for password in ("short-pw", " " * 12, "a b c d e f g h i j k"):  # fewer than 12 characters but spaces
        short = refused(bp_stack(*up, "--auth", env={"BP_MLFLOW_ADMIN_PASSWORD": password}),
                                 "BP_MLFLOW_ADMIN_PASSWORD", "at least 12 characters other than spaces", prefix="bp: ")
        assert password.strip() not in short or not password.strip()
    for auth in ("x", "bp:short", ":a-long-enough-secret", "bp:" + " " * 20):
        refused(bp_stack(*up, env={"BP_PREFECT_AUTH_STRING": auth}), "BP_PREFECT_AUTH_STRING", prefix="bp: ")
    many = bp_stack(*up, "--workers", "1000")
    assert many.returncode == 2 and len(many.stderr.strip().splitlines()) == 1, many.stderr
    assert f"argument --workers: 1000 workers: at most {4 * os.cpu_count()} on this machine" in many.stderr

    refused(bp_stack(*up, "--database-url", "mysql://u@127.0.0.1:3306"), "not a PostgreSQL URL", prefix="bp: ")
    line = refused(bp_stack(*up, "--database-url", "postgresql://u:hunter2secret@127.0.0.1:5432/db"),
                            "no database", prefix="bp: ")
    assert "hunter2secret" not in line and "u:***@" in line
    line = refused(bp_stack(*up, "--database-url", f"postgresql://u:hunter2secret@127.0.0.1:{free_port()}"),
                            "cannot connect", prefix="bp: ")
    assert "hunter2secret" not in line

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused(bp_stack("up", "--dir", directory, "--prefect-port", str(port), "--mlflow-port",
                                  str(free_port())), f"--prefect-port {port}", "in use", prefix="bp: ")
    refused(bp_stack("up", "--dir", directory, "--prefect-port", "4711", "--mlflow-port", "4711"),
                     "both 4711", prefix="bp: ")
    assert not os.path.exists(directory)  # refused before anything was made


def test_a_dir_that_is_a_file_or_under_one_is_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for action in ("up", "status", "down"):
        refused(bp_stack(action, "--dir", str(afile)), f"--dir {afile}: is a file", prefix="bp: ")
        refused(bp_stack(action, "--dir", str(afile / "sub")), f"--dir {afile / 'sub'}: is under {afile}",
                prefix="bp: ")


@pytest.mark.parametrize(("content", "fault"), [
    ('{"services": [{"name": "worker-1", "start": 5, "log": "x"}]}', "service 1: pid is missing"),
    ('{"services": [{"name": "w", "pid": "123", "start": 5, "log": "x"}]}', "service 1: pid '123' is not a whole"),
    ('{"services": [{"name": "w", "pid": -4, "start": 5, "log": "x"}]}', "service 1: pid -4 is no process"),
    ('[1, 2]', "not a record of bp stack"),
    ('{"services": {"name": "w"}}', '"services" is not a list'),
    ('{"services": [{"name": "w", "pid": 12', "not a record of bp stack"),  # torn
])
def test_a_hand_edited_pids_file_is_one_line(tmp_path, content, fault):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / stack_procs.PIDS_FILE).write_text(content)
    for action in ("status", "down", "up"):
        refused(bp_stack(action, "--dir", str(directory)), str(directory / stack_procs.PIDS_FILE), fault, prefix="bp: ")


CALLER = """
import json, subprocess, sys
from flows.stack import procs as stack_procs
directory, pid = sys.argv[1], int(sys.argv[2])
if pid < 0:  # record this very process, with its true start time: the group bp stack down runs in
    import os
    pid = os.getpid()
record = {"name": "worker-1", "pid": pid, "start": stack_procs.start_time(pid) or 0, "log": "/dev/null"}
open(f"{directory}/pids.json", "w").write(json.dumps({"services": [record]}))
done = subprocess.run([*sys.argv[3:], "down", "--dir", directory], capture_output=True, text=True)
print(done.returncode, done.stdout + done.stderr)
"""


@pytest.mark.parametrize("pid", [0, 1, -1])
def test_pid_0_1_or_the_callers_own_are_never_signalled(tmp_path, pid):
    """``killpg(0)`` is the caller's own group: a record of pid 0 made ``bp stack down`` kill its caller."""
    directory = tmp_path / "stack"
    directory.mkdir()
    caller = subprocess.run([sys.executable, "-c", CALLER, str(directory), str(pid), *STACK], cwd=REPO,
                            capture_output=True, text=True, timeout=120, start_new_session=True)  # a group's leader
    assert caller.returncode == 0, f"the caller was killed ({caller.returncode})"  # it lived to report bp's exit
    code, _, said = caller.stdout.partition(" ")
    if pid in (0, 1):
        assert code == "2" and f"pid {pid} is no process bp stack started" in said, said
    else:
        assert code == "0" and "worker-1" in said and "was not running" in said, said


def test_running_stack_is_refused_and_a_reused_pid_left_alone(tmp_path):
    directory = tmp_path / "stack"
    directory.mkdir()
    bystander = unrelated_process()
    try:
        # a live recorded process: a second `up` in the same DIR is refused
        stack_procs.write_records(directory, [record_of(bystander, "prefect-server")])
        refused(bp_stack("up", "--dir", str(directory), "--prefect-port", str(free_port()),
                                  "--mlflow-port", str(free_port())), "already runs", "bp stack down", prefix="bp: ")
        status = bp_stack("status", "--dir", str(directory))
        assert status.returncode == 0 and " up " in status.stdout
        # the same pid with another start time is another process (the kernel reused the pid): never signalled
        stack_procs.write_records(directory, [record_of(bystander, "worker-1", start=1)])
        down = bp_stack("down", "--dir", str(directory))
        assert down.returncode == 0 and "was not running" in down.stdout, down.stdout + down.stderr
        time.sleep(0.2)
        assert bystander.poll() is None
        nothing = bp_stack("status", "--dir", str(directory))
        assert nothing.returncode == 1 and "no stack recorded" in nothing.stdout
    finally:
        bystander.send_signal(signal.SIGKILL)
        bystander.wait()


def test_parser_defaults():
    import argparse

    from flows.stack.parser import add_parser

    parser = argparse.ArgumentParser(prog="bp")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["stack", "up"])
    assert (str(args.dir), args.workers, args.database_url, args.prefect_port, args.mlflow_port, args.auth,
            args.data_root) == (".bp-stack", 1, None, 4200, 5000, False, None)
    assert parser.parse_args(["stack", "down"]).action == "down"
    assert parser.parse_args(["stack", "status", "--dir", "x"]).dir.name == "x"
