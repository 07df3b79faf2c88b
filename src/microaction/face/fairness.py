"""Group fairness metrics for face models: how evenly does a model do across a "group" attribute?

``group_report(y_true, y_pred, groups)`` gives, from per-sample predictions and group labels:

* ``per_group_accuracy`` ``{group: accuracy}`` and ``per_group_count``;
* ``accuracy`` (over all samples), ``worst_group_accuracy`` (min over groups),
  ``best_group_accuracy``, ``accuracy_gap`` (max - min over groups), ``accuracy_std`` (population
  standard deviation of the per-group accuracies, ``ddof = 0``: every group counts once, whatever
  its size);
* for binary tasks (labels 0/1): ``equalized_odds_difference`` = max over the true-positive rate
  gap and the false-positive rate gap between groups (the ``fairlearn`` definition), with
  ``tpr_gap``, ``fpr_gap`` and per-group ``tpr`` / ``fpr``. A group without positives (or
  negatives) has no TPR (FPR) and is left out of that gap.

Multi-label predictions (``[N, K]`` 0/1) count a sample's accuracy as the fraction of its K
labels that are right. All values are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["equalized_odds_difference", "group_accuracies", "group_report"]


def _arrays(y_true: Any, y_pred: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, p, g = np.asarray(y_true), np.asarray(y_pred), np.asarray(groups)
    if t.shape != p.shape:
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} differ in shape")
    if g.ndim != 1 or len(g) != len(t):
        raise ValueError(f"groups must be one value per sample ({len(t)}), got shape {g.shape}")
    if len(t) == 0:
        raise ValueError("no samples")
    return t, p, g


def group_accuracies(y_true: Any, y_pred: Any, groups: Any) -> tuple[dict[str, float], dict[str, int]]:
    """Accuracy and sample count per group (keys are the groups as strings, sorted)."""
    t, p, g = _arrays(y_true, y_pred, groups)
    correct = (t == p).astype(np.float64)
    if correct.ndim > 1:
        correct = correct.reshape(len(correct), -1).mean(1)
    acc, count = {}, {}
    for name in sorted(set(g.tolist()), key=str):
        sel = g == name
        acc[str(name)] = float(correct[sel].mean())
        count[str(name)] = int(sel.sum())
    return acc, count


def _rates(t: np.ndarray, p: np.ndarray, g: np.ndarray) -> tuple[dict[str, float], dict[str, float]]:
    tpr, fpr = {}, {}
    for name in sorted(set(g.tolist()), key=str):
        sel = g == name
        pos, neg = sel & (t == 1), sel & (t == 0)
        if pos.any():
            tpr[str(name)] = float((p[pos] == 1).mean())
        if neg.any():
            fpr[str(name)] = float((p[neg] == 1).mean())
    return tpr, fpr


def _spread(values: Sequence[float]) -> float:
    return float(max(values) - min(values)) if len(values) > 1 else 0.0


def equalized_odds_difference(y_true: Any, y_pred: Any, groups: Any) -> float:
    """max(TPR gap, FPR gap) over groups for binary 0/1 labels and predictions (0 = equalised odds)."""
    t, p, g = _arrays(y_true, y_pred, groups)
    if not (np.isin(t, (0, 1)).all() and np.isin(p, (0, 1)).all()):
        raise ValueError("equalized odds needs binary 0/1 labels and predictions")
    tpr, fpr = _rates(t, p, g)
    return max(_spread(list(tpr.values())), _spread(list(fpr.values())))


def group_report(y_true: Any, y_pred: Any, groups: Any, *, binary: bool | None = None) -> dict[str, Any]:
    """All group metrics above in one dict (``binary=None``: decided from the labels being 0/1 vectors)."""
    t, p, g = _arrays(y_true, y_pred, groups)
    acc, count = group_accuracies(t, p, g)
    correct = (t == p).astype(np.float64)
    overall = float(correct.mean())
    values = list(acc.values())
    out: dict[str, Any] = {
        "accuracy": overall,
        "per_group_accuracy": acc,
        "per_group_count": count,
        "worst_group_accuracy": float(min(values)),
        "best_group_accuracy": float(max(values)),
        "accuracy_gap": _spread(values),
        "accuracy_std": float(np.std(values)),
    }
    if binary is None:
        binary = t.ndim == 1 and bool(np.isin(t, (0, 1)).all() and np.isin(p, (0, 1)).all())
    if binary:
        tpr, fpr = _rates(t, p, g)
        out["tpr"], out["fpr"] = tpr, fpr
        out["tpr_gap"], out["fpr_gap"] = _spread(list(tpr.values())), _spread(list(fpr.values()))
        out["equalized_odds_difference"] = max(out["tpr_gap"], out["fpr_gap"])
    return out
