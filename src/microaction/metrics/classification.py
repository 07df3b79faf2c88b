"""Official metrics and Codabench submission files.

MA-52 protocol, as the benchmark's own evaluation computes it: the action prediction is the
argmax of the action scores; the body prediction is a body head's top-1 when the model has one,
else the body group of the predicted action (both are reported when a head exists:
``body_*`` from the head, ``body_from_action_*`` from the action). Four scikit-learn
``f1_score`` values with default labels (the union of true and predicted classes), ``average``
``'micro'`` and ``'macro'``, for action and body; ``f1_mean`` is their plain mean. Action top-1 /
top-5 accuracies beside them. Label sets without a body level (iMiGUE, SocialGesture) report
top-1 / top-5 (iMiGUE's protocol); multi-label sets (MPII-GI) report macro average precision.

Every value is in [0, 1]; ``format_metrics`` multiplies by 100 for display only. Hidden labels
(``-1``, the benchmarks' test splits) are refused: they cannot be scored, only submitted.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, f1_score

from microaction.data.fileio import atomic_file, atomic_write_bytes
from microaction.taxonomy import Taxonomy

__all__ = [
    "COVERAGE_KEYS",
    "CSV_NAME",
    "SCORE_KEYS",
    "MetricsError",
    "PredictionTable",
    "classification_metrics",
    "confusion_matrix",
    "coverage",
    "f1_mean",
    "format_metrics",
    "match_rows",
    "multilabel_metrics",
    "normalize_confusion",
    "per_class_f1",
    "primary_metric",
    "read_prediction_csv",
    "score_prediction_csv",
    "score_predictions",
    "submission_rows",
    "topk",
    "topk_accuracy",
    "write_prediction_csv",
    "write_submission",
]

TOPK = 5  # columns per head in a Codabench prediction file
CSV_NAME = "prediction.csv"  # the file name the MA-52 evaluation server looks for inside the zip
# what `mar score --json` prints, in this order (the benchmark's leaderboard columns)
SCORE_KEYS = (
    "action_top1",
    "action_top5",
    "action_f1_micro",
    "action_f1_macro",
    "body_f1_micro",
    "body_f1_macro",
    "f1_mean",
)
# what a partial score adds (counts of listed samples, not values in [0, 1])
COVERAGE_KEYS = ("scored", "left_out")


_ID = re.compile(r"-?[0-9]{1,9}")


class MetricsError(ValueError):
    """Inputs that cannot be scored (hidden labels, shape mismatches, a malformed prediction file)."""


# ---------------------------------------------------------------------------------------------
# checks


def _labels(y: object, name: str, num_classes: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise MetricsError(f"{name}: expected a 1-D array of class ids, got shape {arr.shape}")
    if arr.size == 0:
        raise MetricsError(f"{name}: no samples to score")
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and bool(np.all(np.mod(arr, 1) == 0))
    )
    if not integral:
        raise MetricsError(f"{name}: class ids must be integers (dtype {arr.dtype})")
    arr = arr.astype(np.int64)
    if (arr < 0).any():
        n = int((arr < 0).sum())
        raise MetricsError(
            f"{name}: {n} sample(s) have unknown labels (-1; hidden test labels?): they cannot be scored; "
            "score a split with known labels or write a submission with `mar submit`"
        )
    if (arr >= num_classes).any():
        raise MetricsError(f"{name}: class id {int(arr.max())} out of range 0..{num_classes - 1}")
    return arr


def _scores(s: object, name: str, n: int, num_classes: int) -> np.ndarray:
    try:
        arr = np.asarray(s, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MetricsError(f"{name}: not a numeric array ({e})") from None
    if arr.ndim != 2 or arr.shape[0] != n or arr.shape[1] != num_classes:
        raise MetricsError(f"{name}: expected shape ({n}, {num_classes}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise MetricsError(f"{name}: contains NaN or infinite values")
    return arr


# ---------------------------------------------------------------------------------------------
# building blocks


def topk(scores: np.ndarray, k: int = TOPK) -> np.ndarray:
    """``[N, k]`` class ids by descending score; ties go to the lower id (a stable sort)."""
    s = np.asarray(scores)
    k = min(k, s.shape[1])
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def topk_accuracy(y_true: np.ndarray, scores: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` best scored (``k`` capped at C)."""
    top = topk(scores, k)
    return float((top == np.asarray(y_true)[:, None]).any(axis=1).mean())


