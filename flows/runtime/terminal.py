"""What a bp process shows on its terminal: bp's own lines (progress, results, warnings), not Prefect's engine log.

Prefect's console handler prints every flow and task run's log record ("Beginning flow run", "Finished in
state Completed()", a failed task's traceback); they all stay on the Prefect server, where its UI shows them.
Without ``--verbose`` (``BP_VERBOSE=1`` in the environment), ``quiet()`` lets through only the records bp
logged through ``logger()`` and other libraries' warnings, each without its traceback: bp prints one line for a failure
itself. Dask's worker processes of a local sweep print to the same terminal, so they call ``quiet()`` too.
"""

from __future__ import annotations

import logging
import os

VERBOSE = "BP_VERBOSE"  # "1": Prefect's full console log, tracebacks included, in this process and its workers
MARK = "bp_line"  # the attribute a record bp logged itself carries


def verbose() -> bool:
    return os.environ.get(VERBOSE) == "1"


def logger() -> logging.LoggerAdapter:
    """The current flow or task run's logger (the Prefect UI shows its records), whose records this terminal
    shows too: every line bp logs goes through one. Taken in the run's context, usable from any thread after."""
    from prefect import get_run_logger

    return logging.LoggerAdapter(get_run_logger(), {MARK: True})


class BpLinesOnly(logging.Filter):
    """Passes the records bp logged through ``logger()``, and other libraries' warnings; Prefect's own records stay on
    its server."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, MARK, False):
            return True
        return record.levelno >= logging.WARNING and not record.name.startswith("prefect")


class _NoTraceback(logging.Formatter):
    """Formats as the handler's own formatter would, minus tracebacks and stacks.

    A failed run's detail stays in the flow run's logs on the Prefect server and in the MLflow run's
    ``bp.failure_reason``. The record is copied, not changed: Prefect's API log handler still sends the traceback.
    """

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None,
                                            "stack_info": None})
        return self.inner.format(record)


def quiet() -> None:
    """Prefect's console handlers show bp's lines only, without tracebacks, and MLflow's INFO lines are off, for the
    rest of this process (nothing, with ``BP_VERBOSE=1``)."""
    if verbose():
        return
    from prefect.logging.handlers import PrefectConsoleHandler
    from prefect.logging.loggers import get_logger

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Validating input example ..." per model
    get_logger()  # Prefect's logging config applied before its handlers are looked for
    for name in [None, *logging.root.manager.loggerDict]:
        for handler in list(getattr(logging.getLogger(name), "handlers", [])):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _NoTraceback):
                handler.setFormatter(_NoTraceback(handler.formatter))
                handler.addFilter(BpLinesOnly())
