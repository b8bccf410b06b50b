"""``bp reproduce`` as a Prefect flow: train a recorded run again from what MLflow holds, and compare.

Entrypoint ``flows/experiments/reproduce.py:reproduce``.

The record is the run's ``config.yaml`` artifact and its ``bp.data_source`` / ``bp.data_digest``
tags. The data must still have the recorded digest (else the re-run is refused: it would train
on something else); the comparison covers every metric's full history (wall times excepted),
the model's weights, bit for bit, and every config key but the data's location.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import numpy as np
import yaml
from mlflow.exceptions import MlflowException
from prefect import flow
from pydantic import BaseModel

from bpcore.configfile import apply_override, validate
from bpcore.errors import DataError, InputError
from bpcore.loading import fingerprint
from flows.experiments.registry import flow_for
from flows.experiments.skeleton import RunResult
from flows.tracking import metrics, runs
from flows.tracking import tags as tag

TIMINGS = {"train_seconds"}  # wall-clock figures: never expected to repeat


def recorded_config(run_id: str, tracking_uri: str | None, overrides=()):
    """The run's resolved config (data path pinned to the file it read), with ``overrides``."""
    mc = runs.client(tracking_uri)
    try:
        run = mc.get_run(run_id)
        with tempfile.TemporaryDirectory() as tmp:
            raw = yaml.safe_load(Path(mc.download_artifacts(run_id, "config.yaml", tmp)).read_text())
    except (MlflowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"run {run_id}: cannot read its record at {runs.resolve_tracking_uri(tracking_uri)}: "
                         f"{reason}") from None
    if run.data.tags.get(tag.SWEEP) == "parent":
        best = run.data.tags.get(tag.BEST_CHILD)
        hint = f" (its best child is {best})" if best else ""
        raise InputError(f"run {run_id} is a sweep's parent: it trained nothing itself; reproduce one of its "
                         f"children{hint}, or run the sweep again with bp sweep")
    source = run.data.tags.get(tag.DATA_SOURCE, "")
    data = raw.get("data") or {}
    if data.get("path") is not None and not data.get("download") and Path(source).is_absolute():
        data["path"] = source  # the recorded absolute path, wherever the re-run starts from
    for item in overrides:
        apply_override(raw, item)
    return validate(raw, source=f"run {run_id} config.yaml"), run


def recorded_threads(run):
    """A context that sets the BLAS thread count the run recorded in environment.json (if it did)."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    try:
        env = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/environment.json")
    except (MlflowException, OSError, ValueError):
        return nullcontext()
    counts = {pool.get("num_threads") for pool in env.get("thread_pools") or [] if pool.get("user_api") == "blas"}
    if len(counts) != 1 or not isinstance(next(iter(counts)), int):
        return nullcontext()
    return threadpool_limits(limits=counts.pop(), user_api="blas")


def check_data(run, source: str | None, digest: str | None) -> None:
    """Refuse to re-run on data whose digest differs from the record."""
    recorded = run.data.tags.get(tag.DATA_DIGEST)
    if recorded and digest and digest != recorded:
        raise DataError(f"{source}: data changed since run {run.info.run_id}: "
                        f"recorded sha256 {recorded}, now {digest}")


def differences(original_id: str, new_id: str, tracking_uri: str | None) -> list[str]:
    """Human-readable differences between two runs' metric histories and model weights."""
    mc = runs.client(tracking_uri)
    both = [mc.get_run(original_id), mc.get_run(new_id)]
    out = []
    keys = sorted((set(both[0].data.metrics) | set(both[1].data.metrics)) - TIMINGS)
    for key in keys:
        (steps, a), (_, b) = (metrics.history(mc, run_id, key, with_steps=True) for run_id in (original_id, new_id))
        if len(a) != len(b):
            out.append(f"metric {key}: {len(a)} values recorded, {len(b)} now")
        elif not np.array_equal(a, b, equal_nan=True):
            diff = np.abs(a - b)
            first = int(np.flatnonzero(diff != 0)[0])  # not equal, so some entry differs (NaN != 0 too)
            relative = np.nanmax(diff / np.maximum(np.abs(a), 1e-300))
            out.append(f"metric {key}: max |difference| {np.nanmax(diff):.3g} (relative {relative:.3g}), "
                       f"first at step {steps[first]}")
    out += _weight_differences(original_id, new_id)
    out += _config_differences(runs[0].data.params, runs[1].data.params)
    commits = [r.data.tags.get("mlflow.source.git.commit") for r in runs]
    if out and commits[0] != commits[1]:
        out.append(f"code: commit {commits[0]} recorded, {commits[1]} now")
    return out


# Where the data is read from is not what it is: a relative path recorded from one directory is pinned
# to the file it read (an absolute path) for the re-run, and the data's sha256 must match (check_data).
LOCATION_KEYS = {"data.path"}


def _config_differences(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """The config keys (the runs' params) whose values differ, where the data lives aside."""
    keys = sorted((set(recorded) | set(now)) - LOCATION_KEYS)
    return [f"config: {key} {recorded.get(key, '(unset)')} recorded, {now.get(key, '(unset)')} now"
            for key in keys if recorded.get(key) != now.get(key)]


def _weights(run_id: str) -> dict[str, np.ndarray] | None:
    """The arrays in a run's model weights, or None when the run logged no model."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=tmp))
            (path,) = local.rglob("weights.npz")
            with np.load(path, allow_pickle=False) as z:
                return {name: z[name] for name in z.files}
    except (MlflowException, OSError, ValueError):
        return None


def _weight_differences(original_id: str, new_id: str) -> list[str]:
    a, b = _weights(original_id), _weights(new_id)
    if a is None and b is None:
        return []
    if a is None or b is None:
        return [f"model: {'none' if a is None else 'logged'} recorded, {'none' if b is None else 'logged'} now"]
    changed = [name for name in sorted(set(a) | set(b))
               if name not in a or name not in b or a[name].shape != b[name].shape
               or a[name].tobytes() != b[name].tobytes()]
    return [f"model weights differ: {', '.join(changed)}"] if changed else []


class ReproduceResult(BaseModel):
    """The new run, the run it reproduces, and every difference found (none: identical)."""

    run_id: str
    original: str
    differences: list[str]


@flow(name="reproduce", log_prints=False)
def reproduce(run_id: str, tracking_uri: str | None = None, overrides: list[str] | None = None) -> ReproduceResult:
    """Train run ``run_id`` again from its record (tagged ``bp.reproduces``) and compare the two.

    Refuses (DataError) when the data's digest no longer matches the record. The recorded BLAS
    thread count is set for the re-run: a product split differently between threads may round
    differently. A re-run that diverges is compared all the same (the original may have too).
    """
    config, record = recorded_config(run_id, tracking_uri, overrides or [])
    check_data(record, *fingerprint(config))
    with recorded_threads(record):
        state = flow_for(config.kind)(config=config, tracking_uri=tracking_uri, tags={tag.REPRODUCES: run_id},
                                      return_state=True)
    outcome = state.result(raise_on_failure=False)
    if not isinstance(outcome, RunResult | runs.RunFailed):
        raise outcome
    found = differences(run_id, outcome.run_id, tracking_uri)
    return ReproduceResult(run_id=outcome.run_id, original=run_id, differences=found)
