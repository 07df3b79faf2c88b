"""Detection metrics: hand-computed cases, and a brute-force reimplementation on random data."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from microaction.data.readers.segments import Detection, Segment
from microaction.metrics.detection import (
    MMA52_TIOUS,
    SOCIALGESTURE_TIOUS,
    detection_map,
    interpolated_ap,
    map_keys,
    nms,
    online_f1,
    segment_iou,
    soft_nms,
)


def seg(video: str, a: float, b: float, label: int = 0) -> Segment:
    return Segment(video, a, b, label)


def det(video: str, a: float, b: float, score: float, label: int = 0) -> Detection:
    return Detection(video, a, b, label, score)


# ---------------------------------------------------------------------------------------------
# hand-computed cases


def test_segment_iou_has_the_official_epsilon() -> None:
    iou = segment_iou(np.array([0.0, 2.0]), np.array([[1.0, 3.0], [0.0, 2.0], [5.0, 6.0]]))
    assert iou[0] == pytest.approx(1 / (3 + 1e-4))
    assert iou[1] == pytest.approx(2 / (2 + 1e-4))
    assert iou[2] == 0.0
    assert segment_iou(np.array([0.0, 2.0]), np.array([[1.0, 3.0]]), union_eps=0)[0] == pytest.approx(1 / 3)


def test_perfect_and_empty_predictions() -> None:
    gt = [seg("a", 0, 1, 0), seg("a", 2, 3, 1), seg("b", 0, 4, 1)]
    perfect = [det(s.video, s.start, s.end, 0.9, s.label) for s in gt]
    m = detection_map(gt, perfect, num_classes=2)
    assert list(m)[: len(MMA52_TIOUS) + 1] == map_keys()
    assert all(m[k] == pytest.approx(1.0) for k in map_keys())
    assert m["classes_without_gt"] == 0
    assert detection_map(gt, [], num_classes=2)["mAP"] == 0.0


def test_hand_computed_ap_one_class() -> None:
    # GT: two segments in video a. Predictions by score: p1 hits g1 (iou 1), p2 is a duplicate of
    # g1 (g1 already taken -> FP), p3 hits g2 with iou 0.5 (1 / 2).
    gt = [seg("a", 0, 2), seg("a", 10, 12)]
    pred = [det("a", 0, 2, 0.9), det("a", 0, 2, 0.8), det("a", 10, 11, 0.7)]
    m = detection_map(gt, pred, num_classes=1, tious=(0.3, 0.6))
    # tIoU 0.3: tp = [1, 0, 1] -> precision [1, .5, .667], recall [.5, .5, 1]
    # interpolated: recall .5 at precision 1, recall 1 at precision 2/3 -> .5 + .5 * 2/3
    assert m["mAP@0.3"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    # tIoU 0.6: p3 (iou 0.49998) misses -> only recall .5 at precision 1
    assert m["mAP@0.6"] == pytest.approx(0.5)
    assert m["mAP"] == pytest.approx((0.5 + 0.5 * 2 / 3 + 0.5) / 2)


def test_highest_tiou_match_first_and_each_gt_once() -> None:
    # one prediction overlapping two GTs: it takes the better one; the second prediction then
    # takes the other GT at the low threshold only.
    gt = [seg("a", 0, 10), seg("a", 4, 10)]
    pred = [det("a", 4, 10, 0.9), det("a", 0, 9, 0.8)]
    m = detection_map(gt, pred, num_classes=1, tious=(0.5,))
    assert m["mAP@0.5"] == pytest.approx(1.0)  # p1 -> g2 (iou 1), p2 -> g1 (iou .9)
    # if p1 had taken g1 (iou .6) instead, p2 would match g2 at iou 5/10 -> still tp at .5, so
    # check a threshold where the choice matters: at 0.95 p2 misses either way, p1 hits g2 only
    m = detection_map(gt, pred, num_classes=1, tious=(0.95,))
    assert m["mAP@0.95"] == pytest.approx(0.5)


def test_false_positive_on_video_without_gt_and_other_class() -> None:
    gt = [seg("a", 0, 1, 0)]
    pred = [det("z", 0, 1, 0.99, 0), det("a", 0, 1, 0.9, 1), det("a", 0, 1, 0.5, 0)]
    m = detection_map(gt, pred, num_classes=2, tious=(0.5,))
    # class 0: FP (video z) then TP -> precision .5 at recall 1 -> AP .5; class 1 has no GT -> 0
    assert m["mAP@0.5"] == pytest.approx(0.25)
    assert m["classes_without_gt"] == 1
    present = detection_map(gt, pred, num_classes=2, tious=(0.5,), classes="present")
    assert present["mAP@0.5"] == pytest.approx(0.5)


def test_socialgesture_thresholds_and_errors() -> None:
    gt = [seg("a", 0, 1)]
    m = detection_map(gt, [det("a", 0, 1, 1.0)], num_classes=1, tious=SOCIALGESTURE_TIOUS)
    assert list(m) == ["mAP", "mAP@0.3", "mAP@0.5", "mAP@0.7", "classes_without_gt"]
    with pytest.raises(ValueError, match="out of range"):
        detection_map(gt, [det("a", 0, 1, 1.0, label=3)], num_classes=2)
    with pytest.raises(ValueError, match="thresholds"):
        detection_map(gt, [], num_classes=1, tious=(0.0,))
    with pytest.raises(ValueError, match="no ground-truth"):
        detection_map([], [], num_classes=1)


def test_interpolated_ap_monotone_envelope() -> None:
    # precision dips then rises: the envelope takes the later, higher value
    # FP, TP, TP over two ground truths: precision [0, .5, .667] at recall [0, .5, 1]; the
    # recall step to .5 takes the best precision at or after it (.667), not .5
    assert interpolated_ap(np.array([0.0, 0.5, 2 / 3]), np.array([0.0, 0.5, 1.0])) == pytest.approx(2 / 3)


def test_online_f1_hand_computed() -> None:
    gt = [seg("a", 0, 10, 1), seg("a", 20, 30, 2), seg("b", 0, 10, 1)]
    pred = [
        Segment("a", 1, 9, 1),  # iou .8 -> correct
        Segment("a", 2, 8, 1),  # same GT already matched -> wrong
        Segment("a", 20, 23, 2),  # iou .3, not > .3 -> wrong
        Segment("b", 0, 10, 2),  # wrong label
    ]
    r = online_f1(gt, pred)
    assert r["precision"] == pytest.approx(1 / 4)
    assert r["recall"] == pytest.approx(1 / 3)
    assert r["f1"] == pytest.approx(2 * (1 / 4) * (1 / 3) / (1 / 4 + 1 / 3))
    assert online_f1(gt, [])["f1"] == 0.0
    # the higher-scored of two candidates gets the GT
    r = online_f1([seg("a", 0, 10, 1)], [det("a", 0, 5, 0.9, 1), det("a", 0, 10, 0.1, 1)])
    assert r["matched"] == 1 and r["precision"] == 0.5


# ---------------------------------------------------------------------------------------------
# brute force on random data


def brute_ap(gt: list[Segment], pred: list[Detection], c: int, thr: float) -> float:
    """An independent AP: plain loops, tIoU from the definition, the envelope by max over the tail."""
    g = [s for s in gt if s.label == c]
    p = sorted((d for d in pred if d.label == c), key=lambda d: -d.score)
    if not g or not p:
        return 0.0
    used = [False] * len(g)
    hits = []
    for d in p:
        best, best_iou = -1, -1.0
        for j, s in enumerate(g):
            if s.video != d.video or used[j]:
                continue
            inter = max(0.0, min(s.end, d.end) - max(s.start, d.start))
            iou = inter / ((s.end - s.start) + (d.end - d.start) - inter + 1e-4)
            if iou > best_iou:
                best, best_iou = j, iou
        ok = best >= 0 and best_iou >= thr
        if ok:
            used[best] = True
        hits.append(ok)
    tp = np.cumsum(hits)
    prec = tp / np.arange(1, len(p) + 1)
    rec = tp / len(g)
    ap, prev = 0.0, 0.0
    for k in range(len(p)):
        if rec[k] > prev:
            ap += (rec[k] - prev) * prec[k:].max()
            prev = rec[k]
    return ap


def test_map_matches_brute_force_on_random_data() -> None:
    rng = random.Random(7)
    for trial in range(12):
        n_cls = rng.randint(1, 4)
        gt, pred = [], []
        for v in range(rng.randint(1, 4)):
            for _ in range(rng.randint(0, 6)):
                a = rng.uniform(0, 50)
                gt.append(Segment(f"v{v}", a, a + rng.uniform(0.5, 8), rng.randrange(n_cls)))
        if not gt:
            gt.append(Segment("v0", 1, 2, 0))
        for s in gt:  # noisy copies of the ground truth, plus distractors
            for _ in range(rng.randint(0, 3)):
                j = rng.uniform(-2, 2)
                pred.append(Detection(s.video, s.start + j, s.end + j * rng.random(), s.label, rng.random()))
        for _ in range(rng.randint(0, 8)):
            a = rng.uniform(0, 50)
            pred.append(
                Detection(f"v{rng.randrange(5)}", a, a + rng.uniform(0.2, 5), rng.randrange(n_cls), rng.random())
            )
        m = detection_map(gt, pred, n_cls)
        for thr in MMA52_TIOUS:
            ref = np.mean([brute_ap(gt, pred, c, thr) for c in range(n_cls)])
            # the reference matches greedily to the best *unused* GT, which equals the official
            # "best GT first, skip taken ones" rule
            assert m[f"mAP@{thr:g}"] == pytest.approx(ref, abs=1e-12), (trial, thr)
        assert m["mAP"] == pytest.approx(np.mean([m[f"mAP@{t:g}"] for t in MMA52_TIOUS]))


def brute_f1(gt: list[Segment], pred: list[Detection], overlap: float) -> tuple[int, int, int]:
    used = set()
    correct = 0
    for d in sorted(pred, key=lambda d: -d.score):
        best, best_iou = None, overlap
        for j, s in enumerate(gt):
            if j in used or s.video != d.video or s.label != d.label:
                continue
            inter = max(0.0, min(s.end, d.end) - max(s.start, d.start))
            iou = inter / ((s.end - s.start) + (d.end - d.start) - inter)
            if iou > best_iou:
                best, best_iou = j, iou
        if best is not None:
            used.add(best)
            correct += 1
    return correct, len(pred), len(gt)


def test_online_f1_matches_brute_force() -> None:
    rng = random.Random(3)
    for _ in range(20):
        gt = [
            Segment(f"v{rng.randrange(2)}", a := rng.uniform(0, 30), a + rng.uniform(1, 6), rng.randrange(3))
            for _ in range(rng.randint(1, 10))
        ]
        pred = [
            Detection(
                f"v{rng.randrange(2)}", a := rng.uniform(0, 30), a + rng.uniform(1, 6), rng.randrange(3), rng.random()
            )
            for _ in range(rng.randint(0, 12))
        ]
        correct, n_pred, n_gt = brute_f1(gt, pred, 0.3)
        r = online_f1(gt, pred)
        assert r["matched"] == correct
        assert r["precision"] == pytest.approx(correct / n_pred if n_pred else 0.0)
        assert r["recall"] == pytest.approx(correct / n_gt)


# ---------------------------------------------------------------------------------------------
# NMS


def brute_nms(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray | None, thr: float) -> list[int]:
    order = sorted(range(len(segs)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        ok = True
        for k in keep:
            if labels is not None and labels[k] != labels[i]:
                continue
            inter = max(0.0, min(segs[i, 1], segs[k, 1]) - max(segs[i, 0], segs[k, 0]))
            union = (segs[i, 1] - segs[i, 0]) + (segs[k, 1] - segs[k, 0]) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def random_segments(rng: np.random.Generator, n: int, span: float, lo: float, hi: float) -> np.ndarray:
    """``[n, 2]`` segments starting in ``[0, span)`` with lengths in ``[lo, hi)``."""
    a = rng.uniform(0, span, n)
    return np.stack([a, a + rng.uniform(lo, hi, n)], 1)


def test_nms_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(15):
        n = int(rng.integers(1, 40))
        segs = random_segments(rng, n, 20, 0.1, 5)
        scores = rng.random(n)
        labels = rng.integers(0, 3, n)
        for lab in (None, labels):
            got = nms(
                torch.from_numpy(segs), torch.from_numpy(scores), None if lab is None else torch.from_numpy(lab), 0.4
            )
            assert got.tolist() == brute_nms(segs, scores, lab, 0.4)
    assert nms(np.zeros((0, 2)), np.zeros(0)).numel() == 0
    bf = torch.tensor([[0.0, 1.0], [0.1, 1.0]], dtype=torch.bfloat16)
    assert nms(bf, torch.tensor([0.2, 0.9], dtype=torch.bfloat16), torch.tensor([3, 3])).tolist() == [1]
    assert nms(np.array([[0, 1], [0, 1], [5, 6]]), np.array([0.5, 0.9, 0.1]), max_num=1).tolist() == [1]


def test_soft_nms_gaussian_hand_computed() -> None:
    segs = np.array([[0.0, 10.0], [0.0, 5.0], [20.0, 30.0]])
    idx, sc = soft_nms(segs, np.array([0.9, 0.8, 0.3]), sigma=0.5)
    # after taking 0, segment 1 (iou .5) decays to .8 * exp(-.25 / .5); segment 2 is untouched
    assert idx.tolist() == [0, 1, 2]
    assert sc.tolist() == pytest.approx([0.9, 0.8 * math.exp(-0.5), 0.3])
    # hard soft-NMS equals NMS
    idx, _ = soft_nms(segs, np.array([0.9, 0.8, 0.3]), method="hard", iou_threshold=0.4)
    assert idx.tolist() == [0, 2]
    # labels keep other classes untouched; min_score drops decayed ones
    idx, sc = soft_nms(segs, np.array([0.9, 0.8, 0.3]), np.array([0, 1, 0]))
    assert sc.tolist() == pytest.approx([0.9, 0.8, 0.3])
    idx, _ = soft_nms(np.array([[0.0, 1.0], [0.0, 1.0]]), np.array([0.9, 0.9]), method="linear", iou_threshold=0.5)
    assert idx.tolist() == [0]  # the duplicate decays to 0 < min_score


def test_soft_nms_linear_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        n = int(rng.integers(1, 25))
        segs = random_segments(rng, n, 10, 0.5, 4)
        scores = rng.random(n)
        idx, sc = soft_nms(segs, scores, method="linear", iou_threshold=0.3, min_score=0.05)
        # reference: plain loops
        s = scores.copy()
        alive = set(i for i in range(n) if s[i] >= 0.05)
        ref: list[tuple[int, float]] = []
        while alive:
            i = max(sorted(alive), key=lambda k: s[k])
            ref.append((i, s[i]))
            alive.discard(i)
            for k in list(alive):
                inter = max(0.0, min(segs[i, 1], segs[k, 1]) - max(segs[i, 0], segs[k, 0]))
                iou = inter / ((segs[i, 1] - segs[i, 0]) + (segs[k, 1] - segs[k, 0]) - inter)
                if iou > 0.3:
                    s[k] *= 1 - iou
                if s[k] < 0.05:
                    alive.discard(k)
        assert idx.tolist() == [i for i, _ in ref]
        assert sc.tolist() == pytest.approx([v for _, v in ref])


def test_permutation_invariance_of_map() -> None:
    gt = [seg("a", i, i + 1.5, i % 2) for i in range(0, 20, 2)]
    pred = [det("a", i + 0.2, i + 1.4, 1 / (1 + i + j), (i + j) % 2) for i in range(0, 20, 2) for j in range(2)]
    ref = detection_map(gt, pred, 2)
    for perm in itertools.islice(itertools.permutations(range(len(pred))), 0, 3000, 997):
        assert detection_map(gt[::-1], [pred[k] for k in perm], 2) == ref
