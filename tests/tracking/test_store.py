"""flows.tracking.store: the tracking URI checked up front, a new SQLite store created once, orphaned runs reaped."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock
from support import REPO, python_env

from bpcore.errors import InputError
from flows.runtime.http import redacted
from flows.tracking import schema, store
from flows.tracking.reap import reap
from flows.tracking.store import check_store, ensure_store


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_error(uri: str, **kwargs) -> tuple[str, float]:
    """The InputError message check_store raises for ``uri``, and the seconds it took."""
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        check_store(uri, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"tracking URI {redacted(uri)}: ")
    return message, time.perf_counter() - start


@pytest.fixture(scope="module")
def fake_server():
    """An HTTP server on 127.0.0.1 answering /health as MLflow does, and other paths as other servers might."""
    answers = {"/health": 200, "/prefix/health": 200, "/auth/health": 401, "/broken/health": 500}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            code = answers.get(self.path, 404)
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"OK" if code == 200 else b"no")

        def log_message(self, *args):  # keep pytest's output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def no_proxy(monkeypatch):
    # a proxy from the environment must not stand between the test and its server on 127.0.0.1
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# --- check_store ---------------------------------------------------------------------------------------------

def test_closed_port_is_refused_at_once(no_proxy):
    uri = f"http://127.0.0.1:{closed_port()}"
    message, seconds = check_error(uri)
    assert message == f"tracking URI {uri}: MLflow server not reachable (connection refused)"
    assert seconds < 2


def test_mlflow_server_health_answers(fake_server, no_proxy):
    check_store(fake_server)
    check_store(fake_server + "/")
    check_store(fake_server + "/prefix")  # a server behind a path prefix serves <prefix>/health
    check_store(fake_server + "/auth")  # 401: an authenticating proxy; credentials are MLflow's business


def test_other_answers_name_the_status(fake_server, no_proxy):
    message, _ = check_error(fake_server + "/broken")
    assert "answered HTTP 500" in message
    message, _ = check_error(fake_server + "/elsewhere")
    assert "answered HTTP 404" in message and "is this an MLflow server?" in message


def test_silent_server_times_out(no_proxy):
    with socket.socket() as silent:  # the kernel completes the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        message, seconds = check_error(uri, timeout=0.3)
    assert message.endswith("MLflow server not reachable (no answer within 0.3 s)")
    assert seconds < 2


def test_missing_certificate_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tmp_path / "none.pem"))
    message, _ = check_error(f"https://127.0.0.1:{closed_port()}")
    assert message.endswith("MLFLOW_TRACKING_*_CERT_PATH names (No such file or directory)")


def test_sqlite_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_store("sqlite:///relative.db")
    check_store(f"sqlite:///{tmp_path / 'absolute.db'}")
    check_store(f"sqlite:///{tmp_path / 'new' / 'dir' / 'm.db'}")  # MLflow creates missing parent directories
    check_store("sqlite:///:memory:")
    assert list(tmp_path.iterdir()) == []  # checking creates nothing

    message, seconds = check_error("sqlite:////sys/m.db")
    assert message.startswith("tracking URI sqlite:////sys/m.db: cannot write in /sys") and seconds < 1
    (tmp_path / "adir.db").mkdir()
    assert check_error("sqlite:///adir.db")[0].endswith("adir.db is a directory")
    (tmp_path / "text.db").write_text("not a database\n")
    assert check_error("sqlite:///text.db")[0].endswith("text.db is not an SQLite database")
    assert check_error("sqlite:relative.db")[0].endswith("expected sqlite:///<file>")


def test_existing_store_passes(tmp_path):
    import sqlite3

    sqlite3.connect(tmp_path / "m.db").execute("CREATE TABLE t (x)").connection.commit()
    check_store(f"sqlite:///{tmp_path / 'm.db'}")


def test_database_servers_are_probed(monkeypatch):
    monkeypatch.setitem(store._DRIVERS, "postgresql", "sqlite3")  # stands in for psycopg2, not installed here
    monkeypatch.setitem(store._DRIVERS, "mysql+pymysql", "sqlite3")
    port = closed_port()
    message, seconds = check_error(f"postgresql://127.0.0.1:{port}/bp")
    assert message.endswith(f"database server not reachable at 127.0.0.1:{port} (connection refused)")
    assert seconds < 2
    monkeypatch.setitem(store._DB_PORTS, "mysql", port)  # the default port when the URI names none
    assert check_error("mysql+pymysql://127.0.0.1/bp")[0].endswith(f"127.0.0.1:{port} (connection refused)")
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        check_store(f"postgresql://bp:secret@127.0.0.1:{listening.getsockname()[1]}/bp")


def test_database_messages_hide_passwords_and_name_missing_drivers(monkeypatch):
    monkeypatch.setitem(store._DRIVERS, "postgresql", "bp_no_such_driver")
    uri = f"postgresql://bp:s3cret@127.0.0.1:{closed_port()}/bp"
    message, _ = check_error(uri)
    assert "s3cret" not in message and "bp:***@127.0.0.1" in message
    assert message.endswith("its database driver bp_no_such_driver is not installed")


def test_file_store_directories(tmp_path):
    check_store(f"file://{tmp_path / 'mlruns'}")
    check_store(str(tmp_path / "deeper" / "mlruns"))
    assert list(tmp_path.iterdir()) == []
    assert "cannot write in /sys" in check_error("file:///sys/bp/mlruns")[0]
    (tmp_path / "afile").write_text("")
    assert check_error(str(tmp_path / "afile" / "mlruns"))[0].endswith("afile is not a directory")


def test_unknown_schemes(monkeypatch):
    message, seconds = check_error("notascheme://x")
    assert message.startswith("tracking URI notascheme://x: unknown tracking URI scheme 'notascheme'")
    assert seconds < 1
    assert "postgresql://" in check_error("postgres://db/bp")[0]
    assert "Unity Catalog" in check_error("databricks-uc")[0]
    check_store("databricks")
    monkeypatch.setattr(store, "_plugin_schemes", lambda: {"myplugin"})
    check_store("myplugin://anything")


# --- ensure_store ----------------------------------------------------------------------------------------------

def test_other_uris_are_left_alone(tmp_path):
    ensure_store(f"http://127.0.0.1:{closed_port()}")  # no network, no error
    ensure_store("sqlite:///:memory:")
    ensure_store(f"file://{tmp_path / 'mlruns'}")
    assert list(tmp_path.iterdir()) == []


def test_new_store_is_made_as_mlflow_makes_it(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    ensure_store("sqlite:///ours.db")
    assert schema.has_schema("ours.db") and Path("ours.db.lock").exists()
    ours = MlflowClient("sqlite:///ours.db").get_experiment("0").artifact_location
    theirs = MlflowClient("sqlite:///theirs.db").get_experiment("0").artifact_location
    assert ours == theirs.replace("theirs", "ours") == str(tmp_path / "mlruns" / "0")

    # made: later calls neither take the lock nor wait for it
    monkeypatch.setattr(store, "_LOCK_TIMEOUT_S", 0.2)
    with FileLock("ours.db.lock"):
        ensure_store("sqlite:///ours.db")


def test_empty_or_foreign_file_gets_the_schema(tmp_path):
    import sqlite3

    sqlite3.connect(tmp_path / "m.db").execute("CREATE TABLE mine (x)").connection.commit()
    ensure_store(f"sqlite:///{tmp_path / 'm.db'}")
    assert schema.has_schema(str(tmp_path / "m.db"))


def test_stuck_lock_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "_LOCK_TIMEOUT_S", 0.2)
    path = tmp_path / "m.db"
    with FileLock(f"{path}.lock"), pytest.raises(InputError, match=r"held .*m\.db\.lock for 0\.2 s"):
        ensure_store(f"sqlite:///{path}")


WORKER = textwrap.dedent("""
    import os, sys, time
    import mlflow.store.db.utils  # the slow imports, before the start line, so the processes really race
    from mlflow import MlflowClient
    from flows.tracking.store import ensure_store

    uri, go = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    ensure_store(uri)
    client = MlflowClient(uri)
    run = client.create_run("0")
    client.log_metric(run.info.run_id, "cost", 1.0)
    client.set_terminated(run.info.run_id)
    client.search_registered_models()  # the model registry shares the tables: nothing more to create
    print(run.info.run_id, flush=True)
