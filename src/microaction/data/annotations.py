"""Annotation readers: one ``Sample`` per clip, whatever the dataset's own format.

The generic CSV manifest (``video,label[,body][,split][,start,end]``) is the format for users' own
data and the one the synthetic generator writes. Readers for the benchmarks' formats live beside
it and return the same ``Sample``s. A sample's ``video`` is only an identifier: file names are
never model input (MA-52's ``PPPP_BB_NNNN.mp4`` names carry the body label).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

from microaction.data.store import video_key
from microaction.taxonomy import Taxonomy, TaxonomyError

__all__ = ["UNKNOWN", "AnnotationError", "Sample", "read_manifest_csv"]

UNKNOWN = -1  # label of a clip whose label is hidden (benchmark test splits) or not given


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Sample:
    video: str  # as named in the annotation: a file name or a path relative to the video root
    label: int = UNKNOWN  # class id, UNKNOWN when hidden
    body: int = UNKNOWN  # body group id when the file gives one (else derive from the taxonomy)
    split: str | None = None
    start: int | None = None  # frame window [start, end) inside a long video
    end: int | None = None
    labels: tuple[int, ...] = ()  # multi-label datasets (MPII-GI): all positive class ids

    @property
    def key(self) -> str:
        """Feature-store key of this clip."""
        return video_key(self.video, self.start, self.end)


_MANIFEST_COLUMNS = ("video", "label", "body", "split", "start", "end")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise AnnotationError(f"{path}:{line}: not UTF-8 text") from None


def _int_field(value: str, *, what: str, where: str, lo: int | None = None) -> int:
    try:
        v = int(value.strip())
    except ValueError:
        raise AnnotationError(f"{where}: {what} {value!r} is not an integer") from None
    if lo is not None and v < lo:
        raise AnnotationError(f"{where}: {what} {v} must be >= {lo}")
    if abs(v) > 2**31:
        raise AnnotationError(f"{where}: {what} {v} is out of range")
    return v


def read_manifest_csv(path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None) -> list[Sample]:
    """Read a generic manifest CSV (header required; ``video`` and ``label`` columns required).

    ``label`` is a class id or a class name; an empty label or ``-1`` marks an unknown label.
    Multi-label taxonomies take ids separated by ``;``. Rows whose ``split`` differs from
    ``split`` (when given) are skipped.
    """
    path = Path(path)
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise AnnotationError(f"{path}: empty file (expected a header with video,label)") from None
    except csv.Error as e:
        raise AnnotationError(f"{path}:1: {e}") from None
    cols = [h.strip().lower() for h in header]
    for need in ("video", "label"):
        if need not in cols:
            raise AnnotationError(f"{path}:1: header lacks the {need!r} column (has {cols})")
    unknown = [c for c in cols if c not in _MANIFEST_COLUMNS]
    if unknown:
        raise AnnotationError(f"{path}:1: unknown columns {unknown}; allowed: {list(_MANIFEST_COLUMNS)}")
    if ("start" in cols) != ("end" in cols):
        raise AnnotationError(f"{path}:1: 'start' and 'end' go together")
    pos = {c: i for i, c in enumerate(cols)}
    out: list[Sample] = []
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(cols):
                raise AnnotationError(f"{where}: {len(row)} fields, header has {len(cols)}")
            get = {c: row[i].strip() for c, i in pos.items()}
            if not get["video"]:
                raise AnnotationError(f"{where}: empty video name")
            if split is not None and get.get("split", split) != split:
                continue
            label = UNKNOWN
            labels: tuple[int, ...] = ()
            lab = get["label"]
            try:
                if taxonomy.multi_label:
                    labels = tuple(taxonomy.label_id(x, source=where) for x in lab.split(";") if x.strip())
                elif lab and lab != "-1":
                    label = taxonomy.label_id(lab, source=where)
            except TaxonomyError as e:
                raise AnnotationError(str(e)) from None
            body = UNKNOWN
            if get.get("body"):
                body = _int_field(get["body"], what="body", where=where, lo=0)
                if taxonomy.has_body and body >= taxonomy.num_body:
                    raise AnnotationError(f"{where}: body {body} out of range 0..{taxonomy.num_body - 1}")
                if taxonomy.has_body and label != UNKNOWN and int(taxonomy.body_of(label)) != body:
                    raise AnnotationError(f"{where}: body {body} disagrees with label {label}'s body group")
            start = end = None
            if get.get("start") or get.get("end"):
                start = _int_field(get["start"], what="start", where=where, lo=0)
                end = _int_field(get["end"], what="end", where=where, lo=0)
                if end <= start:
                    raise AnnotationError(f"{where}: end {end} must be greater than start {start}")
            out.append(Sample(get["video"], label, body, get.get("split") or None, start, end, labels))
    except csv.Error as e:
        raise AnnotationError(f"{path}:{reader.line_num}: {e}") from None
    return out
