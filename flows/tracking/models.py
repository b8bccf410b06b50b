"""Logging trained weights as MLflow pyfunc models: .npz weights, models-from-code, no pickle.

Requirements are given explicitly (MLflow otherwise spends seconds inferring them) and pinned
to the versions that trained the model.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema, TensorSpec

from bpcore.data.table import Table
from bpcore.train.network import Network

MODEL_CODE = Path(__file__).resolve().parent / "model_code"


def requirements(*packages: str) -> list[str]:
    """``name==installed version`` for each package: the model's pip requirements."""
    return [f"{name}=={version(name)}" for name in packages]


def log_line_model(run_id: str, workdir: Path, table: Table, w: np.ndarray, b: float, step: int = 0):
    """Log the line ``X w + b`` as ``model`` in the active run (which must be ``run_id``).

    ``step``: the training step that produced it; MLflow links the run's metrics of that step to the model.
    """
    _require_active(run_id)
    weights = workdir / "weights.npz"
    np.savez(weights, w=np.asarray(w, dtype=np.float64), b=np.float64(b),
             features=np.array(table.feature_names, dtype=str))
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", name) for name in table.feature_names]),
        outputs=Schema([ColSpec("double", table.target_name)]),
    )
    example = table.to_frame(rows=5, target=False)
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE / "line_model.py"),
        artifacts={"weights": str(weights)},
        signature=signature,
        input_example=example,
        pip_requirements=requirements("mlflow", "numpy", "pandas"),
        step=step,
    )


def _require_active(run_id: str) -> None:
    """log_model attaches to the active run: make sure it is the one we mean."""
    active = mlflow.active_run()
    if active is None or active.info.run_id != run_id:
        raise RuntimeError(f"expected MLflow run {run_id} to be active, found {active}")


def log_network_model(run_id: str, workdir: Path, net: Network, example: np.ndarray,
                      input_scale: float, output: str, step: int = 0):
    """Log a network as ``model``: input (n, sizes[0]) numbers, output digits or activations.

    ``example``: a few raw input rows (the input example shown in the UI and checked at logging);
    ``step``: the training step (epoch, iteration) that produced it, as for ``log_line_model``.
    """
    _require_active(run_id)
    weights = workdir / "weights.npz"
    net.save(weights)
    with np.load(weights, allow_pickle=False) as z:  # add the serving metadata to the same file
        arrays = dict(z)
    np.savez(weights, **arrays, input_scale=np.float64(input_scale), output=np.array(output))
    out_spec = (TensorSpec(np.dtype(np.int64), (-1,)) if output == "class"
                else TensorSpec(np.dtype(np.float64), (-1, net.sizes[-1])))
    # No input schema: against unnamed columns MLflow keeps the first sizes[0] columns of a wider
    # input and drops the rest unseen (a label column would shift every pixel), and a tensor spec
    # refuses uint8. The model's predict checks the width and every value itself, with a 400.
    signature = ModelSignature(inputs=None, outputs=Schema([out_spec]))
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_CODE / "network_model.py"),
        artifacts={"weights": str(weights)},
        signature=signature,
        input_example=np.asarray(example, dtype=np.float64),
        pip_requirements=requirements("mlflow", "numpy", "pandas"),
        step=step,
    )
