"""Per-format readers of temporal annotations into ``Segment`` lists (``SegmentTable``).

``read_segments`` (below) picks one of these from the file; the formats, the
frame-to-seconds convention and the issue policy are described there and in
``docs/detection.md``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Any

from microaction.data.errors import AnnotationError
from microaction.data.readers.annotations import load_split
from microaction.data.readers.samples import read_text
from microaction.data.readers.segments import (
    OnIssue,
    Segment,
    SegmentTable,
    _cells,
    _Collector,
    _csv_rows,
    _label,
    _need,
    _number,
    _positive,
    _video,
    load_json,
)
from microaction.taxonomy import Taxonomy

__all__ = [
    "IMIGUE_FPS",
    "IMIGUE_INSTANCE_ID_BASE",
    "MMA52_ID_BASE",
    "SEGMENT_CSV_ID_BASE",
    "SMG_ID_BASE",
    "read_imigue_instances",
    "read_mma52_csv",
    "read_mma52_json",
    "read_segment_csv",
    "read_segments",
    "read_smg_finelabels",
]

# The id base of each reader's class numbers: a fact of its format (sources in
# docs/detection.md and docs/data_formats.md). 0: the label set's own ids; 1: numbered from 1.
MMA52_ID_BASE = 0  # MMA-52 JSON / CSV: MA-52's ids 0..51, as the official evaluator reads them
IMIGUE_INSTANCE_ID_BASE = 1  # iMiGUE's instance CSV: 1..31 and 99 ("illustrative")
SMG_ID_BASE = 1  # SMG's <Sample>_finelabels.csv: 1..17 (the authors' reader subtracts 1)
SEGMENT_CSV_ID_BASE = 0  # our generic segment CSV: the label set's ids
# iMiGUE's frame rate: its instance CSV puts frame 171 at 6.855 s (171 / 25 = 6.84 s; 6.855 s
# lies inside frame 171 at 25 fps only)
IMIGUE_FPS = 25.0


def read_mma52_json(
    path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None, on_issue: OnIssue = "report"
) -> SegmentTable:
    """MMA-52 / MAC detection JSON (multi-label: segments of different classes overlap).

    ``split`` keeps the videos whose ``subset`` is ``split``. Class ids are the taxonomy's ids
    (``MMA52_ID_BASE``: 0-based, as the official evaluator reads them).
    """
    path = Path(path)
    doc = load_json(path)
    if isinstance(doc, dict) and isinstance(doc.get("database"), dict):
        doc = doc["database"]  # the ActivityNet wrapper some tools add
    if not isinstance(doc, dict):
        raise AnnotationError(f"{path}: expected an object {{video_id: {{subset, duration, actions}}}}")
    out = _Collector(path, on_issue)
    for video, entry in doc.items():
        where = f"{path}: {video!r}"
        vid = _video(video, where)
        if not isinstance(entry, dict) or "actions" not in entry:
            raise AnnotationError(f"{where}: expected {{'subset', 'duration', 'actions'}}")
        subset = entry.get("subset")
        if subset is not None and not isinstance(subset, str):
            raise AnnotationError(f"{where}: 'subset' must be a string, got {subset!r}")
        if split is not None and subset != split:
            continue
        duration = _positive(entry["duration"], what="duration", where=where) if "duration" in entry else None
        actions = entry["actions"]
        if not isinstance(actions, list):
            raise AnnotationError(f"{where}: 'actions' must be a list of [class_id, t_start, t_end]")
        if duration is not None:
            out.table.durations[vid] = duration
        if subset is not None:
            out.table.splits[vid] = subset
        for i, act in enumerate(actions):
            w = f"{where}: actions[{i}]"
            if not isinstance(act, list | tuple) or len(act) != 3:
                raise AnnotationError(f"{w}: expected [class_id, t_start, t_end], got {str(act)[:60]}")
            seg = Segment(
                vid,
                _number(act[1], what="t_start", where=w),
                _number(act[2], what="t_end", where=w),
                _label(act[0], taxonomy, w, MMA52_ID_BASE),
                subset,
            )
            out.add(seg, w, duration)
    return out.table


_SPLIT_NAME = re.compile(r"^(train|val|test)(?=$|[._-])", re.IGNORECASE)


def _split_in_name(path: Path) -> str | None:
    """``train`` / ``val`` / ``test`` when the file name starts with it (``val.csv``, ``test_anns.csv``)."""
    m = _SPLIT_NAME.match(path.name)
    return m.group(1).lower() if m else None


def read_mma52_csv(
    path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None, on_issue: OnIssue = "report"
) -> SegmentTable:
    """The MMA-52 CSV form ``id,video_id,start_frame,end_frame,class,total_frames,fps``.

    Class ids are MA-52's (``MMA52_ID_BASE``: 0-based). Seconds are ``frame / fps``; the duration
    is ``total_frames / fps``. The file holds one split; its name tells which (``val.csv`` ->
    ``val``), or ``split`` does (a ``split`` that contradicts the file's name is an error).
    """
    path = Path(path)
    named = _split_in_name(path)
    if split is not None and named is not None and split != named:
        raise AnnotationError(f"{path}: the file holds the {named!r} split, not {split!r}")
    split = split or named
    cols, rows = _csv_rows(path)
    pos = _need(cols, ("video_id", "start_frame", "end_frame", "class", "total_frames", "fps"), path, "MMA-52 CSV")
    out = _Collector(path, on_issue)
    for no, row in rows:
        where = f"{path}:{no}"
        row = _cells(row, len(cols), where)
        vid = _video(row[pos["video_id"]], where)
        fps = _positive(row[pos["fps"]], what="fps", where=where)
        total = _positive(row[pos["total_frames"]], what="total_frames", where=where)
        duration = total / fps
        if out.table.durations.setdefault(vid, duration) != duration:
            raise AnnotationError(
                f"{where}: video {vid} has duration {duration:g} s here, {out.table.durations[vid]:g} s on an earlier line"
            )
        if split:
            out.table.splits[vid] = split
        seg = Segment(
            vid,
            _number(row[pos["start_frame"]], what="start_frame", where=where) / fps,
            _number(row[pos["end_frame"]], what="end_frame", where=where) / fps,
            _label(row[pos["class"]], taxonomy, where, MMA52_ID_BASE),
            split,
        )
        out.add(seg, where, duration)
    return out.table


def read_imigue_instances(
    path: str | os.PathLike[str],
    taxonomy: Taxonomy,
    *,
    fps: float | None = None,
    split: str | None = None,
    on_issue: OnIssue = "report",
) -> SegmentTable:
    """iMiGUE's per-instance label CSV (``video_id,label_id,start_time,start_frame,end_time,
    end_frame,class,subject_id,...``).

    The class is the ``class`` column: the release's class number (``IMIGUE_INSTANCE_ID_BASE``:
    1-based, 1..31, with 99 for "illustrative"; the class id is ``class - 1``, 99 -> 31) or a
    class name. The frames are 0-based frames of the video at ``fps`` (default ``IMIGUE_FPS``,
    25) and ``end_frame`` is inclusive, so a row is ``[start_frame / fps, (end_frame + 1) / fps)``
    seconds: the same instance as the line ``class,start_frame,end_frame`` of the video's
    ``<VID>_label.csv`` (``read_imigue_labels``). A row's ``start_time`` / ``end_time`` (seconds
    or ``[H:]MM:SS.fff``) must lie within a frame of its frame numbers, which checks ``fps``;
    without frames they are the segment. ``subject_id`` becomes the segment's ``person``. Each
    segment's ``split`` comes from iMiGUE's cross-subject split (``load_split("imigue")``; None
    for a video it does not list); ``split`` keeps that split's videos.
    """
    path = Path(path)
    rate = IMIGUE_FPS if fps is None else _positive(fps, what="fps", where=str(path))
    cols, rows = _csv_rows(path)
    pos = _need(cols, ("video_id",), path, "iMiGUE instance CSV")
    if "class" not in pos:
        raise AnnotationError(f"{path}:1: iMiGUE instance CSV header lacks 'class' (has {cols})")
    if not ({"start_time", "end_time"} <= set(pos) or {"start_frame", "end_frame"} <= set(pos)):
        raise AnnotationError(f"{path}:1: needs start_time,end_time or start_frame,end_frame columns")
    plan = load_split("imigue")
    out = _Collector(path, on_issue)
    for no, row in rows:
        where = f"{path}:{no}"
        row = _cells(row, len(cols), where)
        vid = _video(row[pos["video_id"]], where)
        vid_split = plan.split_of(vid)
        if split is not None and vid_split != split:
            continue
        if vid_split is not None:
            out.table.splits[vid] = vid_split
        start, end = _instance_span({c: row[i] for c, i in pos.items()}, rate, where)
        person = row[pos["subject_id"]] or None if "subject_id" in pos else None
        label = _label(row[pos["class"]], taxonomy, where, IMIGUE_INSTANCE_ID_BASE)
        out.add(Segment(vid, start, end, label, vid_split, person), where)
    return out.table


def _instance_span(get: dict[str, str], fps: float, where: str) -> tuple[float, float]:
    """Seconds ``[start, end)`` of one iMiGUE instance row: from its frames (end inclusive) when it
    has them, each given time checked to lie within a frame of its frame number; else its times."""
    frames = [get.get(k, "") for k in ("start_frame", "end_frame")]
    times = [get.get(k, "") for k in ("start_time", "end_time")]
    if not all(frames):
        if not all(times):
            raise AnnotationError(f"{where}: no start_frame / end_frame nor start_time / end_time")
        return _number(times[0], what="start_time", where=where), _number(times[1], what="end_time", where=where)
    first = _number(frames[0], what="start_frame", where=where)
    last = _number(frames[1], what="end_frame", where=where)
    for what, text, frame in (("start", times[0], first), ("end", times[1], last)):
        if not text:
            continue
        t = _number(text, what=f"{what}_time", where=where)
        if abs(t * fps - frame) > 1.0 + 1e-6:
            raise AnnotationError(
                f"{where}: {what}_time {t:g} s is frame {t * fps:.1f} at {fps:g} fps, but {what}_frame is "
                f"{frame:g}: times and frames disagree at {fps:g} fps (iMiGUE's videos run at {IMIGUE_FPS:g} fps; "
                "give another rate with fps= / --fps)"
            )
    return first / fps, (last + 1) / fps


def read_smg_finelabels(
    path: str | os.PathLike[str],
    taxonomy: Taxonomy,
    *,
    fps: float,
    video: str | None = None,
    split: str | None = None,
    on_issue: OnIssue = "report",
) -> SegmentTable:
    """SMG's ``<Sample>_finelabels.csv``: ``label,start,end`` per line in frames (a header line
    is allowed). ``label`` is SMG's class number (``SMG_ID_BASE``: 1-based; the class id is
    ``label - 1``, as the authors' ``SMGaccessSample.py`` reads it) or a class name. ``video``
    defaults to the file name without ``_finelabels.csv``. The file holds no split: ``split``,
    when given, is assigned to its segments."""
    path = Path(path)
    if fps is None or not fps > 0:
        raise AnnotationError(f"{path}: SMG labels are in frames; pass the recording's fps")
    if video is None:
        video = path.name[: -len("_finelabels.csv")] if path.name.lower().endswith("_finelabels.csv") else path.stem
    reader = csv.reader(io.StringIO(read_text(path)))
    out = _Collector(path, on_issue)
    first = True
    try:
        for row in reader:
            where = f"{path}:{reader.line_num}"
            cells = [c.strip() for c in row]
            if not cells or not any(cells):
                continue
            if first and cells[0].lower() in ("label", "class", "classid", "label_id"):
                first = False
                continue  # header
            first = False
            if len(cells) < 3:
                raise AnnotationError(f"{where}: expected 'label,start,end', got {len(cells)} fields")
            start = _number(cells[1], what="start", where=where) / fps
            end = _number(cells[2], what="end", where=where) / fps
            out.add(Segment(video, start, end, _label(cells[0], taxonomy, where, SMG_ID_BASE), split), where)
    except csv.Error as e:
        raise AnnotationError(f"{path}:{reader.line_num}: {e}") from None
    return out.table


_GENERIC = ("video", "start", "end", "label", "split", "person", "duration")


def read_segment_csv(
    path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None, on_issue: OnIssue = "report"
) -> SegmentTable:
    """The generic segment CSV: header ``video,start,end,label`` (seconds; label = class id of the
    label set, ``SEGMENT_CSV_ID_BASE``: 0-based, or a class name), optional ``split``, ``person`` and ``duration`` (seconds; enables the outside-the-video
    check). ``split`` keeps that split's rows (all rows when the file has no ``split`` column)."""
    path = Path(path)
    cols, rows = _csv_rows(path)
    pos = _need(cols, ("video", "start", "end", "label"), path, "segment CSV")
    unknown = [c for c in cols if c not in _GENERIC]
    if unknown:
        raise AnnotationError(f"{path}:1: unknown columns {unknown}; allowed: {list(_GENERIC)}")
    out = _Collector(path, on_issue)
    for no, row in rows:
        where = f"{path}:{no}"
        if len(row) != len(cols):
            raise AnnotationError(f"{where}: {len(row)} fields, header has {len(cols)}")
        get = {c: row[i] for c, i in pos.items()}
        row_split = get.get("split") or None
        if split is not None and "split" in pos and row_split != split:
            continue
        vid = _video(get["video"], where)
        duration = None
        if get.get("duration"):
            duration = _positive(get["duration"], what="duration", where=where)
            if out.table.durations.setdefault(vid, duration) != duration:
                raise AnnotationError(f"{where}: video {vid} has two different durations")
        if row_split:
            out.table.splits[vid] = row_split
        seg = Segment(
            vid,
            _number(get["start"], what="start", where=where),
            _number(get["end"], what="end", where=where),
            _label(get["label"], taxonomy, where, SEGMENT_CSV_ID_BASE),
            row_split,
            get.get("person") or None,
        )
        out.add(seg, where, duration)
    return out.table


