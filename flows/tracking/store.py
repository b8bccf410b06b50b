"""The MLflow tracking store: checked and prepared before Prefect starts.

- ``check_store``: an unusable tracking URI is one line naming it, within seconds, instead of
  minutes of client retries and a page of tracebacks.
- ``ensure_store``: a new SQLite store gets MLflow's tables once, under a file lock, however many
  ``bp`` processes start on it together (MLflow's own table creation races and breaks the file).

Only ``ensure_store`` imports MLflow; ``check_store`` needs the standard library alone. Reaping runs
whose process is gone is ``flows.tracking.reap``.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bpcore.errors import InputError
from flows.runtime.http import basic, exchange, redacted
from flows.tracking import schema

# SQLAlchemy scheme -> port used when the URI names none
_DB_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}
# SQLAlchemy scheme -> the module it imports; a missing one is otherwise a traceback from deep in SQLAlchemy
_DRIVERS = {
    "postgresql": "psycopg2", "postgresql+psycopg2": "psycopg2", "postgresql+psycopg": "psycopg",
    "postgresql+pg8000": "pg8000", "mysql": "MySQLdb", "mysql+mysqldb": "MySQLdb", "mysql+pymysql": "pymysql",
    "mssql": "pyodbc", "mssql+pyodbc": "pyodbc", "mssql+pymssql": "pymssql",
}
_SQLITE_HEADER = b"SQLite format 3\x00"
# Several bp waiting on one that creates the schema (a few seconds); longer means that one is stuck.
_LOCK_TIMEOUT_S = 300


def check_store(uri: str, timeout: float = 5.0) -> None:
    """Return None if the tracking store at ``uri`` looks usable; raise InputError (one line naming it) if not.

    Cheap: no MLflow import, creates nothing, at most one connection (HTTP GET /health, or a TCP connect to
    a database server) bounded by ``timeout``; name resolution is left to the system's own limits.
    """
    try:  # as MLflow reads it: these bare words are schemes, not directory names
        scheme = uri if uri in ("databricks", "databricks-uc", "uc") else urlsplit(uri).scheme.lower()
    except ValueError as exc:  # an unclosed [IPv6 address]
        raise InputError(f"tracking URI {redacted(uri)}: not a valid URL ({exc})") from None
    if not uri.strip():
        problem = "it is empty"
    elif scheme == "sqlite":
        problem = _sqlite_problem(sqlite_path(uri)) if uri[6:9] == "://" else "expected sqlite:///<file>"
    elif scheme in ("http", "https"):
        problem = _http_problem(uri, timeout)
    elif scheme.partition("+")[0] in _DB_PORTS:
        problem = _database_problem(uri, scheme, timeout)
    elif scheme in ("", "file"):
        # MLflow deprecates the file store but still accepts it; it creates the directory on first use
        problem = _directory_problem(urllib.request.url2pathname(urlsplit(uri).path) if scheme else uri)
    elif scheme == "databricks":
        problem = None  # credentials come from a profile or the environment: nothing cheap to check
    elif scheme in ("databricks-uc", "uc"):
        problem = "Unity Catalog is a model registry, not a tracking store"
    elif scheme in _plugin_schemes():
        problem = None
    else:
        hint = " (SQLAlchemy spells it postgresql://)" if scheme == "postgres" else ""
        problem = (f"unknown tracking URI scheme '{scheme}'{hint}; expected sqlite:///, http(s)://, postgresql://, "
                   "mysql://, mssql://, databricks, file: or a directory")
    if problem:
        raise InputError(f"tracking URI {redacted(uri)}: {problem}")


def sqlite_path(uri: str) -> str | None:
    """The database file of a ``sqlite:///`` URI (relative to the cwd, as SQLAlchemy opens it); None if in memory."""
    path = unquote(uri.split("://", 1)[1].partition("?")[0])
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db -> rel.db, sqlite:////abs -> /abs
    return None if path in ("", ":memory:") else path


def _sqlite_problem(path: str | None) -> str | None:
    """Why SQLite could not write the database at ``path``, or None."""
    if path is None:
        return None
    from bpcore.data.root import within_limits
    from bpcore.errors import DataError

    try:
        within_limits(Path(os.path.abspath(path)), "its database file")
    except DataError as exc:
        return str(exc)
    if os.path.isdir(path):
        return f"{path} is a directory"
    if os.path.exists(path):
        try:
            with open(path, "r+b") as f:  # opened for writing, nothing written
                head = f.read(len(_SQLITE_HEADER))
        except OSError as exc:
            return f"cannot write the database {path} ({exc.strerror})"
        if head and head != _SQLITE_HEADER:
            return f"{path} is not an SQLite database"
    # SQLite writes its journal beside the file, and MLflow creates missing parent directories
    return _directory_problem(os.path.dirname(os.path.abspath(path)))


