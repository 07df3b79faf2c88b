"""Which clips a batch holds: the training sampler (an epoch as a pure function of ``(seed,
epoch)``, class-balanced drawing, DDP slices, mid-epoch resume) and the evaluation sampler.

Batches are lists of keys that ``data.loader.ClipDataset.__getitems__`` reads: ``(sample index,
epoch, position in the epoch)`` for training (the clip's random choices are seeded from them),
plain sample indices for evaluation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["EvalBatchSampler", "Key", "TrainBatchSampler", "class_weights"]

Key = tuple[int, int, int]  # (sample index, epoch, position in the epoch); epoch -1: evaluation (no randomness)


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Per-sample drawing probability ∝ 1 / frequency of its class (unknown labels: the mean)."""
    counts = np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.float64)
    inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    w = np.where(labels >= 0, inv[np.clip(labels, 0, None)], inv[inv > 0].mean() if (inv > 0).any() else 1.0)
    return w / w.sum()


class TrainBatchSampler:
    """Batches of one training epoch, a pure function of ``(seed, epoch)``.

    ``batch_size`` is the global batch; under DDP each of ``world`` processes takes its own
    contiguous slice of every global batch (so the processes together see exactly what one
    process would). The last incomplete batch is dropped when the epoch has at least one full
    batch. ``weights`` (per-sample probabilities) draws the epoch with replacement (class-balanced
    sampling); otherwise it is a permutation. ``set_epoch(epoch, start_batch)`` resumes mid-epoch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        seed: int,
        weights: np.ndarray | None = None,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if n < 1:
            raise ValueError("no training clips")
        if batch_size % world:
            raise ValueError(f"run.batch_size {batch_size} must be a multiple of the number of processes {world}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.weights, self.rank, self.world = weights, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start_batch)

    def num_batches(self) -> int:
        return max(1, self.n // self.batch_size)  # one short batch when the epoch has no full one

    def __len__(self) -> int:
        return self.num_batches() - self.start

    def order(self) -> np.ndarray:
        rng = np.random.default_rng((self.seed, self.epoch, 7))
        if self.weights is not None:
            return rng.choice(self.n, size=self.n, replace=True, p=self.weights)
        return rng.permutation(self.n)

    def __iter__(self) -> Iterator[list[Key]]:
        order = self.order()
        B = min(self.batch_size, self.n)
        for b in range(self.start, self.num_batches()):
            pos = np.arange(b * B, (b + 1) * B)
            lo, hi = self.rank * len(pos) // self.world, (self.rank + 1) * len(pos) // self.world
            yield [(int(order[p]), self.epoch, int(p)) for p in pos[lo:hi]]


class EvalBatchSampler:
    """Every clip once, in order; under DDP each process takes a contiguous share."""

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world: int = 1) -> None:
        lo, hi = rank * n // world, (rank + 1) * n // world
        self.indices = list(range(lo, hi))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for a in range(0, len(self.indices), self.batch_size):
            yield self.indices[a : a + self.batch_size]
