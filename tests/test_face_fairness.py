"""Group fairness metrics on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from microaction.face.fairness import equalized_odds_difference, group_accuracies, group_report


def test_group_accuracy_gap_std() -> None:
    y_true = [0, 1, 2, 0, 1, 2, 0, 1]
    y_pred = [0, 1, 2, 0, 0, 0, 0, 1]
    groups = ["a", "a", "a", "a", "b", "b", "c", "c"]
    r = group_report(y_true, y_pred, groups, binary=False)
    # a: 4/4, b: 0/2, c: 2/2
    assert r["per_group_accuracy"] == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert r["per_group_count"] == {"a": 4, "b": 2, "c": 2}
    assert r["accuracy"] == pytest.approx(6 / 8)
    assert r["worst_group_accuracy"] == 0.0 and r["best_group_accuracy"] == 1.0
    assert r["accuracy_gap"] == 1.0
    assert r["accuracy_std"] == pytest.approx(np.std([1.0, 0.0, 1.0]))
    assert "equalized_odds_difference" not in r


def test_single_group_and_multilabel() -> None:
    r = group_report([1, 0], [1, 1], ["x", "x"], binary=False)
    assert r["accuracy_gap"] == 0.0 and r["accuracy_std"] == 0.0
    acc, _ = group_accuracies(np.array([[1, 0], [1, 1]]), np.array([[1, 1], [1, 1]]), ["g", "h"])
    assert acc == {"g": 0.5, "h": 1.0}


def test_equalized_odds() -> None:
    #          group a: TPR 2/2, FPR 0/2      group b: TPR 1/2, FPR 1/2
    y_true = [1, 1, 0, 0, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 0, 1, 0, 1, 0]
    groups = ["a"] * 4 + ["b"] * 4
    assert equalized_odds_difference(y_true, y_pred, groups) == pytest.approx(0.5)
    r = group_report(y_true, y_pred, groups)  # binary detected from 0/1 labels
    assert r["tpr"] == {"a": 1.0, "b": 0.5} and r["fpr"] == {"a": 0.0, "b": 0.5}
    assert r["tpr_gap"] == 0.5 and r["fpr_gap"] == 0.5 and r["equalized_odds_difference"] == 0.5
    # FPR gap larger than TPR gap
    y_pred2 = [1, 1, 1, 1, 1, 1, 0, 0]
    assert equalized_odds_difference(y_true, y_pred2, groups) == pytest.approx(1.0)
    # perfect predictions: equalised odds hold
    assert equalized_odds_difference(y_true, y_true, groups) == 0.0
    # a group without negatives has no FPR and does not enter that gap
    assert equalized_odds_difference([1, 1, 0, 1], [1, 0, 1, 1], ["a", "a", "a", "b"]) == pytest.approx(0.5)


def test_errors() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        group_report([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="one value per sample"):
        group_report([0, 1], [0, 1], ["a"])
    with pytest.raises(ValueError, match="binary"):
        equalized_odds_difference([0, 2], [0, 1], ["a", "b"])


def test_auc_by_hand() -> None:
    from microaction.face.fairness import auc_report, roc_auc

    # positives 0.9, 0.4 / negatives 0.5, 0.1: 3 of 4 (pos, neg) pairs ordered right -> 0.75
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.3, 0.3]) == pytest.approx(0.5)  # a tie counts half
    assert roc_auc([1, 1], [0.1, 0.2]) is None  # one class: undefined
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([2, 0], [0.1, 0.2])
    # binary with groups: a is perfectly ranked, b inverted, c has positives only
    t = [1, 0, 1, 0, 1, 1]
    s = [0.9, 0.1, 0.2, 0.8, 0.5, 0.6]
    g = ["a", "a", "b", "b", "c", "c"]
    r = auc_report(t, s, g)
    assert r["per_group_auc"] == {"a": 1.0, "b": 0.0, "c": None}
    assert r["worst_group_auc"] == 0.0 and r["auc_gap"] == 1.0
    # overall: positives 0.9, 0.2, 0.5, 0.6 vs negatives 0.1, 0.8: 4 + 1 right pairs out of 8
    assert r["auc"] == pytest.approx(5 / 8)
    # multilabel: per attribute, macro over the defined ones
    tm = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])
    sm = np.array([[0.9, 0.2, 0.5], [0.1, 0.3, 0.5], [0.8, 0.1, 0.5]])
    rm = auc_report(tm, sm, ["x", "x", "x"], names=["smile", "hat", "young"])
    assert rm["per_attribute_auc"] == {"smile": 1.0, "hat": None, "young": None}
    assert rm["auc_macro"] == 1.0


def test_per_attribute_fairness() -> None:
    from microaction.face.fairness import attribute_report

    # attribute 0: right everywhere; attribute 1: right on group m, wrong on group f
    y = np.array([[1, 1], [0, 0], [1, 1], [0, 0]])
    p = np.array([[1, 1], [0, 0], [1, 0], [0, 1]])
    g = ["m", "m", "f", "f"]
    r = attribute_report(y, p, g, names=["Smiling", "Eyeglasses"])
    smile, glasses = r["per_attribute"]["Smiling"], r["per_attribute"]["Eyeglasses"]
    assert smile["accuracy_gap"] == 0.0 and smile["equalized_odds_difference"] == 0.0
    assert glasses["per_group_accuracy"] == {"f": 0.0, "m": 1.0} and glasses["accuracy_gap"] == 1.0
    assert glasses["tpr_gap"] == 1.0 and glasses["fpr_gap"] == 1.0 and glasses["equalized_odds_difference"] == 1.0
    assert r["mean_attribute_accuracy_gap"] == 0.5 and r["max_attribute_accuracy_gap"] == 1.0
    assert r["mean_equalized_odds_difference"] == 0.5 and r["max_equalized_odds_difference"] == 1.0
    assert r["worst_attribute_group_accuracy"] == 0.0
    with pytest.raises(ValueError, match="multi-label"):
        attribute_report([1, 0], [1, 0], ["a", "b"])
    with pytest.raises(ValueError, match="names"):
        attribute_report(y, p, g, names=["one"])
