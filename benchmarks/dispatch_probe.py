"""What dispatch_bench.py sends to the workers: a flow (for a process worker) and tasks (for task workers).

A task with no parameters that finds its token in its tags measures submission without Prefect's
parameter storage. All import what a sweep child imports (MLflow, pandas, Prefect), so a process
started for one flow run pays those imports as a child would, and all write the time their body
starts to ``<BP_PROBE_DIR>/<token>``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow  # noqa: F401 (a child's imports: paid by a fresh process, already paid by a warm one)
import pandas  # noqa: F401
from prefect import flow, task
from prefect.context import TaskRunContext


def _mark(token: str) -> None:
    Path(os.environ["BP_PROBE_DIR"], token).write_text(repr(time.time()))


@flow(name="dispatch-probe")
def probe_flow(token: str) -> None:
    """A flow run whose body only says when it started."""
    _mark(token)


@task(name="dispatch-probe")
def probe_task(token: str, seconds: float = 0.0) -> None:
    """A background task whose body says when it started, then works (sleeps) ``seconds``."""
    _mark(token)
    time.sleep(seconds)


@task(name="dispatch-probe-tagged")
def tagged_task() -> None:
    """A background task with no parameters (nothing for Prefect to store): its token is its ``bp.point=`` tag."""
    run_tags = TaskRunContext.get().task_run.tags
    _mark(next(t.split("=", 1)[1] for t in run_tags if t.startswith("bp.point=")))


LINREG = str(Path(__file__).resolve().parents[1] / "configs" / "linreg.yaml")


def fit_line(learning_rate: float, tracking_uri: str) -> None:
    """One real `bp train configs/linreg.yaml` at ``learning_rate``, tracked at ``tracking_uri``: a flow run in this
    process (its tasks are submitted to the flow's task runner, which a task worker's task has none of)."""
    from bpcore.configfile import load_config
    from flows.experiments.registry import flow_for

    config = load_config(LINREG, [f"trainer.learning_rate={learning_rate}", "experiment=dispatch-bench"])
    flow_for("linreg")(config=config, tracking_uri=tracking_uri, run_name=f"lr={learning_rate:g}")


@task(name="dispatch-probe-line-fit")
def line_fit_task(token: str, learning_rate: float, tracking_uri: str) -> None:
    """A real line fit (its MLflow run, curves, model and plots) on a task worker."""
    _mark(token)
    fit_line(learning_rate, tracking_uri)
