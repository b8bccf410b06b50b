"""Work pools, through Prefect's client."""

from __future__ import annotations


def ensure_pool(pool: str) -> None:
    """Create the ``process`` work pool ``pool`` unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        except ObjectAlreadyExists:
            pass