""")


@pytest.mark.slow
def test_simultaneous_starts_on_a_new_file_all_succeed(tmp_path):
    """Without ensure_store, four MLflow clients on a new file all fail (tables created four times at once)."""
    uri, go = f"sqlite:///{tmp_path / 'new.db'}", tmp_path / "go"
    env = {**python_env(), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, uri, str(go)], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(4)]
    try:
        assert all(p.stdout.readline() == "ready\n" for p in procs)
        go.touch()
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0] * 4, "\n".join(err for _, err in outs)

    from mlflow import MlflowClient

    ensure_store(uri)
    client = MlflowClient(uri)
    later = client.create_run("0")
    client.set_terminated(later.info.run_id)
    assert len(client.search_runs(["0"])) == 5


# --- reap ------------------------------------------------------------------------------------------------------

HOST = socket.gethostname()

OPENER = textwrap.dedent("""
    import os, socket, sys, time
    from mlflow import MlflowClient

    client = MlflowClient(sys.argv[1])
    run = client.create_run(sys.argv[2], tags={"bp.worker": f"{socket.gethostname()}:{os.getpid()}"})
    print(run.info.run_id, flush=True)
    time.sleep(600)
""")


@pytest.fixture(scope="module")
def reap_store(tmp_path_factory):
    """A made SQLite store for the reaping tests (its artifacts, never written, would go beside it)."""
    where = tmp_path_factory.mktemp("reap")
    uri = f"sqlite:///{where / 'runs.db'}"
    cwd = os.getcwd()
    os.chdir(where)
    try:
        ensure_store(uri)
    finally:
        os.chdir(cwd)
    return uri


def new_experiment(uri: str, name: str) -> tuple[object, str]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client, client.create_experiment(f"{name}-{time.time_ns()}")


def status(client, run_id: str) -> str:
    return client.get_run(run_id).info.status


def test_killed_process_run_is_failed_and_others_left(reap_store):
    client, exp = new_experiment(reap_store, "killed")
    opener = subprocess.Popen([sys.executable, "-c", OPENER, reap_store, exp], env=python_env(), text=True,
                              stdout=subprocess.PIPE)
    try:
        orphan = opener.stdout.readline().strip()
    finally:
        opener.send_signal(signal.SIGKILL)
        opener.wait()
    mine = client.create_run(exp, tags={"bp.worker": f"{HOST}:{os.getpid()}"}).info.run_id  # alive, started before
    elsewhere = client.create_run(exp, tags={"bp.worker": f"not-{HOST}:{opener.pid}"}).info.run_id
    untagged = client.create_run(exp).info.run_id

    reaped = dict(reap(reap_store))  # every experiment
    assert orphan in reaped
    reason = reaped[orphan]
    assert reason.startswith(f"process {HOST}:{opener.pid} that ran it is gone (found by bp at 20")
    run = client.get_run(orphan)
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert run.data.tags["bp.status"] == "failed" and run.data.tags["bp.failure_reason"] == reason
    assert [status(client, r) for r in (mine, elsewhere, untagged)] == ["RUNNING"] * 3
    assert reap(reap_store, [exp]) == []  # done once


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="pid reuse and zombies are seen through /proc")
def test_reused_pid_and_zombie_count_as_gone(reap_store):
    client, exp = new_experiment(reap_store, "reused")
    newcomer = subprocess.Popen(["sleep", "60"])  # holds a pid now; its run "began" ten minutes ago
    zombie = subprocess.Popen(["true"])  # exits and, never waited for, stays a zombie
    try:
        while Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.01)
        old = client.create_run(exp, start_time=int(time.time() * 1000) - 600_000,
                                tags={"bp.worker": f"{HOST}:{newcomer.pid}"}).info.run_id
        dead = client.create_run(exp, tags={"bp.worker": f"{HOST}:{zombie.pid}"}).info.run_id
        current = client.create_run(exp, tags={"bp.worker": f"{HOST}:{newcomer.pid}"}).info.run_id
        resumed = client.create_run(exp, start_time=int(time.time() * 1000) - 600_000,  # old, reopened just now
                                    tags={"bp.worker": f"{HOST}:{newcomer.pid}",
                                          "bp.resumed_at": str(int(time.time() * 1000) - 1000)}).info.run_id
        assert {run_id for run_id, _ in reap(reap_store, [exp])} == {old, dead}
        assert status(client, current) == status(client, resumed) == "RUNNING"
    finally:
        newcomer.kill()
        newcomer.wait()
        zombie.wait()


def test_only_the_named_experiments(reap_store):
    client, exp_a = new_experiment(reap_store, "a")
    _, exp_b = new_experiment(reap_store, "b")
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is free now
    in_b = client.create_run(exp_b, tags={"bp.worker": f"{HOST}:{gone.pid}"}).info.run_id
    assert reap(reap_store, [exp_a]) == []
    assert status(client, in_b) == "RUNNING"
    assert [run_id for run_id, _ in reap(reap_store, [exp_b])] == [in_b]


def test_missing_or_unreachable_store(tmp_path, no_proxy):
    assert reap(f"sqlite:///{tmp_path / 'none.db'}") == []
    assert list(tmp_path.iterdir()) == []  # reaping creates no store
    with pytest.raises(InputError, match="connection refused"):
        reap(f"http://127.0.0.1:{closed_port()}")


def half_made(tmp_path: Path, stamp: str, *tables: str, runs: int = 0) -> str:
    """An SQLite file as a killed store creation leaves it: stamped at ``stamp``, with ``tables`` already there."""
    import sqlite3

    path = tmp_path / "half.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (stamp,))
        db.execute("CREATE TABLE runs (run_uuid VARCHAR(32))")
        db.executemany("INSERT INTO runs VALUES (?)", [(f"r{i}",) for i in range(runs)])
        for table in tables:
            db.execute(f"CREATE TABLE {table} (id INTEGER)")
    return str(path)


def first_revision() -> str:
    """A revision of the installed MLflow's schema that later migrations start from (not its newest)."""
    revisions, parents = schema.migrations()
    return next(r for r in sorted(revisions) if r in parents)


