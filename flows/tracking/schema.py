"""MLflow's schema in an SQLite tracking store, read without MLflow (slow to import, before Prefect could start):
whether it is complete at the installed MLflow's newest migration, and why MLflow could not make or migrate it
(a creation a killed process left half made, a newer MLflow's stamp)."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from pathlib import Path

from bpcore.errors import one_line


def problem(path: str, failed: BaseException | None = None) -> str | None:
    """Why MLflow cannot make or migrate its schema in the SQLite file at ``path`` (``failed``: it just tried);
    None when nothing says it cannot."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None if failed is None else f"MLflow could not create its store in {path} ({_first_line(failed)})"
    try:
        with contextlib.closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)) as db:
            tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            stamps = ({v for (v,) in db.execute("SELECT version_num FROM alembic_version")}
                      if "alembic_version" in tables else set())
            runs = db.execute("SELECT count(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.Error as exc:
        return f"cannot read {path} as an SQLite database ({exc})"
    leftovers = sorted(name for name in tables if name.startswith("_alembic_tmp_"))
    unknown = stamps - _revisions()
    if unknown:
        return (f"{path} is stamped with MLflow schema revision {', '.join(sorted(unknown))}, which the installed "
                "MLflow does not know: a newer MLflow made it; use that MLflow, or another tracking URI")
    if not leftovers and failed is None:
        return None
    why = f" ({', '.join(leftovers)} left over)" if leftovers else f" ({_first_line(failed)})"
    if runs == 0:
        fix = f"it holds no runs: delete {path} (and {path}.lock) and bp creates it again"
    else:
        fix = (f"it holds {runs} run(s): copy it somewhere safe, then restore it from a backup or try "
               f"mlflow db upgrade sqlite:///{os.path.abspath(path)}")
    return f"{path} is an MLflow store whose creation or upgrade was interrupted{why}; {fix}"


def _first_line(exc: BaseException | None) -> str:
    return one_line(getattr(exc, "orig", None) or exc, 200)


def has_schema(path: str) -> bool:
    """True if the SQLite file at ``path`` holds MLflow's schema at its newest migration.

    MLflow stamps each migration as it goes (alembic), so a store stamped with the installed MLflow's
    head revision is complete, and one another process is creating or migrating right now is not.
    Read-only, without waiting, and without importing MLflow (slow to import, before Prefect could start).
    """
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True,
                                                timeout=0)) as db:
            stamped = {version for (version,) in db.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.Error:  # no such table: never created; locked: being created
        return False
    return bool(stamped) and stamped == _heads()


def _heads() -> set[str]:
    """The head revision(s) of the installed MLflow's migrations, read from its migration files' headers."""
    revisions, parents = migrations()
    return revisions - parents


def _revisions() -> set[str]:
    """Every schema revision the installed MLflow's migrations know."""
    return migrations()[0]


@functools.cache
def migrations() -> tuple[set[str], set[str]]:
    """(revisions, the revisions some migration starts from) of the installed MLflow's migration files."""
    import importlib.util
    import re

    spec = importlib.util.find_spec("mlflow")
    versions = Path(next(iter(spec.submodule_search_locations))) / "store" / "db_migrations" / "versions"
    revisions, parents = set(), set()
    for script in versions.glob("*.py"):
        text = script.read_text(encoding="utf-8")
        revisions |= set(re.findall(r"^revision\s*=\s*[\"'](\w+)[\"']", text, re.M))
        for line in re.findall(r"^down_revision\s*=\s*(.+)$", text, re.M):
            parents |= set(re.findall(r"[\"'](\w+)[\"']", line))
    return revisions, parents