def _directory_problem(path: str) -> str | None:
    """Why ``path`` is not, and cannot be made, a directory we can write in; None if it can."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):  # unnamed where the OS allows: nothing is left behind
            pass
    except OSError as exc:
        return f"cannot write in {existing} ({exc.strerror or exc})"
    return None


def _http_problem(uri: str, timeout: float) -> str | None:
    """Why the MLflow server at ``uri`` does not answer GET /health, or None if it does."""
    url = uri.rstrip("/") + "/health"
    try:
        context = _tls_context(uri)
    except OSError as exc:  # a certificate file named in the environment is missing or unreadable
        return f"cannot load the TLS certificates MLFLOW_TRACKING_*_CERT_PATH names ({exc.strerror or exc})"
    status, _, failed = exchange("GET", url, timeout=timeout, context=context)
    if failed is not None:
        return f"MLflow server not reachable ({_os_reason(failed, timeout)})"
    if status in (401, 403):  # an authenticating proxy in front: the API call below says more
        return _login_problem(uri, timeout, context)
    if status >= 400:
        return f"GET {url} answered HTTP {status} {http.client.responses.get(status, '')} (is this an MLflow server?)"
    return _login_problem(uri, timeout, context)


def _login_problem(uri: str, timeout: float, context) -> str | None:
    """Why the server refuses this client's credentials (its /health answers anyone), or None.

    One real API call, with what MLflow's client would send: MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD (basic auth), or MLFLOW_TRACKING_TOKEN.
    """
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    headers = basic(f"{user}:{password}") if user and password else {}
    if token and not headers:
        headers = {"Authorization": f"Bearer {token}"}
    status, _, _ = exchange("GET", uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", headers,
                            timeout=timeout, context=context)
    if status == 401 and not headers:
        return ("the server asks for credentials: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "(or MLFLOW_TRACKING_TOKEN)")
    if status == 401:
        return f"the server refuses the credentials given ({'user ' + user if user else 'MLFLOW_TRACKING_TOKEN'})"
    if status == 403:
        return f"the server does not let {'user ' + user if user else 'this client'} read experiments"
    return None  # answered, or not at all a moment after /health did: MLflow's client reports it, with its retries


def _tls_context(uri: str) -> ssl.SSLContext | None:
    """The TLS settings MLflow's client would use for ``uri`` (its MLFLOW_TRACKING_* variables)."""
    if not uri.lower().startswith("https"):
        return None
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        return insecure
    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    if client_cert := os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH"):
        context.load_cert_chain(client_cert)
    return context


def _database_problem(uri: str, scheme: str, timeout: float) -> str | None:
    """Why the database server of ``uri`` cannot be used (driver missing, port closed), or None."""
    driver = _DRIVERS.get(scheme)
    if driver and not _importable(driver):
        return f"its database driver {driver} is not installed"
    parts = urlsplit(uri)
    try:
        port = parts.port or _DB_PORTS[scheme.partition("+")[0]]
    except ValueError:
        return "its port is not a number"
    if not parts.hostname:
        return None  # a Unix socket or the driver's default: left to the driver
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"database server not reachable at {parts.hostname}:{port} ({_os_reason(exc, timeout)})"
    return None


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # its parent package is missing
        return False


def _os_reason(exc: BaseException, timeout: float) -> str:
    """A few words for why a connection failed."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {exc.verify_message}"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _plugin_schemes() -> set[str]:
    """Schemes that installed MLflow plugins register as tracking stores."""
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="mlflow.tracking_store")}


def exists(uri: str) -> bool:
    """Whether the store is there: for SQLite, whether its file exists (any other store is a server or a database)."""
    if urlsplit(uri).scheme.lower() != "sqlite":
        return True
    path = sqlite_path(uri)
    return path is not None and os.path.isfile(path)


def ensure_store(uri: str) -> None:
    """Give a ``sqlite:///`` store MLflow's schema, once, before any run opens it; returns None.

    Several ``bp`` starting together on a new file would each create the tables (and all fail); here the
    first to take ``<db>.lock`` creates them as MLflow itself would (same default artifact root: the
    client's ``./mlruns`` at the cwd), and the others find them made. The lock file is left in place.
    Other URIs: nothing to do (a server, or whoever runs the database, migrates those).
    """
    if urlsplit(uri).scheme.lower() != "sqlite" or (path := sqlite_path(uri)) is None or schema.has_schema(path):
        return
    from filelock import FileLock, Timeout

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)  # the lock lives beside the db
    try:
        with FileLock(path + ".lock", timeout=_LOCK_TIMEOUT_S):
            if not schema.has_schema(path):  # another bp may have made it while we waited
                _build(uri, path)
    except Timeout:
        raise InputError(f"tracking URI {uri}: another process has held {path}.lock for {_LOCK_TIMEOUT_S} s "
                         "while creating the store; is it stuck?") from None


def _build(uri: str, path: str) -> None:
    """MLflow's schema made, or brought to this MLflow's migrations; an InputError saying what to do when the file
    holds a schema MLflow cannot take there (one a killed process left half made, or a newer MLflow's)."""
    problem = schema.problem(path)
    if problem is None:
        from mlflow import MlflowClient

        try:
            MlflowClient(uri)  # building the client builds the store: tables, migrations, experiment 0
            return
        except Exception as exc:  # SQLAlchemy's "table ... already exists", alembic's errors: all one to the user
            problem = schema.problem(path, failed=exc)
    raise InputError(f"tracking URI {uri}: {problem}")


