"""A trained network as an MLflow pyfunc model (models-from-code: no pickle anywhere).

Artifact ``weights``: the .npz written by ``bpcore.network.Network.save`` plus ``input_scale``
(1/255 for MNIST pixels) and ``output`` ("class": the most active output, i.e. the digit; or
"activation": the output layer's values). Read with allow_pickle=False.

Input: (n, sizes[0]) numbers (raw pixels 0-255 for MNIST), an array or a DataFrame with that
many columns. Output: (n,) int64 digits, or (n, k) float activations.
"""

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class NetworkModel(PythonModel):
    def load_context(self, context):
        with np.load(context.artifacts["weights"], allow_pickle=False) as z:
            layers = len(z["sizes"]) - 1
            self.W = [z[f"W{l}"] for l in range(layers)]
            self.b = [z[f"b{l}"] for l in range(layers)]
            self.activation = str(z["activation"])
            self.cost = str(z["cost"])
            self.scale = float(z["input_scale"])
            self.output = str(z["output"])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        a = np.asarray(model_input, dtype=self.W[0].dtype).reshape(-1, self.W[0].shape[0]) * self.scale
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            z = a @ W + b
            if l < len(self.W) - 1:
                a = self._hidden(z)
        if self.output == "class":  # sigmoid and softmax keep the order: argmax of z suffices
            return z.argmax(axis=1).astype(np.int64)
        if self.cost == "quadratic":
            return 1.0 / (1.0 + np.exp(-z))
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _hidden(self, z):
        if self.activation == "relu":
            return np.maximum(z, 0)
        if self.activation == "tanh":
            return np.tanh(z)
        return 1.0 / (1.0 + np.exp(-z))


mlflow.models.set_model(NetworkModel())
