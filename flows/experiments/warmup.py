"""What logging a run needs, imported and initialised ahead: by ``bp`` while Prefect's server starts, and by each
worker process of a sweep's Dask cluster as it starts. Here, above ``flows.tracking`` and beside the kinds' plots,
because it warms both."""

from __future__ import annotations

from flows.runtime import internals


def warm_logging(sql_store: bool = True) -> None:
    """Import and initialise what logging a run will need: about 2-3 s on a process's first run, done ahead.

    In the order a run needs them: MLflow's SQL store (``sql_store``: imported when the first run
    starts); what logging a model takes (mlflow.pyfunc and its loaders, and MLflow's scan of installed
    packages, done when the model's requirements are checked); then matplotlib and its first figure
    (fonts, the Agg renderer).
    """
    import io

    try:
        if sql_store:
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
        import mlflow.pyfunc.loaders  # noqa: F401  (loaded when a logged model's input example is checked)

        import flows.tracking.models  # noqa: F401  (mlflow.pyfunc)

        internals.warm_package_map()
        import numpy as np

        from flows.experiments import plots

        plots.cost_curve(np.array([2.0, 1.0]), "warm-up").savefig(io.BytesIO(), format="png")
    except Exception:  # an optimisation only: never let it break a run
        pass
