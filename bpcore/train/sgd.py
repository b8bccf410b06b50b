"""Training a Network by mini-batch SGD: epochs, shuffling, shift augmentation, divergence.

The training set is never copied as a whole: each epoch draws a permutation and gathers one
mini-batch of rows at a time. Per-epoch cost and training accuracy are running figures over
that epoch's mini-batches (the forward pass is already there; no second pass over the data).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bpcore.config.models import NetTrainer
from bpcore.train import checkpoint, sharpness
from bpcore.train.network import SGD, Network
from bpcore.train.sharpness import Sharpness

SIDE = 28  # MNIST images are 28 x 28
CLASSES = 10  # digits
SHARPNESS_ROWS = 256  # training rows the starting sharpness is measured on
SHARPNESS_STREAM = 1  # the sharpness's random numbers: a stream of the seed apart from training's


@dataclass(frozen=True)
class EpochStats:
    """One epoch's figures: cost (mean data cost over its batches), accuracies in [0, 1]."""

    epoch: int
    cost: float
    train_accuracy: float
    val_accuracy: float | None
    train_seconds: float  # cumulative training time at the end of this epoch


@dataclass
class NetFit:
    """What training returns: the network, one EpochStats per finished epoch, and the status."""

    net: Network
    epochs: list[EpochStats] = field(default_factory=list)
    status: str = "finished"  # finished / diverged / what stopped it early (on_epoch: pruned, skipped)
    message: str = "finished"
    sharpness: Sharpness | None = None  # of the starting weights' cost
    max_stable_lr: float | None = None  # the largest learning rate stable at the start (below)

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


def accuracy(net: Network, X: np.ndarray, y: np.ndarray) -> float | None:
    """Fraction of rows whose predicted digit is the label (None for an empty set)."""
    return float((net.predict(X) == y).mean()) if len(y) else None


