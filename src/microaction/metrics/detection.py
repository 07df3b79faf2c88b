"""Temporal detection metrics, as the field's official tools compute them, and 1-D NMS.

``detection_map`` -- the MMA-52 / MAC challenge evaluator (the ActivityNet protocol as the MAC
baseline's ``evaluate.py`` runs it):

- per class, over all videos of the subset: predictions of that class sorted by score (highest
  first; ties keep their input order); each prediction is matched to the ground-truth segment of
  its video with the highest tIoU that is not yet matched at that threshold, when that tIoU is
  at least the threshold (true positive), else it is a false positive; each ground truth is
  matched at most once per threshold. A prediction on a video without ground truth of its
  class is a false positive.
- tIoU = intersection / (union + 1e-4) -- the official evaluator's epsilon (``union_eps``; 0 is
  ActionFormer's form).
- AP = VOC-2011 interpolated area under the precision/recall curve (precision made monotone from
  the right, summed where recall changes).
- ``mAP@t`` = mean AP over the classes; ``mAP`` = mean of ``mAP@t`` over the thresholds
  (0.1, 0.2, ..., 0.9 for MMA-52; ``SOCIALGESTURE_TIOUS`` = 0.3, 0.5, 0.7 for SocialGesture).
- Classes without ground truth: the official evaluator averages over *all* ``num_classes``
  classes; a class with no ground truth and no prediction gets AP 0 there (and one with
  predictions only would make its mean NaN). Here ``classes="all"`` (default) counts every such
  class as AP 0 -- the official figure whenever it is defined; ``classes="present"`` averages
  over the classes with ground truth only (ActionFormer / ActivityNet style). The result's
  ``classes_without_gt`` says how many there were.

``online_f1`` -- online recognition as SMG / iMiGUE (MiGA) report it: a prediction is correct
when its label equals that of a ground-truth segment of the same video it overlaps with tIoU
> ``overlap`` (0.3), each ground truth matched once (predictions taken by score, each to the
unmatched ground truth it overlaps most); precision = correct / predictions, recall = matched /
ground truths, F1 their harmonic mean.

``nms`` / ``soft_nms`` -- non-maximum suppression over 1-D segments (torch or numpy in, numpy
inside, no compiled extension, memory linear in the number of segments), class-aware when labels
are given; the detectors' inference uses them.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from microaction.data.readers.segment_readers import read_segments
from microaction.data.readers.segments import (
    Detection,
    Segment,
    SegmentTable,
    is_detection_csv,
    parse_detection_csv,
    read_detections,
)
from microaction.taxonomy import Taxonomy

__all__ = [
    "MMA52_TIOUS",
    "SOCIALGESTURE_TIOUS",
    "UNION_EPS",
    "average_precision_per_class",
    "detection_map",
    "interpolated_ap",
    "is_detection_file",
    "map_keys",
    "nms",
    "online_f1",
    "read_detection_submission",
    "score_detection_file",
    "segment_iou",
    "soft_nms",
]

MMA52_TIOUS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SOCIALGESTURE_TIOUS: tuple[float, ...] = (0.3, 0.5, 0.7)
UNION_EPS = 1e-4  # the MAC evaluator's denominator epsilon


def map_keys(tious: Sequence[float] = MMA52_TIOUS) -> list[str]:
    """The keys ``detection_map`` returns, in order: ``mAP`` then ``mAP@<t>`` per threshold."""
    return ["mAP", *(f"mAP@{t:g}" for t in tious)]


def segment_iou(target: np.ndarray, candidates: np.ndarray, union_eps: float = UNION_EPS) -> np.ndarray:
    """tIoU of one ``[start, end]`` segment with each row of ``candidates`` ``[N, 2]``."""
    target = np.asarray(target, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    inter = (np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (union + union_eps)
    return np.nan_to_num(iou, nan=0.0, posinf=0.0, neginf=0.0)


def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC-2011 interpolated average precision of a precision/recall curve (recall ascending)."""
    p = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    step = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[step] - r[step - 1]) * p[step]))


