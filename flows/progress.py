"""Training progress: a one-line bar on a terminal, and a Prefect progress artifact."""

from __future__ import annotations

import sys

from bpcore.training import EpochStats


class EpochBar:
    """``epoch 3/30 [#####.....] cost 0.1234 train 95.10% val 94.00%`` redrawn in place on stderr.

    Silent when stderr is not a terminal (logs, CI, pipes), or when ``quiet`` (a sweep's children
    train side by side: their bars would overwrite each other).
    """

    def __init__(self, total: int, stream=None, width: int = 24, quiet: bool = False):
        self.total, self.width = total, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() and not quiet

    def update(self, stats: EpochStats) -> None:
        if not self.enabled:
            return
        done = int(self.width * stats.epoch / self.total)
        val = f" val {stats.val_accuracy:.2%}" if stats.val_accuracy is not None else ""
        self.stream.write(f"\repoch {stats.epoch}/{self.total} [{'#' * done}{'.' * (self.width - done)}]"
                          f" cost {stats.cost:.4f} train {stats.train_accuracy:.2%}{val}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class PrefectProgress:
    """A progress artifact on the current Prefect task run, updated once per epoch."""

    def __init__(self, total: int, key: str, description: str):
        from prefect.artifacts import create_progress_artifact

        self.total = total
        self.id = create_progress_artifact(progress=0.0, key=key, description=description)

    def update(self, stats: EpochStats) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self.id, progress=100.0 * stats.epoch / self.total)