def f1_mean(action_f1_micro: float, action_f1_macro: float, body_f1_micro: float, body_f1_macro: float) -> float:
    """MA-52's F1_mean: the plain mean of the four F1 values (no weighting)."""
    return (action_f1_micro + action_f1_macro + body_f1_micro + body_f1_macro) / 4.0


def _f1(y_true: np.ndarray, y_pred: np.ndarray, average: str) -> float:
    # scikit-learn defaults: labels = union of true and predicted ids; zero_division as sklearn's
    # default, silenced (a class predicted but absent from the truth scores 0 either way).
    return float(f1_score(y_true, y_pred, average=average, zero_division=0))


def score_predictions(
    action_true: np.ndarray,
    action_pred: np.ndarray,
    body_true: np.ndarray,
    body_pred: np.ndarray,
    action_top5_hit: np.ndarray | None = None,
) -> dict[str, float]:
    """The MA-52 F1 block from hard predictions (shared by the score and CSV paths)."""
    out = {
        "action_top1": float((action_pred == action_true).mean()),
        "action_f1_micro": _f1(action_true, action_pred, "micro"),
        "action_f1_macro": _f1(action_true, action_pred, "macro"),
        "body_top1": float((body_pred == body_true).mean()),
        "body_f1_micro": _f1(body_true, body_pred, "micro"),
        "body_f1_macro": _f1(body_true, body_pred, "macro"),
    }
    if action_top5_hit is not None:
        out["action_top5"] = float(np.mean(action_top5_hit))
    out["f1_mean"] = f1_mean(out["action_f1_micro"], out["action_f1_macro"], out["body_f1_micro"], out["body_f1_macro"])
    return out


# ---------------------------------------------------------------------------------------------
# the public metrics API


def classification_metrics(
    action_true: Sequence[int] | np.ndarray,
    action_scores: np.ndarray,
    taxonomy: Taxonomy,
    body_scores: np.ndarray | None = None,
) -> dict[str, float]:
    """Official single-label metrics for ``[N]`` true ids and ``[N, C]`` scores (see module doc).

    With a body level: ``action_top1, action_top5, action_f1_micro, action_f1_macro, body_top1,
    body_f1_micro, body_f1_macro, f1_mean``; when ``body_scores`` (``[N, C_body]``) is given the
    body keys come from that head and ``body_from_action_top1``, ``body_from_action_f1_micro``,
    ``body_from_action_f1_macro``, ``f1_mean_from_action`` report the derived choice beside them.
    Without a body level: ``action_top1, action_top5``.
    """
    if taxonomy.multi_label:
        raise MetricsError(f"taxonomy {taxonomy.name!r} is multi-label: use multilabel_metrics")
    y = _labels(action_true, "action_true", taxonomy.num_classes)
    s = _scores(action_scores, "action_scores", len(y), taxonomy.num_classes)
    pred = s.argmax(axis=1)
    top5 = topk_accuracy(y, s, TOPK)
    if not taxonomy.has_body:
        if body_scores is not None:
            raise MetricsError(f"taxonomy {taxonomy.name!r} has no body level but body_scores were given")
        return {"action_top1": float((pred == y).mean()), "action_top5": top5}
    body_map = taxonomy.body_map
    body_true = body_map[y]
    from_action = body_map[pred]
    if body_scores is None:
        out = score_predictions(y, pred, body_true, from_action)
        out["action_top5"] = top5
        return _ordered(out)
    b = _scores(body_scores, "body_scores", len(y), taxonomy.num_body)
    out = score_predictions(y, pred, body_true, b.argmax(axis=1))
    out["action_top5"] = top5
    derived = score_predictions(y, pred, body_true, from_action)
    for key in ("body_top1", "body_f1_micro", "body_f1_macro"):
        out[key.replace("body_", "body_from_action_", 1)] = derived[key]
    out["f1_mean_from_action"] = derived["f1_mean"]
    return _ordered(out)


