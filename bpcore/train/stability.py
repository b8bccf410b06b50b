"""The learning rate above which gradient descent diverges from a config's starting point: its stability limit.

Gradient descent shrinks the error along a Hessian eigenvector of eigenvalue ``lambda`` only while
``lr < 2 / lambda``. The line fit's cost is quadratic, its Hessian the data's second moments: the
limit is exact and the same at every step. The network's is measured on its starting weights
(``bpcore.train.sharpness``, as its training does before the first epoch), with heavy-ball momentum
widening it by ``1 + momentum``. A search space may end a learning-rate range there
(``sweep.space: {trainer.learning_rate: {log_uniform: [1.0e-4, stable]}}``).
"""

from __future__ import annotations

from bpcore.config.models import Config
from bpcore.config.serial import digest
from bpcore.data.cache import LoadCache
from bpcore.kinds import fingerprint, load

_measured: LoadCache[float] = LoadCache(8)  # bp sweep's pre-flight check and its flow share one measurement


def limit(config: Config) -> float | None:
    """The config's stability limit on its learning rate, from its data (None: its kind has none measured)."""
    if config.kind == "linreg":
        from bpcore.train.linreg import Moments

        data = load(config)
        return 2.0 / Moments.of(data.X, data.y).lambda_max()
    if config.kind == "mnist":
        from bpcore.train.sgd import starting_sharpness

        splits = load(config)
        return starting_sharpness(splits.train_X, splits.train_y, config.trainer, config.seed)[1]
    return None


def for_search(config: Config) -> float | None:
    """The limit a search's ``stable`` range end stands for, measured on its base config (once a process, for the
    same config and data); None when no range ends there."""
    from bpcore.search.space import needs_stable

    if not needs_stable(config):
        return None
    base = config.model_copy(update={"sweep": None})
    key = (digest(base), fingerprint(base)[1])
    found = _measured.get(key)
    return found if found is not None else _measured.put(key, limit(base))
