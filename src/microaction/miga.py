"""iMiGUE / MiGA challenge files: the submission CSV, read, written and scored.

The MiGA classification track (micro-gesture classification on iMiGUE) takes a CSV with one row
per test sample, ``id,pred``: the sample's name (``0187_0`` = video 0187, instance 0, as in the
ST-GCN label pickles) and the predicted class id, without a header (the challenge's baseline
writes it so), or with the header ``Id,Target`` (the Kaggle editions). The challenge reports
top-1 accuracy; the iMiGUE papers add top-5. A file with five ranked predictions per row
(``id,pred_1,...,pred_5``; what ``write_miga_csv(..., k=5)`` writes) is scored for both; a
two-column file for top-1 only.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from microaction.metrics import MetricsError, _labels, _scores, coverage, match_rows, topk, write_prediction_csv
from microaction.taxonomy import Taxonomy

__all__ = ["MigaTable", "read_miga_csv", "score_miga_csv", "write_miga_csv"]

_INT = re.compile(r"[+-]?[0-9]{1,9}")
HEADER = ("Id", "Target")
SUBMISSION_ID_BASE = 0  # class ids of a submission: the label set's own


@dataclass(frozen=True)
class MigaTable:
    """A parsed MiGA submission: sample ids and ``[N, k]`` ranked class ids (k = 1 or more)."""

    source: str
    ids: tuple[str, ...]
    preds: np.ndarray


def read_miga_csv(path: str | os.PathLike[str], taxonomy: Taxonomy | None = None) -> MigaTable:
    """Parse a MiGA submission (``id,pred`` rows, optional ``Id,Target`` header, optionally more
    ranked prediction columns). Class ids are the label set's (``SUBMISSION_ID_BASE``: 0-based,
    the argmax index the challenge's baseline writes; a release number such as iMiGUE's 99 is
    refused), checked against ``taxonomy`` when given; duplicate ids are refused."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MetricsError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise MetricsError(f"{path}:{line}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    ids: list[str] = []
    rows: list[list[int]] = []
    seen: dict[str, int] = {}
    width = None
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            cells = [c.strip() for c in row]
            if not cells or all(not c for c in cells):
                continue
            header = not any(ch.isdigit() for ch in cells[0]) and not any(_INT.fullmatch(c) for c in cells[1:])
            if not ids and width is None and len(cells) >= 2 and header:
                width = len(cells)  # a header (Id,Target)
                continue
            if width is None:
                width = len(cells)
            if len(cells) != width or width < 2:
                raise MetricsError(f"{where}: {len(cells)} fields; expected {max(width, 2)} (id,pred[,pred_2,...])")
            sid = cells[0]
            if not sid:
                raise MetricsError(f"{where}: empty id")
            if sid in seen:
                raise MetricsError(f"{where}: id {sid!r} repeats line {seen[sid]}")
            seen[sid] = reader.line_num
            preds = []
            for k, cell in enumerate(cells[1:], start=1):
                if not _INT.fullmatch(cell):
                    raise MetricsError(f"{where}: prediction {k} {cell!r} is not a class id")
                value = int(cell)
                if taxonomy is not None and not 0 <= value - SUBMISSION_ID_BASE < taxonomy.num_classes:
                    raise MetricsError(
                        f"{where}: class {cell} out of range 0..{taxonomy.num_classes - 1} ({taxonomy.name})"
                    )
                preds.append(value)
            ids.append(sid)
            rows.append(preds)
    except csv.Error as e:
        raise MetricsError(f"{path}:{reader.line_num}: {e}") from None
    if not ids:
        raise MetricsError(f"{path}: no prediction rows (expected id,pred lines)")
    return MigaTable(str(path), tuple(ids), np.asarray(rows, dtype=np.int64))


def score_miga_csv(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    taxonomy: Taxonomy,
    *,
    partial: bool = False,
) -> dict[str, float]:
    """Top-1 (and top-5 when the file ranks five classes per row) of a MiGA submission against
    true labels, matched by id. Every listed sample needs a row, unless ``partial``: then the
    samples with a row are scored and ``scored`` / ``left_out`` (``COVERAGE_KEYS``) say how many
    were scored and left out. Rows for samples not listed are refused."""
    y = _labels(labels, "labels", taxonomy.num_classes)
    if len(ids) != len(y):
        raise MetricsError(f"{len(ids)} ids but {len(y)} labels")
    table = read_miga_csv(path, taxonomy)
    matched = match_rows(table.source, ids, table.ids, "sample", partial=partial)
    kept = matched >= 0
    y, preds = y[kept], table.preds[matched[kept]]
    out = {"action_top1": float((preds[:, 0] == y).mean())}
    if preds.shape[1] >= 5:
        out["action_top5"] = float((preds[:, :5] == y[:, None]).any(axis=1).mean())
    return {**out, **(coverage(matched) if partial else {})}


def write_miga_csv(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    scores: np.ndarray,
    taxonomy: Taxonomy,
    *,
    k: int = 1,
    header: bool = False,
) -> Path:
    """Write a MiGA submission: ``id,pred`` per sample (the argmax), or ``id,pred_1..pred_k`` for
    ``k`` > 1 (ranked by score, ties to the lower id); ``header`` writes ``Id,Target`` first
    (``Id,Target_1..`` for k > 1)."""
    if len(ids) == 0:
        raise MetricsError("no samples to write")
    if len(set(ids)) != len(ids):
        raise MetricsError("duplicate sample ids; each id must appear once in a submission")
    if not 1 <= k <= taxonomy.num_classes:
        raise MetricsError(f"k must be in 1..{taxonomy.num_classes}, got {k}")
    ranked = topk(_scores(scores, "scores", len(ids), taxonomy.num_classes), k)
    rows: list[list[str]] = []
    if header:
        rows.append(list(HEADER) if k == 1 else ["Id", *(f"Target_{i}" for i in range(1, k + 1))])
    rows += [[str(sid), *(str(int(c)) for c in row)] for sid, row in zip(ids, ranked)]
    return write_prediction_csv(path, rows)
