"""flows: Prefect flows and tasks, the MLflow tracking layer and the ``bp`` command."""

import os
import sys

# Offline-friendly defaults, set before Prefect or MLflow is imported; users can override them.
# Prefect's temporary server needs 16-23 s to create its SQLite database the first time, past
# its default 20 s start-up limit.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")  # offline by default: no usage pings from the clients either
# MLflow prints "View run ... at: <url>" to stdout when a run ends on a server: noise in bp's output and
# in every worker's log (the run's id is printed by bp, and its page is in the MLflow UI)
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# For the temporary (SQLite) server this process starts: record task runs in batches. One write
# transaction per task-run event collides with the API's own writes, which then answer 503
# ("database is locked") and the client retries only after about 2 s; batched, that almost never
# happens. The final batch is flushed when the server stops.
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", "500")
os.environ.setdefault("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE", "500")

# How long an MLflow request waits for a server that does not answer (BP_SERVER_TIMEOUT, about 2 minutes).
from flows import outage  # noqa: E402  (the standard library only)

outage.configure()

# MLflow's REST client asks, on its first request, whether it runs in a Databricks notebook, by importing
# IPython (1.2 s here, on the path of every run against an MLflow server). A process that has not
# imported IPython by now is no notebook: make that import fail at once instead.
if "IPython" not in sys.modules and not sys.flags.interactive:
    sys.modules["IPython"] = None

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's own default, in the working directory


def resolve_tracking_uri(uri: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def flow_for(kind: str):
    """The Prefect flow that trains one run of ``kind`` (its declared entrypoint, imported on first use)."""
    import importlib

    from bpcore import kinds

    module, _, name = kinds.get(kind).flow.partition(":")
    return getattr(importlib.import_module(module), name)