_ORDER = (
    "action_top1",
    "action_top5",
    "action_f1_micro",
    "action_f1_macro",
    "body_top1",
    "body_f1_micro",
    "body_f1_macro",
    "f1_mean",
)


def _ordered(d: dict[str, float]) -> dict[str, float]:
    head = {k: d[k] for k in _ORDER if k in d}
    head.update({k: v for k, v in d.items() if k not in head})
    return head


def multilabel_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """MPII-GI bodily behaviour: macro average precision over the classes.

    ``y_true`` ``[N, C]`` 0/1, ``scores`` ``[N, C]``. A class without a positive sample has no
    defined AP; it is left out of the mean and counted in ``classes_without_positives``.
    Returns ``{"map", "classes_scored", "classes_without_positives"}``.
    """
    y = np.asarray(y_true)
    if y.ndim != 2 or y.shape[0] == 0:
        raise MetricsError(f"y_true: expected a non-empty [N, C] 0/1 array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise MetricsError("y_true: multi-label targets must be 0 or 1 (unknown labels cannot be scored)")
    s = _scores(scores, "scores", y.shape[0], y.shape[1])
    y = y.astype(np.int64)
    present = y.sum(axis=0) > 0
    if not present.any():
        raise MetricsError("y_true: no class has a positive sample; average precision is undefined")
    aps = [float(average_precision_score(y[:, c], s[:, c])) for c in np.flatnonzero(present)]
    return {
        "map": float(np.mean(aps)),
        "classes_scored": float(present.sum()),
        "classes_without_positives": float((~present).sum()),
    }


def primary_metric(taxonomy: Taxonomy) -> str:
    """The metric a run selects its best checkpoint by, as named in the benchmark's papers."""
    if taxonomy.multi_label:
        return "map"
    return "f1_mean" if taxonomy.has_body else "action_top1"


def per_class_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C]`` F1 of each class id 0..C-1 (0 for a class neither true nor predicted)."""
    y = _labels(y_true, "y_true", num_classes)
    p = _labels(y_pred, "y_pred", num_classes)
    if len(p) != len(y):
        raise MetricsError(f"y_pred has {len(p)} entries, y_true {len(y)}")
    return np.asarray(f1_score(y, p, labels=np.arange(num_classes), average=None, zero_division=0), dtype=np.float64)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` int64 counts, rows = true class, columns = predicted class."""
    y = _labels(y_true, "y_true", num_classes)
    p = _labels(y_pred, "y_pred", num_classes)
    if len(p) != len(y):
        raise MetricsError(f"y_pred has {len(p)} entries, y_true {len(y)}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y, p), 1)
    return cm


def normalize_confusion(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion (recall per true class); rows without samples stay 0."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)


def format_metrics(metrics: Mapping[str, float], *, digits: int = 2) -> str:
    """``key=value`` pairs ×100 for display (counts such as ``classes_scored`` stay as they are)."""
    parts = []
    for k, v in metrics.items():
        shown = v if k.startswith("classes_") else 100.0 * v
        parts.append(f"{k}={shown:.{digits}f}")
    return "  ".join(parts)


# ---------------------------------------------------------------------------------------------
# Codabench submissions (MA-52): prediction.csv = vid,action_pred_1..5,body_pred_1..5


def _header(k: int = TOPK) -> list[str]:
    return ["vid"] + [f"action_pred_{i}" for i in range(1, k + 1)] + [f"body_pred_{i}" for i in range(1, k + 1)]


def submission_rows(
    videos: Sequence[str],
    action_scores: np.ndarray,
    taxonomy: Taxonomy,
    body_scores: np.ndarray | None = None,
) -> list[list[str]]:
    """Rows of prediction.csv (header first): top-5 actions by score; body columns from the body
    head's top-5 when given, else the body groups of the five actions."""
    if not taxonomy.has_body:
        raise MetricsError(f"taxonomy {taxonomy.name!r} has no body level; the Codabench format is MA-52's")
    if len(videos) == 0:
        raise MetricsError("no videos to write")
    if len(set(videos)) != len(videos):
        raise MetricsError("duplicate video names; each vid must appear once in a submission")
    s = _scores(action_scores, "action_scores", len(videos), taxonomy.num_classes)
    actions = topk(s, TOPK)
    if body_scores is None:
        bodies = taxonomy.body_map[actions]
    else:
        b = _scores(body_scores, "body_scores", len(videos), taxonomy.num_body)
        bodies = topk(b, TOPK)
    if actions.shape[1] < TOPK or bodies.shape[1] < TOPK:
        raise MetricsError(f"a submission needs at least {TOPK} action and body classes")
    rows = [_header()]
    for vid, a, bb in zip(videos, actions, bodies):
        rows.append([str(vid), *(str(int(x)) for x in a), *(str(int(x)) for x in bb)])
    return rows


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


def write_prediction_csv(path: str | os.PathLike[str], rows: Sequence[Sequence[str]]) -> Path:
    """Write prediction rows as CSV (CRLF line ends, as the official example file)."""
    path = Path(path)
    atomic_write_bytes(path, _csv_text(rows).encode())
    return path


def write_submission(
    out: str | os.PathLike[str],
    videos: Sequence[str],
    action_scores: np.ndarray,
    taxonomy: Taxonomy,
    body_scores: np.ndarray | None = None,
) -> Path:
    """Write a Codabench submission: ``out`` (.zip) holding ``prediction.csv`` at its root (no
    enclosing folder), or the CSV itself when ``out`` ends in ``.csv``."""
    rows = submission_rows(videos, action_scores, taxonomy, body_scores)
    out = Path(out)
    if out.suffix.lower() == ".csv":
        return write_prediction_csv(out, rows)
    with atomic_file(out) as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(CSV_NAME, _csv_text(rows))
    return out


@dataclass(frozen=True)
class PredictionTable:
    """A parsed prediction file: ``vid -> row index``, ``actions`` / ``bodies`` ``[N, 5]`` int64."""

    source: str
    videos: tuple[str, ...]
    actions: np.ndarray
    bodies: np.ndarray

    def index(self) -> dict[str, int]:
        return {v: i for i, v in enumerate(self.videos)}


def _prediction_text(path: Path) -> tuple[str, str]:
    """Text of a prediction CSV, or of prediction.csv inside a submission zip."""
    from microaction.data.archives import ArchiveError, read_member, zip_members

    try:
        if zipfile.is_zipfile(path):  # a submission zip: its member bounded (zip bombs)
            names = [n for n in zip_members(path) if not n.endswith("/")]
            raw = read_member(path, CSV_NAME) if CSV_NAME in names else None
            source = f"{path}!{CSV_NAME}"
        else:
            raw = path.read_bytes()
            source = str(path)
    except ArchiveError as e:
        raise MetricsError(str(e)) from None
    except OSError as e:
        raise MetricsError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if raw is None:
        raise MetricsError(f"{path}: no {CSV_NAME} at the zip's root (has {names[:5]})")
    try:
        return raw.decode("utf-8-sig"), source
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise MetricsError(f"{source}:{line}: not UTF-8 text") from None


def read_prediction_csv(path: str | os.PathLike[str], taxonomy: Taxonomy | None = None) -> PredictionTable:
    """Parse a Codabench prediction CSV (or a submission zip). Columns are found by header name;
    class ids are checked against ``taxonomy`` when given; duplicate ``vid``s are refused."""
    text, source = _prediction_text(Path(path))
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise MetricsError(f"{source}: empty file (expected header {','.join(_header())})") from None
    except csv.Error as e:
        raise MetricsError(f"{source}:1: {e}") from None
    missing = [c for c in _header() if c not in header]
    if missing:
        raise MetricsError(f"{source}:1: header lacks {missing} (expected {','.join(_header())})")
    pos = [header.index(c) for c in _header()]
    videos: list[str] = []
    values: list[list[int]] = []
    seen: dict[str, int] = {}
    try:
        for row in reader:
            where = f"{source}:{reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise MetricsError(f"{where}: {len(row)} fields, header has {len(header)}")
            vid = row[pos[0]].strip()
            if not vid:
                raise MetricsError(f"{where}: empty vid")
            if vid in seen:
                raise MetricsError(f"{where}: vid {vid!r} repeats line {seen[vid]}")
            seen[vid] = reader.line_num
            ids = []
            for col, p in zip(_header()[1:], pos[1:]):
                cell = row[p].strip()
                if not _ID.fullmatch(cell):
                    raise MetricsError(f"{where}: {col} {cell!r} is not a class id")
                ids.append(int(cell))
            values.append(ids)
            videos.append(vid)
    except csv.Error as e:
        raise MetricsError(f"{source}:{reader.line_num}: {e}") from None
    if not videos:
        raise MetricsError(f"{source}: no prediction rows")
    arr = np.asarray(values, dtype=np.int64)
    actions, bodies = arr[:, :TOPK], arr[:, TOPK:]
    if taxonomy is not None:
        for name, a, n in (("action", actions, taxonomy.num_classes), ("body", bodies, taxonomy.num_body)):
            bad = np.argwhere((a < 0) | (a >= n))
            if len(bad):
                r, c = bad[0]
                raise MetricsError(
                    f"{source}: row for {videos[r]!r}: {name}_pred_{c + 1} = {a[r, c]} out of range 0..{n - 1}"
                )
    return PredictionTable(source, tuple(videos), actions, bodies)


def match_rows(
    source: str, listed: Sequence[str], rows: Sequence[str], what: str = "video", *, partial: bool = False
) -> np.ndarray:
    """Row index of each listed id in a prediction file's ids. Every listed id needs a row, unless
    ``partial``: then a listed id without one gets -1 (left out of the score; at least one must
    have a row). Rows for ids not listed are refused either way (a submission for another split
    is a mistake worth naming)."""
    where = {v: i for i, v in enumerate(rows)}
    missing = [v for v in listed if v not in where]
    if missing and (not partial or len(missing) == len(listed)):
        hint = "" if partial else "; to score the predicted ones only, pass partial=True (mar score --partial)"
        raise MetricsError(f"{source}: no prediction for {len(missing)} listed {what}(s), e.g. {missing[:3]}{hint}")
    known = set(listed)
    extra = [v for v in rows if v not in known]
    if extra:
        raise MetricsError(f"{source}: {len(extra)} row(s) for {what}s not in the list, e.g. {extra[:3]}")
    return np.asarray([where.get(v, -1) for v in listed], dtype=np.int64)


def coverage(matched: np.ndarray) -> dict[str, float]:
    """``scored`` / ``left_out``: how many listed samples a partial score covers and leaves out
    (the counts :func:`match_rows` gives with ``partial=True``; see :data:`COVERAGE_KEYS`)."""
    scored = int((matched >= 0).sum())
    return {"scored": scored, "left_out": len(matched) - scored}


def score_prediction_csv(
    path: str | os.PathLike[str],
    videos: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    taxonomy: Taxonomy,
    *,
    partial: bool = False,
) -> dict[str, float]:
    """Score a prediction file against true labels, matched by ``vid`` (row order is free).

    Action from ``action_pred_1`` (top-5 from all five columns), body from ``body_pred_1``.
    Returns the :data:`SCORE_KEYS`. Every listed video needs exactly one row, unless ``partial``:
    then the videos with a row are scored and the :data:`COVERAGE_KEYS` say how many were scored
    and left out. Rows for videos not in the list are refused (a submission for another split is
    a mistake worth naming).
    """
    if not taxonomy.has_body:
        raise MetricsError(f"taxonomy {taxonomy.name!r} has no body level; prediction CSVs are MA-52's format")
    y = _labels(labels, "labels", taxonomy.num_classes)
    if len(videos) != len(y):
        raise MetricsError(f"{len(videos)} videos but {len(y)} labels")
    table = read_prediction_csv(path, taxonomy)
    matched = match_rows(table.source, videos, table.videos, "video", partial=partial)
    kept = matched >= 0
    y, rows = y[kept], matched[kept]
    actions, bodies = table.actions[rows], table.bodies[rows]
    out = score_predictions(
        y, actions[:, 0], taxonomy.body_map[y], bodies[:, 0], action_top5_hit=(actions == y[:, None]).any(axis=1)
    )
    return {**{k: out[k] for k in SCORE_KEYS}, **(coverage(matched) if partial else {})}
