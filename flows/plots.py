"""Figures for a run's ``plots/`` folder, drawn with matplotlib's object API (no pyplot state)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def cost_curve(cost: np.ndarray, title: str, xlabel: str = "iteration") -> Figure:
    """The cost per step on a log axis (the descent spans orders of magnitude)."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(np.arange(cost.size), cost, lw=1.5)
    if np.all(cost > 0):
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel="cost (mean squared error)", title=title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


def line_fit(x: np.ndarray, y: np.ndarray, w: float, b: float, xname: str, yname: str) -> Figure:
    """The data with the fitted line through it (one feature)."""
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.scatter(x, y, s=12, alpha=0.7, label="data")
    xs = np.array([x.min(), x.max()])
    ax.plot(xs, w * xs + b, color="C3", lw=2, label=f"{yname} = {w:.4g} {xname} + {b:.4g}")
    ax.set(xlabel=xname, ylabel=yname, title="fitted line")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def predicted_vs_actual(y: np.ndarray, y_hat: np.ndarray, yname: str) -> Figure:
    """Predictions against targets (several features: no single line to draw)."""
    fig = Figure(figsize=(5, 5), dpi=100)
    ax = fig.subplots()
    ax.scatter(y, y_hat, s=12, alpha=0.7)
    lo, hi = float(min(y.min(), y_hat.min())), float(max(y.max(), y_hat.max()))
    ax.plot([lo, hi], [lo, hi], color="C3", lw=1)
    ax.set(xlabel=f"actual {yname}", ylabel=f"predicted {yname}", title="predicted vs actual")
    fig.tight_layout()
    return fig
