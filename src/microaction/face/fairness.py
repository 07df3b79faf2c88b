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
labels that are right; ``attribute_report`` then looks at each attribute on its own (each is a
binary task: per-group accuracy, gap, equalised odds) and summarises the attributes (mean / max gap
and equalised-odds difference). ``auc_report`` gives the area under the ROC curve from real-valued
scores (how deepfake detection is reported): overall, per group and worst group for a binary task,
per attribute and macro-averaged for a multi-label one. All values are in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["attribute_report", "auc_report", "equalized_odds_difference", "group_accuracies", "group_report", "roc_auc"]


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


def roc_auc(y_true: Any, scores: Any) -> float | None:
    """Area under the ROC curve of 0/1 labels ``[N]`` against real scores ``[N]`` (tied scores count
    half); ``None`` when the labels hold one class only (the AUC is undefined)."""
    from sklearn.metrics import roc_auc_score

    t, s = np.asarray(y_true).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1)
    if t.shape != s.shape:
        raise ValueError(f"y_true {t.shape} and scores {s.shape} differ in shape")
    if not np.isin(t, (0, 1)).all():
        raise ValueError("the AUC needs 0/1 labels")
    if not np.isfinite(s).all():
        raise ValueError("the AUC needs finite scores")
    if len(np.unique(t)) < 2:
        return None
    return float(roc_auc_score(t, s))


def auc_report(y_true: Any, scores: Any, groups: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """AUC from scores: binary ``[N]`` labels give ``auc``, ``per_group_auc``, ``worst_group_auc``
    and ``auc_gap`` (groups with one class only have no AUC and are left out); multi-label ``[N, K]``
    labels give ``per_attribute_auc`` ``{name: auc | None}`` and ``auc_macro`` (mean over the
    attributes that have both classes)."""
    t, s, g = _arrays(y_true, np.asarray(scores, dtype=np.float64).reshape(np.shape(y_true)), groups)
    if t.ndim == 1:
        out: dict[str, Any] = {}
        overall = roc_auc(t, s)
        if overall is not None:
            out["auc"] = overall
        per = {str(n): roc_auc(t[g == n], s[g == n]) for n in sorted(set(g.tolist()), key=str)}
        known = [v for v in per.values() if v is not None]
        out["per_group_auc"] = per
        if known:
            out["worst_group_auc"] = float(min(known))
            out["auc_gap"] = _spread(known)
        return out
    names = list(names) if names is not None else [str(k) for k in range(t.shape[1])]
    if len(names) != t.shape[1]:
        raise ValueError(f"{len(names)} attribute names for {t.shape[1]} attributes")
    per_attr = {n: roc_auc(t[:, k], s[:, k]) for k, n in enumerate(names)}
    known = [v for v in per_attr.values() if v is not None]
    out = {"per_attribute_auc": per_attr}
    if known:
        out["auc_macro"] = float(np.mean(known))
    return out


def attribute_report(y_true: Any, y_pred: Any, groups: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-attribute fairness of multi-label 0/1 predictions ``[N, K]``: ``per_attribute`` ``{name:
    {accuracy, worst_group_accuracy, accuracy_gap, per_group_accuracy, tpr_gap, fpr_gap,
    equalized_odds_difference}}``, and over the attributes ``mean_attribute_accuracy_gap``,
    ``max_attribute_accuracy_gap``, ``mean_equalized_odds_difference``, ``max_equalized_odds_difference``
    and ``worst_attribute_group_accuracy`` (the lowest per-group accuracy of any attribute)."""
    t, p, g = _arrays(y_true, y_pred, groups)
    if t.ndim != 2:
        raise ValueError(f"per-attribute fairness needs [N, K] multi-label arrays, got shape {t.shape}")
    names = list(names) if names is not None else [str(k) for k in range(t.shape[1])]
    if len(names) != t.shape[1]:
        raise ValueError(f"{len(names)} attribute names for {t.shape[1]} attributes")
    keep = ["accuracy", "worst_group_accuracy", "accuracy_gap", "per_group_accuracy", "tpr_gap", "fpr_gap"]
    keep.append("equalized_odds_difference")
    per: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        rep = group_report(t[:, k], p[:, k], g, binary=True)
        per[name] = {key: rep[key] for key in keep}
    gaps = [v["accuracy_gap"] for v in per.values()]
    eods = [v["equalized_odds_difference"] for v in per.values()]
    return {
        "per_attribute": per,
        "mean_attribute_accuracy_gap": float(np.mean(gaps)),
        "max_attribute_accuracy_gap": float(max(gaps)),
        "mean_equalized_odds_difference": float(np.mean(eods)),
        "max_equalized_odds_difference": float(max(eods)),
        "worst_attribute_group_accuracy": float(min(v["worst_group_accuracy"] for v in per.values())),
    }
