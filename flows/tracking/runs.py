"""The MLflow layer: one place that knows run names, tags, batching and failure marking.

It knows nothing of the maths: callers hand it configs, tables and numbers. Every run it
opens ends FINISHED or FAILED (KILLED on Ctrl-C, SIGTERM or SIGHUP) with ``bp.status`` and, when it failed, the
reason in ``bp.failure_reason`` (``flows.tracking.ending`` ends it); no run is left RUNNING by an exception.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import mlflow
from mlflow.data.dataset import Dataset
from mlflow.tracking import MlflowClient

from bpcore.config import serial
from bpcore.errors import one_line
from flows.runtime import outage, stops
from flows.runtime.settings import resolve_tracking_uri
from flows.tracking import ending
from flows.tracking import tags as tag
from flows.tracking.metrics import log_params, with_retries
from flows.tracking.provenance import environment, git_tags


class RunFailed(Exception):
    """A tracked run ended FAILED; carries its MLflow run id, its bp.status, the reason, and what it
    produced before it failed (``result``: the flow's result object, when there is one)."""

    status = "failed"

    def __init__(self, run_id: str, reason: str, result=None):
        super().__init__(reason)
        self.run_id = run_id
        self.reason = reason
        self.result = result


class Diverged(RunFailed):
    """Training stopped because the cost blew up; the run is FAILED with bp.status=diverged."""

    status = "diverged"


class Ended(Exception):
    """Raised inside ``tracked_run`` to end the run early as a result, not an error: its MLflow ``run_status``
    (FINISHED for a pruned trial, KILLED for a skipped one) with ``status`` and ``reason`` tagged."""

    def __init__(self, run_status: str, status: str, reason: str):
        super().__init__(reason)
        self.run_status, self.status, self.reason = run_status, status, reason


stopped_runs: list[str] = []  # the runs this process ended KILLED on a stop: what bp's last line says to resume


def client(uri: str | None = None) -> MlflowClient:
    """The client of a run or a sweep, for ``uri`` (else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db); its URI
    is also made the fluent API's, which opens the run and logs models and datasets into it."""
    uri = resolve_tracking_uri(uri)
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri)


@contextmanager
def tracked_run(config, source: str, digest: str, dataset: Dataset | None, mc: MlflowClient,
                run_name: str | None = None, extra_tags: dict[str, str] | None = None,
                resume: str | None = None) -> Iterator[str]:
    """Open an MLflow run through ``mc`` that records config and data; yield its id; always end it.

    ``source`` and ``digest`` identify the training data (its path and sha256); ``dataset`` is
    logged as the run's training input; ``extra_tags`` (e.g. ``bp.reproduces``) are added.
    ``resume``: instead, reopen that run (``reopen``), whose record is already there.

    An exception inside the block marks the run FAILED (KILLED for Ctrl-C and signals), tags the reason,
    and is re-raised as RunFailed so the caller still learns the run id; ``Ended`` ends it as it says.
    """
    if resume is not None:
        run_id = reopen(mc, resume, extra_tags or {})
    else:
        experiment_id = experiment_id_of(mc, config.experiment)
        tags = _run_tags(config, source, digest, extra_tags)
        run_id = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags).info.run_id
    try:
        if resume is None:
            _record(config, dataset, mc, run_id)
        yield run_id
    except Ended as ended:  # the run's outcome, not a failure: the block's exception ends here
        ending.end(mc, run_id, ended.run_status, ended.status, ended.reason)
    except BaseException as exc:
        if isinstance(exc, StopRequested) and _taken_over(mc, run_id):
            raise  # another attempt of the point goes on in this run (this one's worker was taken for lost)
        stopped = stop_reason(exc)
        lost = stopped is None and not isinstance(exc, RunFailed) and outage.unreachable(exc)
        if isinstance(exc, RunFailed):
            bp_status, reason = exc.status, exc.reason
        elif lost:
            bp_status, reason = "failed", lost_reason(mc)
        else:
            bp_status, reason = "failed", stopped or one_line(exc, 5000, named=True)
        if stopped:
            stops.leave_soon_after(exc)  # whatever the marking below meets
            if (extra_tags or {}).get(tag.SWEEP) != "child":  # a sweep's point goes on with its sweep
                stopped_runs.append(run_id)
        try:
            # on a stop, or with the server gone, one quick attempt: the next bp reaps a run left RUNNING
            ending.end(mc, run_id, "KILLED" if stopped else "FAILED", bp_status, reason, quick=bool(stopped) or lost)
        except Exception:
            if not (stopped or lost):
                raise
        if isinstance(exc, Exception) and not isinstance(exc, RunFailed):
            raise RunFailed(run_id, reason) from exc
        raise
    else:
        ending.end(mc, run_id, "FINISHED", "finished", None)


