"""The environment defaults bp sets for Prefect and MLflow, and where a run's tracking store is.

``apply()`` is called explicitly by the ``bp`` command before it imports Prefect or MLflow, and by
every flow as it starts (so a worker's flow-run process gets them too); it acts once per process.
Each is a default: a value the user set wins.
"""

from __future__ import annotations

import os

from flows.runtime import outage

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # MLflow's own default, in the working directory

DEFAULTS = {
    # Prefect's temporary server creates its SQLite database on first start, past its default 20 s limit
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # offline by default: no usage pings from the servers or the clients
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    # no "View run ... at: <url>" line when a run ends on a server: bp prints the run id itself
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    # no "Downloading artifacts: 100%|..." bars on stderr (MLflow draws them whenever tqdm is installed,
    # as Optuna installs it): bp's stderr is its messages, one line per error
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    # the temporary (SQLite) server records task runs in batches: one write per task-run event
    # collides with the API's own writes ("database is locked"); the last batch is flushed at stop
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "500",
}


_applied = False


def apply() -> None:
    """Set bp's defaults where the environment has no value, and size the clients' retries to BP_SERVER_TIMEOUT;
    once per process (a sweep's in-process children start flows too)."""
    global _applied
    if _applied:
        return
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    outage.configure()
    _applied = True


def resolve_tracking_uri(uri: str | None = None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the working directory."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
