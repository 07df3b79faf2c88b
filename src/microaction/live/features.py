"""Live features: frames parsed one at a time, encoded on the run's feature grid as they arrive.

The parse is the run's parser frame by frame: a tracker (MediaPipe) keeps one session over the
whole stream; a parser of files beside the video (``groundtruth``, ``keypoints``) reads its file
once (``parse_from``) and hands each frame the landmarks of its index. Parsers of whole clips
(``sapiens``) cannot run live.

The encoding is the streamed extraction's (``extract.jobs.stream_chunks``): the frames held (the last
``context`` seconds) become a ``Parsed`` (gap filling, region masks) and ``Extractor.encode`` gives
the steps of the fixed grid (``feature_rate`` steps/s from the first frame) that are complete: a
step is encoded once the encoder windows of its bin are final (``complete_until``: their frames
and the few their features read past them have arrived; about a frame after the bin ends), and
never again: the store's steps, but for the last whole step before a stream's end, which a
store also averages with the recording's tail window (the encoders' last window ends at the
last frame), an end a stream does not announce. The pose encoder's torso centre is each frame's own, over the
``centre_seconds`` before it, as in the streamed extraction (so live steps equal the store's);
what else depends on a whole clip offline (the torso scale, clip boxes, region validity) is
taken over the held frames: the causal counterpart of the streamed chunk with its context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from microaction.extract.encoders.base import rate_steps
from microaction.extract.jobs.people_clip import people_step, person_finder
from microaction.extract.jobs.person_tracking import PeopleTracker
from microaction.extract.jobs.segment_parsing import as_tracker
from microaction.extract.jobs.stream_chunks import Frame, chunk_parsed, parse_frame, recording_rate
from microaction.extract.pipeline import Extractor
from microaction.live.source import LiveFrame

__all__ = ["FrameParser", "LiveFeatures", "Steps"]


class FrameParser:
    """The run's parser, one frame at a time -> ``[(person, stream.Frame)]`` (landmarks, masks):
    one person (``person`` None), or with ``people="all"`` every person MediaPipe finds and
    ``PeopleTracker`` follows (``"person <id>"``, ids in order of first appearance, as
    ``mar extract --people all`` numbers them)."""

    def __init__(self, ex: Extractor, parse_from: str | None = None, people: str = "main") -> None:
        self.ex = ex
        self.tracker = as_tracker(ex.parser)
        self.session: Any = None
        self.full = None
        self.finder: Any = None
        self.people: Any = None
        if people == "all":
            if ex.parser.name != "mediapipe":
                raise ValueError(f"--people all needs the mediapipe parser live, not {ex.parser.name!r}")
            self.finder, self.people = person_finder(ex), PeopleTracker()
        if ex.parser.needs_pixels and self.tracker is None:
            raise ValueError(
                f"parser {ex.parser.name!r} parses whole clips and cannot run live; a run extracted with "
                "mediapipe (or with keypoint files and --parse-from) can"
            )
        if not ex.parser.needs_pixels:
            if parse_from is None:
                raise ValueError(
                    f"the run's store was parsed with {ex.parser.name!r}, from files beside the video: give "
                    "--parse-from (the recording's video path for groundtruth, the keypoint file for keypoints), "
                    "or --parser mediapipe to parse the frames"
                )
            self.full = ex.parser.parse(None, parse_from)
        elif parse_from is not None:
            raise ValueError(f"--parse-from is for a run parsed from files; {ex.parser.name!r} parses the frames")
        self.keep_rgb = ex.params.face_size > 0 or any(e.needs_pixels for e in ex.encoders)
        # what the whole file says of its source (landmarks it has, thresholds), as a streamed chunk keeps it
        full_info = self.full.info if self.full is not None else {}
        self.info = {k: v for k, v in full_info.items() if k in ("provided", "thresholds", "layout")}

    def __call__(self, f: LiveFrame) -> list[tuple[str | None, Frame]]:
        keep = f.rgb if self.keep_rgb else None
        if self.full is not None:
            if f.index >= self.full.num_frames:
                raise ValueError(f"frame {f.index}: the keypoint file has only {self.full.num_frames} frames")
            # landmarks in pixels of the frames encoded
            size = f.rgb.shape[:2] if f.rgb is not None and self.ex.needs_pixels else None
            return [(None, parse_frame(self.full, f.index, f.index, f.t, f.pos, keep, size))]
        assert f.rgb is not None and self.tracker is not None
        if self.people is not None:
            return self._people(f, keep)
        if self.session is None:
            self.session = self.tracker.session()
        kp, mask = self.session.step(f.rgb)
        return [(None, Frame(f.index, f.t, f.pos, keep, kp, None, mask, raw=True))]

    def _people(self, f: LiveFrame, keep: np.ndarray | None) -> list[tuple[str | None, Frame]]:
        """Every person of the frame, as ``people_clip.people_step`` finds and tracks them."""
        tr = self.people
        assert f.rgb is not None
        dets, ids = people_step(self.finder, tr, f.pos, f.rgb)
        for x in tr.live:  # a stream keeps no history: whole tracks (``tracks()``) are never asked for
            del x.frames[:-1], x.dets[:-1]
        tr.ended.clear()
        return [(f"person {i}", Frame(f.index, f.t, f.pos, keep, d.keypoints, None, d.mask, raw=True))
                for i, d in zip(ids, dets) if i >= 0]  # fmt: skip

    def size(self, f: LiveFrame) -> tuple[int, int]:
        """(H, W) of the pixels the landmarks are in."""
        if self.full is not None and (f.rgb is None or not self.ex.needs_pixels):
            return (int(self.full.image_size[0]), int(self.full.image_size[1]))
        assert f.rgb is not None
        return (int(f.rgb.shape[0]), int(f.rgb.shape[1]))

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
        if self.finder is not None:
            self.finder.close()
            self.finder = None


@dataclass
class Steps:
    """New feature steps: ``regions [R, n, D]``, ``global_ [n, Dg]``, ``valid [R, n]`` (region seen
    around the step), ``times [n]`` (seconds), ``boxes [R+1, n, 4]`` (native pixels)."""

    regions: np.ndarray
    global_: np.ndarray
    valid: np.ndarray
    times: np.ndarray
    boxes: np.ndarray
    index: int  # grid index of the first step


class LiveFeatures:
    """Parsed frames in, complete feature steps out (``push`` then ``ready``)."""

    def __init__(self, ex: Extractor, *, context: float = 3.0, info: dict[str, Any] | None = None) -> None:
        self.ex, self.info = ex, info
        self.rate = recording_rate(ex)
        self.context = float(context)
        self.align = int(np.lcm.reduce([max(1, e.stride) for e in ex.encoders]))
        self.frames: list[Frame] = []
        self.origin: float | None = None
        self.done = 0  # grid steps encoded so far
        self.native: tuple[int, int] | None = None
        self.size: tuple[int, int] | None = None
        self.seconds = 0.0  # spent encoding

    def complete_until(self, first: int) -> float:
        """Seconds before which every step's encoder windows are final, with the encoders' windows
        starting at the held frame ``first`` (a multiple of their strides): each encoder's first
        window still short of its frames (and of the ``frames_ahead`` its features read past
        them) has its centre at the earliest here, its missing frames counted at the last one's
        time; earlier windows, whole, are what they will be, and no window is made for the tail
        (``partial``). A step is complete once its bin ends there, about a frame after it ends."""
        ts = np.array([f.t for f in self.frames[first:]], np.float64)
        n, until = len(ts), np.inf
        for e in self.ex.encoders:
            w, s = max(1, e.window), max(1, e.stride)
            a = max(0, (n - w - e.frames_ahead) // s + 1) * s  # the first window not final
            have = ts[a : a + w]
            until = min(until, (float(have.sum()) + (w - len(have)) * float(ts[-1])) / w)
        return until - max(1e-3, 4e-7 * abs(until))  # window centres are float32 (window_times)

    def push(self, frame: Frame, native: tuple[int, int], size: tuple[int, int]) -> None:
        if self.origin is None:
            self.origin, self.native, self.size = frame.t, native, size
        self.frames.append(frame)

    def ready(self, ended: bool = False, hop: float = 0.0) -> Steps | None:
        """The steps complete now (at the end: every step up to the last frame), or None; with
        ``hop`` (seconds), None until that much of new steps is complete."""
        if not self.frames or self.origin is None:
            return None
        grid = rate_steps(self.origin, self.frames[-1].t, self.rate)  # steps up to the last frame
        times = grid[self.done :]
        if not len(times):
            return None
        first = self._first(float(times[0]))
        if not ended:
            times = times[times + 0.5 / self.rate <= self.complete_until(first)]
            if not len(times) or len(times) < max(1, round(hop * self.rate)):
                return None
        t0 = time.perf_counter()
        steps = self._encode(times, first, ended)
        self.done += len(times)
        self._trim(float(times[-1]))
        self.seconds += time.perf_counter() - t0
        return steps

    def _first(self, t: float) -> int:
        """The held frame the encoders' windows start from for steps from ``t``: ``context``
        seconds before it, back to a multiple of their strides (where they start in one pass)."""
        recs = self.frames
        ts = np.array([r.t for r in recs], np.float32)
        first = int(np.searchsorted(ts, np.float32(t - self.context)))
        first = min(first, len(recs) - 1)
        while first > 0 and recs[first].pos % self.align:
            first -= 1
        return first

    def _encode(self, times: np.ndarray, first: int, ended: bool) -> Steps:
        assert self.native is not None and self.size is not None
        recs = self.frames
        a, b = float(np.float32(recs[first].t)), float(np.float32(recs[-1].t)) + 1e-3
        parsed = chunk_parsed(self.ex, recs, self.native, self.size, "live", ended, self.info)
        got = self.ex.encode(parsed, rate=self.rate, steps=times, span=(a, b), partial=not ended)
        valid = np.asarray(got.extras["step_valid"], bool) & np.asarray(got.region_valid, bool)[:, None]
        return Steps(got.regions, got.global_, valid, np.asarray(times, np.float64),
                     np.asarray(got.extras["step_boxes"], np.float32), self.done)  # fmt: skip

    def _trim(self, upto: float) -> None:
        """Keep the frames the next steps' encoding sees: ``context`` seconds before them (also
        what the region boxes follow the person over, in place of the centred box window)."""
        keep_from = upto - self.context - self.ex.pose_lookback  # and what the pose centre looks back on
        k = 0
        while k < len(self.frames) and self.frames[k].t < keep_from:
            k += 1
        if k:
            del self.frames[:k]