def _match(
    gt_by_video: dict[str, np.ndarray],
    pred: Sequence[Detection],
    tious: np.ndarray,
    union_eps: float,
) -> np.ndarray:
    """``tp`` ``[T, P]`` of the predictions (already sorted by score) against one class's ground truth."""
    tp = np.zeros((len(tious), len(pred)), dtype=bool)
    taken = {v: np.zeros((len(tious), len(g)), dtype=bool) for v, g in gt_by_video.items()}
    for i, d in enumerate(pred):
        gts = gt_by_video.get(d.video)
        if gts is None:
            continue
        iou = segment_iou(np.array([d.start, d.end]), gts, union_eps)
        order = np.argsort(-iou, kind="stable")
        lock = taken[d.video]
        for t, thr in enumerate(tious):
            for j in order:
                if iou[j] < thr:
                    break
                if not lock[t, j]:
                    lock[t, j] = True
                    tp[t, i] = True
                    break
    return tp


def average_precision_per_class(
    gt: Sequence[Segment],
    pred: Sequence[Detection],
    num_classes: int,
    tious: Sequence[float] = MMA52_TIOUS,
    *,
    union_eps: float = UNION_EPS,
) -> tuple[np.ndarray, np.ndarray]:
    """``(ap [T, C], has_gt [C])``: AP per threshold and class (0 for a class without ground truth)."""
    thr = np.asarray(list(tious), dtype=np.float64)
    if thr.ndim != 1 or not len(thr) or not np.all((thr > 0) & (thr <= 1)):
        raise ValueError(f"tIoU thresholds must be in (0, 1], got {list(tious)}")
    gt_c: dict[int, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    for s in gt:
        _check_label(s.label, num_classes, s)
        gt_c[s.label][s.video].append((s.start, s.end))
    pred_c: dict[int, list[Detection]] = defaultdict(list)
    for d in pred:
        _check_label(d.label, num_classes, d)
        if not math.isfinite(d.score):
            raise ValueError(f"detection {d} has a non-finite score")
        pred_c[d.label].append(d)
    ap = np.zeros((len(thr), num_classes))
    has_gt = np.zeros(num_classes, dtype=bool)
    for c in range(num_classes):
        videos = gt_c.get(c)
        if not videos:
            continue
        has_gt[c] = True
        npos = sum(len(v) for v in videos.values())
        dets = pred_c.get(c, [])
        if not dets:
            continue
        order = np.argsort(-np.array([d.score for d in dets]), kind="stable")
        dets = [dets[i] for i in order]
        tp = _match({v: np.asarray(s, dtype=np.float64) for v, s in videos.items()}, dets, thr, union_eps)
        ctp = np.cumsum(tp, axis=1, dtype=np.float64)
        cfp = np.cumsum(~tp, axis=1, dtype=np.float64)
        for t in range(len(thr)):
            ap[t, c] = interpolated_ap(ctp[t] / (ctp[t] + cfp[t]), ctp[t] / npos)
    return ap, has_gt


def _check_label(label: int, num_classes: int, item: object) -> None:
    if not 0 <= label < num_classes:
        raise ValueError(f"{item}: label {label} out of range 0..{num_classes - 1}")


def detection_map(
    gt: Sequence[Segment],
    pred: Sequence[Detection],
    num_classes: int,
    tious: Sequence[float] = MMA52_TIOUS,
    *,
    classes: Literal["all", "present"] = "all",
    union_eps: float = UNION_EPS,
) -> dict[str, float]:
    """Detection mAP (see the module docstring): ``{"mAP", "mAP@0.1", ..., "classes_without_gt"}``,
    values in [0, 1]. ``gt`` should hold the ground truth of every video the predictions cover
    (a prediction on a video without ground truth of its class counts as a false positive)."""
    if classes not in ("all", "present"):
        raise ValueError(f"classes must be 'all' or 'present', got {classes!r}")
    if not gt:
        raise ValueError("no ground-truth segments to score against")
    ap, has_gt = average_precision_per_class(gt, pred, num_classes, tious, union_eps=union_eps)
    per_t = ap.mean(axis=1) if classes == "all" else ap[:, has_gt].mean(axis=1)
    out = {"mAP": float(per_t.mean())}
    for t, v in zip(tious, per_t):
        out[f"mAP@{t:g}"] = float(v)
    out["classes_without_gt"] = float(num_classes - int(has_gt.sum()))
    return out


def online_f1(gt: Sequence[Segment], pred: Sequence[Detection | Segment], overlap: float = 0.3) -> dict[str, float]:
    """Online recognition precision / recall / F1 (see the module docstring). ``pred`` may be
    ``Detection``s (taken by score) or ``Segment``s (taken in time order)."""
    by_key: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, s in enumerate(gt):
        by_key[(s.video, s.label)].append(i)
    matched = np.zeros(len(gt), dtype=bool)
    order = sorted(range(len(pred)), key=lambda i: (-getattr(pred[i], "score", 0.0), pred[i].start, i))
    correct = 0
    for i in order:
        p = pred[i]
        cand = [j for j in by_key.get((p.video, p.label), []) if not matched[j]]
        if not cand:
            continue
        iou = segment_iou(np.array([p.start, p.end]), np.array([[gt[j].start, gt[j].end] for j in cand]), 0.0)
        best = int(np.argmax(iou))
        if iou[best] > overlap:
            matched[cand[best]] = True
            correct += 1
    precision = correct / len(pred) if len(pred) else 0.0
    recall = correct / len(gt) if len(gt) else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "matched": float(correct)}


