"""Figures for a run's ``plots/`` folder, drawn with matplotlib's object API (no pyplot state).

Fixed margins rather than tight_layout, and major gridlines only on log axes: both cut the
drawing time of every figure (docs/performance.md).
"""

from __future__ import annotations

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure


def cost_curve(cost: np.ndarray, title: str, xlabel: str = "iteration") -> Figure:
    """The cost per step on a log axis (the descent spans orders of magnitude)."""
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.plot(np.arange(cost.size), cost, lw=1.5)
    if np.all(cost > 0):
        _log_y(ax)
    ax.set(xlabel=xlabel, ylabel="cost (mean squared error)", title=title)
    ax.grid(True, alpha=0.3)
    return fig


def line_fit(x: np.ndarray, y: np.ndarray, w: float, b: float, xname: str, yname: str) -> Figure:
    """The data with the fitted line through it (one feature)."""
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.scatter(x, y, s=12, alpha=0.7, label="data")
    xs = np.array([x.min(), x.max()])
    ax.plot(xs, w * xs + b, color="C3", lw=2, label=f"{yname} = {w:.4g} {xname} + {b:.4g}")
    ax.set(xlabel=xname, ylabel=yname, title="fitted line")
    _legend(ax, loc="best")
    return fig


def predicted_vs_actual(y: np.ndarray, y_hat: np.ndarray, yname: str) -> Figure:
    """Predictions against targets (several features: no single line to draw)."""
    fig = _figure(5, 5)
    ax = fig.subplots()
    ax.scatter(y, y_hat, s=12, alpha=0.7)
    lo, hi = float(min(y.min(), y_hat.min())), float(max(y.max(), y_hat.max()))
    ax.plot([lo, hi], [lo, hi], color="C3", lw=1)
    ax.set(xlabel=f"actual {yname}", ylabel=f"predicted {yname}", title="predicted vs actual")
    return fig


def _log_y(ax) -> None:
    """A log y axis labelled at powers of ten in plain text: no minor ticks, no mathtext.

    Minor ticks and mathtext labels (``$10^{3}$``) are the slow part of laying out a log axis.
    """
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(ticker.NullLocator())
    ax.yaxis.set_major_formatter(ticker.LogFormatter())


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    return fig


def training_curves(epochs: list[int], cost: list[float], train_acc: list[float],
                    val_acc: list[float | None]) -> Figure:
    """Cost (log axis) and accuracies per epoch, side by side."""
    fig = Figure(figsize=(10, 4), dpi=100)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    ax_cost, ax_acc = fig.subplots(1, 2)
    ax_cost.plot(epochs, cost, marker="o", ms=3)
    if all(c > 0 for c in cost):
        _log_y(ax_cost)
    ax_cost.set(xlabel="epoch", ylabel="cost", title="training cost")
    ax_acc.plot(epochs, [100 * a for a in train_acc], marker="o", ms=3, label="train")
    if any(v is not None for v in val_acc):
        ax_acc.plot(epochs, [100 * v if v is not None else np.nan for v in val_acc], marker="o", ms=3,
                    label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    _legend(ax_acc, loc="lower right")
    for ax in (ax_cost, ax_acc):
        ax.grid(True, alpha=0.3)
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int = 10) -> Figure:
    """Counts of (true, predicted) digit pairs; the diagonal is what it got right.

    The counts are written in the cells, so there is no colour bar (it doubled the drawing time).
    """
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (y_true, y_pred), 1)
    fig = _figure(6, 5.5)
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    for (i, j), c in np.ndenumerate(counts):
        if c:
            ax.text(j, i, str(c), ha="center", va="center", fontsize=7,
                    color="white" if c > counts.max() / 2 else "black")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true",
           title=f"confusion matrix ({(y_true == y_pred).mean():.1%} correct of {len(y_true)})")
    return fig


