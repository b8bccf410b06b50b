"""A network's training state taken between epochs, written, read back and trained on from: the same weights and the
same figures as a training that never stopped; states that do not fit refused with the reason."""

from __future__ import annotations

import numpy as np
import pytest
from support import blobs

from bpcore.config.models import NetTrainer
from bpcore.train import checkpoint
from bpcore.train.checkpoint import CheckpointError
from bpcore.train.sgd import fit_network


def trainer(**kw) -> NetTrainer:
    return NetTrainer(**{"hidden": [16, 12], "learning_rate": 0.05, "epochs": 6, "batch_size": 32, **kw})


def figures(fit) -> list[tuple]:
    """Every epoch's figures but the wall-clock one."""
    return [(e.epoch, e.cost, e.train_accuracy, e.val_accuracy) for e in fit.epochs]


@pytest.mark.parametrize("settings", [{"momentum": 0.9, "augment_shift": 1, "l2": 1e-3},
                                      {"dtype": "float64"}, {"momentum": 0.5, "checkpoint": 5}])
def test_training_resumed_from_any_epoch_ends_as_one_that_never_stopped(settings):
    settings = dict(settings)
    every = settings.pop("checkpoint", 1)
    X, y = blobs(400)
    config = trainer(**settings)
    states: list[bytes] = []

    def keep(state) -> None:  # what the flow writes to the run: every ``every``-th
        if state.epoch % every == 0:
            states.append(checkpoint.write(state))

    whole = fit_network(X[:300], y[:300], X[300:], y[300:], config, seed=7, on_checkpoint=keep)
    assert whole.status == "finished" and len(states) == (config.epochs - 1) // every
    for data in states:
        state = checkpoint.read(data, whole.net.sizes, np.dtype(config.dtype))
        resumed = fit_network(X[:300], y[:300], X[300:], y[300:], config, seed=7, resume=state)
        assert figures(resumed) == figures(whole), state.epoch
        for mine, theirs in zip(resumed.net.W + resumed.net.b, whole.net.W + whole.net.b):
            assert mine.tobytes() == theirs.tobytes(), state.epoch
        assert resumed.sharpness == whole.sharpness and resumed.max_stable_lr == whole.max_stable_lr
        assert [e.train_seconds for e in resumed.epochs[:state.epoch]] == [
            e.train_seconds for e in whole.epochs[:state.epoch]]


def test_a_resumed_training_can_stop_and_resume_again():
    X, y = blobs(400)
    config = trainer(momentum=0.9)
    whole = fit_network(X, y, X[:50], y[:50], config, seed=1)
    first: list = []
    fit_network(X, y, X[:50], y[:50], replace_epochs(config, 2), seed=1, on_checkpoint=first.append)
    assert [s.epoch for s in first] == [1]  # none after the last epoch: the training is over
    first.clear()
    fit_network(X, y, X[:50], y[:50], config, seed=1, on_checkpoint=first.append,
                on_epoch=lambda e: ("stopped", "told to") if e.epoch == 2 else None)
    assert [s.epoch for s in first] == [1]
    second: list = []
    stopped = fit_network(X, y, X[:50], y[:50], config, seed=1, resume=first[0], on_checkpoint=second.append,
                          on_epoch=lambda e: ("stopped", "again") if e.epoch == 4 else None)
    assert stopped.status == "stopped" and [s.epoch for s in second] == [2, 3]
    again = fit_network(X, y, X[:50], y[:50], config, seed=1,
                        resume=checkpoint.read(checkpoint.write(second[-1]), whole.net.sizes, np.dtype("float32")))
    assert figures(again) == figures(whole)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(again.net.W, whole.net.W))


def replace_epochs(config: NetTrainer, epochs: int) -> NetTrainer:
    return config.model_copy(update={"epochs": epochs})


def test_a_state_that_does_not_fit_the_network_is_refused_with_what_differs():
    X, y = blobs(100)
    states: list = []
    fit_network(X, y, X[:20], y[:20], trainer(epochs=2, momentum=0.9), on_checkpoint=states.append)
    data = checkpoint.write(states[0])
    with pytest.raises(CheckpointError, match=r"layer sizes \[784, 16, 12, 10\], the config builds \[784, 32, 10\]"):
        checkpoint.read(data, (784, 32, 10), np.dtype("float32"))
    with pytest.raises(CheckpointError, match="weights of float32, the config trains in float64"):
        checkpoint.read(data, (784, 16, 12, 10), np.dtype("float64"))
    with pytest.raises(CheckpointError, match="not a bp training state"):
        checkpoint.read(data[: len(data) // 2], (784, 16, 12, 10), np.dtype("float32"))
    with pytest.raises(CheckpointError, match="not a bp training state"):
        checkpoint.read(b"PK\x03\x04 not really", (784, 16, 12, 10), np.dtype("float32"))
    import io
    import json

    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps({"format": 2}).encode(), dtype=np.uint8))
    with pytest.raises(CheckpointError, match="format 2, this bp reads format 1"):
        checkpoint.read(buffer.getvalue(), (784, 16, 12, 10), np.dtype("float32"))


def test_a_state_is_read_without_pickle():
    X, y = blobs(100)
    states: list = []
    fit_network(X, y, X[:20], y[:20], trainer(epochs=2), on_checkpoint=states.append)
    import io

    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array([{"format": 1}], dtype=object))  # what only pickle could load
    with pytest.raises(CheckpointError, match="not a bp training state"):
        checkpoint.read(buffer.getvalue(), (784, 16, 12, 10), np.dtype("float32"))
