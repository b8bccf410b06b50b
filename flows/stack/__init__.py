"""The native stack: ``bp stack up|down|status|env`` runs Prefect, MLflow, workers and the sweep workers' Dask
scheduler as local processes."""
