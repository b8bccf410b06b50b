"""Where this process may read data: only under ``BP_DATA_ROOT`` when that is set.

A worker runs configs that other people submit. With a data root (compose sets ``/data``, ``bp
stack up --data-root DIR`` sets its own) a ``data.path`` elsewhere on the machine
(``/proc/self/environ``, ``/etc/shadow``) fails the run naming the root, before the file is
opened. Unset, as for a local ``bp train``, every path may be read.
"""

from __future__ import annotations

import os
from pathlib import Path

from bpcore.errors import DataError, excerpt

VARIABLE = "BP_DATA_ROOT"


def data_root() -> Path | None:
    """The resolved data root, or None when ``BP_DATA_ROOT`` is unset or empty."""
    value = os.environ.get(VARIABLE, "").strip()
    return Path(value).expanduser().resolve() if value else None


def confine(path: str | Path, key: str = "data.path") -> Path:
    """``path`` resolved (symbolic links followed); a DataError naming the root when it lies outside it, or
    naming the key when the path is longer than this system's paths may be."""
    resolved = Path(path).expanduser().resolve()
    within_limits(resolved, key)
    root = data_root()
    if root is not None and not resolved.is_relative_to(root):
        raise DataError(f"{key} {path}: outside the data root {root} ({VARIABLE}): this machine reads data "
                        "only under it")
    return resolved


def within_limits(path: Path, key: str) -> None:
    """A DataError when a name in ``path`` or the whole of it is longer than the system takes (ENAMETOOLONG)."""
    name_max, path_max = _limit("PC_NAME_MAX", 255), _limit("PC_PATH_MAX", 4096)
    for part in path.parts:
        if len(os.fsencode(part)) > name_max:
            raise DataError(f"{key}: a name in the path is {len(os.fsencode(part))} bytes long, more than the "
                            f"{name_max} a file name may have here: {excerpt(part)}")
    if len(os.fsencode(str(path))) >= path_max:
        raise DataError(f"{key}: the path is {len(os.fsencode(str(path)))} bytes long, more than the "
                        f"{path_max - 1} a path may have here: {excerpt(str(path))}")


def readable_here(config) -> bool:
    """Whether this machine can read the data ``config`` names (its file or directory exists; no file: always).

    A sweep on a work pool may name data that only its workers have (compose mounts it at /data).
    """
    data = getattr(config, "data", None)
    path = getattr(data, "path", None)
    if path is None or getattr(data, "download", False):
        return True
    within_limits(Path(path).expanduser().absolute(), "data.path")  # a name no system takes: refused here
    return Path(path).expanduser().exists()


def _limit(name: str, default: int) -> int:
    try:
        return os.pathconf("/", name)
    except (OSError, ValueError):
        return default
