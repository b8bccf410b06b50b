"""The line fit as an MLflow pyfunc model (models-from-code: no pickle anywhere).

Artifact ``weights``: an .npz with ``w`` (d,), ``b`` () and ``features`` (d,) str, read with
allow_pickle=False. Input: a DataFrame whose columns include the feature names (or an (n, d)
array in feature order). Output: (n,) float64 predictions ``X w + b``.

A null, NaN or infinite feature value is refused, not answered: predict raises an
MlflowException with error code INVALID_PARAMETER_VALUE (HTTP 400 from the scoring server)
naming the first such value's row (counted from 0) and feature.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel


class Refused(MlflowException):
    """Bad input, answered with HTTP 400 by the scoring server: its message says what is wrong, only that.

    MLflow's scoring server prefixes a predict error's message with the whole input it was given
    ("Failed to predict data '...'"): this message keeps to the reason.
    """

    def __init__(self, message: str):
        self._reason = message
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._reason

    @message.setter
    def message(self, value: str) -> None:  # the server's prefixed copy: the reason stands
        pass


class LineModel(PythonModel):
    def load_context(self, context):
        with np.load(context.artifacts["weights"], allow_pickle=False) as z:
            self.w = z["w"].astype(np.float64)
            self.b = float(z["b"])
            self.features = [str(f) for f in z["features"]]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        if hasattr(model_input, "columns"):
            model_input = model_input[self.features]
        X = np.asarray(model_input, dtype=np.float64).reshape(-1, self.w.size)
        bad = ~np.isfinite(X)
        if bad.any():
            rows, cols = np.nonzero(bad)
            value = "NaN (or null)" if np.isnan(X[rows[0], cols[0]]) else str(X[rows[0], cols[0]])
            raise Refused(f"row {rows[0]}, column {self.features[cols[0]]!r}: {value} is not a finite number")
        return X @ self.w + self.b


mlflow.models.set_model(LineModel())
