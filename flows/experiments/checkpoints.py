"""A network run's checkpoint in its MLflow run: the latest training state, one artifact, written off the training
thread; and reading it back for ``bp resume``.

The artifact is ``checkpoint/state.npz`` (``bpcore.train.checkpoint``'s format: arrays and JSON, no pickle), replaced as
training goes on: every ``trainer.checkpoint_every`` epochs, and on a stop (Ctrl-C, a signal, a sweep that ended,
an error) the state of the last finished epoch, whatever the setting. A process killed outright keeps the
checkpoint written last; one killed while writing it may leave it cut short, and its run then resumes from the
start (still ending as an uninterrupted run would, only later).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from bpcore.errors import one_line
from bpcore.train import checkpoint
from bpcore.train.checkpoint import CheckpointError, TrainingState

FOLDER, NAME = "checkpoint", "state.npz"
ARTIFACT = f"{FOLDER}/{NAME}"
STOP_WRITE_SECONDS = 5.0  # how long a stopped training waits for its last checkpoint to be written


class Keeper:
    """``fit_network``'s ``on_checkpoint`` for run ``run_id``: keeps the newest state handed in, writes every
    ``every``-th to the run on a thread of its own (a newer one replaces a state still waiting), so an epoch
    never waits for the tracking store."""

    def __init__(self, mc: MlflowClient, run_id: str, every: int, warn=None):
        self.mc, self.run_id, self.every, self.warn = mc, run_id, every, warn
        self.latest: TrainingState | None = None  # the newest state training handed in
        self.waiting: TrainingState | None = None  # the next state to write
        self.written = 0  # the epoch of the checkpoint the run holds (0: none written here)
        self.busy = self.closing = False
        self.failure: str | None = None
        self.cond = threading.Condition()
        self.thread: threading.Thread | None = None

    def __call__(self, state: TrainingState) -> None:
        self.latest = state
        if state.epoch % self.every == 0:
            self._queue(state)

    def stopped(self, timeout: float = STOP_WRITE_SECONDS) -> None:
        """Training was stopped: write the last finished epoch's state unless the run holds it, waiting at most
        ``timeout`` s (a stop must not wait on a store that does not answer)."""
        if self.latest is not None and self.latest.epoch > self.written:
            self._queue(self.latest)
        self._drain(timeout)

    def close(self, timeout: float = STOP_WRITE_SECONDS) -> None:
        """Training is over: a state still waiting is not needed; the one being written is waited for, so nothing
        writes to the run after it ends."""
        with self.cond:
            self.waiting = None
        self._drain(timeout)

    def _queue(self, state: TrainingState) -> None:
        with self.cond:
            self.waiting = state
            if self.thread is None:
                self.thread = threading.Thread(target=self._work, name="bp-checkpoint", daemon=True)
                self.thread.start()
            self.cond.notify_all()

    def _drain(self, timeout: float) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
            self.cond.wait_for(lambda: self.waiting is None and not self.busy, timeout)

    def _work(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.waiting is not None or self.closing)
                if self.waiting is None:
                    return
                state, self.waiting, self.busy = self.waiting, None, True
            try:
                self._write(state)
            except Exception as exc:  # a checkpoint is what a resumption saves; the training itself goes on
                if self.failure is None and self.warn is not None:
                    self.warn(f"checkpoint of epoch {state.epoch} not written to run {self.run_id}: "
                              f"{one_line(exc, named=True)}")
                self.failure = self.failure or str(exc)
            else:
                self.written = max(self.written, state.epoch)
            finally:
                with self.cond:
                    self.busy = False
                    self.cond.notify_all()

    def _write(self, state: TrainingState) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / NAME
            checkpoint.write(state, path)
            self.mc.log_artifact(self.run_id, str(path), FOLDER)


def latest(mc: MlflowClient, run_id: str, sizes: list[int], dtype: np.dtype) -> tuple[TrainingState | None, str]:
    """The checkpoint run ``run_id`` holds, read for a network of ``sizes`` and ``dtype``, and what to say of it;
    (None, why) when there is none to go on from (none written, or one cut short): training starts over."""
    if not any(item.path == ARTIFACT for item in mc.list_artifacts(run_id, FOLDER)):
        return None, f"run {run_id} holds no checkpoint: training from the start"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(mc.download_artifacts(run_id, ARTIFACT, tmp)).read_bytes()
        state = checkpoint.read(data, sizes, dtype)
    except (CheckpointError, MlflowException, OSError) as exc:
        return None, f"run {run_id}: its checkpoint cannot be read ({exc}): training from the start"
    return state, f"run {run_id}: resuming after epoch {state.epoch}"
