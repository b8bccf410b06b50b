"""What the tests share: the repository's paths, the seed's published figures, and ways to run bp.

Importable from any test (``from support import REPO, run_bp``: pytest puts tests/ on the path); the
fixtures are in ``support.fixtures`` and ``support.stack``, which tests/conftest.py registers as plugins.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEED_DATA = REPO.parent / "shared" / "data" / "data.csv"

# The seed program's published figures: lr 0.0001, 1000 iterations from b = m = 0.
SEED_START_COST = 5565.107834483211
SEED_B = 0.08893651993741346
SEED_M = 1.4777440851894448
SEED_COST = 112.61481011613473


def blobs(n: int = 600, seed: int = 0):
    """Ten separable clusters in 784 dimensions, pixels in [0, 1]: a quick stand-in for digits (X float32, y)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, size=(10, 784)).astype(np.float32)
    y = rng.integers(0, 10, n)
    X = np.clip(centres[y] + 0.1 * rng.standard_normal((n, 784)).astype(np.float32), 0, 1)
    return X, y


def forget_loaded_data() -> None:
    """Empty the per-process load caches, as a new ``bp`` process starts."""
    from bpcore.data import cache

    cache.forget_all()


def run_bp(argv: list[str], capsys) -> tuple[int, str, str]:
    """Run ``bp`` in this process; returns (exit code, stdout, stderr)."""
    from flows.cli.main import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def history(mc, run_id: str, key: str):
    """A metric's (steps, values as an array) in step order, as MLflow holds them."""
    import numpy as np

    points = sorted(mc.get_metric_history(run_id, key), key=lambda m: m.step)
    return [p.step for p in points], np.array([p.value for p in points])


def python_env() -> dict[str, str]:
    """This environment for a subprocess, without the MLflow context in-process runs exported
    (mlflow.set_tracking_uri and set_experiment set MLFLOW_TRACKING_URI and MLFLOW_EXPERIMENT_ID)."""
    drop = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    return {k: v for k, v in os.environ.items() if k not in drop}


def prefect_api_env() -> dict[str, str]:
    """The environment for a subprocess that should use the session's Prefect server (and no tracking URI)."""
    from prefect.settings import get_current_settings

    return {**python_env(), "PREFECT_API_URL": str(get_current_settings().api.url)}


# Runs bp in a fresh interpreter; exit 99 if it imported Prefect or MLflow (input checks must not need them).
LIGHT_BP = """
import sys
from flows.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in ("prefect", "mlflow") if m in sys.modules)
if heavy:
    print("imported:", heavy, file=sys.stderr)
    sys.exit(99)
sys.exit(code)
"""


BP = [sys.executable, "-m", "flows.cli"]  # the bp command in a process of its own, on this Python and checkout


def bp(*argv: str, env: dict | None = None, cwd=REPO, timeout: float = 600, wait: bool = True):
    """``bp ARGV`` in a process of its own (``env``: its whole environment, default ``python_env()``): the
    CompletedProcess, or with ``wait=False`` the running Popen (stdout and stderr piped, text)."""
    import subprocess

    env = python_env() if env is None else env
    if not wait:
        return subprocess.Popen([*BP, *argv], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run([*BP, *argv], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def light_bp(*argv: str, cwd=REPO, timeout: float = 120, env: dict | None = None):
    """``bp ARGV`` in a subprocess that must not import Prefect or MLflow (exit 99 if it did), ``env`` added to its
    environment; the CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, "-c", LIGHT_BP, *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**python_env(), **(env or {})})


def refused(done, *fragments: str, prefix: str = "bp") -> str:
    """A refusal as bp makes it: exit 2, nothing on stdout, one line on stderr starting with ``prefix`` (``"bp: "``:
    bp's own, not argparse's), no traceback, holding every fragment; that line. ``done``: a CompletedProcess, or
    ``run_bp``'s (code, stdout, stderr)."""
    code, out, err = (done.returncode, done.stdout, done.stderr) if hasattr(done, "returncode") else done
    assert code == 2, (code, err[-3000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix) and "Traceback" not in err, err
    assert out == "", out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
