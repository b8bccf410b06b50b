"""flows: the Prefect and MLflow side of bp, in packages by concern, each importing only those below it.

From the bottom up: ``runtime`` (how a bp process behaves: settings, signals, servers that go away),
``tracking`` (MLflow: runs, tags, the store, models), ``server`` (Prefect client helpers, pools,
automations, the temporary server), ``experiments`` (one flow per kind, reproduce, plots),
``sweep`` (grids and searches of runs, on Dask workers or in-process), ``deployments`` (configs as deployments),
``stack`` (the native servers) and ``cli`` (the ``bp`` command). docs/architecture.md draws it.
"""
