"""Per-format readers of temporal annotations into ``Segment`` lists (``SegmentTable``).

``microaction.data.segments.read_segments`` picks one of these from the file; the formats, the
frame-to-seconds convention and the issue policy are described there and in
``docs/detection.md``.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from microaction.data.annotations import AnnotationError, _read_text, split_from_list_name
from microaction.data.segments import (
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
)
from microaction.taxonomy import Taxonomy

__all__ = ["read_imigue_instances", "read_mma52_csv", "read_mma52_json", "read_segment_csv", "read_smg_finelabels"]


def read_mma52_json(
    path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None, on_issue: OnIssue = "report"
) -> SegmentTable:
    """MMA-52 / MAC detection JSON (multi-label: segments of different classes overlap).

    ``split`` keeps the videos whose ``subset`` is ``split``. Class ids are the taxonomy's ids
    (0-based, as the official evaluator reads them).
    """
    path = Path(path)
    try:
        doc = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise AnnotationError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
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
                _label(act[0], taxonomy, w),
                subset,
            )
            out.add(seg, w, duration)
    return out.table


def read_mma52_csv(
    path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None, on_issue: OnIssue = "report"
) -> SegmentTable:
    """The MMA-52 CSV form ``id,video_id,start_frame,end_frame,class,total_frames,fps``.

    Seconds are ``frame / fps``; the duration is ``total_frames / fps``. The file holds one
    split; its name tells which (``val.csv`` -> ``val``), or ``split`` does.
    """
    path = Path(path)
    split = split or split_from_list_name(path) or path.stem.lower() or None
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
            _label(row[pos["class"]], taxonomy, where),
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

    The class is the ``class`` column (a raw iMiGUE id 1-31 / 99, mapped by the taxonomy's
    ``raw_id_map``, or a class name); without a ``class`` column, ``label_id``. Times are
    ``start_time`` / ``end_time`` in seconds (or ``[H:]MM:SS.fff``); when those are absent or
    empty, ``start_frame`` / ``end_frame`` divided by ``fps``. ``subject_id`` becomes the
    segment's ``person``; ``split`` assigns it (the file holds no split).
    """
    path = Path(path)
    cols, rows = _csv_rows(path)
    pos = _need(cols, ("video_id",), path, "iMiGUE instance CSV")
    label_col = "class" if "class" in pos else "label_id"
    if label_col not in pos:
        raise AnnotationError(f"{path}:1: iMiGUE instance CSV header lacks 'class' (or 'label_id')")
    has_time = "start_time" in pos and "end_time" in pos
    has_frame = "start_frame" in pos and "end_frame" in pos
    if not has_time and not has_frame:
        raise AnnotationError(f"{path}:1: needs start_time,end_time or start_frame,end_frame columns")
    out = _Collector(path, on_issue)
    for no, row in rows:
        where = f"{path}:{no}"
        row = _cells(row, len(cols), where)
        vid = _video(row[pos["video_id"]], where)
        if has_time and row[pos["start_time"]] and row[pos["end_time"]]:
            start = _number(row[pos["start_time"]], what="start_time", where=where)
            end = _number(row[pos["end_time"]], what="end_time", where=where)
        elif has_frame:
            if fps is None:
                raise AnnotationError(f"{where}: times given only as frames; pass the video's fps")
            start = _number(row[pos["start_frame"]], what="start_frame", where=where) / fps
            end = _number(row[pos["end_frame"]], what="end_frame", where=where) / fps
        else:
            raise AnnotationError(f"{where}: empty start_time / end_time")
        person = row[pos["subject_id"]] or None if "subject_id" in pos else None
        out.add(Segment(vid, start, end, _label(row[pos[label_col]], taxonomy, where), split, person), where)
    return out.table


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
    is allowed). ``video`` defaults to the file name without ``_finelabels.csv``."""
    path = Path(path)
    if fps is None or not fps > 0:
        raise AnnotationError(f"{path}: SMG labels are in frames; pass the recording's fps")
    if video is None:
        video = path.name[: -len("_finelabels.csv")] if path.name.lower().endswith("_finelabels.csv") else path.stem
    reader = csv.reader(io.StringIO(_read_text(path)))
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
            out.add(Segment(video, start, end, _label(cells[0], taxonomy, where), split), where)
    except csv.Error as e:
        raise AnnotationError(f"{path}:{reader.line_num}: {e}") from None
    return out.table


_GENERIC = ("video", "start", "end", "label", "split", "person", "duration")


def read_segment_csv(
    path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None, on_issue: OnIssue = "report"
) -> SegmentTable:
    """The generic segment CSV: header ``video,start,end,label`` (seconds; label = class id or
    name), optional ``split``, ``person`` and ``duration`` (seconds; enables the outside-the-video
    check). ``split`` keeps that split's rows."""
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
        if split is not None and row_split != split:
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
            _label(get["label"], taxonomy, where),
            row_split,
            get.get("person") or None,
        )
        out.add(seg, where, duration)
    return out.table
