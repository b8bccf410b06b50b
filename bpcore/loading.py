"""Any experiment's data, loaded through the per-process caches, and its fingerprint."""

from __future__ import annotations

from bpcore.config import Config


def fingerprint(config: Config) -> tuple[str | None, str | None]:
    """Load (or find cached) the data ``config`` trains on; returns its (source, sha256 digest).

    (None, None) for an experiment without a data file (the chain's one example is its config).
    Raises DataError naming the file at fault.
    """
    if config.kind == "linreg":
        from bpcore.data import load_line_data

        table = load_line_data(config.data, config.seed)
        return table.source, table.digest
    if config.kind == "mnist":
        from bpcore.mnist import load_mnist

        splits = load_mnist(config.data, config.seed, config.trainer.dtype)
        return splits.source, splits.digest
    return None, None
