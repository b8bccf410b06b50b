"""Checkpoint benchmark (issue 28): what taking and writing a network's training state every epoch costs, against the
baseline, the same training without checkpoints, interleaved in one process.

    python benchmarks/checkpoint_bench.py [--rounds 5] [--epochs 5] [--config configs/mnist.yaml]

The config's network on the bundled MNIST (5,000 digits; `configs/mnist.yaml`: [784, 256, 10], momentum, shifts),
`--epochs` epochs a training. The checkpointed training hands every epoch's state to a callback that writes it as
the `.npz` archive a run keeps (`bpcore.checkpoint.write`) to a file in a temporary directory. Printed: the
median seconds an epoch takes with and without, their ratio, the archive's size, and the median time of the
callback alone. Target: at most 1.03x (3% of an epoch). Logging the archive to MLflow is the flow's and is not
in this figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved trainings of each kind (medians printed)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--config", default=str(REPO / "configs" / "mnist.yaml"))
    args = ap.parse_args()

    from bpcore import checkpoint
    from bpcore.configfile import load_config
    from bpcore.mnist import load_mnist
    from bpcore.training import fit_network

    config = load_config(args.config, [f"trainer.epochs={args.epochs}"])
    splits = load_mnist(config.data, config.seed, config.trainer.dtype)
    epochs = {"without (baseline)": [], "with": []}
    writes: list[float] = []
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "checkpoint.npz"

        def keep(state) -> None:
            nonlocal size
            start = time.perf_counter()
            data = checkpoint.write(state)
            target.write_bytes(data)
            writes.append(time.perf_counter() - start)
            size = len(data)

        for _ in range(args.rounds):
            for name in epochs:
                start = time.perf_counter()
                fit_network(splits.train_X, splits.train_y, splits.val_X, splits.val_y, config.trainer, config.seed,
                            on_checkpoint=keep if name == "with" else None)
                epochs[name].append((time.perf_counter() - start) / args.epochs)
    base, checked = statistics.median(epochs["without (baseline)"]), statistics.median(epochs["with"])
    print(f"{args.epochs} epochs of {config.trainer.hidden} on {len(splits.train_y)} digits, median of {args.rounds}:")
    print(f"    an epoch without checkpoints (baseline)              {base * 1000:7.1f} ms")
    print(f"    an epoch with a checkpoint each (not after the last) {checked * 1000:7.1f} ms   "
          f"{checked / base:.3f}x   target <= 1.03x: {'met' if checked / base <= 1.03 else 'MISSED'}")
    print(f"    the state taken and written alone                    {statistics.median(writes) * 1000:7.1f} ms "
          f"({size / 1e6:.2f} MB), {statistics.median(writes) / base:.1%} of an epoch")


if __name__ == "__main__":
    main()
