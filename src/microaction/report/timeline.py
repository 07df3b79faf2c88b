"""Timelines of one recording from a detector's ``Detection``s: the files a person looks at.

``write_timeline(detections, out_dir, taxonomy, regions, video=None) -> {"csv", "json", "eaf",
"html": Path}`` writes

- ``timeline.csv``: one row per detected segment, ``video,start,end,class_id,class,body,score``
  and, for a detector with routing (bmoe_tridet), one ``routing_<region>`` column per body region;
  in a recording of several people a ``person`` column follows ``video``, and every lane and
  tier below is per person (``"person 1: head"``);
- ``timeline.json``: the same rows plus the recording's metadata (taxonomy, regions, body groups,
  duration, video file);
- ``timeline.eaf``: an ELAN file (written with pympi-ling) linked to the video, one tier per body
  group (per class for a label set without a body level) whose annotations read
  ``"<class> (<score>)"``; segments of one group that overlap in time go to extra tiers
  (``head``, ``head 2``, ...) because ELAN does not allow overlaps within a tier;
- ``timeline.html``: the interactive page (``microaction.report.timeline_html``).

Times are seconds in CSV / JSON / HTML and milliseconds in ELAN.
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Sequence
from pathlib import Path

from microaction.data import csv_cells
from microaction.data.segments import Detection
from microaction.report.timeline_html import write_timeline_html
from microaction.report.timeline_rows import TimelineRow, assign_lanes, lane_groups, lane_people, timeline_rows
from microaction.taxonomy import Taxonomy

__all__ = ["video_duration", "write_eaf", "write_timeline"]

FILES = ("csv", "json", "eaf", "html")


def _write_csv(path: Path, rows: Sequence[TimelineRow], regions: Sequence[str]) -> None:
    """The rows; ``regions``: the routing columns (none for a detector without routing)."""
    people = any(r.person for r in rows)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv_cells.writer(f, lineterminator="\n")  # names from files: no spreadsheet formulas
        who = ["person"] if people else []
        w.writerow(
            ["video", *who, "start", "end", "class_id", "class", "body", "score", *(f"routing_{r}" for r in regions)]
        )
        for r in rows:
            routing = [f"{r.routing[g]:.4f}" if r.routing is not None else "" for g in regions]
            who = [r.person] if people else []
            w.writerow(
                [r.video, *who, f"{r.start:.3f}", f"{r.end:.3f}", r.label, r.name, r.body, f"{r.score:.4f}", *routing]
            )


def _write_json(path: Path, rows: Sequence[TimelineRow], meta: dict[str, object]) -> None:
    doc = {
        **meta,
        "segments": [
            {
                "video": r.video,
                "start": round(r.start, 3),
                "end": round(r.end, 3),
                "class_id": r.label,
                "class": r.name,
                "body": r.body,
                "score": round(r.score, 4),
                "routing": None if r.routing is None else {k: round(v, 4) for k, v in r.routing.items()},
                **({"person": r.person} if r.person else {}),
            }
            for r in rows
        ],
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def _mime(path: Path) -> str:
    guess, _ = mimetypes.guess_type(path.name)
    return guess or "video/*"


def write_eaf(
    path: str | os.PathLike[str],
    rows: Sequence[TimelineRow],
    taxonomy: Taxonomy,
    *,
    video: str | os.PathLike[str] | None = None,
    people: Sequence[str] = (),
) -> Path:
    """An ELAN file of the rows (one recording): one tier per body group (or class; per person
    with several), overflow tiers for overlapping segments, annotations ``"<class> (<score>)"``,
    linked to ``video``."""
    import pympi

    path = Path(path)
    eaf = pympi.Elan.Eaf(author="microaction")
    eaf.remove_tier("default")
    if video is not None:
        v = Path(video).resolve()
        rel = os.path.relpath(v, path.resolve().parent)
        eaf.add_linked_file(v.as_uri(), relpath=rel if rel.startswith(".") else f"./{rel}", mimetype=_mime(v))
    lanes = assign_lanes(rows)
    depth: dict[str, int] = {}
    for r, k in zip(rows, lanes):
        depth[r.group] = max(depth.get(r.group, 0), k + 1)

    def tier(group: str, k: int) -> str:
        return group if k == 0 else f"{group} {k + 1}"

    for group in lane_groups(rows, taxonomy, by_class=not taxonomy.has_body, people=people):
        for k in range(max(depth.get(group, 0), 1)):
            eaf.add_tier(tier(group, k))
    for r, k in zip(rows, lanes):
        start = round(r.start * 1000)
        end = max(round(r.end * 1000), start + 1)
        eaf.add_annotation(tier(r.group, k), start, end, f"{r.name} ({r.score:.2f})")
    path.parent.mkdir(parents=True, exist_ok=True)
    eaf.to_file(str(path))
    return path


def video_duration(path: str | os.PathLike[str]) -> float | None:
    """Seconds of a video file from its container (None when it does not say or cannot be read)."""
    import av

    try:
        with av.open(str(path)) as c:
            if c.duration:
                return float(c.duration) / av.time_base
            s = c.streams.video[0] if c.streams.video else None
            if s is not None and s.duration and s.time_base:
                return float(s.duration * s.time_base)
            if s is not None and s.frames and s.average_rate:
                return float(s.frames / s.average_rate)
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return None


def _duration(rows: Sequence[TimelineRow], video: Path | None, duration: float | None) -> float:
    if duration is None and video is not None:
        duration = video_duration(video)
    end = max((r.end for r in rows), default=0.0)
    return max(duration or 0.0, end) or 1.0


def write_timeline(
    detections: Sequence[Detection],
    out_dir: str | os.PathLike[str],
    taxonomy: Taxonomy,
    regions: Sequence[str],
    video: str | os.PathLike[str] | None = None,
    *,
    duration: float | None = None,
    lanes: str = "body",
    people: Sequence[str] = (),
    routing: bool | None = None,
) -> dict[str, Path]:
    """Write ``timeline.{csv,json,eaf,html}`` for one recording into ``out_dir``.

    ``video`` (the recording's file) links the ELAN file and the page's player to it (by a path
    relative to ``out_dir``; the page's playhead follows the video when it sits there) and gives
    the duration (else the last segment's end, or ``duration``). All detections must belong to
    one video. ``lanes``: ``body`` (one lane per body group) or ``class`` (one per class).
    ``people``: the recording's people (``"person <id>"``; detections name theirs in ``person``),
    each with lanes of their own, also when nothing was detected for them. ``routing``: whether
    the detector routes over ``regions`` (the CSV's ``routing_<region>`` columns); None: whether
    the detections carry routing.
    """

    videos = {d.video for d in detections}
    if len(videos) > 1:
        raise ValueError(
            f"a timeline is one recording; detections come from {len(videos)} videos: {sorted(videos)[:3]}"
        )
    if lanes not in ("body", "class"):
        raise ValueError(f"lanes must be 'body' or 'class', got {lanes!r}")
    video_path = Path(video) if video is not None else None
    if video_path is not None and not video_path.is_file():
        raise FileNotFoundError(f"{video_path}: no such video file")
    name = next(iter(videos)) if videos else (video_path.name if video_path else "")
    rows = timeline_rows(detections, taxonomy, regions)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    total = _duration(rows, video_path, duration)
    rel_video = os.path.relpath(video_path.resolve(), out.resolve()) if video_path is not None else None
    meta: dict[str, object] = {
        "video": name,
        "video_file": rel_video,
        "duration": round(total, 3),
        "taxonomy": taxonomy.name,
        "regions": list(regions),
        "body_groups": list(taxonomy.body_names),
        **({"people": who} if (who := lane_people(rows, people)) else {}),
    }
    paths = {k: out / f"timeline.{k}" for k in FILES}
    if routing is None:
        routing = any(d.routing is not None for d in detections)
    _write_csv(paths["csv"], rows, regions if routing else ())
    _write_json(paths["json"], rows, meta)
    write_eaf(paths["eaf"], rows, taxonomy, video=video_path, people=people)
    write_timeline_html(
        paths["html"], rows, taxonomy, regions, video=name, video_src=rel_video, duration=total, lanes=lanes,
        people=people,
    )  # fmt: skip
    return paths
