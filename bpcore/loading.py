"""Any experiment's data, loaded through its kind's loader (and its per-process cache), and its fingerprint."""

from __future__ import annotations

from bpcore import kinds
from bpcore.config import Config


def load(config: Config):
    """The data ``config`` trains on, as its kind's loader returns it. Raises DataError naming the file."""
    return kinds.get(config.kind).load(config)


def fingerprint(config: Config) -> tuple[str, str]:
    """Load (or find cached) the data ``config`` trains on; returns its (source, sha256 digest)."""
    data = load(config)
    return data.source, data.digest
