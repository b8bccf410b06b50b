"""Linear regression by gradient descent on mean squared error.

The model is ``y_hat = X w + b`` and the cost ``C = mean((y - y_hat)**2)``. One step is the
seed program's update, vectorised over rows and features::

    b -= lr * (-2/N) * sum(y - y_hat)
    w -= lr * (-2/N) * X.T @ (y - y_hat)

Two paths give the same iterates:

- ``direct`` touches all N rows on every iteration (what the textbook script does);
- ``fast`` notes that C and its gradient depend on the data only through the means and the
  centred second moments of ``(X, y)``. It computes those once, in one chunked pass
  (Chan's pairwise merge keeps the centring exact), then iterates on a (d+1)-sized problem.

Both stop the moment the cost turns inf/NaN or exceeds ``divergence_factor`` times the
starting cost, and report ``diverged at iteration k`` instead of returning a broken model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bpcore.config.models import LineTrainer

CHUNK_ROWS = 1 << 14  # 128 KiB per column: chunks stay in cache


@dataclass(frozen=True)
class Moments:
    """Sufficient statistics of MSE regression.

    n: rows; x_mean: (d,); y_mean: scalar; Sxx: (d, d) = mean of (x - x_mean)(x - x_mean)^T;
    sxy: (d,) = mean of (x - x_mean)(y - y_mean); syy: mean of (y - y_mean)^2.
    """

    n: int
    x_mean: np.ndarray
    y_mean: float
    Sxx: np.ndarray
    sxy: np.ndarray
    syy: float

    @classmethod
    def of(cls, X: np.ndarray, y: np.ndarray, chunk: int = CHUNK_ROWS) -> Moments:
        """One pass over X (n, d) and y (n,), chunk by chunk, merged pairwise (Chan et al.).

        Each chunk is centred on its own mean (so no sum of squares of raw values ever cancels);
        chunk statistics merge exactly: M = M_a + M_b + n_a n_b / n * delta delta^T.
        """
        n_total, d = X.shape
        count, mx, my = 0, np.zeros(d), 0.0
        Mxx, mxy, myy = np.zeros((d, d)), np.zeros(d), 0.0
        for start in range(0, n_total, chunk):
            Xb, yb = X[start : start + chunk], y[start : start + chunk]
            n_b = yb.size
            bx, by = Xb.sum(axis=0) / n_b, yb.sum() / n_b
            Xd, yd = Xb - bx, yb - by
            dx, dy = bx - mx, by - my
            total = count + n_b
            weight = count * n_b / total
            Mxx += Xd.T @ Xd + weight * np.outer(dx, dx)
            mxy += Xd.T @ yd + weight * dx * dy
            myy += yd @ yd + weight * dy * dy
            mx, my = mx + dx * (n_b / total), my + dy * (n_b / total)
            count = total
        return cls(count, mx, float(my), Mxx / count, mxy / count, float(myy / count))

    def hessian(self) -> np.ndarray:
        """Hessian of the cost in (b, w): 2 [[1, x_mean^T], [x_mean, Sxx + x_mean x_mean^T]]."""
        d = self.x_mean.size
        H = np.empty((d + 1, d + 1))
        H[0, 0] = 1.0
        H[0, 1:] = H[1:, 0] = self.x_mean
        H[1:, 1:] = self.Sxx + np.outer(self.x_mean, self.x_mean)
        return 2.0 * H

    def lambda_max(self) -> float:
        """The Hessian's largest eigenvalue: gradient descent is stable below 2 / lambda_max."""
        return float(np.linalg.eigvalsh(self.hessian())[-1])

    def least_squares(self) -> tuple[np.ndarray, float, float]:
        """The exact minimiser (w, b) and its cost, from the normal equations Sxx w = sxy.

        Solved in the least-squares sense, so a constant or repeated feature (singular Sxx)
        gives the minimum-norm minimiser rather than an error.
        """
        if not (np.isfinite(self.Sxx).all() and np.isfinite(self.sxy).all()):  # overflowed data
            return np.full_like(self.sxy, np.nan), float("nan"), float("nan")
        w = np.linalg.lstsq(self.Sxx, self.sxy, rcond=None)[0]
        b = self.y_mean - self.x_mean @ w
        return w, float(b), float(self.syy - self.sxy @ w)


