"""A flow run's log records (its tasks' included) relayed to this terminal as ``bp sweep --pool`` follows it: each
record once, in order, as a run in this process prints them; Prefect's routine lines only with ``--verbose``."""

from __future__ import annotations

import sys
from datetime import datetime, timedelta

LATE = timedelta(seconds=60)  # how much older than the newest record seen a record may reach the server
UNNAMED = timedelta(seconds=10)  # how long a task run's record waits for the server to know the task run's name


class FlowRunLogs:
    """A flow run's log lines (its tasks' included), each printed once, in order, as a terminal run prints them."""

    def __init__(self, client, flow_run_id: str, verbose: bool = False):
        self.client, self.flow_run_id, self.verbose = client, flow_run_id, verbose
        self.task_names: dict = {}
        self.after: datetime | None = None
        self.seen: set = set()
        self.warned: set[str] = set()  # warnings shown: Prefect's engine logs a flow run's failure twice

    def show(self, final: bool = False) -> None:
        """Print the records not printed yet (``final``: all of them, named or not: the flow run has ended)."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
        from prefect.client.schemas.sorting import LogSort

        # a worker's records reach the server in batches, after later ones of others: look back a while
        since = self.after - LATE if self.after else None
        found = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[self.flow_run_id]),
                          timestamp=LogFilterTimestamp(after_=since) if since else None)
        offset = 0
        while True:
            page = self.client.read_logs(log_filter=found, sort=LogSort.TIMESTAMP_ASC, limit=200, offset=offset)
            for log in page:
                if log.id in self.seen:
                    continue
                task = self._task_name(log.task_run_id)
                if log.task_run_id is not None and task is None and not (final or self._overdue(log)):
                    continue  # read again at the next poll, once the task run it names has reached the server
                self.seen.add(log.id)
                self.after = max(self.after or log.timestamp, log.timestamp)
                line = rendered(log, self.verbose, task)
                said = line.split(" | ", 1)[-1] if line and log.level >= 30 and not self.verbose else None
                if line and said not in self.warned:
                    print(line, file=sys.stderr, flush=True)
                if said:
                    self.warned.add(said)
            if len(page) < 200:
                return
            offset += len(page)

    def _overdue(self, log) -> bool:
        """Whether a record has waited long enough for its task run's name (shown without it from then on)."""
        return datetime.now(log.timestamp.tzinfo) - log.timestamp > UNNAMED

    def _task_name(self, task_run_id) -> str | None:
        """The name of the task run a record came from (``child lr=0.1``), read once (None until the server has it:
        a task run's logs may arrive before the event that creates it)."""
        from prefect.exceptions import ObjectNotFound

        if task_run_id is None:
            return None
        if task_run_id not in self.task_names:
            try:
                self.task_names[task_run_id] = self.client.read_task_run(task_run_id).name
            except ObjectNotFound:
                return None
        return self.task_names[task_run_id]


def rendered(log, verbose: bool, task: str | None = None) -> str | None:
    """A log record as the terminal shows it: its first line (all of it with ``--verbose``); the routine "Finished in
    state ..." of a task run or the flow run (the follower's own last line says how the flow run ended) left out
    unless verbose."""
    routine = log.level <= 20 and log.message.startswith("Finished in state")
    if routine and not verbose:
        return None
    level = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}.get(log.level, "INFO")
    text = log.message if verbose else log.message.splitlines()[0] if log.message else ""
    source = f"Task run '{task}'" if task else "Flow run" if log.name == "prefect.flow_runs" else log.name
    return f"{log.timestamp.astimezone():%H:%M:%S} | {level:<7} | {source} - {text}"
