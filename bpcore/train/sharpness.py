"""The sharpness of a network's cost: the largest eigenvalue of its Hessian, and the stability limit it sets.

Gradient descent with learning rate ``lr`` on a quadratic with Hessian ``H`` multiplies the error
along an eigenvector of eigenvalue ``lambda`` by ``1 - lr * lambda`` each step: it shrinks only while
``lr < 2 / lambda``. The line fit's Hessian is known in closed form (``bpcore.train.linreg``); a network's
is not, and has as many rows as the network has parameters. Its top eigenvalue is found here by
power iteration, which needs only products ``H v``, and each of those is a difference of two
gradients that backpropagation already computes::

    H v  ~  (grad(theta + eps v) - grad(theta - eps v)) / (2 eps)

in float64 on a copy of the network, on one fixed batch. A few dozen gradient evaluations give
the eigenvalue to a fraction of a percent; the estimate holds at the weights it was taken at
(training moves the sharpness, usually up at first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bpcore.train.network import Network


@dataclass(frozen=True)
class Sharpness:
    """The top Hessian eigenvalue of a batch's cost, and the learning rate it allows."""

    sharpness: float  # the largest eigenvalue of the Hessian of the batch's cost (plus its L2 penalty)
    iterations: int  # power iterations run (two gradient evaluations each)
    converged: bool  # the eigenvalue moved by less than the tolerance in its last iteration

    @property
    def max_stable_lr(self) -> float:
        """2 / sharpness: above it, plain gradient descent grows the error along the sharpest direction."""
        return 2.0 / self.sharpness if self.sharpness > 0 else float("inf")


def as_float64(net: Network) -> Network:
    """A float64 copy of the network (a float32 difference of gradients is mostly rounding)."""
    return Network(net.sizes, net.activation, net.cost, [W.astype(np.float64) for W in net.W],
                   [b.astype(np.float64) for b in net.b])


def flat_gradient(net: Network, X: np.ndarray, Y: np.ndarray, l2: float = 0.0) -> np.ndarray:
    """Every weight's and bias's derivative of the batch's cost, as one vector (W's then b's, row-major)."""
    _, _, dW, db = net.gradients(X, Y, l2)
    return np.concatenate([g.ravel() for g in dW + db])


def _move(net: Network, direction: np.ndarray, step: float) -> None:
    """Add ``step * direction`` (a flat vector in flat_gradient's order) to the parameters, in place."""
    offset = 0
    for p in net.W + net.b:
        size = p.size
        p += step * direction[offset : offset + size].reshape(p.shape)
        offset += size


def hessian_vector(net: Network, X: np.ndarray, Y: np.ndarray, v: np.ndarray, l2: float = 0.0,
                   eps: float = 1e-6) -> np.ndarray:
    """H v by a central difference of gradients along ``v`` (unit length); the parameters are put back.

    ``eps`` is small because relu has kinks: a step that moves a unit's input across zero changes
    the gradient by a jump, not a slope, and the difference quotient, no longer linear in ``v``,
    sends power iteration astray, the more so the larger the step. In float64 a gradient is exact
    to about 1e-16 of its size, so 1e-6 still leaves ten digits.
    """
    _move(net, v, eps)
    up = flat_gradient(net, X, Y, l2)
    _move(net, v, -2 * eps)
    down = flat_gradient(net, X, Y, l2)
    _move(net, v, eps)
    return (up - down) / (2 * eps)


def estimate(net: Network, X: np.ndarray, Y: np.ndarray, l2: float = 0.0, iterations: int = 30,
             tolerance: float = 1e-4, rng: np.random.Generator | None = None) -> Sharpness:
    """The largest Hessian eigenvalue of the cost of batch (X, Y) at the network's weights, by power iteration.

    Power iteration finds the eigenvalue of largest magnitude. At the start of training that is the
    top one; if it comes out negative, the iteration is run again on ``H - lambda I``, whose largest
    magnitude eigenvalue is then the top one shifted. ``net`` is not changed.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    copy = as_float64(net)
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    size = sum(p.size for p in copy.W + copy.b)
    start = rng.standard_normal(size)
    top, used, converged = _power(lambda v: hessian_vector(copy, X, Y, v, l2), start, iterations, tolerance)
    if top < 0:  # the most negative eigenvalue came out first: look for the largest of H - top I
        shifted, more, converged = _power(lambda v: hessian_vector(copy, X, Y, v, l2) - top * v, start,
                                          iterations, tolerance)
        top, used = shifted + top, used + more
    return Sharpness(float(top), used, converged)


def _power(product, start: np.ndarray, iterations: int, tolerance: float) -> tuple[float, int, bool]:
    """(eigenvalue of largest magnitude, iterations run, whether it settled) of the linear map ``product``."""
    v = start / np.linalg.norm(start)
    value = 0.0
    for i in range(1, iterations + 1):
        w = product(v)
        new = float(v @ w)  # the Rayleigh quotient of the current vector
        norm = np.linalg.norm(w)
        if norm == 0 or not np.isfinite(norm):
            return new, i, False
        v = w / norm
        if i > 1 and abs(new - value) <= tolerance * abs(new):
            return new, i, True
        value = new
    return value, iterations, False


def batch(X: np.ndarray, y: np.ndarray, rows: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` rows of the training set drawn without replacement, with one-hot targets of ``k`` classes."""
    idx = rng.choice(len(y), size=min(rows, len(y)), replace=False)
    return X[idx], np.eye(k)[y[idx]]