@dataclass(frozen=True)
class LineFit:
    """What training returns.

    w: (d,) slopes; b: intercept; cost: (k+1,) cost before any update (index 0) and after
    each of the k updates run. When ``status == "diverged"`` w and b are the last iterate whose
    cost was finite and within bound, and ``message`` says at which iteration it broke.
    ``lambda_max`` is the largest Hessian eigenvalue; ``max_stable_lr = 2 / lambda_max``;
    ``optimum_cost`` the least-squares minimum that gradient descent approaches.
    """

    w: np.ndarray
    b: float
    cost: np.ndarray
    status: Literal["finished", "diverged"]
    message: str
    lambda_max: float
    max_stable_lr: float
    optimum_cost: float

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def excess_cost(self) -> np.ndarray:
        """cost - optimum_cost per step, floored at 0 (rounding can dip a hair below)."""
        return np.maximum(self.cost - self.optimum_cost, 0.0)


def fit(X: np.ndarray, y: np.ndarray, trainer: LineTrainer) -> LineFit:
    """Gradient descent from w = 0, b = 0. X: (n, d) float64, y: (n,) float64."""
    # overflow is not an error here: it is divergence, detected and reported below
    with np.errstate(over="ignore", invalid="ignore"):
        moments = Moments.of(X, y)
        lam = moments.lambda_max()
        optimum = moments.least_squares()[2]
        if trainer.method == "direct":
            step, w0 = _direct_steps(X, y), np.zeros(X.shape[1])
        elif X.shape[1] == 1:
            step, w0 = _fast_scalar_steps(moments), 0.0
        else:
            step, w0 = _fast_steps(moments), np.zeros(X.shape[1])
        w, b, cost, broke = _descend(step, w0, trainer)
    w, b = np.atleast_1d(np.asarray(w, dtype=np.float64)), float(b)
    if broke is None:
        return LineFit(w, b, cost, "finished", "finished", lam, 2.0 / lam, optimum)
    message = (
        f"diverged at iteration {broke}: cost {cost[-1]:.6g} "
        f"(learning rate {trainer.learning_rate:g}; largest stable is {2.0 / lam:.4g})"
    )
    return LineFit(w, b, cost[np.isfinite(cost)], "diverged", message, lam, 2.0 / lam, optimum)


def _descend(step, w0, trainer: LineTrainer):
    """Run the iterations from (w0, b = 0). ``step(w, b) -> (cost, grad_w, grad_b)`` at the
    current point; w is whatever ``step`` works on (an array, or a float for one feature).

    Returns (w, b, cost history, iteration at which it diverged or None).
    """
    lr = trainer.learning_rate
    w, b = w0, 0.0
    cost = np.empty(trainer.iterations + 1)
    bound = None
    w_prev, b_prev = w, b
    for k in range(trainer.iterations + 1):
        c, grad_w, grad_b = step(w, b)
        cost[k] = c
        if bound is None:
            bound = trainer.divergence_factor * max(c, np.finfo(float).tiny)
        if not c <= bound:  # also catches NaN
            return w_prev, b_prev, cost[: k + 1], k
        if k == trainer.iterations:
            break
        w_prev, b_prev = w, b
        w = w - lr * grad_w
        b = b - lr * grad_b
    return w, b, cost, None


def _direct_steps(X: np.ndarray, y: np.ndarray):
    """Cost and gradient from all N rows: r = y - (X w + b)."""
    scale = -2.0 / y.shape[0]

    def step(w, b):
        r = y - (X @ w + b)
        return (r @ r) / y.shape[0], scale * (X.T @ r), scale * r.sum()

    return step


def _fast_steps(m: Moments):
    """Cost and gradient from the moments alone.

    With e = y_mean - x_mean.w - b (the mean residual):
    C = syy - 2 w.sxy + w.Sxx.w + e^2, dC/dw = -2 (sxy - Sxx w + x_mean e), dC/db = -2 e.
    """

    def step(w, b):
        e = m.y_mean - m.x_mean @ w - b
        Sw = m.Sxx @ w
        c = m.syy - 2.0 * (w @ m.sxy) + w @ Sw + e * e
        return c, -2.0 * (m.sxy - Sw + m.x_mean * e), -2.0 * e

    return step


def _fast_scalar_steps(m: Moments):
    """``_fast_steps`` for one feature on Python floats: the same operations in the same order
    (so the same iterates), without NumPy's per-call overhead on 1-element arrays."""
    x_mean, y_mean, sxx, sxy, syy = float(m.x_mean[0]), m.y_mean, float(m.Sxx[0, 0]), float(m.sxy[0]), m.syy

    def step(w, b):
        e = y_mean - x_mean * w - b
        sw = sxx * w
        return syy - 2.0 * (w * sxy) + w * sw + e * e, -2.0 * (sxy - sw + x_mean * e), -2.0 * e

    return step
