"""``bp reproduce`` as a Prefect flow: train a recorded run again from what MLflow holds, and compare.

Entrypoint ``flows/experiments/reproduce.py:reproduce``.

The record is the run's ``config.yaml`` artifact and its ``bp.data_source`` / ``bp.data_digest``
tags. The data must still have the recorded digest (else the re-run is refused: it would train
on something else); the comparison covers every metric's full history (wall times excepted),
the model's weights, bit for bit, and every config key but the data's location.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import flow
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from bpcore.config.file import apply_override
from bpcore.config.models import Config
from bpcore.errors import DataError, InputError, one_line
from bpcore.kinds import fingerprint, validate
from flows.experiments import steering
from flows.experiments.pipeline import RunResult
from flows.experiments.registry import flow_for
from flows.experiments.steering import Steer
from flows.tracking import metrics, runs
from flows.tracking import tags as tag

TIMINGS = {"train_seconds"}  # wall-clock figures: never expected to repeat


class Recorded(BaseModel):
    """What a re-run needs of a run's record, read once: the resolved config (data path pinned to the file it
    read, overrides applied), the data's digest and the BLAS thread count it trained with."""

    run_id: str
    config: dict[str, Any]
    data_digest: str | None = None
    blas_threads: int | None = None
    pruned_at: int | None = None  # a sweep's pruned child: the epoch its search stopped it after
    pruned_reason: str | None = None

    def validated(self) -> Config:
        return validate(self.config, source=f"run {self.run_id} config.yaml")


def read_record(run_id: str, mc: MlflowClient, overrides=(), sweeps: bool = False) -> Recorded:
    """Run ``run_id``'s record, with ``overrides``; InputError when it cannot be read or trained nothing itself
    (``sweeps``: a sweep's parent is read as any run, its config with its sweep)."""
    try:
        run = mc.get_run(run_id)
        with tempfile.TemporaryDirectory() as tmp:
            raw = yaml.safe_load(Path(mc.download_artifacts(run_id, "config.yaml", tmp)).read_text())
    except (MlflowException, OSError) as exc:
        raise InputError(f"run {run_id}: cannot read its record at {mc.tracking_uri}: {one_line(exc)}") from None
    if run.data.tags.get(tag.SWEEP) == "parent" and not sweeps:
        best = run.data.tags.get(tag.BEST_CHILD)
        hint = f" (its best child is {best})" if best else ""
        raise InputError(f"run {run_id} is a sweep's parent: it trained nothing itself; reproduce one of its "
                         f"children{hint}, or run the sweep again with bp sweep")
    if run.data.tags.get(tag.STATUS) == steering.SKIPPED:
        why = run.data.tags.get(tag.FAILURE_REASON) or "skipped by its sweep"
        raise InputError(f"run {run_id} is a sweep's skipped child: its sweep did not train it ({why}); there is "
                         "no result to reproduce: bp train its config.yaml to train that point")
    source = run.data.tags.get(tag.DATA_SOURCE, "")
    data = raw.get("data") or {}
    if data.get("path") is not None and not data.get("download") and Path(source).is_absolute():
        data["path"] = source  # the recorded absolute path, wherever the re-run starts from
    for item in overrides:
        apply_override(raw, item)
    pruned = run.data.tags.get(tag.STATUS) == steering.PRUNED
    recorded = Recorded(run_id=run_id, config=raw, data_digest=run.data.tags.get(tag.DATA_DIGEST),
                        blas_threads=_blas_threads(mc, run_id),
                        pruned_at=_last_step(mc, run_id) if pruned else None,
                        pruned_reason=run.data.tags.get(tag.FAILURE_REASON) if pruned else None)
    recorded.validated()  # a bad override is refused now, naming the key
    return recorded


def _last_step(mc: MlflowClient, run_id: str) -> int | None:
    """The last epoch a run logged its cost at (where a pruned child stopped)."""
    steps, _ = metrics.history(mc, run_id, "cost", with_steps=True)
    return int(steps[-1]) if len(steps) else None


