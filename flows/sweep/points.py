"""A sweep's points on warm processes: the background task a point runs as, and the sweep worker that serves it.

A sweep on a pool (``flows.sweep.remote``) delays one Prefect background task per grid point
(``Task.delay``). Sweep workers (``bp sweep-worker --pool P``: long-lived processes that imported
Prefect, MLflow, NumPy and pandas once) each take one point at a time and run the kind's own flow in
their process, so a point pays no Python start. The task run is one of the sweep's in the Prefect
UI (its flow run is the sweep's), and the kind's flow code runs in it, as in an in-process sweep's
child: the flow's tasks nest under the point's task run.

The task has no parameters: Prefect would store them in the submitter's local result storage,
which a worker on another machine cannot read. The point travels instead in a Prefect variable
(``Variable``, on the server) named by the task run's version (``task_version``), whose value is

    {"point": {config, tags, run_name, data_digest, sweep}, "beat": N}

A worker takes a point by creating the variable ``<name>-claim`` (which only one can): when the sweep
delays a point again that may still be held by a live worker, only one of its task runs trains it,
and the claim tells the sweep the point has started. While its point trains, the worker counts
``beat`` up every BEAT_SECONDS: a sweep whose point's count stops knows its worker is gone (a killed
worker's task run stays Running for ever; Prefect sends task runs no heartbeats and delivers a task
run once). The same thread reads the sweep's MLflow run: once it has ended (the sweep stopped, or
gave up), the point is stopped where it is and its MLflow run ends KILLED with the sweep's reason. As
it ends, the worker creates ``<name>-ended`` holding ``{run_id, reason}``.

The claim and the end are new variables, not updates of the point's: creating one is a single
write, while Prefect's update reads the row first and, on SQLite under load, is refused (503) when
another write lands between the two. Requests go through ``flows.server.busy``, which sends a
refused one again within milliseconds.

Each pool has its own task (its Prefect task key names the pool), so ``bp sweep-worker --pool P``
takes the points of sweeps on P only. The key also hashes this task's code: the sweep and its workers
must run the same bp, on the same Python minor version.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import time
from typing import Any

from mlflow.tracking import MlflowClient
from prefect import Task, get_run_logger, task
from prefect.states import Cancelled, Completed, Failed, State

from bpcore.configfile import validate
from flows.experiments import membership
from flows.experiments.membership import SweepMember
from flows.experiments.registry import flow_for
from flows.experiments.steering import Steer
from flows.runtime import outage
from flows.server import busy
from flows.sweep.child import train_point
from flows.tracking import runs
from flows.tracking import tags as tag

BEAT_SECONDS = 3.0  # between two counts of a training point's heartbeat
CLAIM, ENDED = "-claim", "-ended"  # after a point's variable name: the variables of its claim and of its end
SKIP = "-skip"  # ... and the one its sweep makes to skip it while it trains (a smaller learning rate diverged)


def point_task(pool: str, name: str | None = None, variable: str | None = None) -> Task:
    """The background task of pool ``pool``'s sweep points (the same task, for the same pool, in every process).

    ``name`` names its task runs; ``variable``, the point's variable, goes as the task's version (below).
    """
    def run() -> State:
        return run_point()

    # Prefect's task key is the function's name and a hash of its code: the name routes a pool's points
    run.__name__ = run.__qualname__ = f"sweep_point_{pool.replace('-', '_')}"
    # never cached: a task worker gives a task without a cache policy Prefect's default, keyed by its
    # inputs (none here) and its flow run (the sweep's), which would take every point for the first
    # the point's variable rides as the task run's ``task_version``: a tag would make Prefect's task engine
    # ask the server for a concurrency lease of that tag as every point starts (and keep a thread per tag)
    return task(run, name=name or f"sweep-point {pool}", version=variable, cache_key_fn=_never_cached)


def _never_cached(context, parameters) -> None:
    """No cache key: every point trains."""
    return None


def run_point() -> State:
    """Train the point whose variable this task run's version names, with its kind's flow code; the task's
    final state."""
    from prefect.context import TaskRunContext

    name = TaskRunContext.get().task_run.task_version
    logger = get_run_logger()
    value = _read(name)
    if value is None:
        return Cancelled(message="not trained: its sweep is over (the point's variable is gone)")
    point = value["point"]
    member = SweepMember.model_validate(point["sweep"])
    mc = runs.client(None)  # this worker's MLFLOW_TRACKING_URI: the sweep's store
    if not _claim(name):  # the sweep delayed the point again, and another task run of it started first
        logger.info("%s: another task run of this point took it", point["run_name"])
        return Cancelled(message="not trained: another task run of this point took it")
    if gone := membership.sweep_gone(member, mc):
        return _ended(name, None, f"not trained: {gone}", Cancelled)
    steer = Steer(_judge(point.get("prune"), member, mc))
    beat = Beat(name, value, member, mc, steer)
    beat.start()
    run_id, reason = None, None
    try:
        run_id, reason = _train(name, point, member, steer)
    except runs.StopRequested as stop:  # the sweep's MLflow run ended: its reason is the point's
        reason = stop.reason
    except Exception as exc:  # a point's error is that point's outcome (the parent reads it from ``<name>-ended``)
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
    finally:
        beat.stop()
    if beat.stopped:
        reason = beat.stopped
        logger.warning("%s: stopped: %s", point["run_name"], reason)
    skipped = steer.check() is not None and reason is not None  # its sweep skipped it: not the point's failure
    return _ended(name, run_id, reason, Cancelled if beat.stopped or skipped else Failed if reason else Completed)


def _train(name: str, point: dict[str, Any], member: SweepMember, steer: Steer) -> tuple[str | None, str | None]:
    """Run the point's kind's flow code in this task run, in the sweep's flow run, as an in-process sweep's
    child does: the flow's tasks are task runs of the sweep's flow run, nested under this one, and its
    MLflow run's ``bp.flow_run`` is the sweep's flow run. The point's MLflow run id, and why it did not
    finish (None: it did).

    Not a flow run of its own: on top of the task run, it would cost the Prefect server a flow, a
    flow run and its orchestrated states per point (eight requests, more than half of the server's
    work for a short point on a pool). The flow's context is Prefect's own run context, made here as
    its flow engine makes it, with the flow's own task runner (its tasks submit to it).
    """
    from prefect.context import FlowRunContext
    from prefect.results import get_result_store

    config = validate(point["config"], source=f"sweep point {point['run_name']}")
    flow = flow_for(config.kind)
    sweep_run = _flow_run(member.flow_run_id) if member.flow_run_id else None
    with busy.client() as client, flow.task_runner.duplicate() as runner, \
            FlowRunContext(flow=flow, flow_run=sweep_run, task_runner=runner, client=client, parameters={},
                           result_store=get_result_store()):
        result = train_point(config, None, {**(point["tags"] or {}), tag.POINT: name}, point["run_name"],
                             point["data_digest"], member, steer)
    return result.run_id, (None if result.status == "finished" else result.reason or result.status)


def _judge(prune: dict[str, str] | None, member: SweepMember, mc: MlflowClient):
    """The search's pruner for this point, deciding here as the sweep's study would (None: not pruned)."""
    if not prune:
        return None
    from bpcore.search import Judge

    return Judge(prune["prune"], _earlier(member.parent_run_id, prune["study"], mc.tracking_uri))


@functools.lru_cache(maxsize=16)
def _earlier(parent_run_id: str, path: str, tracking_uri: str) -> list:
    """The trials of a search's earlier rounds, as its sweep logged them on its parent run (read once a round)."""
    import json
    import tempfile
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        local = MlflowClient(tracking_uri).download_artifacts(parent_run_id, path, tmp)
        return json.loads(Path(local).read_text())["trials"]


