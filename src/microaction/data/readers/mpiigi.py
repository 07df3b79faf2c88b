"""Group datasets: MPII Group Interaction's bodily-behaviour samples.

MPII-GI (MultiMediate's bodily behaviour recognition) cuts its discussions (3-4 people each,
one camera view per seat) into 64-frame snippets, one sample per seat: a sample CSV with the
header ``sample_id, rec_no, subject_pos, start_time, end_time`` followed by the 14 behaviour
columns (0/1, in the challenge's order: the ``mpiigi`` taxonomy). ``start_time`` / ``end_time``
are frame numbers of the recording, the window ``[start_time, end_time)``.

Each sample's ``video`` is ``<rec_no>/<subject_pos>`` (the recording's folder, the seat's video
in it, any extension): one store item per snippet and seat. Labels are multi-label
(``Sample.labels``), scored with macro AP (``metrics.multilabel_metrics``).
"""

from __future__ import annotations

import os
from pathlib import Path

from microaction.data.errors import AnnotationError
from microaction.data.readers.samples import Sample, csv_rows, int_field, read_text
from microaction.taxonomy import Taxonomy

__all__ = ["MPIIGI_COLUMNS", "is_mpiigi_csv", "mpiigi_video", "read_mpiigi_csv"]

MPIIGI_COLUMNS = ("sample_id", "rec_no", "subject_pos", "start_time", "end_time")


def _header(text: str) -> list[str]:
    first = text.split("\n", 1)[0]
    return [c.strip().lower() for c in first.rstrip("\r").split(",")]


def is_mpiigi_csv(path: str | os.PathLike[str]) -> bool:
    """Whether a CSV starts with MPII-GI's sample header."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            head = _header(f.readline())
    except (OSError, UnicodeDecodeError):
        return False
    return tuple(head[: len(MPIIGI_COLUMNS)]) == MPIIGI_COLUMNS


def mpiigi_video(rec_no: str, subject_pos: str) -> str:
    """The ``video`` of a sample: ``<rec_no>/<subject_pos>``."""
    return f"{rec_no}/{subject_pos}"


def read_mpiigi_csv(path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None) -> list[Sample]:
    """Read an MPII-GI sample CSV (see the module doc): one multi-label ``Sample`` per row, with
    ``split`` set when given (the challenge ships one file per split)."""
    path = Path(path)
    if not taxonomy.multi_label:
        raise AnnotationError(f"{path}: MPII-GI samples are multi-label; use the mpiigi taxonomy, not {taxonomy.name}")
    header, rows = csv_rows(read_text(path), path, f"empty file (expected {','.join(MPIIGI_COLUMNS)},<classes>)")
    header = [h.strip().lower() for h in header]
    if tuple(header[: len(MPIIGI_COLUMNS)]) != MPIIGI_COLUMNS:
        raise AnnotationError(f"{path}:1: header must start with {','.join(MPIIGI_COLUMNS)} (has {header[:6]})")
    n_cls = len(header) - len(MPIIGI_COLUMNS)
    if n_cls != taxonomy.num_classes:
        raise AnnotationError(
            f"{path}:1: {n_cls} behaviour columns, the {taxonomy.name} taxonomy has {taxonomy.num_classes}"
        )
    out: list[Sample] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        where = f"{path}:{line}"
        if len(cells) != len(header):
            raise AnnotationError(f"{where}: {len(cells)} fields, header has {len(header)}")
        sid, rec, pos = cells[0], cells[1], cells[2]
        if not sid or not rec or not pos:
            raise AnnotationError(f"{where}: empty sample_id, rec_no or subject_pos")
        if any(c in "/\\" or ord(c) < 32 for c in rec + pos) or ".." in (rec, pos):
            raise AnnotationError(f"{where}: rec_no {rec!r} / subject_pos {pos!r} must be plain names")
        if sid in seen:
            raise AnnotationError(f"{where}: sample_id {sid!r} repeats line {seen[sid]}")
        seen[sid] = line
        start = int_field(cells[3], what="start_time", where=where, lo=0)
        end = int_field(cells[4], what="end_time", where=where, lo=0)
        if end <= start:
            raise AnnotationError(f"{where}: end_time {end} must be greater than start_time {start}")
        labels = []
        for c, cell in enumerate(cells[len(MPIIGI_COLUMNS) :]):
            if cell not in ("0", "1", "0.0", "1.0"):
                raise AnnotationError(f"{where}: {header[len(MPIIGI_COLUMNS) + c]} = {cell!r}; expected 0 or 1")
            if cell.startswith("1"):
                labels.append(c)
        out.append(Sample(mpiigi_video(rec, pos), split=split, start=start, end=end, labels=tuple(labels)))
    if not out:
        raise AnnotationError(f"{path}: no samples")
    return out
