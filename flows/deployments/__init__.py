"""Configs as Prefect deployments: registered on a work pool (``bp deploy``) or served (``bp serve``)."""