def misclassified(images: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, limit: int = 36) -> Figure:
    """Up to ``limit`` wrongly read digits (28x28 pixels 0-255), labelled predicted / true.

    One image of all the digits on one axes, labels as text: an axes per digit would multiply the
    figure's drawing time.
    """
    wrong = np.flatnonzero(y_true != y_pred)
    shown = wrong[:limit]
    cols, cell, label = 6, 28, 10  # pixels per digit, and above each for its label
    rows = max(1, int(np.ceil(len(shown) / cols)))
    mosaic = np.zeros((rows * (cell + label), cols * (cell + 4)), dtype=np.float64)
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        top, left = r * (cell + label) + label, c * (cell + 4) + 2
        mosaic[top : top + cell, left : left + cell] = images[i].reshape(cell, cell)
    fig = Figure(figsize=(cols * 1.1, rows * 1.3 + 0.5), dpi=100)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / (rows * 1.3 + 0.5))
    ax = fig.subplots()
    ax.imshow(mosaic, cmap="gray_r", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    for k, i in enumerate(shown):
        r, c = divmod(k, cols)
        ax.text(c * (cell + 4) + 2 + cell / 2, r * (cell + label) + label - 1, f"{y_pred[i]} / {y_true[i]}",
                ha="center", va="bottom", fontsize=9, color="C3")
    fig.suptitle(f"{len(wrong)} misclassified (predicted / true)")
    return fig


def chain_partials(history: list[dict[str, float]]) -> Figure:
    """Every dC/dw(l) and dC/db(l) against the step: the gradient shrinking layer by layer."""
    fig = Figure(figsize=(10, 4), dpi=100)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.13, top=0.9, wspace=0.25)
    ax_w, ax_b = fig.subplots(1, 2)
    steps = np.arange(len(history))
    for ax, kind in ((ax_w, "w"), (ax_b, "b")):
        for key in sorted(k for k in history[0] if k.startswith(f"dC_d{kind}")):
            ax.plot(steps, [h[key] for h in history], label=key.replace("dC_d", "dC/d"))
        ax.axhline(0, color="gray", lw=0.8)
        ax.set(xlabel="step", title=f"partial derivatives by {kind}")
        _legend(ax, loc="best", fontsize=8)
        ax.grid(True, alpha=0.3)
    return fig


def sweep_curves(curves: list[tuple[str, np.ndarray, str]], ylabel: str, xlabel: str) -> Figure:
    """Every child's curve on one log axis: ``(name, values by step, status)``.

    Diverged (or failed, skipped) curves are dashed and end in an x, pruned ones dotted; the y range
    follows the finished curves, so a blow-up to 1e9 does not flatten the ones being compared.
    """
    fig = _figure(8, 5)
    fig.subplots_adjust(right=0.75)  # the legend sits outside the axes
    ax = fig.subplots()
    finished = [np.asarray(v, dtype=float) for _, v, status in curves if status == "finished" and len(v)]
    top = 3 * max(float(np.nanmax(v)) for v in finished) if finished else None
    values_all = [np.asarray(v, dtype=float) for _, v, _ in curves if len(v)]
    positive = all(np.all(v[np.isfinite(v)] > 0) for v in values_all)
    for i, (name, values, status) in enumerate(curves):
        values = np.asarray(values, dtype=float)
        if not values.size:
            continue
        color, steps = f"C{i % 10}", np.arange(values.size)
        if status == "finished":
            ax.plot(steps, values, lw=1.5, color=color, label=name)
            continue
        if status == "pruned":  # stopped early by the search: its curve so far, no blow-up to mark
            ax.plot(steps, values, lw=1.2, ls=":", color=color, label=f"{name} (pruned)")
            continue
        ax.plot(steps, values, lw=1.2, ls="--", color=color, label=f"{name} ({status})")
        last = np.flatnonzero(np.isfinite(values))
        if last.size:
            y = values[last[-1]] if top is None else min(values[last[-1]], top)
            ax.plot(steps[last[-1]], y, marker="x", ms=10, mew=2, color=color, clip_on=False)
    if positive:
        _log_y(ax)
    if top is not None:
        ax.set_ylim(top=top)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"sweep: {ylabel} of {len(curves)} runs")
    ax.grid(True, alpha=0.3)
    if not _legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False):
        ax.text(0.5, 0.5, "no child logged a curve", ha="center", va="center", transform=ax.transAxes)
    return fig


def _legend(ax, **options) -> bool:
    """A legend of the axes' labelled lines, when there are any (matplotlib warns of an empty one); whether drawn."""
    if not ax.get_legend_handles_labels()[0]:
        return False
    ax.legend(**options)
    return True
