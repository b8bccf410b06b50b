"""A network's training state between two epochs, from which ``fit_network`` goes on exactly as if it had never
stopped: the weights, the momentum velocities, the random generator's state, and the figures of the epochs
done (from which the rest of the run's figures follow: the best validation accuracy so far, a pruner's inputs).

Stored as one ``.npz`` archive read with ``allow_pickle=False``: one array per weight, bias and velocity, and the
rest as JSON (the generator's state is plain integers). A state that does not fit the network a config builds
(other layer sizes or float type, a newer format) is refused with ``CheckpointError`` naming what differs.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bpcore.errors import one_line
from bpcore.train.sharpness import Sharpness

FORMAT = 1  # what ``read`` understands; a state written by a later bp names its own


class CheckpointError(ValueError):
    """A stored training state that cannot be resumed here (what differs is in the message)."""


@dataclass
class TrainingState:
    """Everything a network's training needs to go on after ``epoch`` finished epochs (``epochs``: their figures,
    as ``EpochStats`` fields; ``rng``: ``Generator.bit_generator.state``)."""

    epoch: int
    W: list[np.ndarray]
    b: list[np.ndarray]
    velocity: list[np.ndarray]
    rng: dict
    epochs: list[dict] = field(default_factory=list)
    sharpness: dict | None = None  # ``Sharpness`` fields of the starting weights' cost, as measured before epoch 1
    max_stable_lr: float | None = None

    def starting_sharpness(self) -> Sharpness | None:
        return Sharpness(**self.sharpness) if self.sharpness is not None else None


def capture(epoch: int, W: list[np.ndarray], b: list[np.ndarray], velocity: list[np.ndarray],
            rng: np.random.Generator, epochs: list, sharpness: Sharpness | None,
            max_stable_lr: float | None) -> TrainingState:
    """A copy of the state now (the arrays copied: training goes on changing its own in place)."""
    return TrainingState(epoch, [w.copy() for w in W], [x.copy() for x in b], [v.copy() for v in velocity],
                         rng.bit_generator.state, [asdict(e) for e in epochs],
                         asdict(sharpness) if sharpness is not None else None, max_stable_lr)


def write(state: TrainingState, file: str | Path | None = None) -> bytes | None:
    """The state as an ``.npz`` archive (uncompressed: weights hardly compress, and it is written often): written to
    ``file`` when given (no copy of it in memory), else its bytes returned."""
    meta = {"format": FORMAT, "epoch": state.epoch, "layers": len(state.W), "momentum": bool(state.velocity),
            "rng": state.rng, "epochs": state.epochs, "sharpness": state.sharpness,
            "max_stable_lr": state.max_stable_lr}
    arrays = {f"W{i}": w for i, w in enumerate(state.W)} | {f"b{i}": x for i, x in enumerate(state.b)}
    arrays |= {f"v{i}": v for i, v in enumerate(state.velocity)}
    target = io.BytesIO() if file is None else file
    np.savez(target, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    return target.getvalue() if file is None else None


def read(data: bytes, sizes: tuple[int, ...], dtype: np.dtype) -> TrainingState:
    """The state in ``data``, checked against the network it must fit (layer ``sizes``, float ``dtype``)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            meta = json.loads(archive["meta"].tobytes())
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"format {meta.get('format')!r}, this bp reads format {FORMAT}")
            layers = meta["layers"]
            W = [archive[f"W{i}"] for i in range(layers)]
            b = [archive[f"b{i}"] for i in range(layers)]
            velocity = [archive[f"v{i}"] for i in range(2 * layers)] if meta["momentum"] else []
    except CheckpointError:
        raise
    except Exception as exc:  # not an archive of ours: truncated, another file, a key missing
        raise CheckpointError(f"not a bp training state ({one_line(exc, named=True)})") from None
    found = (W[0].shape[0], *(w.shape[1] for w in W)) if W else ()
    if found != tuple(sizes) or any(x.shape != (w.shape[1],) for w, x in zip(W, b)):
        raise CheckpointError(f"a network of layer sizes {list(found)}, the config builds {list(sizes)}")
    if any(a.dtype != dtype for a in (*W, *b, *velocity)):
        raise CheckpointError(f"weights of {W[0].dtype}, the config trains in {np.dtype(dtype)}")
    if velocity and [v.shape for v in velocity] != [p.shape for p in (*W, *b)]:
        raise CheckpointError("momentum velocities that do not match the weights")
    return TrainingState(meta["epoch"], W, b, velocity, meta["rng"], meta["epochs"], meta["sharpness"],
                         meta["max_stable_lr"])