# ---------------------------------------------------------------------------------------------
# detection submission files (``mar score`` / ``mar submit``)


def is_detection_file(path: str | os.PathLike[str]) -> bool:
    """Whether a prediction file holds detections: a ``.json`` detections file, or a CSV (or a
    submission zip's ``prediction.csv``) whose header is ``,video_id,t_start,t_end,class,score``."""
    from microaction.metrics.classification import _prediction_text

    path = Path(path)
    if path.suffix.lower() == ".json":
        return True
    text, _ = _prediction_text(path)
    try:
        header = next(csv.reader(io.StringIO(text)), [])
    except csv.Error:
        return False
    return is_detection_csv(header)


def read_detection_submission(path: str | os.PathLike[str], taxonomy: Taxonomy | None = None) -> list[Detection]:
    """Detections of a MAC submission CSV / zip (``prediction.csv`` at its root) or a ``.json``
    detections file."""
    from microaction.metrics.classification import _prediction_text

    path = Path(path)
    if path.suffix.lower() == ".json":
        return read_detections(path, taxonomy).detections
    text, source = _prediction_text(path)
    return parse_detection_csv(text, source, taxonomy)


@dataclass
class DetectionScore:
    """What ``score_detection_file`` returns: the metrics and what was scored."""

    metrics: dict[str, float]
    ground_truth: SegmentTable
    num_predictions: int


def score_detection_file(
    pred: str | os.PathLike[str],
    ann: str | os.PathLike[str],
    taxonomy: Taxonomy,
    *,
    subset: str | None = None,
    tious: Sequence[float] = MMA52_TIOUS,
    classes: Literal["all", "present"] = "all",
    fps: float | None = None,
) -> DetectionScore:
    """Score a detection submission against temporal annotations (any ``read_segments`` format),
    over the videos of ``subset``. Predictions for videos the scored annotation does not list
    are refused (a submission for another split is a mistake worth naming); videos without
    predictions simply miss their ground truth."""
    gt = read_segments(ann, taxonomy, split=subset, fps=fps)
    videos = set(gt.videos())
    if not videos:
        what = f" of subset {subset!r}" if subset else ""
        raise ValueError(f"{ann}: no videos{what} to score against")
    dets = read_detection_submission(pred, taxonomy)
    extra = sorted({d.video for d in dets} - videos)
    if extra:
        what = f"subset {subset!r} of " if subset else ""
        raise ValueError(
            f"{pred}: detections for {len(extra)} video(s) not in {what}{ann}, e.g. {extra[:3]}"
            + ("" if subset else " (pass --subset?)")
        )
    metrics = detection_map(gt.segments, dets, taxonomy.num_classes, tious, classes=classes)
    return DetectionScore(metrics, gt, len(dets))


# ---------------------------------------------------------------------------------------------
# 1-D non-maximum suppression (numpy inside, no compiled extension; memory O(N))


def _as_array(x: torch.Tensor | np.ndarray | Sequence[float], dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):  # any device, any dtype (bf16 has no numpy twin)
        x = x.detach().cpu().to(torch.float64 if x.is_floating_point() else torch.int64).numpy()
    return np.asarray(x, dtype=dtype)


