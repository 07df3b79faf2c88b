"""Trivial baselines on the split a test scores: a trained model must beat them by a margin, not
merely land in [0, 1] (which a model at chance does).

Classification: the majority class for every clip, and the model's own predictions shuffled across
the clips (same prediction counts, link to the clips cut). Detection: the model's own detections
with their labels shuffled, or moved to random times in their recording. Each ceiling is the best
value over the baselines and ``draws`` seeded shuffles.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from microaction.metrics import score_predictions


def pairs(confusion: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) per clip from a confusion matrix (rows true, columns predicted)."""
    cm = np.asarray(confusion, dtype=np.int64)
    t, p = np.nonzero(cm)
    counts = cm[t, p]
    return np.repeat(t, counts), np.repeat(p, counts)


def chance_f1_mean(confusion_action: Sequence[Sequence[int]], confusion_body: Sequence[Sequence[int]],
                   draws: int = 50, seed: int = 0) -> float:  # fmt: skip
    """The best MA-52 F1_mean a model without a link to the clips reaches on the split of these
    confusion matrices (F1_mean averages action and body F1s, each of one pairing alone)."""
    ya, pa = pairs(confusion_action)
    yb, pb = pairs(confusion_body)
    assert len(ya) == len(yb) > 0

    def f1(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
        return score_predictions(ya, pred_a, yb, pred_b)["f1_mean"]

    majority = f1(np.full_like(ya, np.bincount(ya).argmax()), np.full_like(yb, np.bincount(yb).argmax()))
    rng = np.random.default_rng(seed)
    shuffled = max(f1(rng.permutation(pa), rng.permutation(pb)) for _ in range(draws))
    return max(majority, shuffled)


def chance_map(score: Any, dets: Sequence[Any], durations: dict[str, float], draws: int = 10,
               seed: int = 0) -> float:  # fmt: skip
    """The best ``score(detections)["mAP"]`` of the model's detections with the labels shuffled
    among them, or each moved to a random start in its recording (``durations``: seconds per
    video)."""
    rng = random.Random(seed)
    best = 0.0
    for _ in range(draws):
        labels = [d.label for d in dets]
        rng.shuffle(labels)
        relabelled = [dataclasses.replace(d, label=c) for d, c in zip(dets, labels)]
        moved = []
        for d in dets:
            start = rng.uniform(0.0, max(0.0, durations[d.video] - d.duration))
            moved.append(dataclasses.replace(d, start=start, end=start + d.duration))
        best = max(best, score(relabelled)["mAP"], score(moved)["mAP"])
    return best
