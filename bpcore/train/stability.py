"""The learning rate above which gradient descent diverges from a config's starting point: its stability limit.

Gradient descent shrinks the error along a Hessian eigenvector of eigenvalue ``lambda`` only while
``lr < 2 / lambda``. The line fit's cost is quadratic, its Hessian the data's second moments: the
limit is exact and the same at every step. The network's is measured on its starting weights
(``bpcore.train.sharpness``, as its training does before the first epoch), with heavy-ball momentum
widening it by ``1 + momentum``. A search space may end a learning-rate range there
(``sweep.space: {trainer.learning_rate: {log_uniform: [1.0e-4, stable]}}``; ``bpcore.search.space``
measures it for a search, loading the data through the config's kind).
"""

from __future__ import annotations

from bpcore.config.models import Config


def limit(config: Config, data) -> float | None:
    """The config's stability limit on its learning rate, from ``data``, the data it trains on as its kind's loader
    returns it (None: its kind has none measured)."""
    if config.kind == "linreg":
        from bpcore.train.linreg import Moments

        return 2.0 / Moments.of(data.X, data.y).lambda_max()
    if config.kind == "mnist":
        from bpcore.train.sgd import starting_sharpness

        return starting_sharpness(data.train_X, data.train_y, config.trainer, config.seed)[1]
    return None
