"""Gradient checking: analytic gradients against central finite differences, in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from bpcore.train.network import Network


def numerical_gradients(loss: Callable[[], float], params: Sequence[np.ndarray], h: float = 1e-6) -> list[np.ndarray]:
    """dloss/dp for every entry of every array in ``params``, by (f(p + h) - f(p - h)) / 2h.

    ``loss`` reads the arrays in place; each entry is restored after it is probed.
    """
    grads = []
    for p in params:
        g = np.zeros_like(p, dtype=np.float64)
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            up = loss()
            flat[i] = keep - h
            down = loss()
            flat[i] = keep
            gflat[i] = (up - down) / (2 * h)
        grads.append(g)
    return grads


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / (||a|| + ||b||): scale-free, 0 for equal arrays."""
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def check_network(net: Network, X: np.ndarray, Y: np.ndarray, l2: float = 0.0, h: float = 1e-6) -> float:
    """Largest relative error between backpropagation and finite differences over all W and b.

    The network is converted to float64 first (a float32 difference quotient is mostly noise).
    """
    net64 = Network(net.sizes, net.activation, net.cost,
                    [W.astype(np.float64) for W in net.W], [b.astype(np.float64) for b in net.b])
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    _, _, dW, db = net64.gradients(X, Y, l2)
    numeric = numerical_gradients(lambda: net64.loss(X, Y, l2), net64.W + net64.b, h)
    return max(relative_error(a, n) for a, n in zip(dW + db, numeric))
