"""``bp stack up --database-url``: a Postgres server on which the MLflow and Prefect servers get a database each.

The password never appears on a command line, in a printed message or in pids.json: the servers
get URLs without it and read it from PGPASSWORD (libpq for MLflow's psycopg, asyncpg for Prefect).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from bpcore.errors import InputError, one_line
from flows.runtime.http import redacted

DATABASES = ("mlflow", "prefect")
FORM = "postgresql://USER[:PASSWORD]@HOST:PORT"


@dataclass(frozen=True)
class Postgres:
    user: str
    password: str | None
    host: str
    port: int

    def url(self, database: str, driver: str) -> str:
        """``postgresql+DRIVER://USER@HOST:PORT/DATABASE``, without the password."""
        return f"postgresql+{driver}://{quote(self.user, safe='')}@{self._netloc()}/{database}"

    def redacted(self) -> str:
        secret = ":***" if self.password else ""
        return f"postgresql://{quote(self.user, safe='')}{secret}@{self._netloc()}"

    def env(self) -> dict[str, str]:
        """What a server's environment needs besides the URL."""
        return {"PGPASSWORD": self.password} if self.password else {}

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse(url: str) -> Postgres:
    """``postgresql://USER[:PASSWORD]@HOST:PORT``; anything else is an InputError naming what is wrong."""
    where = f"--database-url {redacted(url)}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{where}: {exc}; expected {FORM}") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise InputError(f"{where}: not a PostgreSQL URL; expected {FORM}")
    if not parts.hostname or not parts.username:
        raise InputError(f"{where}: needs a user and a host; expected {FORM}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InputError(f"{where}: give the server only, no database or options ({FORM}): "
                         f"bp stack uses the databases {' and '.join(DATABASES)} on it")
    password = unquote(parts.password) if parts.password is not None else None
    return Postgres(unquote(parts.username), password, parts.hostname, port or 5432)


def ensure_databases(pg: Postgres) -> list[str]:
    """Create the databases ``mlflow`` and ``prefect`` on the server when missing; the names created."""
    import psycopg
    from psycopg import sql

    try:
        conn = psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password or None,
                               dbname="postgres", connect_timeout=10, autocommit=True)
    except psycopg.Error as exc:
        reason = one_line(exc, 2000)
        if pg.password:
            reason = reason.replace(pg.password, "***")
        raise InputError(f"--database-url {pg.redacted()}: cannot connect: {reason}") from None
    created = []
    with conn:
        for name in DATABASES:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                continue
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                created.append(name)
            except psycopg.errors.DuplicateDatabase:  # created meanwhile by another bp stack up
                pass
            except psycopg.Error as exc:
                raise InputError(f"--database-url {pg.redacted()}: cannot create database {name}: "
                                 f"{one_line(exc, 2000)}") from None
    return created
