"""bpcore: the NumPy half of bp-pipeline.

Data loading, the trainers, gradient checking and the config models. Pure NumPy, pandas and
pydantic: nothing here imports Prefect or MLflow (tests/test_layering.py enforces it), so the
maths can be read, tested and benchmarked on its own.
"""
