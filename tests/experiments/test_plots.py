"""The plots a run and a sweep log: drawn without matplotlib's warnings on stderr beside bp's own lines."""

from __future__ import annotations

import warnings

import matplotlib

from flows.experiments import plots

matplotlib.use("Agg")


def test_a_sweep_whose_children_logged_no_curve_is_plotted_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "No artists with labels found to put in legend" was one
        fig = plots.sweep_curves([("lr=0.1", [], "failed"), ("lr=0.2", [], "skipped")], "cost", "step")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["no child logged a curve"] and fig.axes[0].get_legend() is None


def test_a_sweep_plot_labels_each_curve_by_its_point_and_status():
    fig = plots.sweep_curves([("lr=0.1", [3.0, 2.0, 1.0], "finished"), ("lr=0.5", [3.0, 9.0], "diverged")],
                             "cost", "step")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["lr=0.1", "lr=0.5 (diverged)"]
