"""How a flow ends when its training diverged: a Failed Prefect state, not a traceback."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.states import Failed, State

from flows.tracking import Diverged


def diverged_state(exc: Diverged) -> State:
    """Log the reason once and end the flow run Failed, carrying the exception (and its run id)."""
    get_run_logger().error("%s (MLflow run %s)", exc.reason, exc.run_id)
    return Failed(message=exc.reason, data=exc)
