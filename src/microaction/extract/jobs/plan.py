"""Which of the four paths an extraction job takes, decided here and nowhere else: ``clip`` (one
person, read whole, encoded in one pass), ``stream`` (one person of a recording longer than
``stream_after`` seconds, chunk by chunk: ``stream_chunks``), ``people`` (every person, or the one
an annotation's box picks, of a clip: ``people_clip``) and ``people_stream`` (the same on a long
recording: the people found first, ``people_stream``, then each streamed).

A video's length is read from its container (no decoding); a keypoint stream without pixels has
its length once the file is read, so planning reads it and the plan keeps what was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from microaction.extract.jobs.job_list import Job
from microaction.extract.jobs.people_clip import parse_people
from microaction.extract.parsers.base import ParseError
from microaction.extract.video import VideoError, probe

if TYPE_CHECKING:
    from microaction.extract.pipeline import Extractor, Parsed

__all__ = ["Kind", "Plan", "plan_job", "read_whole", "video_seconds"]


class Kind(Enum):
    """A job's path: (several people, streamed)."""

    CLIP = (False, False)
    STREAM = (False, True)
    PEOPLE = (True, False)
    PEOPLE_STREAM = (True, True)

    @property
    def people(self) -> bool:
        return bool(self.value[0])

    @property
    def streamed(self) -> bool:
        return bool(self.value[1])


@dataclass
class Plan:
    kind: Kind
    target: dict[int, np.ndarray] | None = None  # the annotation's person boxes {video frame: xyxy native pixels}
    # what is read whole: each person's parse (id None: the one person); empty until read, and for
    # a video streamed from its pixels
    parsed: list[tuple[int | None, Parsed]] = field(default_factory=list)


def video_seconds(path: str, start: int | None, end: int | None) -> float:
    """Seconds of video between ``start`` and ``end`` from the container (0 when it tells none:
    the clip path reports a video it cannot read)."""
    try:
        info = probe(path)
    except VideoError:
        return 0.0
    if not (info.frames and info.fps):
        return 0.0
    a = max(0, start or 0)
    b = min(info.frames, end) if end is not None else info.frames
    return (b - a) / info.fps


def plan_job(ex: Extractor, job: Job, *, people: bool = True) -> Plan:
    """The job's path: several people when the job has person boxes or ``params.people`` is
    ``all`` (``people=False``: the main person whatever the parameters say), streamed past
    ``params.stream_after`` seconds. Without pixels the keypoints are read here (``Plan.parsed``)."""
    if job.tracks and ex.params.people != "all":
        raise ValueError(
            f"{job.path}: the manifest names people without a box; extract with --people all (person ids "
            "are its track numbers) or give each person's box"
        )
    many = people and (bool(job.boxes) or ex.params.people == "all")
    if many and ex.parser.name not in ("mediapipe", "keypoints"):
        raise ParseError(f"{job.path}: several people (--people all, or a person box in the manifest) need the "
                         f"mediapipe or keypoints parser, not {ex.parser.name!r}")  # fmt: skip
    target = {b[0]: np.asarray(b[1:], np.float32) for b in job.boxes} if many and job.boxes else None
    if ex.needs_pixels:
        long = video_seconds(job.path, job.start, job.end) > ex.params.stream_after
        return Plan(Kind((many, long)), target)
    plan = Plan(Kind((many, False)), target)
    plan.parsed = read_whole(ex, job, plan)
    ts = plan.parsed[0][1].timestamps
    if len(ts) and float(ts[-1] - ts[0]) > ex.params.stream_after:
        plan.kind = Kind((many, True))  # streamed from the keypoints read
    return plan


def read_whole(ex: Extractor, job: Job, plan: Plan) -> list[tuple[int | None, Parsed]]:
    """Decode (when pixels are needed) and parse the job whole: every person, or the one."""
    if plan.kind.people:
        return list(parse_people(ex, job.path, job.start, job.end, target=plan.target))
    return [(None, ex.parse(job.path, job.start, job.end))]
