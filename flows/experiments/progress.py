"""Training progress: a one-line ``rich`` bar on a terminal, and a Prefect progress artifact."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

from bpcore.train.sgd import EpochStats


def _isatty(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


class EpochBar:
    """``epoch  3/30 ━━━━━━━━━╺━━━━━ cost 0.1234 train 95.10% val 94.00%`` redrawn in place on stderr.

    Drawn with ``rich.progress``, one bar per training, started at the first finished epoch and
    ended by ``close``. Silent when stderr (or ``stream``) is not a terminal (logs, CI, pipes, even
    with ``FORCE_COLOR`` set), or when ``quiet`` (a sweep's children train side by side: their bars
    would overwrite each other). ``console``, if given, is drawn on instead of ``stream``, when it
    reports itself a terminal.
    """

    def __init__(self, total: int, stream=None, width: int = 24, quiet: bool = False,
                 console: Console | None = None):
        self.total, self.width = total, width
        if quiet:
            console = None
        elif console is None:
            stream = stream if stream is not None else sys.stderr
            # the stream's own answer: rich alone would believe FORCE_COLOR in a CI log
            console = Console(file=stream, force_terminal=True) if _isatty(stream) else None
        elif not console.is_terminal:
            console = None
        self.console = console
        self.enabled = self.console is not None
        self._progress: Progress | None = None
        self._task = None

    def update(self, stats: EpochStats) -> None:
        if not self.enabled:
            return
        started = self._progress is not None
        if not started:  # begun here, inside the caller's try: close() always follows
            self._progress = Progress(
                TextColumn("{task.fields[epoch]}"),
                BarColumn(bar_width=self.width),
                TextColumn("{task.fields[cost]}"),
                TextColumn("{task.fields[train]}"),
                TextColumn("{task.fields[val]}"),
                console=self.console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False,
            )
            self._task = self._progress.add_task("training", total=self.total)
        digits = len(str(self.total))
        self._progress.update(
            self._task, completed=stats.epoch,
            epoch=f"epoch {stats.epoch:>{digits}}/{self.total}",
            cost=f"cost {stats.cost:.4f}",
            train=f"train {stats.train_accuracy:.2%}",
            val=f"val {stats.val_accuracy:.2%}" if stats.val_accuracy is not None else "",
        )
        if started:
            self._progress.refresh()
        else:
            self._progress.start()  # its first render

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()  # the last render stays, followed by a newline; the cursor comes back
            self._progress = None


class PrefectProgress:
    """A progress artifact on the current Prefect task run, updated once per epoch."""

    def __init__(self, total: int, key: str, description: str):
        from prefect.artifacts import create_progress_artifact

        self.total = total
        self.id = create_progress_artifact(progress=0.0, key=key, description=description)

    def update(self, stats: EpochStats) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self.id, progress=100.0 * stats.epoch / self.total)
