"""Seeded, class-stratified choices of digits (a hold-out split, a smaller pool) and pixel scaling."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): int64 indices into ``labels`` (n,), both shuffled.

    Each class sends round(count * val_fraction) of its examples, chosen by a permutation
    seeded with ``seed``, to validation; the rest to training.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction}")
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    train, val = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = round(len(idx) * val_fraction)
        val.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(val))


def stratified_limit(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Ascending int64 indices of ``limit`` examples of ``labels`` (n,), as equal per class as the
    class sizes allow; which examples, and which classes get one more, is seeded."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.zeros_like(counts)
    left = limit
    while left > 0:  # fill every class that still has examples by an equal share of what is left
        open_ = np.flatnonzero(quota < counts)
        share = left // len(open_)
        if share == 0:
            quota[rng.choice(open_, size=left, replace=False)] += 1
            break
        add = np.minimum(counts[open_] - quota[open_], share)
        quota[open_] += add
        left -= int(add.sum())
    chosen = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def scale(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 pixels (any shape, e.g. (n, 784)) as ``dtype`` in [0, 1]: images / 255, one allocation."""
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating type, not {dtype}")
    out = np.empty(np.shape(images), dtype=dtype)
    np.divide(images, 255, out=out, dtype=dtype)
    return out
