"""The line fit as an MLflow pyfunc model (models-from-code: no pickle anywhere).

Artifact ``weights``: an .npz with ``w`` (d,), ``b`` () and ``features`` (d,) str, read with
allow_pickle=False. Input: a DataFrame whose columns include the feature names (or an (n, d)
array in feature order). Output: (n,) float64 predictions ``X w + b``.
"""

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


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
        return X @ self.w + self.b


mlflow.models.set_model(LineModel())
