"""The network benchmark's contenders beside bp's trainer: one epoch each of PyTorch eager, scikit-learn's
MLPClassifier and the per-sample loop bp's matrix form replaces, all fitting [784, 128, 10] with plain SGD,
momentum 0.9, learning rate 0.1 (see network_bench.py)."""

from __future__ import annotations

import time

import numpy as np

SIZES = (784, 128, 10)
LR, MOMENTUM = 0.1, 0.9


def torch_epoch(X: np.ndarray, y: np.ndarray, batch: int, threads: int):
    """A callable: one epoch of the same network in PyTorch eager mode, returning its seconds."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(SIZES[0], SIZES[1]), nn.Sigmoid(), nn.Linear(SIZES[1], SIZES[2]))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def epoch() -> float:
        start = time.perf_counter()
        total, correct = 0.0, 0
        order = torch.randperm(len(yt))
        for lo in range(0, len(yt), batch):
            idx = order[lo : lo + batch]
            xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
            opt.zero_grad()
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)  # the running cost and accuracy fit_network keeps
            correct += int((out.argmax(dim=1) == yb).sum())
        return time.perf_counter() - start

    return epoch


def sklearn_epoch(X: np.ndarray, y: np.ndarray, batch: int):
    """A callable: one MLPClassifier.partial_fit call (one shuffled epoch), returning its seconds."""
    from sklearn.neural_network import MLPClassifier

    mlp = MLPClassifier(hidden_layer_sizes=(SIZES[1],), activation="logistic", solver="sgd", learning_rate_init=LR,
                        momentum=MOMENTUM, nesterovs_momentum=False, batch_size=batch, alpha=0.0, shuffle=True,
                        max_iter=1, random_state=np.random.RandomState(0))
    classes = np.arange(SIZES[-1])

    def epoch() -> float:
        start = time.perf_counter()
        mlp.partial_fit(X, y, classes=classes)
        return time.perf_counter() - start

    return epoch


def loop_init(rng: np.random.Generator) -> list[np.ndarray]:
    """[W1 (128, 784), b1 (128, 1), W2 (10, 128), b2 (10, 1)] in float32, column-vector layout."""
    W = [(rng.standard_normal((n, m)) / np.sqrt(m)).astype(np.float32) for m, n in zip(SIZES[:-1], SIZES[1:])]
    b = [np.zeros((n, 1), dtype=np.float32) for n in SIZES[1:]]
    return [W[0], b[0], W[1], b[1]]


def loop_backprop(params: list[np.ndarray], x: np.ndarray, label: int) -> list[np.ndarray]:
    """One sample: forward and backward with column vectors; (dW1, db1, dW2, db2)."""
    W1, b1, W2, b2 = params
    a1 = 1 / (1 + np.exp(-(W1 @ x + b1)))
    z2 = W2 @ a1 + b2
    e = np.exp(z2 - z2.max())
    d2 = e / e.sum()
    d2[label] -= 1  # softmax + cross-entropy: dC/dz = a - y
    d1 = (W2.T @ d2) * a1 * (1 - a1)
    return [d1 @ x.T, d1, d2 @ a1.T, d2]


def loop_step(params, velocity, Xb: np.ndarray, yb: np.ndarray) -> None:
    sums = [np.zeros_like(p) for p in params]
    for x, label in zip(Xb, yb):
        for s, g in zip(sums, loop_backprop(params, x.reshape(-1, 1), label)):
            s += g
    for p, v, s in zip(params, velocity, sums):
        v *= MOMENTUM
        v -= (LR / len(Xb)) * s
        p += v


def loop_epoch(X: np.ndarray, y: np.ndarray, batch: int, subset: int):
    """A callable: the per-sample loop over ``subset`` shuffled rows, returning seconds scaled to all rows."""
    rng = np.random.default_rng(0)
    params = loop_init(rng)
    velocity = [np.zeros_like(p) for p in params]

    def epoch() -> float:
        start = time.perf_counter()
        order = rng.permutation(len(y))[:subset]
        for lo in range(0, subset, batch):
            idx = order[lo : lo + batch]
            loop_step(params, velocity, X[idx], y[idx])
        return (time.perf_counter() - start) * len(y) / subset

    return epoch