def _stopped_as(recorded: Recorded) -> Steer | None:
    """For a pruned child, what stops the re-run after the same epoch, for the same reason (its search is not
    there to decide again); None for any other run."""
    if recorded.pruned_at is None:
        return None
    at, reason = recorded.pruned_at, recorded.pruned_reason or f"pruned at epoch {recorded.pruned_at}"
    return Steer(lambda epoch, figures: reason if epoch >= at else None)


def _blas_threads(mc: MlflowClient, run_id: str) -> int | None:
    """The BLAS thread count the run recorded in environment.json, if it recorded exactly one."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            env = json.loads(Path(mc.download_artifacts(run_id, "environment.json", tmp)).read_text())
    except (MlflowException, OSError, ValueError):
        return None
    counts = {pool.get("num_threads") for pool in env.get("thread_pools") or [] if pool.get("user_api") == "blas"}
    return counts.pop() if len(counts) == 1 and isinstance(next(iter(counts)), int) else None


def check_data(recorded: Recorded, source: str | None, digest: str | None) -> None:
    """Refuse to re-run on data whose digest differs from the record."""
    if recorded.data_digest and digest and digest != recorded.data_digest:
        raise DataError(f"{source}: data changed since run {recorded.run_id}: "
                        f"recorded sha256 {recorded.data_digest}, now {digest}")


def differences(original_id: str, new_id: str, mc: MlflowClient) -> list[str]:
    """Human-readable differences between two runs' metric histories and model weights."""
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
    out += _config_differences(both[0].data.params, both[1].data.params)
    commits = [r.data.tags.get("mlflow.source.git.commit") for r in both]
    if out and commits[0] != commits[1]:
        out.append(f"code: commit {commits[0]} recorded, {commits[1]} now")
    return out


# Where the data is read from is not what it is: a relative path recorded from one directory is pinned
# to the file it read (an absolute path) for the re-run, and the data's sha256 must match (check_data).
LOCATION_KEYS = {"data.path"}
UNRESULTING_KEYS = {"trainer.checkpoint_every"}  # how often a run keeps a checkpoint: its results are the same


def _config_differences(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """The config keys (the runs' params) whose values differ, where the data lives and what changes no result
    aside."""
    keys = sorted((set(recorded) | set(now)) - LOCATION_KEYS - UNRESULTING_KEYS)
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
def reproduce(run_id: str, tracking_uri: str | None = None, overrides: list[str] | None = None,
              recorded: Recorded | None = None) -> ReproduceResult:
    """Train run ``run_id`` again from its record (tagged ``bp.reproduces``) and compare the two.

    ``recorded``: the record as the caller already read it (``bp reproduce`` does, to fail fast), else
    it is read here. Refuses (DataError) when the data's digest no longer matches the record. The
    recorded BLAS thread count is set for the re-run: a product split differently between threads
    may round differently. A pruned sweep child is re-run up to the epoch it was pruned after, and
    pruned there again. A re-run that diverges is compared all the same (the original may have too).
    """
    mc = runs.client(tracking_uri)
    recorded = recorded or read_record(run_id, mc, overrides or [])
    config = recorded.validated()
    check_data(recorded, *fingerprint(config))
    blas = recorded.blas_threads
    with threadpool_limits(limits=blas, user_api="blas") if blas else nullcontext(), \
            steering.steered(_stopped_as(recorded)):
        state = flow_for(config.kind)(config=config, tracking_uri=mc.tracking_uri, tags={tag.REPRODUCES: run_id},
                                      return_state=True)
    outcome = state.result(raise_on_failure=False)
    if not isinstance(outcome, RunResult | runs.RunFailed):
        raise outcome
    found = differences(run_id, outcome.run_id, mc)
    return ReproduceResult(run_id=outcome.run_id, original=run_id, differences=found)