def _taken_over(mc: MlflowClient, run_id: str) -> bool:
    """Whether run ``run_id`` names another process as its worker now (``reopen``: a point resumed elsewhere)."""
    try:
        return mc.get_run(run_id).data.tags.get(tag.WORKER) != worker()
    except Exception:  # the store away: the run is this process's to mark, as far as it knows
        return False


def _record(config, dataset: Dataset | None, mc: MlflowClient, run_id: str) -> None:
    """What a new run holds before it trains: the config as params and ``config.yaml``, the environment, the data."""
    log_params(mc, run_id, serial.flatten(serial.to_dict(config)))
    mc.log_text(run_id, serial.to_yaml(config), "config.yaml")
    mc.log_dict(run_id, environment(), "environment.json")
    if dataset is not None:
        # MLflow checks for the dataset, then inserts it: runs logging the same new dataset at
        # once (a sweep's children) can hit its UNIQUE constraint; by the retry it exists
        with_retries(lambda: mlflow.log_input(dataset, context="training"), delay=0.2)


def reopen(mc: MlflowClient, run_id: str, extra_tags: dict[str, str]) -> str:
    """Make the ended run ``run_id`` this process's RUNNING run again (``bp resume``); returns its id.

    Its record (params, config, data, tags) stays; ``bp.resumed`` counts the reopenings, ``bp.worker`` and
    ``bp.resumed_at`` name this process (the tags first: a reaper that sees it RUNNING sees a live owner),
    the old failure reason goes, and metric values its histories already hold are not logged twice (but for a
    sweep's parent, whose comparison of the children so far is replaced by the whole one).
    """
    from mlflow.entities import RunTag

    from flows.tracking.metrics import now_ms, resumed

    run = mc.get_run(run_id)
    count = int(run.data.tags.get(tag.RESUMED, "0")) + 1
    tags = {**extra_tags, tag.STATUS: "running", tag.WORKER: worker(), tag.RESUMED: str(count),
            tag.RESUMED_AT: str(now_ms())}
    mc.log_batch(run_id, tags=[RunTag(key, value) for key, value in tags.items()])
    ending.forget_reason(mc, run_id)
    if extra_tags.get(tag.SWEEP) != "parent":  # a sweep's comparison, logged as it stopped, is logged anew
        resumed(mc, run_id, run.data.metrics)
    mlflow.start_run(run_id=run_id)
    return run_id


def _run_tags(config, source: str, digest: str, extra_tags: dict[str, str] | None) -> dict[str, str]:
    """What every run of a config is tagged with as it opens: kind, fingerprints, status, worker, commit."""
    return {
        tag.KIND: config.kind,
        tag.CONFIG_DIGEST: serial.digest(config),
        tag.DATA_DIGEST: digest,
        tag.DATA_SOURCE: source,
        tag.STATUS: "running",
        tag.WORKER: worker(),
        **git_tags(),
        **(extra_tags or {}),
    }


