"""What to extract: the job list (a folder of videos, a manifest CSV, an MPII-GI sample CSV or a
pose pickle, one ``Job`` per video or snippet) and its split into shards."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from microaction.data.readers.mpiigi import is_mpiigi_csv, read_mpiigi_csv
from microaction.data.readers.person_boxes import BoxRow, check_person_columns, person_fields
from microaction.data.readers.samples import read_text
from microaction.data.store import video_key
from microaction.taxonomy import load_taxonomy

__all__ = ["VIDEO_EXTENSIONS", "Job", "collect_jobs", "data_source", "parse_shard", "shard_jobs"]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".gif", ".mov", ".m4v", ".mpg", ".mpeg")


@dataclass(frozen=True)
class Job:
    key: str
    path: str  # video file (may be absent on the keypoints-only path)
    start: int | None = None
    end: int | None = None
    boxes: tuple[BoxRow, ...] = ()  # the annotation's person box(es): extraction follows that person
    tracks: bool = False  # rows name people by track number (no box): needs ``people="all"``


def collect_jobs(videos: str | os.PathLike[str], video_root: str | os.PathLike[str] | None = None) -> list[Job]:
    """Jobs from a folder (every video file below it), a manifest CSV (``video`` column, optional
    ``start``/``end``, ``person`` and a person box ``x1,y1,x2,y2`` [+ ``frame``]; paths relative to
    ``video_root`` or the CSV's folder), an MPII-GI sample CSV (``<rec_no>/<subject_pos>.<ext>``
    under ``video_root``, one job per snippet) or a pose pickle (one job per annotation, for
    ``--parser keypoints``; see ``microaction.data.readers.poses``). Keys follow ``video_key`` of the name as
    written (a manifest) or of the path relative to the folder."""
    src = Path(videos)
    jobs: list[Job] = []
    if src.is_dir():
        for p in sorted(src.rglob("*")):
            if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
                rel = p.relative_to(src).as_posix()
                jobs.append(Job(video_key(rel), str(p)))
    elif src.is_file() and src.suffix.lower() == ".csv" and is_mpiigi_csv(src):
        root = Path(video_root) if video_root else src.parent
        for s in read_mpiigi_csv(src, load_taxonomy("mpiigi")):
            jobs.append(Job(s.key, str(_with_extension(root / s.video)), s.start, s.end))
    elif src.is_file() and src.suffix.lower() == ".csv":
        root = Path(video_root) if video_root else src.parent
        # read_text: a byte that is not UTF-8 is named by file and line
        reader = csv.DictReader(io.StringIO(read_text(src), newline=""))
        try:
            cols = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "video" not in cols:
                raise ValueError(f"{src}: manifest has no 'video' column (has {cols})")
            check_person_columns(cols, f"{src}:1")
            boxed: dict[str, int] = {}
            for row in reader:
                n = reader.line_num
                row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                if not row.get("video"):
                    continue
                try:
                    start = int(row["start"]) if row.get("start") else None
                    end = int(row["end"]) if row.get("end") else None
                except ValueError:
                    raise ValueError(f"{src}:{n}: start/end must be integers") from None
                if (start is None) != (end is None):
                    raise ValueError(
                        f"{src}:{n}: 'start' without 'end' (or 'end' without 'start'): give both or neither"
                    )
                if start is not None and end is not None and end <= start:
                    raise ValueError(f"{src}:{n}: end {end} must be greater than start {start}")
                person, box = person_fields(row, f"{src}:{n}", start)
                if person is not None and box is None:  # a track number of --people all: the video's job
                    jobs.append(
                        Job(video_key(row["video"], start, end), str(root / row["video"]), start, end, (), True)
                    )
                    continue
                key = video_key(row["video"], start, end, person)
                if box is not None and key in boxed:  # the same person's box at another frame
                    j = jobs[boxed[key]]
                    jobs[boxed[key]] = replace(j, boxes=(*j.boxes, box))
                    continue
                if box is not None:
                    boxed[key] = len(jobs)
                jobs.append(Job(key, str(root / row["video"]), start, end, () if box is None else (box,)))
        except csv.Error as e:
            raise ValueError(f"{src}:{reader.line_num}: {e}") from None
    elif src.is_file() and src.suffix.lower() in (".pkl", ".pickle"):
        from microaction.extract.parsers.keypoints import pose_ref, pose_set

        jobs.extend(Job(video_key(name), pose_ref(src, name)) for name in pose_set(src).order)
    elif src.suffix.lower() in VIDEO_EXTENSIONS and not src.is_dir():
        # one video; it may be absent when only its keypoints are read (the parser says so if not)
        jobs.append(Job(video_key(src.name), str(src)))
    else:
        raise FileNotFoundError(f"{src}: not a folder of videos, a manifest .csv, a pose .pkl or a video file")
    seen: dict[str, Job] = {}
    for j in jobs:
        other = seen.get(j.key)
        if (
            other is not None
            and (j.tracks or other.tracks)
            and replace(j, tracks=False) == replace(other, tracks=False)
        ):
            seen[j.key] = replace(other, tracks=True)  # several people of one video: one job
            continue
        if j.key in seen and seen[j.key] != j:
            raise ValueError(f"two videos map to store key {j.key!r}: {seen[j.key].path} and {j.path}")
        seen[j.key] = j
    return list(seen.values())


def data_source(jobs: Sequence[Job], parser: str) -> str:
    """Where a store's videos come from, recorded in its manifest (``params.data_source``) so that a
    model trained on it knows: ``synthetic`` (``mar synth`` datasets; the ``groundtruth`` parser reads
    only those), ``real`` (any other file) or ``mixed``."""
    if parser == "groundtruth":
        return "synthetic"
    from microaction.data.synth.writer import synthetic_dataset_of

    seen: dict[Path, bool] = {}  # per folder: one dataset.json look-up each
    kinds = set()
    for j in jobs:
        folder = Path(j.path).parent
        if folder not in seen:
            seen[folder] = synthetic_dataset_of(j.path) is not None
        kinds.add("synthetic" if seen[folder] else "real")
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "real")


def _with_extension(stem: Path) -> Path:
    """The video file ``stem.<ext>`` (the first of VIDEO_EXTENSIONS there), else ``stem`` itself."""
    for ext in VIDEO_EXTENSIONS:
        if stem.with_name(stem.name + ext).is_file():
            return stem.with_name(stem.name + ext)
    return stem


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/N"`` (0 <= i < N) -> (i, N); None -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < N")
    return i, n


def shard_jobs(jobs: Sequence[Job], index: int, count: int) -> list[Job]:
    """Deterministic split: sorted by key, every ``count``-th job from ``index`` (the shards of a
    job list partition it, whatever machine computes them)."""
    return sorted(jobs, key=lambda j: j.key)[index::count]
