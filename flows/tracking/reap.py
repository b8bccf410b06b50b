"""Orphaned runs: a run whose training process on this host is gone (SIGKILL, OOM, power cut) is marked
FAILED instead of staying RUNNING forever. Nothing inside a killed process can do it; the next bp
run against the same store, or a worker's next flow run, does (``bp runs --reap`` does only that).
"""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import UTC, datetime

from flows.runtime import processes
from flows.tracking import store
from flows.tracking import tags as tag

# A live process counts as a reused pid only if it started this long after the run: the two times come
# from different clocks (boot ticks vs wall clock), and marking a live run FAILED cannot be undone.
_CLOCK_SLACK_S = 60
WORKER_TAG = tag.WORKER
_GONE = "that ran it is gone"  # in every reason reap writes


def reap(uri: str, experiment_ids: list[str] | None = None, checked: bool = False) -> list[tuple[str, str]]:
    """Mark FAILED the RUNNING runs whose training process on this host is gone; returns [(run_id, reason)].

    A run is this host's when its ``bp.worker`` tag is ``<this hostname>:<pid>``; it is orphaned when that
    pid is dead, a zombie, or (where /proc tells) a process that started after the run did (pid reuse).
    Runs of other hosts, and runs without the tag, are left alone. ``experiment_ids`` None means all.
    The store is checked first (InputError, as ``check_store`` raises), unless the caller just did
    (``checked``); one MLflow cannot search gives [].
    """
    if not store.exists(uri):
        return []  # nothing recorded there, and reaping must not create a store
    if not checked:
        store.check_store(uri)
        store.ensure_store(uri)  # an old schema is migrated once, not by each bp at once
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from flows.tracking.runs import mark_failed  # as bp marks any failed run: the tags, then FAILED

    host = socket.gethostname()
    try:
        client = MlflowClient(uri)
        orphans = [run for run in _running_here(client, experiment_ids, host)
                   if _is_orphan(run.data.tags[WORKER_TAG], host, _since(run))]
    except MlflowException:
        return []
    marked = []
    for run in orphans:
        when = datetime.now(UTC).isoformat(timespec="seconds")
        reason = f"process {run.data.tags[WORKER_TAG]} {_GONE} (found by bp at {when})"
        with contextlib.suppress(MlflowException):  # deleted meanwhile, or reaped by another bp: no matter
            if mark_failed(client, run.info.run_id, "failed", reason):  # else its process ended it just now
                marked.append((run.info.run_id, reason))
    return marked


def _running_here(client, experiment_ids: list[str] | None, host: str) -> list:
    """The RUNNING runs of ``experiment_ids`` (None: every active experiment) tagged as trained on ``host``."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in _all_pages(client.search_experiments)]
    if not experiment_ids:
        return []
    # the store narrows by host; _is_orphan checks the exact value ("_" in LIKE matches any one character)
    where = f"attributes.status = 'RUNNING' and tags.`{WORKER_TAG}` LIKE '{host}:%'"
    return _all_pages(lambda **page: client.search_runs(experiment_ids, where, **page))


def _all_pages(search) -> list:
    """Every result of an MLflow ``search_*`` call, following its page tokens."""
    results, token = [], None
    while True:
        page = search(max_results=1000, page_token=token)
        results.extend(page)
        token = page.token
        if not token:
            return results


def _since(run) -> int:
    """When the run's current process took it on (ms): its start, or its latest resumption (``bp resume``)."""
    resumed = run.data.tags.get(tag.RESUMED_AT, "")
    return max(run.info.start_time, int(resumed)) if resumed.isdigit() else run.info.start_time


def _is_orphan(worker: str, host: str, run_start_ms: int) -> bool:
    """True if ``worker`` ("host:pid") names a process of this host that can no longer be training the run."""
    worker_host, _, pid_text = worker.rpartition(":")
    if worker_host != host or not pid_text.isdigit() or int(pid_text) <= 0:  # kill(0 or -1) signals many
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    found = processes.stat(pid)
    started = processes.started_at(found.start) if found is not None else None
    if found is None or started is None:  # no /proc: liveness is all we know
        return False
    return found.state == "Z" or started > run_start_ms / 1000 + _CLOCK_SLACK_S
