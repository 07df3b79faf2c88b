"""One video through the chain: decode → parse → region boxes → crops → encoders → arrays.

``Extractor(params)`` builds the parser and encoders once and extracts videos one at a time
(``extract.jobs`` plans and runs whole jobs); with ``params`` read back from a store's manifest
(``params_from_manifest``), a video is extracted exactly as the store's videos were.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from microaction.data.prefetch import background
from microaction.data.store import FACE_REGION, StoreManifest
from microaction.extract.encoders import Encoder, EncoderInput, make_encoder, resample
from microaction.extract.encoders.base import pool_to_steps, rate_steps
from microaction.extract.encoders.pose import trailing_reference
from microaction.extract.jobs.segment_parsing import as_tracker, parse_segments
from microaction.extract.parsers import Parser, ParseResult, make_parser
from microaction.extract.regions import (
    RegionLayout,
    crop_clips,
    crop_frame,
    landmark_counts,
    region_layout,
    region_report,
    step_validity,
)
from microaction.extract.video import Sampling, VideoError, iter_frames, probe
from microaction.skeleton import resolve_regions

__all__ = ["LEGACY_PARAMS", "ExtractParams", "Extraction", "Extractor", "face_crops", "params_from_manifest"]


# parameters added after stores were made, at the value that reproduces what those stores hold
LEGACY_PARAMS: dict[str, Any] = {"centre_seconds": 0.0}


@dataclass
class ExtractParams:
    """Everything that decides a video's features; stored in the manifest (``params["extract"]``)."""

    parser: str = "mediapipe"
    encoders: list[str] = field(default_factory=lambda: ["motion", "pose"])
    regions: list[str] = field(default_factory=lambda: ["head", "body", "upper_limbs", "lower_limbs"])
    stride: int = 1
    fps: float | None = None
    num_frames: int | None = None
    max_side: int = 640
    min_visible_fraction: float = 0.2
    masked: bool = True
    flip: bool = False
    face_size: int = 0  # > 0: also store a grey crop of the head box (this side) at every feature step
    people: str = "main"  # "main": the main person (key video); "all": every person (keys video#id)
    min_person_seconds: float = 1.0  # people "all": a person seen for less (or half a shorter clip) is dropped
    box_window: float = 8.0  # seconds: region boxes follow the person over windows this long
    feature_rate: float | None = None  # steps/s of the stored sequence (None: the first encoder's grid; recordings 6)
    stream_after: float = 60.0  # seconds: a longer video is streamed chunk by chunk (``extract.jobs.stream_chunks``)
    chunk_seconds: float = 10.0  # seconds of video per streamed chunk (the unit of resuming)
    track_seconds: float = (
        10.0  # seconds per tracker segment: MediaPipe restarts on this grid (``extract.jobs.segment_parsing``)
    )
    # seconds of past frames whose median torso centres and scales a streamed recording's (and a live
    # stream's) pose features, frame by frame (``encoders.pose.trailing_reference``); 0: each chunk's
    # own medians, which change every chunk and cannot be had live (stores made before this parameter)
    centre_seconds: float = 5.0
    checkpoint: str | None = None  # videomae directory or sapiens TorchScript file
    device: str = "cpu"
    parser_options: dict[str, Any] = field(default_factory=dict)
    encoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.regions = list(
            resolve_regions(self.regions if isinstance(self.regions, (list, tuple)) else str(self.regions))
        )
        if isinstance(self.encoders, str):
            self.encoders = [e.strip() for e in self.encoders.split(",") if e.strip()]
        if not self.encoders:
            raise ValueError("at least one encoder is needed")
        if len(set(self.encoders)) != len(self.encoders):
            raise ValueError(f"encoder listed twice: {self.encoders}")
        self.sampling(None, None)  # validate
        if self.face_size < 0 or (self.face_size and self.face_size < 8):
            raise ValueError(f"face_size must be 0 (off) or at least 8 pixels, got {self.face_size}")
        if self.people not in ("main", "all"):
            raise ValueError(f"people must be 'main' or 'all', got {self.people!r}")
        if self.parser == "keypoints" and not {"confidence", "min_confidence"} & set(self.parser_options):
            # confidence read as each layout's source means it, recorded (older stores lack it)
            self.parser_options = {**self.parser_options, "confidence": "source"}
        if not self.min_person_seconds >= 0:
            raise ValueError(f"min_person_seconds must be >= 0, got {self.min_person_seconds}")
        if not self.box_window > 0:
            raise ValueError(f"box_window must be > 0 seconds, got {self.box_window}")
        if self.feature_rate is not None and not self.feature_rate > 0:
            raise ValueError(f"feature_rate must be > 0 steps/s (or None), got {self.feature_rate}")
        if not self.track_seconds > 0:
            raise ValueError(f"track_seconds must be > 0 seconds, got {self.track_seconds}")
        if not self.centre_seconds >= 0:
            raise ValueError(f"centre_seconds must be >= 0 seconds, got {self.centre_seconds}")
        if not (self.stream_after >= 0 and self.chunk_seconds > 0):
            raise ValueError(f"stream_after must be >= 0 and chunk_seconds > 0 seconds, got {self.stream_after}, "
                             f"{self.chunk_seconds}")  # fmt: skip
        if self.face_size and FACE_REGION not in self.regions:
            raise ValueError(f"face_size needs the {FACE_REGION!r} region among the regions {self.regions}")

    def sampling(self, start: int | None, end: int | None) -> Sampling:
        return Sampling(self.stride, self.fps, self.num_frames, start, end, self.max_side)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExtractParams:
        known = set(cls.__dataclass_fields__)
        bad = set(d) - known
        if bad:
            raise ValueError(f"unknown extraction parameters {sorted(bad)}")
        d = {**LEGACY_PARAMS, **d}
        popts = d.get("parser_options") or {}
        if d.get("parser") == "keypoints" and not {"confidence", "min_confidence"} & set(popts):
            # a store made when every keypoint source was read at confidence 0.5: extract as it was
            d = {**d, "parser_options": {**popts, "min_confidence": 0.5}}
        return cls(**d)


