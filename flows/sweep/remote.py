"""Sweep children on a pool's sweep workers: each grid point a Prefect background task (``flows.sweep.points``).

The parent writes each point into a Prefect variable and delays its task (a task run of the sweep's
flow run in the Prefect UI; whichever sweep worker of the pool is free takes it), then reads every
point's variable with one request every few seconds until each has ended. A worker logs to its own
``MLFLOW_TRACKING_URI``, which must be the parent's store; the parent reads each child's outcome from
its MLflow run (found by the tag ``bp.point``) as soon as the point's ``-ended`` variable appears.

What can go wrong on the way, and what happens then:
- the Prefect server answers with an error or not at all (a restart, its database away for a
  while, SQLite's "database is locked" under load): every request is tried again until the
  server has failed for ``BP_SERVER_TIMEOUT`` seconds in a row; then ``ServerLost``. A server that
  stopped answering may have restarted, and its queue of task runs not yet taken lives in memory
  only: the points not started are delayed again (the old ones, if still queued, find their
  variable gone and do not train);
- a point's worker dies (killed, its machine lost): its heartbeat count stops; after LEASE seconds
  its MLflow run is marked FAILED with the reason, its task run Crashed, and the point is delayed
  again, a bounded number of times;
- the sweep is stopped (Ctrl-C, SIGTERM) or gives up: the points not started are cancelled (their
  variables deleted, so a worker that takes one does not train it), those training are marked
  KILLED with the reason and stop within seconds (their workers see the sweep's MLflow run ended);
- the machine that submits the sweep has no copy of the data (compose mounts it on the workers
  only): the first child to read it records its digest under the sweep's key (a Prefect variable,
  created once), and every other child checks its own copy against it (``agreed_digest``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from mlflow.tracking import MlflowClient
from prefect import get_run_logger

from bpcore import sweep as grid
from bpcore.errors import InputError
from bpcore.sweep import GridPoint
from flows.experiments.membership import SweepMember
from flows.experiments.pipeline import run_tags
from flows.runtime import outage
from flows.runtime.http import request
from flows.server import busy, prefect_api
from flows.sweep import points as sweep_points
from flows.sweep import skips
from flows.sweep.child import Child, record_skipped
from flows.tracking import runs
from flows.tracking import tags as tag
from flows.tracking.reap import reaped

ATTEMPTS = 3  # a point whose worker dies is delayed again, at most this many times in all
POLL_SECONDS = 0.5  # between two reads of the points' variables (one request for all of them)
QUEUED_PER_WORKER, MIN_QUEUED = 2, 4  # points delayed and not started, for each sweep worker and at least
LEASE_VARIABLE = "BP_POINT_LEASE"
LEASE_SECONDS = 30.0  # a started point whose heartbeat count stays this long is taken for lost (its worker dead)
SWEEP_CLAIM = "taken by its sweep"  # a point's claim the sweep made itself (a worker's is true): not trained
VALUE_LIMIT = 5000  # characters of JSON in a Prefect variable's value (prefect.types.MAX_VARIABLE_VALUE_LENGTH)
T = TypeVar("T")


class ServerLost(Exception):
    """The Prefect server failed every request for longer than the budget."""


class Interrupted(Exception):
    """The children that finished before the sweep stopped or gave up; ``cause`` is why it did."""

    def __init__(self, children: list[Child], cause: BaseException):
        super().__init__(str(cause))
        self.children, self.cause = children, cause


@dataclass
class Submitted:
    """One grid point on the pool: its current task run and variable, and what is known of how it goes."""

    point: GridPoint
    digest: str | None
    tags: dict[str, str] | None
    member: SweepMember
    prune: dict[str, str] | None = None  # a search's pruning, for its worker (``flows.sweep.flow._away``)
    attempt: int = 0  # how many times the point was delayed
    lost: int = 0  # how many of those attempts lost their worker
    variable: str | None = None  # the current attempt's Prefect variable (and ``bp.point`` tag)
    task_runs: list[uuid.UUID] = field(default_factory=list)  # every task run made for the point, the current last
    beat: int = 0  # the last heartbeat count read: 1 for the claim, then one a beat (0: not started)
    seen: float = 0.0  # time.monotonic() when that count was read first
    ended: dict | None = None  # what the worker wrote as the point ended (its ``-ended`` variable)
    child: Child | None = None  # its outcome, once read
    told: bool = False  # told to stop as it trained (above a rate that diverged)

    @property
    def final(self) -> bool:
        return self.child is not None

    @property
    def task_run_id(self) -> uuid.UUID | None:
        """The point's current task run (None: not delayed yet)."""
        return self.task_runs[-1] if self.task_runs else None