def record_untrained(config, source: str, digest: str, mc: MlflowClient, run_name: str,
                     extra_tags: dict[str, str] | None, status: str, reason: str) -> str:
    """A run of ``config`` that was decided against before it trained (a sweep child skipped above a rate that
    diverged): its params, config and tags as any run's, ended KILLED with ``status`` and ``reason``."""
    run = mc.create_run(experiment_id_of(mc, config.experiment), run_name=run_name,
                        tags=_run_tags(config, source, digest, extra_tags))
    run_id = run.info.run_id
    try:
        log_params(mc, run_id, serial.flatten(serial.to_dict(config)))
        mc.log_text(run_id, serial.to_yaml(config), "config.yaml")
    finally:
        ending.end(mc, run_id, "KILLED", status, reason)
    return run_id


def lost_reason(mc: MlflowClient) -> str:
    """Why a run gave up on its tracking server, naming it and the setting that bounds the wait."""
    return (f"the MLflow server at {mc.tracking_uri} stopped answering: gave up after waiting about "
            f"{outage.seconds():g} s ({outage.VARIABLE})")


def experiment_id_of(mc: MlflowClient, name: str) -> str:
    """The id of experiment ``name``, created when it does not exist yet.

    Runs open in the experiment by id: ``mlflow.set_experiment`` of a name another process creates
    at the same moment gives up on "already exists" without making it active, and the run then
    lands in "Default". Creating races the same way; the loser reads the winner's id.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    from bpcore.errors import InputError

    found = mc.get_experiment_by_name(name)
    if found is None:
        try:
            return mc.create_experiment(name, tags={tag.EXPERIMENT_KIND: tag.TRAINING})
        except MlflowException as exc:
            if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                raise
            found = mc.get_experiment_by_name(name)
    if found.lifecycle_stage != "active":
        raise InputError(f"experiment {name!r} is deleted in the tracking store: restore it (mlflow experiments "
                         "restore) or give another name (--experiment)")
    if tag.EXPERIMENT_KIND not in found.tags:  # made before bp tagged its experiments; a kind chosen stays
        mc.set_experiment_tag(found.experiment_id, tag.EXPERIMENT_KIND, tag.TRAINING)
    return found.experiment_id


class StopRequested(BaseException):
    """Raised in a sweep point's own thread when its sweep's word says stop (``flows.sweep.point.ScheduledSteer``):
    ``reason`` says why.

    A BaseException, as Ctrl-C is: the code it interrupts must not take it for an error of its own. Each stop
    makes a subclass carrying its reason (``stop_request``).
    """

    reason = "stopped"

    def __str__(self) -> str:
        return self.reason


def stop_request(reason: str) -> type[StopRequested]:
    """A StopRequested class whose instances say ``reason``."""
    return type("StopRequested", (StopRequested,), {"reason": reason})


def stop_reason(exc: BaseException) -> str | None:
    """How the process was told to stop, when ``exc`` says it was: Ctrl-C, or a signal.

    Prefect's engine turns SIGTERM inside a flow run into its TerminationSignal (carrying the
    signal's number); outside one, bp's own handler raises flows.cli.exits.Stopped.
    """
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, StopRequested):
        return exc.reason
    number = getattr(exc, "signal", None)
    if isinstance(number, int):
        return f"stopped by {signal.Signals(number).name}"
    if isinstance(number, str):  # flows.cli.exits.Stopped names it
        return f"stopped by {number}"
    if isinstance(exc, SystemExit):
        if isinstance(exc.__context__, BrokenPipeError):  # rich's console exits so when its reader is gone
            return "stopped: its output pipe broke (the worker that started this flow run is gone)"
        return str(exc) if isinstance(exc.code, str) else f"stopped: the process exited (SystemExit({exc.code!r}))"
    return None


def worker() -> str:
    """``host:pid`` of this process: where a RUNNING run can be checked for a live owner."""
    return f"{socket.gethostname()}:{os.getpid()}"


def mark_failed(mc: MlflowClient, run_id: str, bp_status: str, reason: str, run_status: str = "FAILED") -> bool:
    """End a run FAILED (or ``run_status``: KILLED) with ``bp.status`` and ``bp.failure_reason``, for a run whose
    own process cannot. A run that has ended already keeps its own outcome; False then."""
    if mc.get_run(run_id).info.status != "RUNNING":
        return False
    ending.end(mc, run_id, run_status, bp_status, reason)
    return True