@functools.lru_cache(maxsize=16)
def _flow_run(flow_run_id: str):
    """The sweep's flow run, read once for all of its points this worker trains."""
    with busy.client() as client:
        return client.read_flow_run(flow_run_id)


class _OutcomeNotError(logging.Filter):
    """A point that did not finish (it diverged, its data was bad) is its sweep's result, not a worker's error:
    Prefect's "Task run failed with state ..." line (with an empty traceback) is left out; its
    "Finished in state Failed(...)" line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Task run failed with state")


logging.getLogger("prefect.task_runs").addFilter(_OutcomeNotError())


def _claim(name: str) -> bool:
    """Take the point for this task run: the variable ``<name>-claim`` made here (it can be made only once)."""
    return _create(f"{name}{CLAIM}", True)


def _ended(name: str, run_id: str | None, reason: str | None, end) -> State:
    """Record how the point ended in ``<name>-ended`` (if the sweep still has the point); the task run's state."""
    if _read(name) is not None:
        _create(f"{name}{ENDED}", {"run_id": run_id, "reason": reason})
    return end(message=reason) if reason else end()


def _create(name: str, value: Any) -> bool:
    """Make the variable ``name``; False if it exists (made by another, or by this call's first try)."""
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    def create() -> bool:
        with busy.client() as client:
            try:
                client.create_variable(VariableCreate(name=name, value=value, tags=["bp", "sweep-point"]))
                return True
            except ObjectAlreadyExists:
                return False

    return _patiently(create)


