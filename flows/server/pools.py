"""Work pools, through Prefect's client: created when missing, paused while a stack drains, resumed."""

from __future__ import annotations


def ensure_pool(pool: str, base_job_template: dict | None = None, resume: bool = False) -> bool:
    """Create the ``process`` work pool ``pool`` unless it exists (with ``base_job_template``, else the
    process worker's default); whether it was created. ``resume``: an existing pool is unpaused."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process",
                                                   base_job_template=base_job_template or {}))
            return True
        except ObjectAlreadyExists:
            if resume:
                pause_pool(pool, paused=False)
            return False


def pause_pool(pool: str, paused: bool = True) -> None:
    """Pause ``pool`` (its workers take no new flow runs) or resume it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    with get_client(sync_client=True) as client:
        client.update_work_pool(pool, WorkPoolUpdate(is_paused=paused))
