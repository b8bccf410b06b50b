"""flows: Prefect flows and tasks, the MLflow tracking layer and the ``bp`` command."""

import os

# Offline-friendly defaults, set before Prefect or MLflow is imported; users can override them.
# Prefect's temporary server needs 16-23 s to create its SQLite database the first time, past
# its default 20 s start-up limit.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")  # offline by default: no usage pings from the clients either