def _inputs(
    segments: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    seg = _as_array(segments, np.float64).reshape(-1, 2)
    sc = _as_array(scores, np.float64).reshape(-1)
    if len(seg) != len(sc):
        raise ValueError(f"{len(seg)} segments but {len(sc)} scores")
    lab = None if labels is None else _as_array(labels, np.int64).reshape(-1)
    if lab is not None and len(lab) != len(sc):
        raise ValueError(f"{len(lab)} labels but {len(sc)} scores")
    return seg, sc, lab


class _Overlaps:
    """tIoU of one segment with the segments that can overlap it, found by binary search over
    the start times (segments that cannot overlap have tIoU 0 and are never looked at)."""

    def __init__(self, seg: np.ndarray, lab: np.ndarray | None) -> None:
        self.seg, self.lab = seg, lab
        self.by_start = np.argsort(seg[:, 0], kind="stable")
        self.starts = seg[self.by_start, 0]
        self.max_len = float((seg[:, 1] - seg[:, 0]).max()) if len(seg) else 0.0

    def __call__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, tIoU)`` of the segments that may overlap segment ``i`` (``i`` included)."""
        seg = self.seg
        lo = np.searchsorted(self.starts, seg[i, 0] - self.max_len, side="left")
        hi = np.searchsorted(self.starts, seg[i, 1], side="right")
        j = self.by_start[lo:hi]
        if self.lab is not None:
            j = j[self.lab[j] == self.lab[i]]
        inter = (np.minimum(seg[i, 1], seg[j, 1]) - np.maximum(seg[i, 0], seg[j, 0])).clip(0)
        union = (seg[i, 1] - seg[i, 0]) + (seg[j, 1] - seg[j, 0]) - inter
        return j, np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(
    segments: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None = None,
    iou_threshold: float = 0.5,
    max_num: int | None = None,
) -> torch.Tensor:
    """Greedy NMS over 1-D segments ``[N, 2]`` (start, end); used by the detectors' inference.
    With ``labels`` only segments of the same label suppress each other (multi-class NMS): a
    segment is dropped when its tIoU with a kept, higher-scored one exceeds ``iou_threshold``.
    Returns the kept indices (int64, CPU), highest score first (ties: lower index first); at
    most ``max_num``."""
    seg, sc, lab = _inputs(segments, scores, labels)
    order = np.argsort(-sc, kind="stable")
    overlaps = _Overlaps(seg, lab)
    alive = np.ones(len(seg), dtype=bool)
    keep: list[int] = []
    for i in order:
        if not alive[i]:
            continue
        keep.append(int(i))
        if max_num is not None and len(keep) >= max_num:
            break
        j, iou = overlaps(int(i))
        alive[j[iou > iou_threshold]] = False
    return torch.tensor(keep, dtype=torch.int64)


def soft_nms(
    segments: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | None = None,
    *,
    iou_threshold: float = 0.1,
    sigma: float = 0.5,
    min_score: float = 1e-3,
    method: Literal["gaussian", "linear", "hard"] = "gaussian",
    max_num: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS over 1-D segments (class-aware with ``labels``); used by the detectors' inference.
    Repeatedly take the highest-scoring segment and decay the scores of the others by their tIoU
    with it -- ``gaussian``: ``s *= exp(-iou^2 / sigma)``; ``linear``: ``s *= 1 - iou`` where
    ``iou > iou_threshold``; ``hard``: drop where ``iou > iou_threshold``. Segments whose score
    falls below ``min_score`` are dropped. Returns ``(indices into the input, decayed scores)``
    (CPU tensors), in selection order; at most ``max_num``."""
    if method not in ("gaussian", "linear", "hard"):
        raise ValueError(f"method must be gaussian, linear or hard, got {method!r}")
    seg, sc, lab = _inputs(segments, scores, labels)
    sc = sc.copy()
    overlaps = _Overlaps(seg, lab)
    alive = sc >= min_score
    idx: list[int] = []
    out: list[float] = []
    limit = len(seg) if max_num is None else max_num
    while len(idx) < limit and alive.any():
        i = int(np.argmax(np.where(alive, sc, -np.inf)))  # first index among equal maxima
        idx.append(i)
        out.append(float(sc[i]))
        alive[i] = False
        j, ov = overlaps(i)
        j, ov = j[alive[j]], ov[alive[j]]
        if method == "gaussian":
            decay = np.exp(-(ov**2) / sigma)
        elif method == "linear":
            decay = np.where(ov > iou_threshold, 1 - ov, 1.0)
        else:
            decay = np.where(ov > iou_threshold, 0.0, 1.0)
        sc[j] *= decay
        alive[j] = sc[j] >= min_score
    return torch.tensor(idx, dtype=torch.int64), torch.tensor(out, dtype=torch.float64)
