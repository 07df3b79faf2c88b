"""The person columns of the generic manifest CSV: who in the video the annotation is about.

Optional columns (``docs/data_formats.md``):

- ``person``: the person's id; the store key becomes ``video#person`` (``video_key``). For a video
  extracted with ``mar extract --people all`` it is the track number that command gives (0, 1,
  ...); with a box it is any name the annotation uses (``initiator``, ``subject2``).
- ``x1,y1,x2,y2``: the person's box in native video pixels (all four or none), at the clip's
  first frame (``start``, or 0), or at ``frame`` when that column is there. Several rows of the
  same video, window and person with different ``frame`` values give the box per frame: they are
  one sample (their labels must agree).

Extraction follows the boxed person (``extract.jobs.people_clip``): the box picks the person, always
before what a detector would call the main person.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

__all__ = ["BOX_COLUMNS", "PERSON_COLUMNS", "BoxRow", "add_sample", "check_person_columns", "person_fields"]

BOX_COLUMNS = ("x1", "y1", "x2", "y2")
PERSON_COLUMNS = ("person", *BOX_COLUMNS, "frame")

BoxRow = tuple[int, float, float, float, float]  # (video frame, x1, y1, x2, y2)


def check_person_columns(cols: list[str], where: str) -> None:
    """The header's person columns make sense together (raises ``ValueError`` naming ``where``)."""
    have = [c for c in BOX_COLUMNS if c in cols]
    if have and len(have) != 4:
        raise ValueError(f"{where}: box columns go together: x1,y1,x2,y2 (has {have})")
    if "frame" in cols and not have:
        raise ValueError(f"{where}: a 'frame' column needs the box columns x1,y1,x2,y2")


def person_fields(get: dict[str, str], where: str, start: int | None) -> tuple[str | None, BoxRow | None]:
    """(person id or None, (frame, box) or None) of one manifest row (``get``: column -> text)."""
    person = get.get("person") or None
    if person is not None and any(ord(c) < 32 for c in person):
        raise ValueError(f"{where}: person {person!r} contains control characters")
    texts = [get.get(c, "") for c in BOX_COLUMNS]
    if not any(texts):
        if get.get("frame"):
            raise ValueError(f"{where}: 'frame' given without a box")
        return person, None
    if not all(texts):
        raise ValueError(f"{where}: incomplete person box {texts} (x1,y1,x2,y2 all or none)")
    try:
        x1, y1, x2, y2 = (float(t) for t in texts)
    except ValueError:
        raise ValueError(f"{where}: person box {texts} is not numbers") from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise ValueError(f"{where}: person box {texts} is not finite")
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"{where}: person box needs x1 < x2 and y1 < y2, got {texts}")
    frame = start or 0
    if get.get("frame"):
        try:
            frame = int(get["frame"])
        except ValueError:
            raise ValueError(f"{where}: frame {get['frame']!r} is not an integer") from None
        if frame < 0:
            raise ValueError(f"{where}: frame {frame} must be >= 0")
    return person, (frame, x1, y1, x2, y2)


def add_sample(out: list[Any], boxed: dict[str, int], sample: Any, box: BoxRow | None) -> None:
    """Append a manifest ``Sample`` to ``out``; a further row with a box of a sample already boxed
    (same video, window and person: another frame) adds its box to that sample instead."""
    sample = replace(sample, split=sample.split or None)
    if box is None:
        out.append(sample)
        return
    i = boxed.get(sample.key)
    if i is None:
        boxed[sample.key] = len(out)
        out.append(replace(sample, boxes=(box,)))
        return
    if replace(out[i], boxes=()) != sample:
        raise ValueError(f"the rows of {sample.key!r} disagree on its label or split")
    if any(b[0] == box[0] for b in out[i].boxes):
        raise ValueError(f"a second box of {sample.key!r} at frame {box[0]}")
    out[i] = replace(out[i], boxes=(*out[i].boxes, box))
