"""Temporal annotations of long videos: ``Segment`` (ground truth) and ``Detection`` (a model's
output), the readers of the field's formats, and the writers.

Formats (documented for users in ``docs/detection.md``; ``read_segments`` picks one from the file;
the per-format readers live in ``microaction.data.readers.segment_readers``):

- MMA-52 / MAC detection JSON: ``{video_id: {"subset": "train"|"val"|"test", "duration": s,
  "actions": [[class_id, t_start, t_end], ...]}}`` (``read_mma52_json``, ``write_mma52_json``);
- its CSV form ``id,video_id,start_frame,end_frame,class,total_frames,fps`` (``read_mma52_csv``);
- iMiGUE's per-instance label CSV ``video_id,label_id,start_time,start_frame,end_time,end_frame,
  class,subject_id,...`` (``read_imigue_instances``);
- SMG's ``<Sample>_finelabels.csv`` (``label,start,end`` in frames; ``read_smg_finelabels``);
- a generic CSV ``video,start,end,label[,split][,person][,duration]`` in seconds
  (``read_segment_csv``).

Frame numbers become seconds as ``frame / fps`` (the convention that turns the MMA-52 CSV into
its JSON); iMiGUE's end frame is inclusive, so its end is ``(end_frame + 1) / fps``. Times are
seconds from the start of the video; a segment is ``[start, end)``.

Malformed rows (a missing field, a value that is not a number, an unknown class) are errors
naming the file and line (``AnnotationError``). Rows that parse but do not make a usable segment
are *reported*, never silently dropped: each becomes a ``SegmentIssue`` in the returned
``SegmentTable.issues`` (``kind`` = ``reversed`` (end < start, dropped), ``empty`` (end == start,
dropped), ``outside`` (beyond ``[0, duration]``: clipped to the video, dropped when nothing is
left)). ``on_issue="raise"`` turns the first issue into an error instead.

Detections (``read_detections`` / ``write_detections``): a JSON file that keeps everything
(scores, routing over body regions, the region names) or the MAC detection submission CSV
``,video_id,t_start,t_end,class,score`` (leading unnamed index column; ``.zip`` wraps it as
``prediction.csv`` for the evaluation server).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from microaction.data.errors import AnnotationError
from microaction.data.readers.samples import csv_rows, read_text
from microaction.taxonomy import Taxonomy, TaxonomyError

__all__ = [
    "SUBMISSION_COLUMNS",
    "Detection",
    "DetectionFile",
    "Segment",
    "SegmentIssue",
    "SegmentTable",
    "is_detection_csv",
    "parse_detection_csv",
    "read_detections",
    "write_detections",
    "write_mma52_json",
]

OnIssue = Literal["report", "raise"]
# the MAC detection submission header (after the leading unnamed index column)
SUBMISSION_COLUMNS = ("video_id", "t_start", "t_end", "class", "score")
_SUBMISSION_NAME = "prediction.csv"


@dataclass(frozen=True)
class Segment:
    """One ground-truth action instance: ``label`` from ``start`` to ``end`` seconds of ``video``."""

    video: str
    start: float
    end: float
    label: int
    split: str | None = None
    person: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Detection:
    """One detected action instance with its confidence; ``routing`` is the detector's weight per
    body region (same order as the run's region names) when it has one."""

    video: str
    start: float
    end: float
    label: int
    score: float
    routing: tuple[float, ...] | None = None
    person: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SegmentIssue:
    """A row that parsed but is not a usable segment as written (see the module docstring)."""

    where: str  # "file:line" or "file: video[i]"
    kind: Literal["reversed", "empty", "outside"]
    message: str
    kept: Segment | None  # the clipped segment that was kept, None when the row was dropped

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class SegmentTable:
    """What a reader returns: the segments, the duration of every video the file knows (also
    videos without segments), each video's split where the file says, and the reported issues."""

    segments: list[Segment]
    durations: dict[str, float] = field(default_factory=dict)
    splits: dict[str, str] = field(default_factory=dict)
    issues: list[SegmentIssue] = field(default_factory=list)
    source: str = ""

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)

    def __len__(self) -> int:
        return len(self.segments)

    def videos(self) -> list[str]:
        """Every video of the file, sorted: those with segments and those with only a duration."""
        return sorted({s.video for s in self.segments} | set(self.durations))

    def summary(self) -> str:
        """One line for users: how many segments, and what was reported."""
        text = f"{len(self.segments)} segments in {len(self.videos())} videos from {self.source}"
        if not self.issues:
            return text
        counts: dict[str, int] = {}
        for i in self.issues:
            counts[i.kind] = counts.get(i.kind, 0) + 1
        what = {"outside": "outside the video (clipped)", "reversed": "reversed (dropped)", "empty": "empty (dropped)"}
        parts = ", ".join(f"{n} {what[k]}" for k, n in sorted(counts.items()))
        return f"{text}; {len(self.issues)} rows reported: {parts}"