def _read(name: str) -> dict[str, Any] | None:
    def read():
        with busy.client() as client:
            variable = client.read_variable_by_name(name)
        return None if variable is None else variable.value

    return _patiently(read)


def _patiently(call):
    """``call()``, tried again a second apart while the Prefect server is away, up to ``BP_SERVER_TIMEOUT`` s."""
    deadline = time.monotonic() + outage.seconds()
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() + 1 > deadline:
                raise
            time.sleep(1)


class Beat(threading.Thread):
    """While a point trains: its heartbeat count, its stop once the sweep's MLflow run has ended, and its skip
    (``steer`` cancelled) once the sweep has made the point's ``-skip`` variable."""

    def __init__(self, name: str, value: dict[str, Any], member: SweepMember, mc: MlflowClient,
                 steer: Steer | None = None):
        super().__init__(name=f"beat {name}", daemon=True)
        self.variable, self.value, self.member, self.mc, self.steer = name, value, member, mc, steer
        self.target = threading.get_ident()  # the thread that trains the point
        self.stopped: str | None = None  # why the sweep stopped the point
        self._done = threading.Event()
        self._lock = threading.Lock()  # a stop is raised only while the point trains

    def count(self) -> None:
        from prefect.client.schemas.actions import VariableUpdate

        self.value = {**self.value, "beat": int(self.value.get("beat") or 0) + 1}
        with busy.client() as client:
            client.update_variable(VariableUpdate(name=self.variable, value=self.value))

    def run(self) -> None:
        try:
            self._beat()
        finally:
            busy.release()

    def _beat(self) -> None:
        while not self._done.wait(BEAT_SECONDS):
            try:
                self.count()
            except Exception:  # the server away a while: the sweep, unable to read the counts either, waits too
                pass
            self.skipped()
            try:
                parent = self.mc.get_run(self.member.parent_run_id)
            except Exception:  # MLflow away: the point's own logging rides it out or fails
                continue
            if parent.info.status != "RUNNING":
                why = parent.data.tags.get(tag.FAILURE_REASON) or f"its sweep's MLflow run ended {parent.info.status}"
                with self._lock:
                    if not self._done.is_set():
                        self.stopped = why
                        self._raise(runs.stop_request(why))
                return

    def skipped(self) -> None:
        """The sweep's word that the point is skipped, passed to its training (which stops after its epoch)."""
        if self.steer is None or self.steer.check():
            return
        try:
            with busy.client() as client:
                skip = client.read_variable_by_name(f"{self.variable}{SKIP}")
        except Exception:  # the server away: asked again at the next beat
            return
        if skip is not None:
            self.steer.cancel(str((skip.value or {}).get("reason") or "skipped by its sweep"))

    def _raise(self, exc: type[BaseException] | None) -> None:
        """Raise ``exc`` in the training thread at its next Python instruction (None: take back one not raised yet)."""
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self.target),
                                                   ctypes.py_object(exc) if exc else None)

    def stop(self) -> None:
        """The point is done: no stop is raised after this returns (one not raised yet is taken back)."""
        with self._lock:
            self._done.set()
            if self.stopped:
                self._raise(None)


def serve(pool: str, limit: int = 1) -> None:
    """Take pool ``pool``'s sweep points, ``limit`` at a time, until stopped (``bp sweep-worker``)."""
    from prefect.settings import PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, temporary_settings
    from prefect.task_worker import serve as serve_tasks

    from flows.runtime import settings, speedups

    settings.apply()
    speedups.no_notebook_probe()
    _warm()
    if _csrf_enforced():
        serve_tasks(point_task(pool), limit=limit)
        return
    # Prefect's client asks a new CSRF token before its first write, one more request each point (each
    # task run has its own client); a server that does not check them answers that request 422
    with temporary_settings(updates={PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: False}):
        serve_tasks(point_task(pool), limit=limit)


def _csrf_enforced() -> bool:
    """Whether the Prefect server checks CSRF tokens (``PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED``; off by
    default): a server that does not answers a token request 422. True when it does not say."""
    from flows.runtime.http import request
    from flows.server import prefect_api

    url, auth = prefect_api.configured()
    if not url:
        return True
    status, _ = request("GET", f"{url.rstrip('/')}/csrf-token?client=bp-sweep-worker", prefect_api.headers(auth))
    return status != 422


def _warm() -> None:
    """Import now what every point's flow imports as it runs: the first point then starts as fast as the rest."""
    import mlflow.pyfunc  # noqa: F401 (a line fit's model)

    from flows.experiments import plots  # noqa: F401 (matplotlib)
