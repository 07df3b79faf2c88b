"""Official metrics against scikit-learn, the MANet table and hand-computed cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from microaction.metrics import (
    SCORE_KEYS,
    MetricsError,
    classification_metrics,
    confusion_matrix,
    f1_mean,
    format_metrics,
    multilabel_metrics,
    normalize_confusion,
    per_class_f1,
    primary_metric,
    score_prediction_csv,
    topk,
    write_submission,
)
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")
IMIGUE = load_taxonomy("imigue")


def test_manet_table_f1_mean() -> None:
    # MA-52 paper, MANet: body-macro 72.87, body-micro 78.95, action-macro 49.22, action-micro 61.33
    value = f1_mean(action_f1_micro=61.33, action_f1_macro=49.22, body_f1_micro=78.95, body_f1_macro=72.87)
    assert round(value, 2) == 65.59


def _random_case(seed: int, n: int, true_classes: int, pred_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth drawn from the first ``true_classes`` ids, scores peaked on the first ``pred_classes``:
    some classes are absent from the truth, some from the predictions, some from both."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, true_classes, n)
    s = rng.random((n, 52))
    s[:, pred_classes:] *= 0.2
    hit = rng.random(n) < 0.4
    s[hit, y[hit]] += 1.0
    return y, s


@pytest.mark.parametrize(("seed", "true_classes", "pred_classes"), [(0, 52, 52), (1, 20, 40), (2, 45, 10), (3, 5, 52)])
def test_classification_metrics_match_sklearn(seed: int, true_classes: int, pred_classes: int) -> None:
    y, s = _random_case(seed, 300, true_classes, pred_classes)
    pred = s.argmax(1)
    m = classification_metrics(y, s, MA52)
    bt, bp = MA52.body_map[y], MA52.body_map[pred]
    expect = {
        "action_top1": skm.accuracy_score(y, pred),
        "action_top5": skm.top_k_accuracy_score(y, s, k=5, labels=np.arange(52)),
        "action_f1_micro": skm.f1_score(y, pred, average="micro"),
        "action_f1_macro": skm.f1_score(y, pred, average="macro", zero_division=0),
        "body_top1": skm.accuracy_score(bt, bp),
        "body_f1_micro": skm.f1_score(bt, bp, average="micro"),
        "body_f1_macro": skm.f1_score(bt, bp, average="macro", zero_division=0),
    }
    expect["f1_mean"] = np.mean(
        [expect[k] for k in ("action_f1_micro", "action_f1_macro", "body_f1_micro", "body_f1_macro")]
    )
    assert list(m) == list(expect)
    for k, v in expect.items():
        assert m[k] == pytest.approx(v, abs=1e-12), k
        assert 0.0 <= m[k] <= 1.0


def test_macro_f1_uses_union_of_true_and_predicted_labels() -> None:
    # truth {0, 1}, predictions {0, 1, 2}: per-class F1 = 2/3, 1, 0 over the union -> 5/9;
    # the 49 classes in neither do not count
    y = np.array([0, 0, 1])
    s = np.zeros((3, 52))
    s[[0, 1, 2], [0, 2, 1]] = 1.0
    m = classification_metrics(y, s, MA52)
    assert m["action_f1_macro"] == pytest.approx(5 / 9)
    assert m["action_f1_micro"] == pytest.approx(2 / 3)
    # actions 0, 1, 2 are all body group 0: the body prediction is right every time
    assert m["body_f1_macro"] == 1.0 and m["body_top1"] == 1.0


def test_body_head_and_derived_body_both_reported() -> None:
    y, s = _random_case(5, 200, 52, 52)
    rng = np.random.default_rng(5)
    b = rng.random((200, 7))
    m = classification_metrics(y, s, MA52, body_scores=b)
    bt = MA52.body_map[y]
    assert m["body_top1"] == pytest.approx(skm.accuracy_score(bt, b.argmax(1)))
    assert m["body_f1_macro"] == pytest.approx(skm.f1_score(bt, b.argmax(1), average="macro"))
    derived = classification_metrics(y, s, MA52)
    assert m["body_from_action_f1_macro"] == derived["body_f1_macro"]
    assert m["body_from_action_top1"] == derived["body_top1"]
    assert m["f1_mean_from_action"] == derived["f1_mean"]
    parts = [m[k] for k in ("action_f1_micro", "action_f1_macro", "body_f1_micro", "body_f1_macro")]
    assert m["f1_mean"] == pytest.approx(np.mean(parts))


def test_imigue_reports_top1_top5() -> None:
    y = np.array([3, 31, 0])
    s = np.zeros((3, 32))
    s[0, 3] = 1  # top-1 hit
    s[1, [0, 1, 2, 4, 31]] = [5, 4, 3, 2, 1]  # 31 fifth: top-5 hit only
    s[2, 1:7] = 1  # class 0 scores below six tied classes: a miss
    m = classification_metrics(y, s, IMIGUE)
    assert m == {"action_top1": pytest.approx(1 / 3), "action_top5": pytest.approx(2 / 3)}
    assert list(topk(s, 5)[2]) == [1, 2, 3, 4, 5]


def test_unknown_labels_are_refused() -> None:
    s = np.random.default_rng(0).random((3, 52))
    with pytest.raises(MetricsError, match=r"1 sample\(s\) have unknown labels \(-1"):
        classification_metrics(np.array([0, -1, 2]), s, MA52)


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        (np.array([0, 1]), np.zeros((3, 52)), r"expected shape \(2, 52\)"),
        (np.array([0, 60, 1]), np.zeros((3, 52)), "out of range 0..51"),
        (np.array([0.5, 1, 2]), np.zeros((3, 52)), "must be integers"),
        (np.array([], dtype=int), np.zeros((0, 52)), "no samples"),
        (np.array([0, 1, 2]), np.full((3, 52), np.nan), "NaN or infinite"),
    ],
)
def test_bad_inputs(y: np.ndarray, s: np.ndarray, message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        classification_metrics(y, s, MA52)


def test_multilabel_map_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((80, 14)) < 0.3).astype(int)
    y[0] = 1  # every class has a positive
    s = rng.random((80, 14)) + 0.5 * y
    m = multilabel_metrics(y, s)
    assert m["map"] == pytest.approx(skm.average_precision_score(y, s, average="macro"))
    assert m["classes_scored"] == 14
    y[:, 3] = 0  # a class with no positive is left out, and counted
    m = multilabel_metrics(y, s)
    keep = [c for c in range(14) if c != 3]
    assert m["map"] == pytest.approx(skm.average_precision_score(y[:, keep], s[:, keep], average="macro"))
    assert m["classes_without_positives"] == 1
    with pytest.raises(MetricsError, match="0 or 1"):
        multilabel_metrics(np.full((2, 14), -1), s[:2])


def test_primary_metric() -> None:
    assert primary_metric(MA52) == "f1_mean"
    assert primary_metric(IMIGUE) == "action_top1"
    assert primary_metric(load_taxonomy("mpiigi")) == "map"


def test_per_class_f1_and_confusion_match_sklearn() -> None:
    y, s = _random_case(7, 200, 30, 52)
    pred = s.argmax(1)
    f1 = per_class_f1(y, pred, 52)
    assert f1.shape == (52,)
    np.testing.assert_allclose(f1, skm.f1_score(y, pred, labels=np.arange(52), average=None, zero_division=0))
    cm = confusion_matrix(y, pred, 52)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=np.arange(52)))
    norm = normalize_confusion(cm)
    assert np.allclose(norm.sum(1)[cm.sum(1) > 0], 1.0) and (norm[cm.sum(1) == 0] == 0).all()
    assert format_metrics({"f1_mean": 0.6559}) == "f1_mean=65.59"


# ---------------------------------------------------------------------------------------------
# prediction CSVs


def _val_case(tmp_path: Path, n: int = 400) -> tuple[list[str], np.ndarray, np.ndarray, Path]:
    videos = [f"{i:04d}_01_0001.mp4" for i in range(n)]
    y, s = _random_case(11, n, 52, 52)
    out = write_submission(tmp_path / "pred.csv", videos, s, MA52)
    return videos, y, s, out


def test_scoring_a_csv_equals_scoring_the_scores(tmp_path: Path) -> None:
    videos, y, s, path = _val_case(tmp_path)
    got = score_prediction_csv(path, videos, y, MA52)
    assert tuple(got) == SCORE_KEYS
    ref = classification_metrics(y, s, MA52)
    for k in SCORE_KEYS:
        assert got[k] == pytest.approx(ref[k]), k


def test_scoring_matches_by_vid_not_row_order(tmp_path: Path) -> None:
    videos, y, _, path = _val_case(tmp_path)
    lines = path.read_text().splitlines()
    shuffled = tmp_path / "shuffled.csv"
    rng = np.random.default_rng(0)
    shuffled.write_text("\n".join([lines[0], *(lines[1:][i] for i in rng.permutation(len(lines) - 1))]))
    assert score_prediction_csv(shuffled, videos, y, MA52) == score_prediction_csv(path, videos, y, MA52)


def test_body_comes_from_body_pred_1(tmp_path: Path) -> None:
    videos = ["a.mp4", "b.mp4"]
    path = tmp_path / "p.csv"
    header = (
        "vid,"
        + ",".join(f"action_pred_{i}" for i in range(1, 6))
        + ","
        + ",".join(f"body_pred_{i}" for i in range(1, 6))
    )
    # actions right; body_pred_1 deliberately not the action's group for b.mp4
    path.write_text(f"{header}\na.mp4,9,1,2,3,4,1,0,0,0,0\nb.mp4,45,1,2,3,4,0,5,5,5,5\n")
    m = score_prediction_csv(path, videos, [9, 45], MA52)
    assert m["action_top1"] == 1.0 and m["body_f1_micro"] == 0.5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[:-1], "no prediction for 1 listed video"),
        (lambda ls: [*ls, "zz.mp4,1,2,3,4,5,0,0,0,0,0"], "1 row\\(s\\) for videos not in the list"),
        (lambda ls: [*ls, ls[1]], "repeats line 2"),
        (lambda ls: ["vid,action_pred_1", *ls[1:]], "header lacks"),
        (lambda ls: [ls[0], ls[1].replace(",", ",x", 1), *ls[2:]], "is not a class id"),
        (lambda ls: [ls[0], ls[1].rsplit(",", 1)[0] + ",7", *ls[2:]], "body_pred_5 = 7 out of range 0..6"),
        (lambda ls: [ls[0], ls[1] + ",1", *ls[2:]], "12 fields, header has 11"),
    ],
)
def test_malformed_prediction_files(tmp_path: Path, edit: Callable[[list[str]], list[str]], message: str) -> None:
    videos, y, _, path = _val_case(tmp_path, n=20)
    path.write_text("\n".join(edit(path.read_text().splitlines())))
    with pytest.raises(MetricsError, match=message):
        score_prediction_csv(path, videos, y, MA52)


def test_partial_prediction_csv(tmp_path: Path) -> None:
    # three listed val videos, predictions for two: a.mp4 right (9), c.mp4 wrong (45 for 44)
    header = (
        "vid,"
        + ",".join(f"action_pred_{i}" for i in range(1, 6))
        + ","
        + ",".join(f"body_pred_{i}" for i in range(1, 6))
    )
    path = tmp_path / "p.csv"
    path.write_text(f"{header}\na.mp4,9,1,2,3,4,1,0,0,0,0\nc.mp4,45,44,2,3,4,5,5,0,0,0\n")
    videos, y = ["a.mp4", "b.mp4", "c.mp4"], [9, 10, 44]
    with pytest.raises(MetricsError, match=r"no prediction for 1 listed video.*'b.mp4'.*--partial"):
        score_prediction_csv(path, videos, y, MA52)
    m = score_prediction_csv(path, videos, y, MA52, partial=True)
    assert (m["action_top1"], m["action_top5"], m["scored"], m["left_out"]) == (0.5, 1.0, 2, 1)
    assert m["body_f1_micro"] == 1.0  # 44 and 45 are both head-hand (5)
