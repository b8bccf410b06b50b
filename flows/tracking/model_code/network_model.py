"""A trained network as an MLflow pyfunc model (models-from-code: no pickle anywhere).

Artifact ``weights``: the .npz written by ``bpcore.train.network.Network.save`` plus ``input_scale``
(1/255 for MNIST pixels) and ``output`` ("class": the most active output, i.e. the digit; or
"activation": the output layer's values). Read with allow_pickle=False.

Input: (n, sizes[0]) numbers (raw pixels 0-255 for MNIST), an array or a DataFrame with that
many columns. Output: (n,) int64 digits, or (n, k) float activations.

Bad input is refused, never answered: predict raises an MlflowException with error code
INVALID_PARAMETER_VALUE (the scoring server answers it with HTTP 400) naming the first fault,
rows and columns counted from 0: a wrong number of columns, a null/NaN/infinite or
non-numeric value, or, for pixels (input_scale 1/255), a value outside 0-255.
"""

import math

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

PIXEL_MAX = 255.0


class Refused(MlflowException):
    """Bad input, answered with HTTP 400 by the scoring server: its message says what is wrong, only that.

    MLflow's scoring server prefixes a predict error's message with the whole input it was given
    ("Failed to predict data '...'", kilobytes of pixels before the reason): this message keeps
    to the reason.
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


def refuse(message: str):
    """The error the scoring server turns into HTTP 400 with ``message`` (alone) in the body."""
    raise Refused(message)


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
        a = self.checked(model_input).astype(self.W[0].dtype) * self.scale
        with np.errstate(over="ignore"):  # exp(-z) overflowing gives sigmoid 0, correctly
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

    def checked(self, model_input) -> np.ndarray:
        """The input as an (n, sizes[0]) float64 array, or an MlflowException naming the first fault."""
        width = self.W[0].shape[0]
        X = model_input.to_numpy() if isinstance(model_input, pd.DataFrame) else np.asarray(model_input)
        if X.ndim == 1 and X.size == width:  # one row given as a flat list
            X = X.reshape(1, width)
        if X.ndim != 2 or X.shape[1] != width:
            got = f"{X.shape[1]}" if X.ndim == 2 else f"an array of shape {X.shape}"
            label = self._pixels and X.ndim == 2 and X.shape[1] == width + 1  # the training CSV's layout
            hint = " (a label column? send the pixels only)" if label else ""
            refuse(f"expected {width} {self._what} columns, got {got}{hint}")
        X = X.astype(np.float64, copy=False) if X.dtype.kind in "biuf" else self._numbers(X)
        bad = ~np.isfinite(X)
        if self._pixels:
            with np.errstate(invalid="ignore"):
                bad |= (X < 0) | (X > PIXEL_MAX)
        if bad.any():
            rows, cols = np.nonzero(bad)
            more = f" (and {rows.size - 1} more bad values)" if rows.size > 1 else ""
            refuse(f"row {rows[0]}, column {cols[0]}: {self._describe(X[rows[0], cols[0]])} is not "
                   f"{self._expected}{more}")
        return X

    @property
    def _pixels(self) -> bool:
        """MNIST pixels (input_scale 1/255) must lie in 0-255; other inputs need only be finite."""
        return math.isclose(self.scale * PIXEL_MAX, 1.0)

    @property
    def _what(self) -> str:
        return "pixel" if self._pixels else "input"

    @property
    def _expected(self) -> str:
        return "a pixel value (expected 0-255)" if self._pixels else "a finite number"

    @staticmethod
    def _describe(value: float) -> str:
        return "NaN (or null)" if math.isnan(value) else repr(float(value)) if math.isinf(value) else f"{value:g}"

    def _numbers(self, X: np.ndarray) -> np.ndarray:
        """Objects or strings as floats (a JSON row mixing in one string arrives as all strings;
        None becomes NaN and is refused later), or a refusal naming the first cell that is no number."""
        if X.dtype.kind != "c":
            try:
                return X.astype(np.float64)
            except (TypeError, ValueError):
                pass
        for (i, j), v in np.ndenumerate(X):
            try:
                if isinstance(v, (complex, np.complexfloating)):
                    raise TypeError(v)
                float(v)
            except (TypeError, ValueError):
                shown = repr(str(v)) if isinstance(v, (str, bytes)) else repr(v)
                refuse(f"row {i}, column {j}: {shown} is not {self._expected}")
        refuse(f"the input ({X.dtype}) is not numbers")  # not reached: some cell failed above

    def _hidden(self, z):
        if self.activation == "relu":
            return np.maximum(z, 0)
        if self.activation == "tanh":
            return np.tanh(z)
        return 1.0 / (1.0 + np.exp(-z))


mlflow.models.set_model(NetworkModel())