def shift_batch(X: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Each 28x28 image in X (n, 784) moved by its own random (dy, dx) in [-s, s], zero-filled."""
    n, s = X.shape[0], max_shift
    padded = np.zeros((n, SIDE + 2 * s, SIDE + 2 * s), dtype=X.dtype)
    padded[:, s : s + SIDE, s : s + SIDE] = X.reshape(n, SIDE, SIDE)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (SIDE, SIDE), axis=(1, 2))
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
    return windows[np.arange(n), dy, dx].reshape(n, SIDE * SIDE)


def starting_sharpness(X: np.ndarray, y: np.ndarray, trainer: NetTrainer, seed: int = 0) -> tuple[Sharpness, float]:
    """What ``fit_network`` measures before its first epoch (the same weights, the same rows), without training:
    the sharpness and the stability limit."""
    net, _ = _starting_network(X, trainer, seed)
    return _measure(net, X, y, trainer, seed)


def _starting_network(X: np.ndarray, trainer: NetTrainer, seed: int) -> tuple[Network, np.random.Generator]:
    """The network training starts from, and the generator that drew it (training draws on from it)."""
    rng = np.random.default_rng(seed)
    net = Network.create([X.shape[1], *trainer.hidden, CLASSES], trainer.activation, trainer.cost, rng,
                         np.dtype(trainer.dtype))
    return net, rng


def _measure(net: Network, X: np.ndarray, y: np.ndarray, trainer: NetTrainer, seed: int) -> tuple[Sharpness, float]:
    stream = np.random.default_rng([seed, SHARPNESS_STREAM])
    Xs, Ys = sharpness.batch(X, y, SHARPNESS_ROWS, net.sizes[-1], stream)
    found = sharpness.estimate(net, Xs, Ys, trainer.l2, rng=stream)
    return found, found.max_stable_lr * (1 + trainer.momentum)


def fit_network(X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray,
                trainer: NetTrainer, seed: int = 0,
                on_epoch: Callable[[EpochStats], tuple[str, str] | None] | None = None,
                on_start: Callable[[NetFit], None] | None = None, resume: checkpoint.TrainingState | None = None,
                on_checkpoint: Callable[[checkpoint.TrainingState], None] | None = None) -> NetFit:
    """Train a fresh network on X (n, 784) floats in [0, 1] and labels y (n,) in 0..k-1.

    Before the first epoch, the sharpness of the starting weights' cost is measured on
    SHARPNESS_ROWS training rows (``bpcore.train.sharpness``), with random numbers of their own: training
    draws the same ones with or without it. Its stability limit is ``2 (1 + momentum) / sharpness``
    (2 / sharpness for plain gradient descent; heavy-ball momentum widens it by 1 + momentum).
    ``on_start`` is called with the result before the first epoch, ``on_epoch`` after every finished
    epoch (neither's time, nor the measurement's, counts as training); ``on_epoch`` returning
    ``(status, reason)`` stops training there with that status (a search pruning the trial, say).
    Stops at the first non-finite batch cost with ``diverged at epoch k``.

    ``on_checkpoint`` is handed the training state after every epoch that training goes on from (after
    ``on_epoch``; a copy, cheap beside an epoch: the caller decides which to keep); ``resume``, such a state, makes
    training go on from it (no measurement, no ``on_start``): the same config then ends with the same weights and
    figures as if it had never stopped.
    """
    dtype = np.dtype(trainer.dtype)
    net, rng = _starting_network(X, trainer, seed)
    opt = SGD(trainer.learning_rate, trainer.momentum, trainer.l2)
    X = X if X.dtype == dtype else X.astype(dtype)
    X_val = X_val if X_val.dtype == dtype else X_val.astype(dtype)
    result = NetFit(net)
    if resume is not None:
        _restore(result, opt, rng, resume)
    else:
        if len(y):
            result.sharpness, result.max_stable_lr = _measure(net, X, y, trainer, seed)
        if on_start is not None:
            on_start(result)
    elapsed = result.epochs[-1].train_seconds if result.epochs else 0.0
    eye = np.eye(CLASSES, dtype=dtype)
    for epoch in range(len(result.epochs) + 1, trainer.epochs + 1):
        start = time.perf_counter()
        figures = _epoch(net, opt, X, y, trainer, rng, eye)
        if isinstance(figures, float):
            result.status, result.message = "diverged", f"diverged at epoch {epoch}: cost {figures}"
            return result
        val_acc = accuracy(net, X_val, y_val)
        elapsed += time.perf_counter() - start
        stats = EpochStats(epoch, *figures, val_acc, elapsed)
        result.epochs.append(stats)
        if on_epoch is not None and (stop := on_epoch(stats)) is not None:
            result.status, result.message = stop
            return result
        if on_checkpoint is not None and epoch < trainer.epochs:
            on_checkpoint(checkpoint.capture(epoch, net.W, net.b, opt.velocity, rng, result.epochs,
                                             result.sharpness, result.max_stable_lr))
    return result


def _epoch(net: Network, opt: SGD, X: np.ndarray, y: np.ndarray, trainer: NetTrainer, rng: np.random.Generator,
           eye: np.ndarray) -> tuple[float, float] | float:
    """One pass over the training rows in a fresh order: (mean cost, training accuracy), or the first batch cost
    that is not finite (training has diverged)."""
    total_cost, correct = 0.0, 0
    order = rng.permutation(len(y))
    for lo in range(0, len(y), trainer.batch_size):
        idx = order[lo : lo + trainer.batch_size]
        Xb = X[idx] if not trainer.augment_shift else shift_batch(X[idx], trainer.augment_shift, rng)
        yb = y[idx]
        cost, a_out = opt.step(net, Xb, eye[yb])
        if not np.isfinite(cost):
            return float(cost)
        total_cost += cost * len(idx)
        correct += int((a_out.argmax(axis=1) == yb).sum())
    return total_cost / len(y), correct / len(y)


def _restore(result: NetFit, opt: SGD, rng: np.random.Generator, state: checkpoint.TrainingState) -> None:
    """Put ``state`` in place: the weights into the fresh network, the velocities, the generator, the epochs' figures
    and the starting sharpness measured before the run stopped."""
    for mine, theirs in zip((*result.net.W, *result.net.b), (*state.W, *state.b)):
        mine[...] = theirs
    opt.velocity = [v.copy() for v in state.velocity]
    rng.bit_generator.state = state.rng
    result.epochs = [EpochStats(**e) for e in state.epochs]
    result.sharpness, result.max_stable_lr = state.starting_sharpness(), state.max_stable_lr
