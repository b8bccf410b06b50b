"""The native stack: ``bp stack up|down|status`` runs Prefect, MLflow and workers as local processes."""