class _Collector:
    """Builds a SegmentTable row by row, applying the issue policy."""

    def __init__(self, source: Path | str, on_issue: OnIssue) -> None:
        if on_issue not in ("report", "raise"):
            raise ValueError(f"on_issue must be 'report' or 'raise', got {on_issue!r}")
        self.table = SegmentTable(segments=[], source=str(source))
        self.on_issue = on_issue

    def _issue(self, where: str, kind: Literal["reversed", "empty", "outside"], msg: str, kept: Segment | None) -> None:
        if self.on_issue == "raise":
            raise AnnotationError(f"{where}: {msg}")
        self.table.issues.append(SegmentIssue(where, kind, msg, kept))

    def add(self, seg: Segment, where: str, duration: float | None = None) -> None:
        if seg.end < seg.start:
            self._issue(where, "reversed", f"end {seg.end:g} s before start {seg.start:g} s (dropped)", None)
            return
        if seg.end == seg.start:
            self._issue(where, "empty", f"empty segment at {seg.start:g} s (dropped)", None)
            return
        hi = math.inf if duration is None else duration
        if seg.start < 0 or seg.end > hi:
            lo_c, hi_c = max(seg.start, 0.0), min(seg.end, hi)
            span = f"[{seg.start:g}, {seg.end:g}] s"
            video = "" if duration is None else f" [0, {duration:g}] s"
            if hi_c <= lo_c:
                self._issue(where, "outside", f"segment {span} lies outside the video{video} (dropped)", None)
                return
            seg = Segment(seg.video, lo_c, hi_c, seg.label, seg.split, seg.person)
            self._issue(where, "outside", f"segment {span} reaches outside the video{video} (clipped)", seg)
        self.table.segments.append(seg)


# ---------------------------------------------------------------------------------------------
# field parsing

_CLOCK = re.compile(r"^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d*)?)$")


def _number(value: object, *, what: str, where: str) -> float:
    """A finite float from a JSON number or a text cell; ``[H:]MM:SS(.fff)`` clock times too."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise AnnotationError(f"{where}: {what} {value!r} is not a number")
    if isinstance(value, str):
        text = value.strip()
        m = _CLOCK.match(text)
        if m:
            h, mi, s = m.groups()
            return int(h or 0) * 3600 + int(mi) * 60 + float(s)
        try:
            value = float(text)
        except ValueError:
            raise AnnotationError(f"{where}: {what} {text[:40]!r} is not a number") from None
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v):
        raise AnnotationError(f"{where}: {what} is not finite ({str(value)[:40]})")
    return v


def load_json(path: Path) -> Any:
    """A JSON document; any failure is an ``AnnotationError`` naming the file (and line)."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except (ValueError, RecursionError) as e:  # huge integers, deep nesting
        raise AnnotationError(f"{path}: not readable JSON ({type(e).__name__}: {str(e)[:120]})") from None


def _positive(value: object, *, what: str, where: str) -> float:
    v = _number(value, what=what, where=where)
    if v <= 0:
        raise AnnotationError(f"{where}: {what} must be > 0, got {v:g}")
    return v


def _label(value: object, taxonomy: Taxonomy, where: str, base: int = 0) -> int:
    """A class id from a cell: a class name, or a class number of a file whose ids start at ``base``."""
    if isinstance(value, bool) or not isinstance(value, int | str) or (isinstance(value, str) and not value.strip()):
        raise AnnotationError(f"{where}: label {value!r} is not a class id or name")
    try:
        return taxonomy.label_id(value, source=where, base=base)
    except TaxonomyError as e:
        raise AnnotationError(str(e)) from None


