"""The start-up speed-ups lean on internals: each test fails naming the internal when an upgrade removes or
changes it (what each buys: benchmarks/startup_bench.py)."""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
import threading

from support import REPO

from flows.runtime import internals


def test_the_interpreter_exit_steps_leave_calls_are_still_there():
    assert callable(getattr(threading, "_shutdown", None)), "threading._shutdown is gone: internals.leave needs it"
    assert callable(getattr(atexit, "_run_exitfuncs", None)), "atexit._run_exitfuncs is gone: internals.leave needs it"


LEAVING = """
import atexit, threading, time
from flows.runtime import internals
atexit.register(lambda: print("atexit ran", flush=True))
threading.Thread(target=lambda: (time.sleep(0.3), print("thread finished", flush=True))).start()
internals.leave(3, grace=5)
print("never printed")
"""


def test_leave_exits_with_the_code_after_threads_and_atexit_handlers_as_python_would():
    done = subprocess.run([sys.executable, "-c", LEAVING], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout.splitlines() == ["thread finished", "atexit ran"], done.stdout


def test_leave_does_not_wait_past_its_grace_for_a_thread_that_hangs():
    code = LEAVING.replace("time.sleep(0.3)", "time.sleep(60)").replace("grace=5", "grace=1")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=30)
    assert done.returncode == 3 and "thread finished" not in done.stdout


def test_mlflows_package_map_is_still_built_by_the_internal_bp_warms():
    from mlflow.utils import requirements_utils

    from flows.runtime import internals

    assert callable(getattr(requirements_utils, "_init_packages_to_modules_map", None)), \
        "mlflow.utils.requirements_utils._init_packages_to_modules_map is gone: internals.warm_package_map needs it"
    internals.warm_package_map()
    assert requirements_utils._PACKAGES_TO_MODULES, \
        "mlflow.utils.requirements_utils._PACKAGES_TO_MODULES is not filled by _init_packages_to_modules_map"


PROBE = """
from flows.runtime import internals
internals.no_notebook_probe()
try:
    import IPython
    print("imported")
except ImportError:
    print("refused")
from mlflow.utils import databricks_utils
print(databricks_utils.is_in_databricks_notebook())
"""


def test_the_notebook_probe_fails_at_once_and_mlflow_still_knows_it_is_no_notebook():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["refused", "False"]


def test_fewer_collections_raises_the_thresholds_without_turning_the_collector_off():
    from flows.runtime import internals

    saved = gc.get_threshold()
    try:
        internals.fewer_collections()
        assert gc.get_threshold() == (10_000, 50, 100) and gc.isenabled()
    finally:
        gc.set_threshold(*saved)


def test_prefects_log_and_event_queues_still_drain_as_bp_drains_them():
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        assert callable(getattr(worker, "drain_all", None)), \
            f"{worker.__module__}.{worker.__name__}.drain_all is gone: internals.drain_prefect_queues needs it"
    internals.drain_prefect_queues(timeout=1)  # nothing queued: returns at once


def test_a_flow_runs_own_process_is_still_python_m_prefect_engine(monkeypatch):
    import importlib.util

    spec = importlib.util.find_spec("prefect.engine")
    assert spec is not None, "prefect.engine is gone: a flow run's process is no longer python -m prefect.engine " \
        "(internals.in_prefect_engine_process)"
    assert not internals.in_prefect_engine_process()  # pytest's own process
    monkeypatch.setattr(sys.modules["__main__"], "__spec__", spec)  # as runpy sets it for python -m prefect.engine
    assert internals.in_prefect_engine_process()


FORKED = """
import dask
from distributed.utils import get_mp_context
from flows.runtime import internals

internals.forkserver_workers(["wave"])
with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
    context = get_mp_context()  # as each nanny calls it: Dask must not put its own list back
with context.Pool(1) as pool:
    print(pool.apply(eval, ("[name in __import__('sys').modules for name in ('wave', 'distributed')]",)))
"""


def test_a_forkservers_workers_start_with_the_modules_bp_preloads():
    out = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.strip() == "[True, True]", "distributed.utils.get_mp_context no longer lets its forkserver " \
        f"preload list be replaced (internals.forkserver_workers): {out.stdout}{out.stderr[-2000:]}"


REFRESHED = """
import os
from prefect.settings import get_current_settings
from flows.runtime import internals

os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # after Prefect's import, as in a forked worker
before = get_current_settings().api.url
internals.refresh_prefect_settings()
print(before, get_current_settings().api.url)
"""


def test_prefects_global_settings_read_the_environment_again_when_refreshed():
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    out = subprocess.run([sys.executable, "-c", REFRESHED], capture_output=True, text=True, cwd=REPO, env=env,
                         timeout=120)
    before, after = out.stdout.split() or ["", ""]
    assert before != after == "http://127.0.0.1:9/api", "prefect.context." \
        f"refresh_global_settings_context no longer rebuilds the settings from the environment: {out.stdout}" \
        f"{out.stderr[-2000:]}"