def test_a_store_whose_creation_was_interrupted_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = half_made(tmp_path, first_revision(), "_alembic_tmp_params", "review_queues")
    with pytest.raises(InputError) as err:
        ensure_store("sqlite:///half.db")
    assert str(err.value) == ("tracking URI sqlite:///half.db: half.db is an MLflow store whose creation or upgrade "
                              "was interrupted (_alembic_tmp_params left over); it holds no runs: delete half.db (and "
                              "half.db.lock) and bp creates it again")
    os.remove(path)
    half_made(tmp_path, first_revision(), "review_queues", runs=3)  # MLflow's migration trips over its leftovers
    with pytest.raises(InputError) as err:
        ensure_store("sqlite:///half.db")
    message = str(err.value)
    assert message.startswith("tracking URI sqlite:///half.db: half.db is an MLflow store whose creation or upgrade "
                              "was interrupted (") and "\n" not in message
    assert message.endswith(f"it holds 3 run(s): copy it somewhere safe, then restore it from a backup or try mlflow "
                            f"db upgrade sqlite:///{tmp_path / 'half.db'}")


def test_a_store_a_newer_mlflow_made_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    half_made(tmp_path, "abcdef123456")
    with pytest.raises(InputError, match=r"^tracking URI sqlite:///half.db: half.db is stamped with MLflow schema "
                                         r"revision abcdef123456, which the installed MLflow does not know: a newer "
                                         r"MLflow made it; use that MLflow, or another tracking URI$"):
        ensure_store("sqlite:///half.db")


def test_a_store_path_longer_than_the_system_takes_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"its database file: a name in the path is 303 bytes long, more than the "
                                         r"255 a file name may have here: 'aaaa"):
        check_store(f"sqlite:///{tmp_path}/{'a' * 300}.db")
