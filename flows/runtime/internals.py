"""The only place bp leans on a library's internals: start-up and exit speed-ups, and what Prefect does not export.

Each says what it buys (the speed-ups as measured by ``benchmarks/startup_bench.py``; docs/performance.md
has the figures), and tests/runtime/test_internals.py fails loudly, naming the internal, when an upgrade
removes or changes one.
"""

from __future__ import annotations

import gc
import os
import sys


def no_notebook_probe() -> None:
    """Make ``import IPython`` fail at once in a process that has not imported it.

    MLflow's REST client asks, on its first request, whether it runs in a Databricks notebook by
    importing IPython, on the path of every run against an MLflow server. A process that has not
    imported IPython by now is no notebook. A ``None`` entry in ``sys.modules`` is Python's
    documented way to make an import raise ImportError.
    """
    if "IPython" not in sys.modules and not sys.flags.interactive:
        sys.modules["IPython"] = None


def fewer_collections() -> None:
    """Make the cyclic garbage collector's passes rarer (not off) while MLflow, Prefect and pandas import.

    With the default thresholds it walks the growing heap again and again during those imports.
    """
    gc.set_threshold(10_000, 50, 100)


def leave(code: int, grace: float) -> None:
    """Exit with ``code`` as the interpreter would, minus freeing the heap object by object.

    What Python's own exit does first, in its order: wait for non-daemon threads and run
    threading's exit hooks (Prefect drains its log and event queues there), then the atexit
    handlers (MLflow, logging); then flush the standard streams. Only the teardown of modules and
    objects, which the operating system makes moot, is skipped. Internals: ``threading._shutdown``
    (the interpreter's own first exit step) and ``atexit._run_exitfuncs``. After ``grace`` s the
    process leaves all the same, whatever a thread still waits for.
    """
    import atexit
    import threading

    _flush()
    deadline = threading.Timer(grace, os._exit, args=(code,))
    deadline.daemon = True
    deadline.start()
    threading._shutdown()
    atexit._run_exitfuncs()
    _flush()
    os._exit(code)


def warm_package_map() -> None:
    """Build MLflow's map of installed packages to their modules now, in a thread, rather than when the
    first model is logged (internal: ``mlflow.utils.requirements_utils._init_packages_to_modules_map``)."""
    from mlflow.utils import requirements_utils

    requirements_utils._init_packages_to_modules_map()


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (bp ... | head): nothing more can reach it
            pass


def drain_prefect_queues(timeout: float = 5) -> None:
    """Send the log records and events Prefect still queues for its server now (internal: ``drain_all`` of
    ``prefect.logging.handlers.APILogWorker`` and ``prefect.events.worker.EventsWorker``), before bp stops the
    temporary server they go to; Prefect itself drains them only at the interpreter's exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout)
        except Exception:  # best effort: the run's outcome is already decided and recorded
            pass


def in_prefect_engine_process() -> bool:
    """Whether this process is a flow run's own, as a Prefect worker or ``prefect serve`` starts it: ``python -m
    prefect.engine`` (the command the stack's work pool sets, and the runner's), read from ``__main__``'s spec."""
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(main, "name", None) == "prefect.engine"


def forkserver_workers(preload: list[str]) -> None:
    """Have Dask's nannies start their worker processes from multiprocessing's forkserver with ``preload`` imported,
    so that each worker is a fork of one warmed process instead of a fresh interpreter importing it all again.

    Internal: ``distributed.utils.get_mp_context`` sets Dask's own preload list (Dask and its optional packages) the
    first time it is called in a process and never again; called here first, inside the setting it reads, then
    replaced, before any nanny starts the forkserver. A forkserver already started keeps the modules it has.
    """
    import dask
    from distributed.utils import get_mp_context

    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        context = get_mp_context()
    context.set_forkserver_preload(["distributed", *preload])


def refresh_prefect_settings() -> None:
    """Make Prefect's settings read this process's environment again (internal: the global settings context Prefect
    builds when it is imported, ``prefect.context.refresh_global_settings_context``): a worker forked from a process
    that imported Prefect gets its ``PREFECT_API_URL`` after that import."""
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()