# ---------------------------------------------------------------------------------------------
# the dispatcher


def read_segments(
    path: str | os.PathLike[str],
    taxonomy: Taxonomy,
    *,
    split: str | None = None,
    fps: float | None = None,
    on_issue: OnIssue = "report",
) -> SegmentTable:
    """Read any supported temporal annotation file, recognising the format:

    ``.json`` -> MMA-52 JSON; ``*_finelabels.csv`` (or a folder of them) -> SMG (needs ``fps``);
    a ``.csv`` by its header: ``video_id,...,total_frames,fps`` -> MMA-52 CSV,
    ``video_id`` with ``start_time``/``start_frame`` -> iMiGUE instances, ``video,start,end,label``
    -> generic. ``fps`` converts frame numbers where the file has no rate of its own.
    """
    path = Path(path)
    kw: dict[str, Any] = {"split": split, "on_issue": on_issue}
    if path.is_dir():
        files = sorted(path.rglob("*_finelabels.csv"))
        if not files:
            raise AnnotationError(f"{path}: no *_finelabels.csv files in this folder")
        merged = SegmentTable(segments=[], source=str(path))
        for f in files:
            t = read_smg_finelabels(f, taxonomy, fps=_need_fps(fps, f), **kw)
            merged.segments += t.segments
            merged.issues += t.issues
        return merged
    name = path.name.lower()
    if name.endswith(".json"):
        return read_mma52_json(path, taxonomy, **kw)
    if name.endswith("_finelabels.csv"):
        return read_smg_finelabels(path, taxonomy, fps=_need_fps(fps, path), **kw)
    if name.endswith(".csv"):
        cols, _ = _csv_rows(path)
        if {"video_id", "total_frames", "fps"} <= set(cols):
            return read_mma52_csv(path, taxonomy, **kw)
        if "video_id" in cols and (
            {"start_time", "end_time"} <= set(cols) or {"start_frame", "end_frame"} <= set(cols)
        ):
            return read_imigue_instances(path, taxonomy, fps=fps, **kw)
        if {"video", "start", "end", "label"} <= set(cols):
            return read_segment_csv(path, taxonomy, **kw)
        if cols and cols[:3] == ["label", "start", "end"]:
            return read_smg_finelabels(path, taxonomy, fps=_need_fps(fps, path), **kw)
        raise AnnotationError(
            f"{path}:1: header {cols} is none of the segment formats (MMA-52 CSV, iMiGUE instances, "
            "SMG finelabels, or video,start,end,label)"
        )
    raise AnnotationError(f"{path}: unknown temporal annotation format (expected .json or .csv)")


def _need_fps(fps: float | None, path: Path) -> float:
    if fps is None:
        raise AnnotationError(f"{path}: SMG labels are in frames; pass the recording's fps (--fps)")
    return fps


# ---------------------------------------------------------------------------------------------
# writers
