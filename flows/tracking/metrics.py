"""Writing to a run: params and metric histories in MLflow's batches, uncut by a stop, retried where a retry mends."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext

import numpy as np
import tenacity
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from flows.runtime import outage, stops

MAX_BATCH = 1000  # MLflow accepts at most 1000 metrics per log_batch call


MAX_PARAM_CHARS = 6000


def unbroken(mc: MlflowClient):
    """A context in which Ctrl-C and signals wait for the block's writes to ``mc``'s store to end.

    A database store (SQLite, Postgres) is written by this process itself: a stop raised inside
    one of its transactions can leave the connection holding the database's lock, and the run can
    then no longer be marked. A server's request can be cut.
    """
    return nullcontext() if str(mc.tracking_uri).startswith(("http:", "https:")) else stops.signals_held()


_logged: dict[str, dict[str, int]] = {}  # run id -> metric -> last step it has: a resumed run's history so far


def log_batch(mc: MlflowClient, run_id: str, **batch) -> None:
    """``mc.log_batch(run_id, **batch)``, uncut by a stop (``unbroken``); in a resumed run, without the metric values
    its history already has (``resumed``)."""
    if run_id in _logged and batch.get("metrics"):
        last = _logged[run_id]
        batch["metrics"] = [m for m in batch["metrics"] if m.step > last.get(m.key, -1)]
        if not any(batch.values()):
            return
    with unbroken(mc):
        mc.log_batch(run_id, **batch)


def resumed(mc: MlflowClient, run_id: str, keys) -> None:
    """From now on, this process logs to run ``run_id`` (reopened by ``bp resume``) only the steps after the last
    one each metric of ``keys`` recorded: a training that goes on from an earlier point, or from the start,
    computes again steps it had logged (the same values), and a history holds each step once."""
    _logged[run_id] = {key: max((m.step for m in mc.get_metric_history(run_id, key)), default=-1) for key in keys}


def log_params(mc: MlflowClient, run_id: str, params: Mapping[str, object]) -> None:
    """Log flattened params (lists as their YAML-ish text), in batches."""
    items = [Param(k, _param_text(v)) for k, v in params.items()]
    for start in range(0, len(items), 100):
        log_batch(mc, run_id, params=items[start : start + 100])


def _param_text(value: object) -> str:
    text = "null" if value is None else str(value)
    return text[:MAX_PARAM_CHARS]


def log_history(mc: MlflowClient, run_id: str, key: str, values: Sequence[float],
                first_step: int = 0, timestamp_ms: int | None = None) -> None:
    """Log a metric's whole history, step = first_step + index, at most 1000 values per call.

    One fixed timestamp for the whole history makes a retried call write the same rows again
    rather than a second copy of the curve.
    """
    ts = timestamp_ms if timestamp_ms is not None else now_ms()
    values = np.asarray(values, dtype=float)
    for start in range(0, values.size, MAX_BATCH):
        chunk = values[start : start + MAX_BATCH]
        metrics = [Metric(key, float(v), ts, first_step + start + i) for i, v in enumerate(chunk)]
        log_batch(mc, run_id, metrics=metrics)


def history(mc: MlflowClient, run_id: str, key: str, with_steps: bool = False):
    """A metric's whole history as float64 values in step order (ties by timestamp); with ``with_steps``,
    (steps, values)."""
    points = sorted(mc.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp))
    values = np.array([p.value for p in points], dtype=np.float64)
    return ([p.step for p in points], values) if with_steps else values


def now_ms() -> int:
    """Milliseconds since the epoch: MLflow's metric timestamp."""
    return int(time.time() * 1000)


def with_retries(fn, attempts: int = 3, delay: float = 1.0, sleep=time.sleep):
    """Call ``fn()``; on an exception try again, up to ``attempts`` calls, ``delay`` s apart (``sleep`` waits them).

    For tracking calls made from inside a long task (per-epoch metrics), where retrying the
    whole Prefect task would retrain the network. A request that already waited for an absent server
    (``outage.unreachable``) is not tried again, nor is a stop (KeyboardInterrupt, a sweep's stop).
    """
    again = tenacity.retry_if_exception(lambda exc: isinstance(exc, Exception) and not outage.unreachable(exc))
    return tenacity.Retrying(stop=tenacity.stop_after_attempt(attempts), wait=tenacity.wait_fixed(delay),
                             retry=again, reraise=True, sleep=sleep)(fn)


def log_values(mc: MlflowClient, run_id: str, values: Mapping[str, float],
               step: int = 0, timestamp_ms: int | None = None, model_id: str | None = None) -> None:
    """Log single-valued metrics in one call; linked to the logged model ``model_id`` when given."""
    ts = timestamp_ms if timestamp_ms is not None else now_ms()
    log_batch(mc, run_id, metrics=[Metric(k, float(v), ts, step, model_id=model_id) for k, v in values.items()])
