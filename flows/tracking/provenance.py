"""Where a run was made: the git commit of the checkout and the environment (packages, BLAS threads)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from flows.tracking import tags as tag

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE")


PACKAGES = ("bp-pipeline", "numpy", "pandas", "pydantic", "mlflow", "prefect", "matplotlib")


def environment() -> dict:
    """What a re-run must match to give the same numbers: interpreter, packages, BLAS, threads."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": {name: installed(name) for name in PACKAGES},
        "blas": {key: blas.get(key) for key in ("name", "version", "openblas configuration")},
        "thread_pools": _thread_pools(),
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def _thread_pools() -> list[dict] | None:
    """BLAS/OpenMP pools and their thread counts, when threadpoolctl is installed."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    keys = ("user_api", "internal_api", "version", "num_threads")
    return [{k: pool.get(k) for k in keys} for pool in threadpoolctl.threadpool_info()]


def git_tags(here: Path | None = None) -> dict[str, str]:
    """The commit of the bp-pipeline checkout this code runs from (or of ``here``), if it runs from one.

    Read without git's optional locks: a plain ``git status`` rewrites the index under ``.git/index.lock``, which
    a bp killed meanwhile (or the timeout below) would leave behind, failing the user's next git command; and
    several bp starting together would hold it against the user's own git.
    """
    here = here or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    if not commit:
        return {}
    return {"mlflow.source.git.commit": commit, tag.GIT_DIRTY: str(bool(dirty)).lower()}
