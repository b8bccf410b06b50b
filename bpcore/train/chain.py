"""Backpropagation on a chain of one neuron per layer, every partial derivative written out.

Neurons a(0) (the input x), a(1), ..., a(L). Each layer l = 1..L has one weight and one bias::

    z(l) = w(l) a(l-1) + b(l)        a(l) = sigma(z(l))        C0 = (a(L) - y)^2

The chain rule, from the cost back to the input::

    dC0/da(L)   = 2 (a(L) - y)
    dC0/dz(l)   = sigma'(z(l)) * dC0/da(l)          sigma'(z) = sigma(z) (1 - sigma(z))
    dC0/dw(l)   = a(l-1) * dC0/dz(l)
    dC0/db(l)   = dC0/dz(l)
    dC0/da(l-1) = w(l) * dC0/dz(l)

Plain Python floats: this is the readable version of what ``bpcore.train.network`` does with
matrices (a chain of ``layers`` neurons is the network with sizes [1] * layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def sigma(z: float) -> float:
    """The logistic function, without overflow for large |z|."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass
class Chain:
    """w[l-1], b[l-1] hold w(l), b(l) for l = 1..L."""

    w: list[float]
    b: list[float]

    @classmethod
    def create(cls, layers: int, rng: np.random.Generator) -> Chain:
        """``layers`` neurons (input included): L = layers - 1 weights and biases ~ N(0, 1)."""
        return cls(rng.standard_normal(layers - 1).tolist(), rng.standard_normal(layers - 1).tolist())

    def forward(self, x: float) -> list[float]:
        """Activations a(0) = x, a(1), ..., a(L)."""
        a = [x]
        for w, b in zip(self.w, self.b):
            a.append(sigma(w * a[-1] + b))
        return a

    def partials(self, x: float, y: float) -> dict[str, float]:
        """The cost and every partial derivative, by the chain rule (names as in the docstring).

        Keys: ``cost``, ``a{l}``, and ``dC_dw{l}``, ``dC_db{l}`` for l = 1..L, ``dC_da{l}`` for
        l = 0..L.
        """
        a = self.forward(x)
        L = len(self.w)
        out = {"cost": (a[L] - y) ** 2} | {f"a{l}": a[l] for l in range(L + 1)}
        dC_da = 2.0 * (a[L] - y)
        out[f"dC_da{L}"] = dC_da
        for l in range(L, 0, -1):
            dC_dz = a[l] * (1.0 - a[l]) * dC_da  # sigma'(z(l)) from a(l) = sigma(z(l))
            out[f"dC_dw{l}"] = a[l - 1] * dC_dz
            out[f"dC_db{l}"] = dC_dz
            dC_da = self.w[l - 1] * dC_dz
            out[f"dC_da{l - 1}"] = dC_da
        return out

    def step(self, grads: dict[str, float], learning_rate: float) -> None:
        """w(l) -= lr dC0/dw(l), b(l) -= lr dC0/db(l)."""
        for l in range(1, len(self.w) + 1):
            self.w[l - 1] -= learning_rate * grads[f"dC_dw{l}"]
            self.b[l - 1] -= learning_rate * grads[f"dC_db{l}"]


def descend(chain: Chain, x: float, y: float, learning_rate: float, iterations: int) -> list[dict[str, float]]:
    """Gradient descent on one example; one record per step 0..iterations (the state before each
    update, and the final state), each with the parameters, the cost and every partial."""
    history = []
    for step in range(iterations + 1):
        record = chain.partials(x, y)
        record |= {f"w{l}": w for l, w in enumerate(chain.w, 1)} | {f"b{l}": b for l, b in enumerate(chain.b, 1)}
        history.append(record)
        if step < iterations:
            chain.step(record, learning_rate)
    return history
