"""bpcore: the maths and the data of bp-pipeline.

What an experiment is and computes, without running it as a tracked pipeline: its config (``config``),
the data it trains on (``data``), the trainers (``train``), each experiment kind declared once
(``kinds``), and the sweeps and searches over a config (``search``). NumPy, pandas, pydantic and
Optuna: nothing here imports Prefect or MLflow, and each of those imports only the ones named before
it (tests/test_layering.py enforces both), so the maths can be read, tested and benchmarked on its own.
"""
