"""The checkpoint keeper: writes off the training thread, the newest state wins, a stop writes the last finished
epoch's state, and a store that fails it costs a warning, not the training."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from bpcore.train import checkpoint
from flows.experiments.checkpoints import ARTIFACT, Keeper


class Store:
    """An MLflow client's ``log_artifact`` that keeps what it was given and can be held up or made to fail."""

    def __init__(self):
        self.written: list[int] = []  # the epochs of the states written, in order
        self.gate = threading.Event()
        self.gate.set()
        self.failing = False

    def log_artifact(self, run_id: str, path: str, folder: str) -> None:
        assert f"{folder}/{Path(path).name}" == ARTIFACT
        self.gate.wait(10)
        if self.failing:
            raise ConnectionError("the store is away")
        state = checkpoint.read(Path(path).read_bytes(), [2, 3], np.dtype("float32"))
        self.written.append(state.epoch)


def state(epoch: int) -> checkpoint.TrainingState:
    W, b = [np.zeros((2, 3), np.float32)], [np.zeros(3, np.float32)]
    return checkpoint.TrainingState(epoch, W, b, [], np.random.default_rng(0).bit_generator.state)


def writing(keeper: Keeper) -> None:
    """Until the keeper's writer has taken the state handed in (it is held at the store's gate)."""
    deadline = time.monotonic() + 10
    while not keeper.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keeper.busy


def test_a_newer_state_replaces_one_still_waiting_and_the_end_drops_the_rest():
    store = Store()
    keeper = Keeper(store, "run", every=1)
    store.gate.clear()  # the writer holds epoch 1 while training goes on
    keeper(state(1))
    writing(keeper)
    keeper(state(2))
    keeper(state(3))  # replaces 2, which was never written
    store.gate.set()
    deadline = time.monotonic() + 5
    while (store.written != [1, 3] or keeper.busy) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.written == [1, 3] and not keeper.busy
    store.gate.clear()
    keeper(state(4))
    writing(keeper)
    keeper(state(5))
    store.gate.set()
    keeper.close()  # the one being written is waited for, the one waiting is not needed
    assert store.written == [1, 3, 4] and not keeper.thread.is_alive()


def test_a_stop_writes_the_last_finished_epoch_whatever_the_setting():
    store = Store()
    keeper = Keeper(store, "run", every=5)
    store.gate.clear()  # the writer holds epoch 5 while training goes on (else 7 would replace it, waiting)
    for epoch in range(1, 6):
        keeper(state(epoch))
    writing(keeper)
    keeper(state(6))
    keeper(state(7))
    store.gate.set()
    keeper.stopped()
    assert store.written == [5, 7]


def test_a_failing_store_warns_once_and_training_goes_on():
    store, said = Store(), []
    store.failing = True
    keeper = Keeper(store, "run", every=1, warn=said.append)
    for epoch in (1, 2):
        keeper(state(epoch))
        keeper._drain(5)
        keeper.closing = False
    keeper.stopped()
    assert store.written == [] and len(said) == 1
    assert said[0].startswith("checkpoint of epoch 1 not written to run run: ConnectionError: the store is away")


def test_a_stop_waits_for_a_store_that_does_not_answer_only_so_long():
    seconds = 0.3
    store = Store()
    store.gate.clear()  # never answers
    keeper = Keeper(store, "run", every=1)
    keeper(state(1))
    start = time.monotonic()
    keeper.stopped(timeout=seconds)
    assert time.monotonic() - start < seconds + 0.5
    store.gate.set()
