"""The MLflow side: runs and their tags, the tracking store, reaping dead runs, models and their code."""
