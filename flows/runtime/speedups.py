"""Start-up speed-ups that lean on a library's internals: each says what it buys, and a test fails loudly,
naming the internal, when an upgrade removes or changes it (tests/test_speedups.py)."""

from __future__ import annotations

import sys


def no_notebook_probe() -> None:
    """Make ``import IPython`` fail at once in a process that has not imported it.

    MLflow's REST client asks, on its first request, whether it runs in a Databricks notebook by
    importing IPython (about 1.2 s, on the path of every run against an MLflow server). A process
    that has not imported IPython by now is no notebook. A ``None`` entry in ``sys.modules`` is
    Python's documented way to make an import raise ImportError.
    """
    if "IPython" not in sys.modules and not sys.flags.interactive:
        sys.modules["IPython"] = None
