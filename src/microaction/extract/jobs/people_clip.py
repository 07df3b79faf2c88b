"""Stage 1 for several people: decode / read, find every person, track, one ``Parsed`` per person.

``parse_people(extractor, path, start, end, target=...)`` is what ``mar extract --people all``
and a manifest's person box run instead of the single-person parse: it returns ``[(person id,
Parsed)]``, each ``Parsed`` holding that person's landmarks (and masks), so the encode stage
(region boxes, crops, masks, encoders) is the same as for one person and every box, crop and
mask is of that person.

- ``target`` (an annotation's person box, ``{frame index of the video: xyxy native pixels}``):
  the person whose track overlaps those boxes most (``pick_target``) is the one returned, under
  id 0. On pixels the box also seeds the search (the pose model runs on a crop around it, and on
  the tracked person after), so the box wins over whatever the detector would take as the main
  person.
- no target: every tracked person, ids ``0..N-1`` (order of first appearance, left to right).

Pixel parsing needs the ``mediapipe`` parser (``PersonFinder``); the ``keypoints`` parser reads
every person of an OpenPose JSON folder or an ``[M, T, 33, 3]`` npz (``load_people``); both go
through the same tracker (``PeopleTracker``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from microaction.extract.jobs.person_finding import PersonFinder, load_people
from microaction.extract.jobs.person_tracking import PeopleTracker, PersonTrack, consolidate, pick_target, track_people
from microaction.extract.parsers.base import VISIBLE, ParseError, ParseResult, interpolate_gaps, landmark_region_masks
from microaction.extract.video import VideoError, iter_frames, probe, working_size
from microaction.layouts import get_layout
from microaction.skeleton import NUM_LANDMARKS

if TYPE_CHECKING:
    from microaction.extract.jobs.person_tracking import PersonBox
    from microaction.extract.pipeline import Extractor, Parsed
    from microaction.extract.video import Sampling

__all__ = [
    "box_positions",
    "chosen_tracks",
    "file_tracks",
    "find_people",
    "parse_people",
    "people_step",
    "person_finder",
    "person_floor",
    "sampled_rate",
]


def box_positions(indices: np.ndarray, target: dict[int, np.ndarray], scale: float) -> dict[int, np.ndarray]:
    """Annotation boxes keyed by video frame -> keyed by position among the sampled frames (the
    nearest sampled frame at or after it; boxes before the window are dropped), in parse pixels."""
    out: dict[int, np.ndarray] = {}
    for f, box in sorted(target.items()):
        j = int(np.searchsorted(indices, f))
        if j < len(indices) and j not in out:
            out[j] = np.asarray(box, np.float32) * np.float32(scale)
    if not out and target:
        first = min(target)
        raise ParseError(f"the person box's frame {first} is after the clip's last frame {int(indices[-1])}")
    return out


def find_people(
    frames: Iterable[np.ndarray],
    finder: PersonFinder,
    *,
    target: dict[int, np.ndarray] | None = None,
    pack_masks: bool = False,
) -> list[PersonTrack]:
    """Track the people of decoded frames (``[T, H, W, 3]``, or one frame at a time), frame by
    frame (``people_step``). ``pack_masks``: each mask is kept bit-packed (``np.packbits`` of its
    pixels, ``PersonTrack.masks`` ``[T, bytes]``): a long recording's masks in an eighth of the memory."""
    tracker = PeopleTracker()
    t = -1
    for t, img in enumerate(frames):
        people_step(finder, tracker, t, img, target, pack_masks)
    return tracker.tracks(t + 1)


