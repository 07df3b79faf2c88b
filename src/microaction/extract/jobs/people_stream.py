"""Several people in a long recording, streamed (``--people all`` past ``stream_after`` seconds).

Pass 1 finds and tracks every person over the whole recording without holding its frames:
MediaPipe on the pixels (``PersonFinder``, one decoded frame at a time) or the keypoint file
(read and tracked). What it keeps per person is small: the landmarks (33 × 3 floats a frame) and,
from pixels, the person mask bit-packed (about 2.7 KB a frame at the finder's 160-pixel masks,
about 0.3 GB per person-hour at 30 frames/s). It is saved in the store's work area
(``work/<key>/people.npz``, with the plan it was made under), so a killed run does not search
again.

Pass 2 streams each person as a recording of its own (``stream_chunks.stream_recording(person=...)``):
the video is decoded again, chunk by chunk, each frame with that person's landmarks and mask;
region masks, boxes that follow the person, crops and encoders are those of a one-person
recording, and each person's item (``key#id``) resumes per chunk. A person's item already
committed by a killed run is kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microaction.data.prefetch import background
from microaction.data.store import atomic_write_bytes
from microaction.extract.jobs.people_clip import (
    chosen_tracks,
    file_tracks,
    find_people,
    person_finder,
    person_floor,
    sampled_rate,
)
from microaction.extract.parsers.base import ParseError
from microaction.extract.video import iter_frames, probe, source_identity, working_size

if TYPE_CHECKING:
    from microaction.extract.pipeline import Extractor

__all__ = ["PersonStream", "find_people_stream"]

CACHE = "people.npz"


@dataclass
class PersonStream:
    """One person of a recording, from pass 1: per sampled frame (position), the landmarks in the
    working frame's pixels and the bit-packed person mask."""

    id: int
    keypoints: np.ndarray  # [F, 33, 3]
    masks: np.ndarray | None = None  # [F, bytes] np.packbits of each [h, w] mask
    mask_shape: tuple[int, int] | None = None

    def mask(self, pos: int) -> np.ndarray | None:
        if self.masks is None or self.mask_shape is None:
            return None
        h, w = self.mask_shape
        return np.unpackbits(self.masks[pos], count=h * w).reshape(h, w)


def _load(cache: Path, plan: dict[str, Any]) -> list[PersonStream] | None:
    try:
        with np.load(cache, allow_pickle=False) as z:
            if json.loads(str(z["plan"])) != plan:
                return None
            shape = tuple(int(v) for v in z["mask_shape"]) if "mask_shape" in z else None
            return [
                PersonStream(int(pid), z[f"kp_{pid}"], z.get(f"mask_{pid}"), shape)  # type: ignore[arg-type]
                for pid in z["ids"].tolist()
            ]
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # unreadable or from another plan: search again


def _save(cache: Path, plan: dict[str, Any], people: list[PersonStream]) -> None:
    import io

    arrays: dict[str, np.ndarray] = {"plan": np.array(json.dumps(plan)), "ids": np.array([p.id for p in people])}
    for p in people:
        arrays[f"kp_{p.id}"] = p.keypoints
        if p.masks is not None and p.mask_shape is not None:
            arrays[f"mask_{p.id}"] = p.masks
            arrays["mask_shape"] = np.array(p.mask_shape)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache, buf.getvalue())


def _lazy_positions(
    items: Iterable[tuple[int, float, np.ndarray]],
    target: dict[int, np.ndarray],
    scale: float,
    out: dict[int, np.ndarray],
) -> Iterator[np.ndarray]:
    """The frames of ``items``; before each is handed on, the annotation boxes up to its frame
    index are placed at its position in ``out`` (in parse pixels): the nearest sampled frame at or
    after each box's frame, as ``people_clip`` places them on a clip read whole."""
    boxes = sorted(target.items())
    k = 0
    for pos, (i, _t, f) in enumerate(items):
        while k < len(boxes) and boxes[k][0] <= i:
            out.setdefault(pos, np.asarray(boxes[k][1], np.float32) * np.float32(scale))
            k += 1
        yield f


def find_people_stream(
    ex: Extractor,
    path: str | os.PathLike[str],
    start: int | None,
    end: int | None,
    work: Path,
    target: dict[int, np.ndarray] | None = None,
) -> list[PersonStream]:
    """Pass 1 (see the module docstring): every person of the recording, ids 0.. in order of
    first appearance, or with ``target`` (an annotation's person boxes, ``{video frame: xyxy
    native pixels}``) the person those boxes pick, id 0; read back from ``work/people.npz`` when
    it was made under the same plan."""
    path = str(path)
    plan: dict[str, Any] = {"source": source_identity(path), "start": start, "end": end, "params": ex.params.to_dict()}
    if target is not None:
        plan["target"] = {str(k): [float(v) for v in b] for k, b in sorted(target.items())}
    cache = work / CACHE
    if cache.is_file() and (got := _load(cache, plan)) is not None:
        return got
    sampling = ex.params.sampling(start, end)
    tgt: dict[int, np.ndarray] | None = None if target is None else {}
    if ex.parser.name == "mediapipe":
        info = probe(path)
        w, h = working_size(info.width, info.height, sampling.max_side)
        finder = person_finder(ex)
        try:
            items = background(iter_frames(path, sampling))
            frames = (
                (f for _, _, f in items) if tgt is None else _lazy_positions(items, target or {}, w / info.width, tgt)
            )
            tracks = find_people(frames, finder, target=tgt, pack_masks=True)
        finally:
            finder.close()
        shape = finder.mask_size(h, w)
        rate = float(sampling.fps or (info.fps or 30.0) / max(1, sampling.stride))
    else:  # keypoints (the planner admits no other parser)
        tracks, ts, _idx, _size, _fps, _source, tgt = file_tracks(ex, path, sampling, target)
        rate, shape = sampled_rate(ts), None
    if target is not None and not tgt:
        raise ParseError(f"{path}: the person box's frame {min(target)} is after the recording's last frame")
    count = len(tracks[0].keypoints) if tracks else 0
    tracks = chosen_tracks(path, tracks, tgt, person_floor(ex, count, rate))
    people = [PersonStream(tr.id, tr.keypoints, tr.masks, shape if tr.masks is not None else None) for tr in tracks]
    _save(cache, plan, people)
    return people
