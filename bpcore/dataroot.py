"""Where this process may read data: only under ``BP_DATA_ROOT`` when that is set.

A worker runs configs that other people submit. With a data root (compose sets ``/data``, ``bp
stack up --data-root DIR`` sets its own) a ``data.path`` elsewhere on the machine
(``/proc/self/environ``, ``/etc/shadow``) fails the run naming the root, before the file is
opened. Unset, as for a local ``bp train``, every path may be read.
"""

from __future__ import annotations

import os
from pathlib import Path

from bpcore.errors import DataError

VARIABLE = "BP_DATA_ROOT"


def data_root() -> Path | None:
    """The resolved data root, or None when ``BP_DATA_ROOT`` is unset or empty."""
    value = os.environ.get(VARIABLE, "").strip()
    return Path(value).expanduser().resolve() if value else None


def confine(path: str | Path, key: str = "data.path") -> Path:
    """``path`` resolved (symbolic links followed); a DataError naming the root when it lies outside it."""
    resolved = Path(path).expanduser().resolve()
    root = data_root()
    if root is not None and not resolved.is_relative_to(root):
        raise DataError(f"{key} {path}: outside the data root {root} ({VARIABLE}): this machine reads data "
                        "only under it")
    return resolved
