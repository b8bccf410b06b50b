"""A fully connected network trained by backpropagation: the chain rule in matrix form.

Rows are samples. With ``a[0] = X`` of shape (n, sizes[0]), each layer l = 1..L computes::

    z[l] = a[l-1] @ W[l] + b[l]        W[l]: (sizes[l-1], sizes[l]), b[l]: (sizes[l],)
    a[l] = f(z[l])                     hidden f: sigmoid, tanh or relu

and the output layer is a sigmoid under the quadratic cost ``C = mean over samples of
sum_k (a_k - y_k)^2`` (the derivation's C0 = (a(L) - y)^2, summed over outputs), or a softmax
under cross-entropy ``C = -mean log a_y``. Backpropagation runs the same rule as the chain in
``bpcore.train.chain``, for a whole mini-batch at once::

    delta[L]   = dC/dz[L]                          (n, sizes[L])
    dC/dW[l]   = a[l-1].T @ delta[l]               dC/db[l] = delta[l] summed over rows
    delta[l-1] = (delta[l] @ W[l].T) * f'(z[l-1])

One mini-batch is a handful of matrix products; the delta of the input layer is never formed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

Activation = Literal["sigmoid", "tanh", "relu"]
Cost = Literal["quadratic", "cross_entropy"]


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + exp(-z)), elementwise, written into ``out`` (overflow of exp gives 0, correctly)."""
    out = np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so exp never overflows. In place."""
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """Apply a hidden activation to z in place."""
    if name == "sigmoid":
        return sigmoid(z, out=z)
    if name == "tanh":
        return np.tanh(z, out=z)
    return np.maximum(z, 0, out=z)


def times_derivative(name: str, delta: np.ndarray, a: np.ndarray) -> np.ndarray:
    """delta * f'(z), with f' written in terms of the activation a = f(z). In place on delta."""
    if name == "sigmoid":
        delta *= a * (1 - a)
    elif name == "tanh":
        delta *= 1 - a * a
    else:
        delta *= a > 0
    return delta


@dataclass
class Network:
    """Weights W[l] (sizes[l-1], sizes[l]) and biases b[l] (sizes[l],), l = 1..L (stored 0-based)."""

    sizes: tuple[int, ...]
    activation: Activation
    cost: Cost
    W: list[np.ndarray]
    b: list[np.ndarray]

    @classmethod
    def create(cls, sizes, activation: Activation = "sigmoid", cost: Cost = "quadratic",
               rng: np.random.Generator | None = None, dtype=np.float32) -> Network:
        """Scaled initialisation: W ~ N(0, g / fan_in) with g = 2 for relu, 1 otherwise; b = 0."""
        rng = rng if rng is not None else np.random.default_rng(0)
        gain = 2.0 if activation == "relu" else 1.0
        W = [(rng.standard_normal((m, n)) * np.sqrt(gain / m)).astype(dtype)
             for m, n in zip(sizes[:-1], sizes[1:])]
        b = [np.zeros(n, dtype=dtype) for n in sizes[1:]]
        return cls(tuple(int(s) for s in sizes), activation, cost, W, b)

    @property
    def dtype(self) -> np.dtype:
        return self.W[0].dtype

    def forward(self, X: np.ndarray) -> list[np.ndarray]:
        """Activations a[0] = X (n, sizes[0]) .. a[L] (n, sizes[L]) for a batch."""
        acts = [X]
        last = len(self.W) - 1
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ W
            z += b
            if l < last:
                acts.append(activate(self.activation, z))
            else:
                acts.append(sigmoid(z, out=z) if self.cost == "quadratic" else softmax(z))
        return acts

    def output(self, X: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """Output activations (n, sizes[L]), computed in chunks of rows to bound memory."""
        X = np.asarray(X, dtype=self.dtype)
        return np.concatenate([self.forward(X[i : i + chunk])[-1] for i in range(0, max(len(X), 1), chunk)])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most active output per row: (n,) int64."""
        return self.output(X).argmax(axis=1)

    def data_cost(self, a_out: np.ndarray, Y: np.ndarray) -> float:
        """Mean per-sample cost of outputs a_out (n, k) against targets Y (n, k)."""
        n = a_out.shape[0]
        if self.cost == "quadratic":
            d = a_out - Y
            return float(np.einsum("ij,ij->", d, d) / n)
        with np.errstate(divide="ignore"):  # a probability of 0 for the true class: cost inf
            return float(-np.log(np.einsum("ij,ij->i", a_out, Y)).sum() / n)

    def loss(self, X: np.ndarray, Y: np.ndarray, l2: float = 0.0) -> float:
        """Data cost plus the L2 penalty (l2 / 2) * sum of squared weights (what the gradient is of)."""
        penalty = 0.5 * l2 * sum(float(np.einsum("ij,ij->", W, W)) for W in self.W)
        return self.data_cost(self.forward(X)[-1], Y) + penalty

    def gradients(self, X: np.ndarray, Y: np.ndarray, l2: float = 0.0, scale: float = 1.0):
        """Backpropagation on one batch: (data cost, output activations, dW list, db list).

        The gradients come multiplied by ``scale``: SGD passes its learning rate, which folded
        into the output delta costs nothing, where scaling each gradient afterwards would cost
        a pass over every weight matrix.
        """
        acts = self.forward(X)
        a_out, n = acts[-1], X.shape[0]
        cost = self.data_cost(a_out, Y)
        delta = a_out - Y
        if self.cost == "quadratic":  # dC/da = 2 (a - y) / n, times sigmoid'(z)
            delta *= (2.0 * scale / n) * a_out * (1 - a_out)
        else:  # softmax with cross-entropy: dC/dz = (a - y) / n
            delta *= scale / n
        dW: list[np.ndarray] = [None] * len(self.W)  # type: ignore[list-item]
        db: list[np.ndarray] = [None] * len(self.W)  # type: ignore[list-item]
        for l in range(len(self.W) - 1, -1, -1):
            dW[l] = acts[l].T @ delta
            if l2:
                dW[l] += (l2 * scale) * self.W[l]
            db[l] = delta.sum(axis=0)
            if l > 0:
                delta = times_derivative(self.activation, delta @ self.W[l].T, acts[l])
        return cost, a_out, dW, db

    def save(self, path: str | Path) -> None:
        """Weights as an .npz of plain arrays (loadable with allow_pickle=False)."""
        arrays = {f"W{l}": W for l, W in enumerate(self.W)} | {f"b{l}": b for l, b in enumerate(self.b)}
        np.savez(path, sizes=np.array(self.sizes, dtype=np.int64), activation=np.array(self.activation),
                 cost=np.array(self.cost), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> Network:
        with np.load(path, allow_pickle=False) as z:
            sizes = tuple(int(s) for s in z["sizes"])
            L = len(sizes) - 1
            return cls(sizes, str(z["activation"]), str(z["cost"]),
                       [z[f"W{l}"] for l in range(L)], [z[f"b{l}"] for l in range(L)])


@dataclass
class SGD:
    """Mini-batch SGD with classical momentum and L2 weight decay (weights only).

    v <- momentum * v - lr * grad;  param <- param + v.
    """

    learning_rate: float
    momentum: float = 0.0
    l2: float = 0.0
    velocity: list[np.ndarray] = field(default_factory=list)

    def step(self, net: Network, X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray]:
        """One update on a batch; returns (batch data cost, output activations).

        Everything in place: the steps lr * grad come out of backpropagation already scaled.
        """
        cost, a_out, dW, db = net.gradients(X, Y, self.l2, scale=self.learning_rate)
        params = net.W + net.b
        steps = dW + db
        if self.momentum == 0.0:
            for p, step in zip(params, steps):
                p -= step
            return cost, a_out
        if not self.velocity:
            self.velocity = [np.zeros_like(p) for p in params]
        for p, step, v in zip(params, steps, self.velocity):
            v *= self.momentum
            v -= step
            p += v
        return cost, a_out
