"""Sweeps and searches: points of a grid or trials of a search as child runs of one parent, trained as Prefect tasks
in this process or on Dask workers (a local cluster's, or a pool's sweep workers), resumed where they stopped."""
