"""Any experiment's data, loaded through its kind's loader (and its per-process cache), and its fingerprint."""

from __future__ import annotations

from bpcore import kinds
from bpcore.config.models import Config


def load(config: Config):
    """The data ``config`` trains on, as its kind's loader returns it. Raises DataError naming the file."""
    return kinds.get(config.kind).load(config)


def fingerprint(config: Config) -> tuple[str, str]:
    """Load (or find cached) the data ``config`` trains on; returns its (source, sha256 digest)."""
    data = load(config)
    return data.source, data.digest


def readable_here(config: Config) -> bool:
    """Whether this machine can read the data ``config`` names (its file or directory exists; no file: always).

    A sweep on a work pool may name data that only its workers have (compose mounts it at /data).
    """
    from pathlib import Path

    from bpcore.dataroot import within_limits

    data = getattr(config, "data", None)
    path = getattr(data, "path", None)
    if path is None or getattr(data, "download", False):
        return True
    within_limits(Path(path).expanduser().absolute(), "data.path")  # a name no system takes: refused here
    return Path(path).expanduser().exists()