def params_from_manifest(manifest: StoreManifest) -> ExtractParams:
    """The parameters a store was extracted with (to extract new videos the same way)."""
    d = manifest.params.get("extract")
    if not isinstance(d, dict):
        raise ValueError("this store's manifest records no extraction parameters (made by another tool?)")
    return ExtractParams.from_dict(d)


@dataclass
class Extraction:
    """One video's features in store layout, plus what overlays need."""

    regions: np.ndarray  # [R, T', D] float32
    global_: np.ndarray  # [T', Dg] float32
    region_valid: np.ndarray  # [R] bool
    timestamps: np.ndarray  # [T'] seconds
    extras: dict[str, np.ndarray]  # boxes [R+1, 4] native-pixel xyxy (person last), keypoints [T, 33, 3]
    info: dict[str, Any]
    # kept for debugging/overlays when asked (not stored); the layout (boxes, visibility) always
    frames: np.ndarray | None = None
    parse: ParseResult | None = None
    layout: RegionLayout | None = None


@dataclass
class Parsed:
    """Stage 1's output: sampled frames (None on the keypoints-only path; a list where a streamed
    chunk stacks only the frames its encoders see) and their parse."""

    frames: np.ndarray | list[np.ndarray] | None
    timestamps: np.ndarray
    indices: np.ndarray
    native: tuple[int, int]  # (H, W) of the video
    parse: ParseResult
    t0: float


def take_frames(frames: np.ndarray | list[np.ndarray], sel: np.ndarray) -> np.ndarray | list[np.ndarray]:
    """The selected frames: an array's rows, or a list's items (not stacked: no copy)."""
    return frames[sel] if isinstance(frames, np.ndarray) else [frames[j] for j in sel.tolist()]