def lease() -> float:
    """Seconds a started point may go without a heartbeat (``BP_POINT_LEASE``, default 30)."""
    try:
        return max(3 * sweep_points.BEAT_SECONDS, float(os.environ.get(LEASE_VARIABLE, LEASE_SECONDS)))
    except ValueError:
        return LEASE_SECONDS


def patiently(call: Callable[[], T], what: str) -> T:
    """``call()``, tried again (1, 2, 4 ... 30 s apart) until it has failed for ``BP_SERVER_TIMEOUT`` s in a row."""
    deadline, pause = time.monotonic() + outage.seconds(), 1.0
    while True:
        try:
            return call()
        except Exception as exc:  # an HTTP error, a refused connection, a timeout: all alike here
            if time.monotonic() + pause > deadline:
                raise ServerLost(f"the Prefect server stopped answering ({what}: {_why(exc)}); gave up after "
                                 f"{outage.seconds():g} s ({outage.VARIABLE})") from exc
            time.sleep(pause)
            pause = min(30.0, pause * 2)


def _why(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


class Unanswered(ConnectionError):
    """The Prefect server did not answer at all (not running, restarting, unreachable)."""


class Pool:
    """The requests of one sweep on a pool, through the configured Prefect API."""

    def __init__(self, pool: str, member: SweepMember):
        self.url, auth = prefect_api.configured()
        self.url = (self.url or "").rstrip("/")
        self.headers = prefect_api.headers(auth)
        self.pool, self.task = pool, sweep_points.point_task(pool)
        self.prefix = f"bp-point-{member.parent_run_id}-"
        self.missed = False  # a request found nobody answering since this was last reset
        self.free_since: float | None = None  # since when points have waited while a worker was free

    def call(self, method: str, path: str, body=None, ok=(200, 201, 204), timeout: float = 10):
        """The answer to one request; a busy server's 503 (SQLite refusing a write that met another) is sent again
        within milliseconds, a few times (``flows.server.busy``), before it counts as a failure."""
        status, answer = busy.resend(lambda: request(method, self.url + path, self.headers, body, timeout=timeout),
                                     lambda answered: answered[0] == busy.BUSY)
        if status == 0:
            self.missed = True
            raise Unanswered(f"{method} {path}: no answer")
        if status not in ok:
            raise ConnectionError(f"{method} {path}: HTTP {status}: {str(answer)[:200]}")
        return answer

    def create(self, name: str, value: Any) -> bool:
        """Make the variable ``name`` (one of this sweep's points'); False when it exists already with another value
        (a retried request that finds the first one's variable is this call's all the same)."""
        answer = patiently(lambda: self.call("POST", "/variables/", {"name": name, "value": value,
                                                                      "tags": ["bp", "sweep-point"]},
                                             ok=(200, 201, 409)), f"writing {name}")
        if isinstance(answer, dict) and answer.get("name") == name:
            return True
        found = patiently(lambda: self.call("GET", f"/variables/name/{name}", ok=(200, 404)), f"reading {name}")
        return isinstance(found, dict) and found.get("value") == value

    def variables(self) -> dict[str, Any]:
        """Every variable of this sweep's points: name -> value (paged by 200, the API's limit)."""
        found: dict[str, Any] = {}
        while True:
            page = self.call("POST", "/variables/filter", {"variables": {"name": {"like_": self.prefix}},
                                                           "offset": len(found), "limit": 200})
            found.update({v["name"]: v["value"] for v in page})
            if len(page) < 200:
                return found

    def stalled(self, children: list[Submitted], now: float, limit: float, progressed: bool = False) -> bool:
        """Whether points not started have waited ``limit`` s while a sweep worker had nothing to do and no point
        moved (``progressed``: a count or an end seen in this look; the server may count a dead worker a while).

        A free worker takes a queued point at once, and a busy one holds at most one in reserve: more
        points waiting than there are points in training, with fewer in training than workers, means
        the server no longer has them queued (it restarted unnoticed, between two of this sweep's requests).
        """
        training = sum(1 for c in children if not c.final and c.beat > 0)
        waiting = sum(1 for c in children if c.attempt and not c.final and c.beat == 0)
        free = not progressed and waiting > training and (self.workers() or 0) > training
        if not free:
            self.free_since = None
        elif self.free_since is None:
            self.free_since = now
        elif now - self.free_since > limit:
            self.free_since = None
            return True
        return False

    def clean(self, timeout: float = 10) -> None:
        """Delete what is left of this sweep's variables (an old attempt's, when its deletion met the server away;
        a claim made as the sweep stopped)."""
        try:
            for name in self.variables():
                _forget(self, name, timeout=timeout, whole=False)
        except ConnectionError:
            pass

    def workers(self) -> int | None:
        """How many sweep workers serve this pool's points now (None: the server did not say)."""
        return prefect_api.task_workers(self.url, self.headers, self.task.task_key)


def run_on_pool(points: list[GridPoint], digests: list[str | None], pool: str, mc: MlflowClient,
                tags: dict[str, str] | None, member: SweepMember, metric: str, skip: bool = False,
                prune: dict[str, str] | None = None) -> list[Child]:
    """Every grid point as a background task on ``pool``'s sweep workers, outcomes in grid order.

    ``digests``: each point's data digest, when this machine has read the data (else None and
    ``data_key`` names the rendezvous where the first child to read it records its digest).
    Raises Interrupted (carrying the children that finished) when stopped or when the server is lost.
    """
    logger = get_run_logger()
    logging.getLogger("prefect.tasks").setLevel(logging.WARNING)  # not a line per point: "Created task run ..."
    api = Pool(pool, member)
    in_grid = [Submitted(point, digest, tags, member, prune) for point, digest in zip(points, digests)]
    # a divergence-aware grid delays its points smallest learning rate first (see skip_above)
    children = [in_grid[p.index] for p in grid.by_rate(points)] if skip else in_grid
    experiment = Experiments(mc)
    try:
        workers = api.workers()
        if workers == 0:
            logger.warning("no sweep worker serves pool %r yet: the points wait for one (bp sweep-worker --pool %s)",
                           pool, pool)
        top_up(api, children, workers)
        while not all(child.final for child in children):
            time.sleep(POLL_SECONDS)
            for diverged in watch(api, children, mc, experiment, metric, logger):
                if skip:
                    skip_above(api, children, diverged, mc, logger)
            if not all(child.attempt for child in children):  # points still to delay: how many workers take them
                top_up(api, children, api.workers())
        settle(api, children)
        api.clean()
    except BaseException as exc:  # a stop (in a flow run SIGTERM is Prefect's TerminationSignal), the server lost
        why = runs.stop_reason(exc) or str(exc)
        stop(api, children, mc, experiment, f"{why}: the sweep's children still to run were cancelled")
        if isinstance(exc, Exception) and not isinstance(exc, ServerLost):
            raise
        raise Interrupted(_finished(children, mc, member, metric), exc) from exc
    return [child.child for child in in_grid]


def _finished(children: list[Submitted], mc: MlflowClient, member: SweepMember, metric: str) -> list[Child]:
    """The children that ended, by MLflow's record (one search, one attempt): also those whose workers had not
    yet said so as the sweep stopped."""
    done = {id(c): c.child for c in children if c.child is not None}
    with outage.one_attempt():
        try:
            parent = mc.get_run(member.parent_run_id)
            ended = {run.data.tags.get(tag.POINT): run for run in mc.search_runs(
                [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{member.parent_run_id}' and "
                "attributes.status != 'RUNNING'", max_results=5000)}
            for child in children:
                if id(child) not in done and child.variable in ended:
                    done[id(child)] = Child.of_run(child.point, ended[child.variable], mc, metric)
        except Exception:  # MLflow away as well: what was read before
            pass
    return [done[id(c)] for c in children if id(c) in done]


SETTLE_SECONDS = 10.0  # at most, for the points' task runs to show their ends once every point has said it ended


def settle(api: Pool, children: list[Submitted]) -> None:
    """Until no task run of a point that ended is still Scheduled, Pending or Running (at most SETTLE_SECONDS).

    A worker records a point's end in its ``-ended`` variable (a direct write) before its task run's
    final state reaches the server's records (events, recorded in the background: seconds under load),
    and the sweep's flow run should not end while Prefect still shows one of its points unfinished.
    """
    ids = [str(run) for child in children if child.ended is not None for run in child.task_runs]
    if not ids:
        return
    body = {"task_runs": {"id": {"any_": ids}, "state": {"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}}},
            "limit": 1}
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        try:
            if not api.call("POST", "/task_runs/filter", body):
                return
        except ConnectionError:  # the record of points that are over anyway: the outcome does not depend on it
            return
        time.sleep(POLL_SECONDS)


def top_up(api: Pool, children: list[Submitted], workers: int | None) -> None:
    """Delay the next points not delayed yet, until QUEUED_PER_WORKER points per sweep worker wait to start.

    A worker trains one point and holds the next in reserve, so two a worker keep them all busy
    between two looks; delaying every point at once would only make the server queue (in memory,
    at most ``PREFECT_TASK_SCHEDULING_MAX_SCHEDULED_QUEUE_SIZE``) and write them all in one burst,
    while the first points start. ``workers`` None (the server did not say): as if one.
    """
    waiting = sum(1 for c in children if c.attempt and not c.final and c.beat == 0)
    room = max(MIN_QUEUED, QUEUED_PER_WORKER * (workers or 1)) - waiting
    for child in [c for c in children if not c.attempt][:max(0, room)]:
        submit(api, child)


def submit(api: Pool, child: Submitted) -> None:
    """Write the point's next attempt into its variable and delay its task (a task run of the sweep's flow run)."""
    child.attempt += 1
    child.variable = f"{api.prefix}{child.point.index}-{child.attempt}"
    child.beat, child.ended = 0, None
    value = {"point": {"config": child.point.config, "tags": child.tags, "run_name": child.point.name,
                       "data_digest": child.digest, "sweep": child.member.model_dump(), "prune": child.prune},
             "beat": 0}
    if len(json.dumps(value)) > VALUE_LIMIT:  # Prefect would refuse it (HTTP 422), again and again
        raise InputError(f"sweep point {child.point.name}: its config is {len(json.dumps(value))} characters as "
                         f"JSON, more than the {VALUE_LIMIT} a Prefect variable holds: too large to send to a pool")
    # a retried request may find the variable made by the first: then it is this attempt's all the same
    patiently(lambda: api.call("POST", "/variables/", {"name": child.variable, "value": value,
                                                        "tags": ["bp", "sweep-point"]}, ok=(200, 201, 409)),
              f"submitting {child.point.name}")
    _delay(api, child)


def _delay(api: Pool, child: Submitted) -> None:
    """A task run of the point's current variable, for whichever sweep worker is free.

    What ``Task.delay()`` does (a task run of the sweep's flow run, Scheduled and deferred: the server
    queues it for the task's workers), through a client that asks a busy server again at once.
    """
    import asyncio

    task = sweep_points.point_task(api.pool, name=f"point {child.point.name}", variable=child.variable)

    async def create():
        async with busy.client(asynchronous=True) as client:
            return await task.create_run(client=client, deferred=True)

    def delay():
        try:
            return asyncio.run(create())
        except Exception as exc:
            if not isinstance(exc, httpx.HTTPStatusError):  # no answer at all: the server may be restarting
                api.missed = True
            raise

    child.task_runs.append(patiently(delay, f"submitting {child.point.name}").id)


def watch(api: Pool, children: list[Submitted], mc: MlflowClient, experiment: Experiments, metric: str,
          logger) -> list[Submitted]:
    """Read every point's variable once; take the outcomes of those that ended, act on those whose worker is lost.
    Returns the points found diverged in this look."""
    values = patiently(api.variables, "reading the points")
    # the server did not answer some request since the last look (this read, a submission, ...): it may have restarted
    missed, api.missed = api.missed, False
    now, limit, gone, progressed = time.monotonic(), lease(), 0, False
    diverged: list[Submitted] = []
    attempts = [child.attempt for child in children]
    for child in children:
        if child.final or not child.attempt:  # ended, or not delayed yet
            continue
        value = values.get(child.variable)
        if value is None:  # deleted by hand, or never made: the point cannot be trained from it
            gone += lost(api, child, mc, experiment, metric, logger, "its Prefect variable is gone")
            continue
        if (ended := values.get(child.variable + sweep_points.ENDED)) is not None:
            progressed = True
            child.ended = ended
            child.child = outcome(child, mc, experiment, metric)
            _forget(api, child.variable)
            if child.told:
                skips.told_ended(logger, child.point, child.child.status)
            if child.child.status == "diverged":
                diverged.append(child)
            continue
        beat = int(value.get("beat") or 0) + (child.variable + sweep_points.CLAIM in values)
        progressed = progressed or beat != child.beat
        if beat != child.beat or missed:  # the server away: no worker could have counted meanwhile
            child.beat, child.seen = beat, now
        elif beat and now - child.seen > limit:
            gone += lost(api, child, mc, experiment, metric, logger,
                         f"its worker sent no heartbeat for {limit:g} s ({LEASE_VARIABLE}): the worker is gone")
    # Points not started may be lost too: a restarted server has forgotten the task runs no worker had
    # taken yet, and a dead worker took one in reserve as it started its last (Prefect's task worker
    # receives its next task run before a slot is free). Each gets a new task run; should the old one
    # still start (a live worker held it), the point's claim lets only one of them train it.
    why = "the Prefect server did not answer for a while" if missed else "a worker was lost" if gone else \
        "points waited while a sweep worker was free" if api.stalled(children, now, limit, progressed) else None
    if why:
        waiting = [c for c, attempt in zip(children, attempts)
                   if c.attempt and not c.final and c.beat == 0 and c.attempt == attempt]  # not just delayed again
        for child in waiting:  # the same variable: of two task runs of a point, the first to claim it trains
            _cancel(api, child, f"delayed again: {why}")
            _delay(api, child)
        if waiting:
            logger.warning("%s: the %d point(s) not started were delayed again", why, len(waiting))
    return diverged


def skip_above(api: Pool, children: list[Submitted], diverged: Submitted, mc: MlflowClient, logger) -> None:
    """The points above a learning rate that diverged, with its other values, not trained (or no longer).

    A point not delayed yet, or delayed and not taken by a worker, is taken here (its claim made by
    the sweep: no worker trains it then) and recorded as a skipped child run. One a worker has
    taken is told through its ``-skip`` variable: its worker stops it after the epoch it is in,
    and its run ends KILLED with the reason, read back as any point's outcome.
    """
    reason = grid.skip_reason(diverged.point)
    above = {p.index for p in grid.above(diverged.point, [c.point for c in children])}
    skipped, told = [], []
    for child in [c for c in children if c.point.index in above and not c.final and not c.told]:
        if child.attempt and not api.create(f"{child.variable}{sweep_points.CLAIM}", SWEEP_CLAIM):
            api.create(f"{child.variable}{sweep_points.SKIP}", {"reason": reason})  # a worker has it: told
            child.told = True
            told.append(child.point)
            continue
        if child.attempt:  # delayed, but taken by no worker: its task run is not trained, and says why
            _cancel(api, child, reason)
            _forget(api, child.variable)
        child.child = record_skipped(child.point, child.digest, mc, run_tags(child.tags, child.member), reason)
        skipped.append(child.point)
    skips.announce(logger, diverged.point, skipped, told)


def lost(api: Pool, child: Submitted, mc: MlflowClient, experiment: Experiments, metric: str, logger,
         why: str) -> bool:
    """A point whose worker is gone: its MLflow run FAILED with the reason, its task run Crashed, delayed again.

    False when it had ended all the same (its run ended, but the server was away as it said so). A run
    a bp on the worker's machine reaped (its process gone) did not end: it stays FAILED with that reason."""
    done = [run for run in _runs_of(mc, experiment, child, " and attributes.status != 'RUNNING'")
            if not reaped(run)]
    if done:
        child.child = Child.of_run(child.point, done[0], mc, metric)
        _forget(api, child.variable)
        return False
    reason = f"{child.point.name}: attempt {child.attempt} lost: {why} (task run {child.task_run_id})"
    for run in _runs_of(mc, experiment, child, " and attributes.status = 'RUNNING'"):
        if runs.mark_failed(mc, run.info.run_id, "failed", reason):
            logger.warning("%s: MLflow run %s marked FAILED (%s)", child.point.name, run.info.run_id, reason)
    _set_state(api, f"/task_runs/{child.task_run_id}", "CRASHED", reason)
    _forget(api, child.variable)
    child.lost += 1
    if child.lost >= ATTEMPTS:
        child.child = Child(child.point, None, "failed", reason)
        return True
    logger.warning("%s: delaying it again (attempt %d of %d)", child.point.name, child.lost + 1, ATTEMPTS)
    submit(api, child)
    return True


def outcome(child: Submitted, mc: MlflowClient, experiment: Experiments, metric: str) -> Child:
    """The Child a worker trained: read from its MLflow run, or what its worker wrote when it opened none.

    The run is read by the id its worker wrote when it has one (a search by tag reads every run of
    the experiment, more with each point of a long sweep)."""
    run_id = (child.ended or {}).get("run_id")
    found = [mc.get_run(run_id)] if run_id else _runs_of(mc, experiment, child)
    if found:
        return Child.of_run(child.point, found[0], mc, metric)
    reason = (child.ended or {}).get("reason") or "the point ended without an MLflow run"
    status = "cancelled" if reason.startswith("not trained:") else "failed"
    return Child(child.point, None, status, reason)


def stop(api: Pool, children: list[Submitted], mc: MlflowClient, experiment: Experiments, reason: str) -> None:
    """Cancel every point not ended and mark its MLflow run KILLED with ``reason``, one quick attempt each.

    Plain requests of a few seconds: this runs on the way out, perhaps with the server away. A point
    not started finds its variable gone when a worker takes it; one training stops within seconds
    when its worker sees the sweep's MLflow run ended.
    """
    waiting = [c for c in children if c.variable is not None and not c.final]
    for child in waiting:
        if api.url:
            _forget(api, child.variable, timeout=3, whole=False)
            if child.beat == 0:
                _set_state(api, f"/task_runs/{child.task_run_id}", "CANCELLED", reason, timeout=3)
    if api.url and not api.missed:
        api.clean(timeout=3)
    with outage.one_attempt():
        for child in waiting:
            try:
                for run in _runs_of(mc, experiment, child, " and attributes.status = 'RUNNING'"):
                    runs.mark_failed(mc, run.info.run_id, "failed", reason, run_status="KILLED")
            except Exception:  # MLflow away too: the next bp on the worker's machine reaps it
                pass


def _set_state(api: Pool, run: str, kind: str, message: str, timeout: float = 10) -> None:
    """Force the state of ``run`` (its API path: ``/task_runs/<id>``)."""
    state = {"type": kind, "name": kind.title(), "message": message[:5000]}
    try:
        api.call("POST", f"{run}/set_state", {"state": state, "force": True}, timeout=timeout)
    except ConnectionError:  # the record of a run that is over anyway; the outcome does not depend on it
        pass


def _cancel(api: Pool, child: Submitted, message: str) -> None:
    _set_state(api, f"/task_runs/{child.task_run_id}", "CANCELLED", message)


def _forget(api: Pool, name: str | None, timeout: float = 10, whole: bool = True) -> None:
    """Delete a point's variable (a worker that takes its task run now does not train it) and, if ``whole``,
    those of its claim and its end (else ``Pool.clean`` finds them)."""
    if not name:
        return
    ends = [sweep_points.CLAIM, sweep_points.ENDED, sweep_points.SKIP]
    for each in [name, *(f"{name}{end}" for end in ends)] if whole else [name]:
        try:
            api.call("DELETE", f"/variables/name/{each}", ok=(200, 204, 404), timeout=timeout)
        except ConnectionError:
            pass


class Experiments:
    """The id of each child's MLflow experiment (its config's), read once."""

    def __init__(self, mc: MlflowClient):
        self.mc, self.ids = mc, {}

    def of(self, child: Submitted) -> str | None:
        name = child.point.config["experiment"]
        if name not in self.ids:
            found = self.mc.get_experiment_by_name(name)
            if found is None:
                return None  # no child has opened a run there yet
            self.ids[name] = found.experiment_id
        return self.ids[name]


def _runs_of(mc: MlflowClient, experiment: Experiments, child: Submitted, extra: str = ""):
    """The MLflow runs of the point's current attempt (``extra``: more of the filter)."""
    found = experiment.of(child)
    if child.variable is None or found is None:
        return []
    return mc.search_runs([found], f"tags.`{tag.POINT}` = '{child.variable}'{extra}")