def _video(value: object, where: str) -> str:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text:
        raise AnnotationError(f"{where}: empty or invalid video id {value!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise AnnotationError(f"{where}: video id {text!r} contains control characters")
    return text


def _csv_rows(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """(lower-cased header, iterator of (line number, cells)) of a CSV file; blank rows skipped."""
    header, rows = csv_rows(read_text(path), path)
    return [h.strip().lower() for h in header], rows


def _need(cols: Sequence[str], need: Iterable[str], path: Path, what: str) -> dict[str, int]:
    missing = [c for c in need if c not in cols]
    if missing:
        raise AnnotationError(f"{path}:1: {what} header lacks {missing} (has {list(cols)})")
    return {c: i for i, c in enumerate(cols) if c}


def _cells(row: list[str], ncols: int, where: str) -> list[str]:
    if len(row) < ncols:
        raise AnnotationError(f"{where}: {len(row)} fields, header has {ncols}")
    return row


def write_mma52_json(
    path: str | os.PathLike[str],
    segments: Sequence[Segment],
    taxonomy: Taxonomy,
    *,
    durations: Mapping[str, float],
    splits: Mapping[str, str] | None = None,
    default_split: str | None = "test",
) -> Path:
    """Write segments as MMA-52 JSON. Every video needs a duration; ``splits`` (video -> subset)
    overrides the segments' own ``split``; a video with neither gets ``default_split`` (``None``:
    an error). Videos in ``durations`` without segments are written with empty ``actions``."""
    path = Path(path)
    doc: dict[str, dict[str, Any]] = {}
    subset = dict(splits or {})
    for s in segments:
        if s.video not in durations:
            raise ValueError(f"no duration for video {s.video!r}: MMA-52 JSON needs one per video")
        if not 0 <= s.label < taxonomy.num_classes:
            raise ValueError(f"segment of {s.video!r}: label {s.label} out of range for {taxonomy.name}")
        if s.split is not None:
            subset.setdefault(s.video, s.split)
    for video in sorted(durations):
        split = subset.get(video, default_split)
        if split is None:
            raise ValueError(f"no split for video {video!r} (give splits= or default_split=)")
        doc[video] = {"subset": split, "duration": round(float(durations[video]), 4), "actions": []}
    for s in sorted(segments, key=lambda s: (s.video, s.start, s.end, s.label)):
        doc[s.video]["actions"].append([int(s.label), round(float(s.start), 4), round(float(s.end), 4)])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# detections


@dataclass
class DetectionFile:
    """What ``read_detections`` returns: the detections and, from a JSON file, the names of the
    routing's regions and the taxonomy name the labels refer to."""

    detections: list[Detection]
    regions: tuple[str, ...] = ()
    taxonomy: str | None = None


def is_detection_csv(header: Sequence[str]) -> bool:
    """Whether a CSV header is the MAC detection submission's (``[,]video_id,t_start,t_end,class,score``)."""
    cols = [h.strip().lower() for h in header]
    if cols and cols[0] in ("", "id", "index", "unnamed: 0"):
        cols = cols[1:]
    return tuple(cols) == SUBMISSION_COLUMNS


def _submission_text(dets: Sequence[Detection]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["", *SUBMISSION_COLUMNS])
    for i, d in enumerate(dets):
        w.writerow([i, d.video, f"{d.start:.4f}", f"{d.end:.4f}", int(d.label), f"{d.score:.6g}"])
    return buf.getvalue()


def write_detections(
    path: str | os.PathLike[str],
    detections: Sequence[Detection],
    *,
    regions: Sequence[str] = (),
    taxonomy: Taxonomy | None = None,
) -> Path:
    """Write detections: ``.json`` keeps routing and the region names; ``.csv`` is the MAC
    detection submission (``,video_id,t_start,t_end,class,score``); ``.zip`` holds that CSV as
    ``prediction.csv`` (the file the evaluation server reads). Rows go out sorted by video, then
    score (highest first)."""
    path = Path(path)
    dets = sorted(detections, key=lambda d: (d.video, -d.score, d.start, d.end, d.label))
    for d in dets:
        if not (math.isfinite(d.start) and math.isfinite(d.end) and math.isfinite(d.score)):
            raise ValueError(f"detection of {d.video!r} has a non-finite time or score: {d}")
        if taxonomy is not None and not 0 <= d.label < taxonomy.num_classes:
            raise ValueError(f"detection of {d.video!r}: label {d.label} out of range for {taxonomy.name}")
        if d.routing is not None and regions and len(d.routing) != len(regions):
            raise ValueError(f"detection of {d.video!r}: {len(d.routing)} routing weights for {len(regions)} regions")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".json":
        doc = {
            "format": "microaction.detections/1",
            "taxonomy": taxonomy.name if taxonomy is not None else None,
            "regions": list(regions),
            "detections": [
                {
                    "video": d.video,
                    "start": round(d.start, 4),
                    "end": round(d.end, 4),
                    "label": int(d.label),
                    "score": float(d.score),
                    **({"routing": [round(float(r), 5) for r in d.routing]} if d.routing is not None else {}),
                    **({"person": d.person} if d.person is not None else {}),
                }
                for d in dets
            ],
        }
        path.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        path.write_text(_submission_text(dets), encoding="utf-8")
    elif suffix == ".zip":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(_SUBMISSION_NAME, _submission_text(dets))
    else:
        raise ValueError(f"{path}: detections are written as .json, .csv (MAC submission) or .zip")
    return path


def parse_detection_csv(text: str, source: str, taxonomy: Taxonomy | None = None) -> list[Detection]:
    """Detections of a MAC submission CSV's text; errors name ``source`` and the line."""
    header, rows = csv_rows(text, source)
    if not is_detection_csv(header):
        raise AnnotationError(f"{source}:1: header {header} is not ',video_id,t_start,t_end,class,score'")
    skip = len(header) - len(SUBMISSION_COLUMNS)
    out = []
    for line, row in rows:
        where = f"{source}:{line}"
        if len(row) != len(header):
            raise AnnotationError(f"{where}: {len(row)} fields, header has {len(header)}")
        vid, t0, t1, cls, score = row[skip:]
        if taxonomy is not None:
            label = _label(cls, taxonomy, where)
        elif cls.isdigit() and len(cls) < 10:
            label = int(cls)
        else:
            raise AnnotationError(f"{where}: class {cls[:40]!r} is not a class id (pass a taxonomy for names)")
        out.append(
            Detection(
                _video(vid, where),
                _number(t0, what="t_start", where=where),
                _number(t1, what="t_end", where=where),
                label,
                _number(score, what="score", where=where),
            )
        )
    return out


def read_detections(path: str | os.PathLike[str], taxonomy: Taxonomy | None = None) -> DetectionFile:
    """Read detections written by ``write_detections`` (``.json``), a MAC detection submission
    (``.csv``) or a submission ``.zip`` holding ``prediction.csv``. With ``taxonomy``, labels are
    checked against it (and class names accepted)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".zip":
        from microaction.data.archives import ArchiveError, read_member, zip_members

        try:  # the member bounded (zip bombs)
            names = [n for n in zip_members(path) if n.lower().endswith(".csv")]
            if len(names) != 1:
                raise AnnotationError(f"{path}: expected one .csv inside the zip, found {names[:5]}")
            raw = read_member(path, names[0])
        except ArchiveError as e:
            raise AnnotationError(str(e)) from None
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise AnnotationError(f"{path}!{names[0]}: not UTF-8 text") from None
        return DetectionFile(parse_detection_csv(text, f"{path}!{names[0]}", taxonomy))
    if suffix == ".csv":
        return DetectionFile(parse_detection_csv(read_text(path), str(path), taxonomy))
    if suffix != ".json":
        raise AnnotationError(f"{path}: detections are read from .json, .csv or .zip")
    doc = load_json(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("detections"), list):
        raise AnnotationError(f"{path}: expected an object with a 'detections' list")
    regions = doc.get("regions") or []
    if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
        raise AnnotationError(f"{path}: 'regions' must be a list of names")
    out = []
    for i, d in enumerate(doc["detections"]):
        where = f"{path}: detections[{i}]"
        if not isinstance(d, dict):
            raise AnnotationError(f"{where}: expected an object")
        missing = [k for k in ("video", "start", "end", "label", "score") if k not in d]
        if missing:
            raise AnnotationError(f"{where}: missing {missing}")
        routing = d.get("routing")
        if routing is not None:
            if not isinstance(routing, list) or (regions and len(routing) != len(regions)):
                raise AnnotationError(f"{where}: 'routing' must be a list of {len(regions)} numbers")
            routing = tuple(_number(r, what="routing", where=where) for r in routing)
        label = d["label"]
        if taxonomy is not None:
            label = _label(label, taxonomy, where)
        elif isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise AnnotationError(f"{where}: label {label!r} is not a class id")
        person = d.get("person")
        out.append(
            Detection(
                _video(d["video"], where),
                _number(d["start"], what="start", where=where),
                _number(d["end"], what="end", where=where),
                int(label),
                _number(d["score"], what="score", where=where),
                routing,
                str(person) if person is not None else None,
            )
        )
    tax = doc.get("taxonomy")
    return DetectionFile(out, tuple(regions), str(tax) if tax is not None else None)