def people_step(
    finder: PersonFinder, tracker: PeopleTracker, t: int, frame: np.ndarray,
    target: dict[int, np.ndarray] | None = None, pack_masks: bool = False,
) -> tuple[list[PersonBox], list[int]]:  # fmt: skip
    """Frame ``t`` (of ``find_people``, or of a live stream): the finder on each tracked person's
    predicted box, and on the whole frame every ``detect_every`` frames or while someone is
    missing; with ``target`` ({position: box}) only around that person (its boxes, then its
    track). Returns the detections and their track ids."""
    hints = [b for _, b in tracker.predicted_boxes(t)]
    if target is not None:
        if t in target:
            hints.insert(0, target[t])
        discover = False
    else:
        discover = t % finder.detect_every == 0 or not hints or any(t - tr.last > 1 for tr in tracker.live)
    dets = finder.detect(frame, hints, discover=discover)
    if pack_masks:
        for d in dets:
            d.mask = None if d.mask is None else np.packbits(d.mask.reshape(-1) > 0)
    return dets, tracker.update(t, dets)


def person_floor(ex: Extractor, frames: int, rate: float) -> int:
    """Frames a person must be seen in to be kept (``min_person_seconds`` at ``rate`` frames/s,
    at most half of a clip of ``frames`` frames: a short clip keeps its people)."""
    return max(1, min(round(ex.params.min_person_seconds * rate), frames // 2))


def chosen_tracks(
    path: str | os.PathLike[str], tracks: list[PersonTrack], target: dict[int, np.ndarray] | None, min_frames: int = 1
) -> list[PersonTrack]:
    """Every person (``consolidate``: broken tracks joined, those seen in fewer than
    ``min_frames`` frames dropped), or (``target``: {position: box}) the track the annotation's
    boxes pick, as id 0."""
    if target is None:
        tracks = consolidate(tracks, min_frames)
    else:
        try:
            k = pick_target(tracks, target)
        except ValueError as e:
            raise ParseError(f"{path}: {e}") from None
        tracks = [tracks[k]]
        tracks[0].id = 0
    if not tracks:
        raise ParseError(f"{path}: no person found")
    return tracks


def finder_threshold(ex: Extractor) -> float:
    """The landmark visibility the pixel person finder counts as seen (``--min-confidence``)."""
    return float(ex.params.parser_options.get("min_confidence", VISIBLE))


def person_finder(ex: Extractor) -> PersonFinder:
    popts = ex.params.parser_options
    return PersonFinder(
        mask_side=int(popts.get("mask_side", 160)),
        min_detection_confidence=float(popts.get("min_detection_confidence", 0.5)),
        min_confidence=finder_threshold(ex),
    )


def file_tracks(
    ex: Extractor, path: str | os.PathLike[str], sampling: Sampling, target: dict[int, np.ndarray] | None = None
) -> tuple[list[PersonTrack], np.ndarray, np.ndarray, tuple[int, int], float, dict[str, Any], dict | None]:
    """Every person of the keypoint file of ``path``, tracked over the sampled frames -> (tracks,
    seconds, frame indices, (H, W) of the keypoints' frame, fps, what a parse's ``info`` says of
    the source: its ``thresholds`` and where the frame size came from, ``size_from``; ``target``'s
    boxes by position, ``box_positions``). With pixel encoders the landmarks, boxes and target are
    in the decoded (working) frame's pixels."""
    from microaction.extract.parsers.keypoints import source_layout
    from microaction.extract.pipeline import file_fps

    parser = ex.parser
    kp_path = parser.find(path)  # type: ignore[attr-defined]
    dets, fps, fsize = load_people(
        kp_path,
        min_confidence=getattr(parser, "min_confidence", None),
        layout=getattr(parser, "layout", None),
        kinect=getattr(parser, "kinect", "project"),
    )
    fps = file_fps(path, fps or getattr(parser, "fps", None) or ex.params.fps)
    times = np.arange(len(dets), dtype=np.float64) / fps
    idx = sampling.select(times)
    if len(idx) == 0:
        raise VideoError(f"{path}: no frame in the requested window ({len(dets)} frames)")
    every = [d.keypoints for fr in dets for d in fr]
    points = np.stack(every) if every else np.zeros((1, 1, 3), np.float32)
    fsize, size_from = parser.frame_of(path, fsize, points)  # type: ignore[attr-defined]
    tracks = track_people([dets[i] for i in idx.tolist()])
    lay = source_layout(kp_path, getattr(parser, "layout", None))
    floor = getattr(parser, "min_confidence", None)
    thresholds = lay.thresholds if floor is None else np.full(NUM_LANDMARKS, floor, np.float32)
    source = {"thresholds": thresholds, "size_from": size_from, "layout": lay.name}
    sx = 1.0
    if ex.needs_pixels:
        info = probe(path)
        sx = working_size(info.width, info.height, sampling.max_side)[0] / fsize[1]
        for tr in tracks:
            tr.keypoints[..., :2] *= sx
            tr.boxes *= sx
    tgt = None if target is None else box_positions(idx, target, sx)
    size = (int(fsize[0]), int(fsize[1]))
    return tracks, times[idx].astype(np.float32), idx, size, float(fps), source, tgt


def _person_parse(
    tr: PersonTrack, size: tuple[int, int], fps: float | None, max_gap: int, source: dict[str, Any]
) -> ParseResult:
    kp = interpolate_gaps(tr.keypoints, max_gap)
    info = {"person": tr.id, **source}
    if "layout" in source:  # the landmarks this person's source gives (``Layout.provided_by``)
        info["provided"] = get_layout(source["layout"]).provided_by(tr.keypoints[..., 2].max(axis=0) > 0)
    if tr.masks is None:
        return ParseResult(kp, size, None, fps=fps, info=info)
    regions = landmark_region_masks(kp, tr.masks, size)
    return ParseResult(kp, size, regions, person_mask=tr.masks, fps=fps, info=info)


def parse_people(
    ex: Extractor,
    path: str | os.PathLike[str],
    start: int | None = None,
    end: int | None = None,
    *,
    target: dict[int, np.ndarray] | None = None,
) -> list[tuple[int, Parsed]]:
    """Every person of a video (or the annotation's ``target`` person) -> ``[(id, Parsed)]``."""
    from microaction.extract.pipeline import Parsed

    t0 = time.perf_counter()
    sampling = ex.params.sampling(start, end)
    popts = ex.params.parser_options
    max_gap = int(popts.get("max_gap", 8))
    frames = None
    if ex.parser.name == "mediapipe":
        info = probe(path)
        items = list(iter_frames(path, sampling))
        frames = np.stack([f for _, _, f in items])
        ts = np.asarray([t for _, t, _ in items], np.float32)
        idx = np.asarray([i for i, _, _ in items], np.int64)
        size = (int(frames.shape[1]), int(frames.shape[2]))
        native = (info.height, info.width)
        tgt = None if target is None else box_positions(idx, target, size[1] / info.width)
        finder = person_finder(ex)
        try:
            tracks = find_people(frames, finder, target=tgt)
        finally:
            finder.close()
        fps = None
        source: dict[str, Any] = {"thresholds": np.full(NUM_LANDMARKS, finder_threshold(ex), np.float32)}
    else:  # keypoints (the planner admits no other parser)
        tracks, ts, idx, native, fps, source, tgt = file_tracks(ex, path, sampling, target)
        size = native
        if ex.needs_pixels:  # pixel encoders: decode the same frames
            items = list(iter_frames(path, sampling))
            if len(items) != len(idx):
                raise ParseError(f"{path}: {len(items)} decoded frames for {len(idx)} keypoint frames")
            frames = np.stack([f for _, _, f in items])
            size = (int(frames.shape[1]), int(frames.shape[2]))
    tracks = chosen_tracks(path, tracks, tgt, person_floor(ex, len(ts), sampled_rate(ts)))
    return [
        (tr.id, Parsed(frames, ts, idx, native, _person_parse(tr, size, fps, max_gap, source), t0)) for tr in tracks
    ]


def sampled_rate(ts: np.ndarray) -> float:
    """Frames per second of sampled frames at ``ts`` seconds."""
    span = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
    return (len(ts) - 1) / span if span > 0 else 1.0