class Extractor:
    """Parser + encoders built once; ``extract(path)`` per video."""

    def __init__(self, params: ExtractParams) -> None:
        self.params = params
        self.regions = tuple(params.regions)
        popts = dict(params.parser_options)
        if params.parser == "sapiens":
            popts.setdefault("checkpoint", params.checkpoint)
            popts.setdefault("device", params.device)
        self.parser: Parser = make_parser(params.parser, **popts)
        self.encoders: list[Encoder] = []
        for name in params.encoders:
            eopts = dict(params.encoder_options.get(name, {}))
            if name == "videomae":
                eopts.setdefault("checkpoint", params.checkpoint)
                eopts.setdefault("device", params.device)
            self.encoders.append(make_encoder(name, **eopts))
        self.needs_pixels = (
            self.parser.needs_pixels or any(e.needs_pixels for e in self.encoders) or params.face_size > 0
        )
        self.slices: list[tuple[int, int, int, int]] = []
        a = g = 0
        for e in self.encoders:
            d, dg = e.dims(self.regions)
            self.slices.append((a, a + d, g, g + dg))
            a, g = a + d, g + dg
        self.region_dim, self.global_dim = a, g

    # -- manifest -------------------------------------------------------------------------------
    def manifest(self) -> StoreManifest:
        from microaction import __version__

        encs = []
        for e, (a, b, ga, gb) in zip(self.encoders, self.slices):
            encs.append(
                {**e.describe(), "dim": b - a, "global_dim": gb - ga, "slice": [a, b], "global_slice": [ga, gb]}
            )
        return StoreManifest(
            regions=list(self.regions),
            region_dim=self.region_dim,
            global_dim=self.global_dim,
            parser=self.parser.name,
            encoders=encs,
            fps=self.params.fps,
            params={
                "extract": self.params.to_dict(),
                "parser": self.parser.describe(),
                "time_grid": self.encoders[0].name,
                "extras": {
                    "boxes": "[R+1, 4] xyxy native pixels, whole person last (the clip's boxes: their union)",
                    "step_boxes": "[R+1, T', 4] xyxy native pixels at the feature steps (boxes follow the person)",
                    "step_valid": "[R, T'] bool: region seen around that feature step (region_valid is its summary)",
                    "keypoints": "[T, 33, 3] native pixels",
                    **(
                        {
                            "face": f"[T', {self.params.face_size}, {self.params.face_size}] uint8 grey head-box crops "
                            "at the feature steps",
                            "face_valid": "[T'] bool: the head was seen in that crop's frame",
                        }
                        if self.params.face_size
                        else {}
                    ),
                },
            },
            tool_version=__version__,
        )

    # -- one video: stage 1 (parse), then stage 2 (encode) ------------------------------------------
    def parse(self, video_path: str | os.PathLike[str], start: int | None = None, end: int | None = None) -> Parsed:
        """Stage 1: decode (when pixels are needed) and parse."""
        t0 = time.perf_counter()
        sampling = self.params.sampling(start, end)
        if self.needs_pixels:
            frames, timestamps, indices, native, parse = self._decode_and_parse(video_path, sampling)
            return Parsed(frames, timestamps, indices, native, parse, t0)
        parse, timestamps, indices, native = self._parse_files(video_path, sampling)
        return Parsed(None, timestamps, indices, native, parse, t0)

    def _crops(self, frames: Any, parse: ParseResult, layout: RegionLayout) -> dict[int, dict[str, np.ndarray]]:
        """The region crops of every crop size the encoders take (frames mirrored with ``flip``)."""
        if self.params.flip and isinstance(frames, np.ndarray):
            frames = np.ascontiguousarray(frames[:, :, ::-1])
        elif self.params.flip and frames is not None:
            frames = [np.ascontiguousarray(f[:, ::-1]) for f in frames]
        clips: dict[int, dict[str, np.ndarray]] = {}
        for e in self.encoders:
            if e.input_size is not None and e.input_size not in clips:
                assert frames is not None
                clips[e.input_size] = crop_clips(frames, parse, layout, e.input_size, masked=self.params.masked)
        return clips

    @property
    def pose_lookback(self) -> float:
        """Seconds of frames before a streamed chunk (or live step) that its pose reference reads:
        ``centre_seconds`` when the pose encoder runs, else 0 (nothing else looks back)."""
        return self.params.centre_seconds if any(e.name == "pose" for e in self.encoders) else 0.0

    def _reference(self, parse: ParseResult, timestamps: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
        """The pose encoder's per-frame torso centre and scale for ``rows`` of a streamed chunk or
        live stream, over the ``centre_seconds`` before each, so every frame is encoded as in one
        pass whatever the chunks (None: the chunk's own medians)."""
        if self.pose_lookback > 0:
            return trailing_reference(parse.keypoints, timestamps, rows, self.pose_lookback)
        return None

    def encode(
        self,
        parsed: Parsed,
        *,
        keep: bool = False,
        rate: float | None = None,
        steps: np.ndarray | None = None,
        span: tuple[float, float] | None = None,
        partial: bool = False,
    ) -> Extraction:
        """Stage 2: region boxes, crops, encoders (may run in another thread than stage 1). The
        output grid: a fixed ``rate`` (steps/s; default ``feature_rate``), at ``steps`` (seconds, a
        streamed chunk's share of that grid) or from the first frame; without a rate, the first
        encoder's windows. ``span`` (seconds, ``[a, b)``): the region boxes are made from every
        frame, the crops and encoders run on the frames in ``span`` only (a streamed chunk's
        frames and its encoders' context; ``_reference``). ``partial``: the frames go on after the
        last (live), so the encoders make no window for the tail."""
        frames, timestamps, indices, native, parse, t0 = (
            parsed.frames, parsed.timestamps, parsed.indices, parsed.native, parsed.parse, parsed.t0
        )  # fmt: skip
        if self.params.flip:
            parse = parse.flipped()
        layout = region_layout(
            parse,
            self.regions,
            min_visible_fraction=self.params.min_visible_fraction,
            window=box_window_frames(timestamps, self.params.box_window),
        )
        reference = None
        if span is not None:  # the pose reference looks back before the span
            sel = np.flatnonzero((timestamps >= span[0]) & (timestamps < span[1]))
            reference = self._reference(parse, timestamps, sel)
            frames, timestamps, indices, parse, layout = (
                None if frames is None else take_frames(frames, sel), timestamps[sel], indices[sel], parse.take(sel),
                layout.take(sel),
            )  # fmt: skip
        inp = EncoderInput(self._crops(frames, parse, layout), parse, layout, timestamps, reference, partial)
        R, T_ = len(self.regions), None
        outs = [e.encode(inp) for e in self.encoders]
        ref = outs[0].times
        T_ = len(ref)
        regions = np.zeros((R, T_, self.region_dim), np.float32)
        glob = np.zeros((T_, self.global_dim), np.float32)
        for o, (a, b, ga, gb) in zip(outs, self.slices):
            regions[:, :, a:b] = resample(o.regions, o.times, ref)
            glob[:, ga:gb] = resample(o.global_, o.times, ref)
        rate = rate or self.params.feature_rate
        if rate and steps is None:
            steps = rate_steps(float(timestamps[0]), float(timestamps[-1]), rate)
        if rate and steps is not None:  # a fixed rate: each step is the mean of the encoder windows in its bin
            regions = pool_to_steps(regions, ref, steps, 0.5 / rate)
            glob = pool_to_steps(glob, ref, steps, 0.5 / rate)
            ref = np.asarray(steps, np.float64)
            T_ = len(ref)
        regions[~layout.valid] = 0.0
        # one step (live, step by step): its bin on the grid, as the spacing of several gives it
        half = 0.5 / rate if rate and steps is not None and len(steps) == 1 else None
        _H, W = parse.image_size
        factor = native[1] / W  # native pixels per parse pixel
        near = nearest_frames(timestamps, ref)
        extras = {
            "boxes": layout.scaled(factor),
            "step_boxes": (layout.frame_boxes()[:, near] * factor).astype(np.float32),
            "step_valid": step_validity(layout, timestamps, ref, self.params.min_visible_fraction, half),
            "keypoints": parse.rescaled((native[0], native[1])).keypoints.astype(np.float32),
            "frame_indices": indices.astype(np.int64),
        }
        if self.params.face_size:
            assert frames is not None
            extras["face"], extras["face_valid"] = face_crops(frames, timestamps, ref, layout, self.params.face_size)
        thresholds = parse.info.get("thresholds")
        info = {
            "frames": len(timestamps),
            "steps": int(T_),
            "size": [int(native[0]), int(native[1])],
            "seconds": round(time.perf_counter() - t0, 3),
            "regions": region_report(
                self.regions,
                layout.visible.sum(0),
                layout.valid,
                landmark_counts(parse.keypoints, thresholds),
                len(timestamps),
                thresholds,
                parse.info.get("provided"),
            ),
        }
        if parse.info.get("size_from"):
            info["size_from"] = parse.info["size_from"]
        return Extraction(
            np.nan_to_num(regions),
            np.nan_to_num(glob),
            layout.valid.copy(),
            ref.astype(np.float32),
            extras,
            info,
            None if not keep or frames is None else np.asarray(frames),
            parse if keep else None,
            layout,
        )

    def _decode_and_parse(self, path, sampling: Sampling):
        """Decode in a background thread while the parser works frame by frame."""
        info = probe(path)
        decoded = background(iter_frames(path, sampling))
        frames: list[np.ndarray] = []
        ts, idx, steps = [], [], []
        tracker = as_tracker(self.parser)
        if tracker is not None:
            for i, t, f, out in parse_segments(tracker, decoded, self.params.track_seconds):
                assert f is not None
                frames.append(f)
                ts.append(t)
                idx.append(i)
                steps.append(out)
        else:
            for i, t, f in decoded:
                frames.append(f)
                ts.append(t)
                idx.append(i)
        arr = np.stack(frames)
        size = (int(arr.shape[1]), int(arr.shape[2]))
        indices = np.asarray(idx, dtype=np.int64)
        if tracker is not None:
            parse = tracker.finish([k for k, _ in steps], [m for _, m in steps], size)
        elif self.parser.needs_pixels:
            parse = self.parser.parse(arr, path)
        else:  # file parser with pixel encoders: the sidecar covers every frame of the video
            full = self.parser.parse(None, path)
            if indices.max() >= full.num_frames:
                raise VideoError(f"{path}: video has frame {indices.max()}, the keypoint file only {full.num_frames}")
            parse = full.take(indices).rescaled(size)
        return arr, np.asarray(ts, dtype=np.float32), indices, (info.height, info.width), parse

    def _parse_files(self, path, sampling: Sampling):
        """Keypoints-only path: no decoding at all."""
        parse = self.parser.parse(None, path)
        fps = file_fps(path, parse.fps or self.params.fps)
        times = np.arange(parse.num_frames, dtype=np.float64) / fps
        idx = sampling.select(times)
        if len(idx) == 0:
            raise VideoError(f"{path}: no frame in the requested window ({parse.num_frames} frames)")
        return parse.take(idx), times[idx].astype(np.float32), idx, parse.image_size

    def close(self) -> None:
        self.parser.close()


def file_fps(path: str | os.PathLike[str], fps: float | None) -> float:
    """A keypoint file's frame rate: ``fps`` (the file's, else ``--keypoints-fps``), else the video's."""
    if not fps:
        try:
            fps = probe(path).fps
        except VideoError:
            fps = None
    if not fps:
        from microaction.taxonomy.releases import release_fps, release_names

        known = ", ".join(f"{n} = {release_fps(n):g}" for n in release_names())
        raise VideoError(
            f"{path}: frame rate unknown: the keypoint file carries none and there is no video to probe; give it "
            f"with --keypoints-fps N (frames per second) or a release's name ({known})"
        )
    return float(fps)


def nearest_frames(timestamps: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Index of the frame nearest in time to each feature step."""
    if len(timestamps) <= 1:
        return np.zeros(len(steps), dtype=np.int64)
    pos = np.clip(np.searchsorted(timestamps, steps), 1, len(timestamps) - 1)
    return np.where(np.abs(timestamps[pos - 1] - steps) <= np.abs(timestamps[pos] - steps), pos - 1, pos)


def box_window_frames(timestamps: np.ndarray, seconds: float) -> int:
    """``seconds`` in frames of a clip sampled at ``timestamps``."""
    if len(timestamps) < 2 or timestamps[-1] <= timestamps[0]:
        return len(timestamps) + 1
    rate = (len(timestamps) - 1) / float(timestamps[-1] - timestamps[0])
    return max(2, round(seconds * rate))


def face_crops(
    frames: np.ndarray | list[np.ndarray], timestamps: np.ndarray, steps: np.ndarray, layout: RegionLayout, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Grey crops of the head box ``[len(steps), size, size]`` uint8 (unmasked: the texture around
    the face matters too), one per feature step from the frame nearest in time, and whether the
    head was seen in that frame ``[len(steps)]``. The box is the head box of that frame (the
    clip's fixed box unless the clip is longer than the box window), so a small head movement
    shows as movement inside the crop, as in the region clips."""
    import cv2

    h = layout.regions.index(FACE_REGION)
    nearest = nearest_frames(timestamps, steps)
    out = np.empty((len(steps), size, size), dtype=np.uint8)
    cache: dict[int, np.ndarray] = {}
    for j, t in enumerate(nearest.tolist()):
        if t not in cache:
            cache[t] = cv2.cvtColor(crop_frame(frames[t], layout.box(h, t), size), cv2.COLOR_RGB2GRAY)
        out[j] = cache[t]
    valid = layout.visible[nearest, h] & bool(layout.valid[h])
    return out, valid.astype(bool)


_CACHE: dict[str, Extractor] = {}


def get_extractor(params: ExtractParams) -> Extractor:
    """An Extractor for ``params``, built once per process (workers and Ray tasks reuse it)."""
    key = json.dumps(params.to_dict(), sort_keys=True)
    ex = _CACHE.get(key)
    if ex is None:
        _CACHE.clear()
        ex = _CACHE[key] = Extractor(params)
    return ex
