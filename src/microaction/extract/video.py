"""Video decoding with PyAV: any container PyAV reads (mp4, avi, mkv, webm, gif), any fps.

Frames are sampled by ``stride`` (every k-th frame), to a target ``fps`` or to a fixed count
(``num_frames``, evenly spaced), optionally inside a ``[start, end)`` frame window of a long video,
and decoded straight to RGB at a working resolution (``max_side``: the longer side is scaled down
to at most this many pixels; 0 keeps the native size). Timestamps are the frames' own
presentation times in seconds, so variable frame rates and GIF frame delays are honoured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Sampling", "Video", "VideoError", "VideoInfo", "iter_frames", "probe", "read_video", "source_identity"]


class VideoError(RuntimeError):
    """A video that cannot be decoded (missing, corrupt, truncated, empty)."""


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video to use. ``stride``, ``fps`` and ``num_frames`` are alternatives
    (``num_frames`` wins over ``fps``, which wins over ``stride``)."""

    stride: int = 1
    fps: float | None = None
    num_frames: int | None = None
    start: int | None = None  # first frame index (inclusive)
    end: int | None = None  # last frame index (exclusive)
    max_side: int = 640  # working resolution: longer side at most this (0 = native)

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {self.num_frames}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError(f"empty frame window [{self.start}, {self.end})")

    def select(self, times: np.ndarray) -> np.ndarray:
        """Indices into ``times`` (all frames of the video, seconds) that this sampling keeps."""
        n = len(times)
        a = 0 if self.start is None else min(max(self.start, 0), n)
        b = n if self.end is None else min(max(self.end, a), n)
        if b <= a:
            return np.zeros(0, dtype=np.int64)
        if self.num_frames is not None:
            return np.unique(np.round(np.linspace(a, b - 1, self.num_frames)).astype(np.int64))
        if self.fps is not None:
            t = times[a:b]
            targets = np.arange(t[0], t[-1] + 1e-9, 1.0 / self.fps)
            hi = np.clip(np.searchsorted(t, targets), 0, len(t) - 1)
            lo = np.clip(hi - 1, 0, len(t) - 1)
            nearest = np.where(np.abs(t[lo] - targets) <= np.abs(t[hi] - targets), lo, hi)
            return np.unique(nearest) + a
        return np.arange(a, b, self.stride, dtype=np.int64)


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int  # native size
    height: int
    fps: float  # average frame rate (informational; timestamps are per frame)
    frames: int  # frames declared by the container (0 when unknown)
    codec: str


@dataclass
class Video:
    frames: np.ndarray  # [T, h, w, 3] uint8 RGB at the working resolution
    timestamps: np.ndarray  # [T] seconds
    indices: np.ndarray  # [T] frame index in the source video
    info: VideoInfo

    @property
    def scale(self) -> float:
        """Working-resolution pixels per native pixel."""
        return self.frames.shape[2] / self.info.width if len(self.frames) else 1.0


def _open(path: str | os.PathLike[str]):
    import av

    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: empty file (0 bytes)")
    try:
        container = av.open(str(p))
    except Exception as e:  # av.error.* and OSError
        raise VideoError(f"{p}: cannot open ({type(e).__name__}: {e})") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{p}: no video stream")
    return container


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Container metadata, without decoding."""
    container = _open(path)
    try:
        return _info(container, path)
    finally:
        container.close()


def _info(container, path) -> VideoInfo:
    s = container.streams.video[0]
    rate = s.average_rate or s.guessed_rate or s.base_rate
    fps = float(rate) if rate else 0.0
    return VideoInfo(
        str(path),
        int(s.codec_context.width),
        int(s.codec_context.height),
        fps,
        int(s.frames or 0),
        s.codec_context.name,
    )


def working_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) of the working resolution: even sizes, longer side <= max_side (0: native)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(2, round(width * s / 2) * 2), max(2, round(height * s / 2) * 2)


def _frame_times(container, path) -> np.ndarray:
    """Presentation time of every frame, from the packets (demux only, no decoding)."""
    s = container.streams.video[0]
    tb = float(s.time_base) if s.time_base else 0.0
    pts: list[int] = []
    for pkt in container.demux(s):
        if pkt.size == 0:
            continue
        pts.append(pkt.pts if pkt.pts is not None else (pkt.dts if pkt.dts is not None else len(pts)))
    container.seek(0)
    t = np.sort(np.asarray(pts, dtype=np.float64)) * tb
    return t - (t[0] if len(t) else 0.0)


def iter_frames(
    path: str | os.PathLike[str], sampling: Sampling = Sampling(), skip_before: float | None = None
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(frame_index, seconds, rgb [h, w, 3] uint8)`` for the sampled frames, in order;
    with ``skip_before`` (seconds), sampled frames before it are decoded but not converted (their
    ``rgb`` is None: a resumed recording counts them without their cost).

    Raises ``VideoError`` for an unreadable, empty or truncated video.
    """
    import av

    container = _open(path)
    try:
        info = _info(container, path)
        w, h = working_size(info.width, info.height, sampling.max_side)
        if sampling.num_frames is not None or sampling.fps is not None:
            times = _frame_times(container, path)
            if info.frames and len(times) < 0.9 * info.frames:
                raise VideoError(f"{path}: truncated: {len(times)} of {info.frames} declared frames present")
            keep = set(sampling.select(times).tolist())
            last = max(keep) if keep else -1
        else:
            keep = None
            a = sampling.start or 0
            last = (sampling.end - 1) if sampling.end is not None else None
        s = container.streams.video[0]
        s.thread_type = "AUTO"
        t0: float | None = None
        i = -1
        n_out = 0
        try:
            for frame in container.decode(s):
                i += 1
                t = frame.time if frame.time is not None else i / (info.fps or 30.0)
                if t0 is None:
                    t0 = t
                if last is not None and i > last:
                    break
                if keep is not None:
                    if i not in keep:
                        continue
                elif i < a or (i - a) % sampling.stride:
                    continue
                if skip_before is not None and t - t0 < skip_before:
                    n_out += 1
                    yield i, float(t - t0), None  # type: ignore[misc]
                    continue
                rgb = frame.to_ndarray(format="rgb24", width=w, height=h)
                n_out += 1
                yield i, float(t - t0), rgb
        except av.error.FFmpegError as e:
            raise VideoError(f"{path}: decoding failed at frame {i + 1} ({type(e).__name__}: {e})") from None
        if i < 0:
            raise VideoError(f"{path}: no frames could be decoded")
        if info.frames and i + 1 < 0.9 * info.frames and last is None:
            raise VideoError(f"{path}: truncated: decoded {i + 1} of {info.frames} declared frames")
        if n_out == 0:
            raise VideoError(f"{path}: no frame in the requested window (video has {i + 1} frames)")
    finally:
        container.close()


def read_video(path: str | os.PathLike[str], sampling: Sampling = Sampling()) -> Video:
    """Decode the sampled frames of a video into memory."""
    info = probe(path)
    idx, ts, frames = [], [], []
    for i, t, rgb in iter_frames(path, sampling):
        idx.append(i)
        ts.append(t)
        frames.append(rgb)
    return Video(np.stack(frames), np.asarray(ts, dtype=np.float32), np.asarray(idx, dtype=np.int64), info)


def source_identity(path: str) -> dict[str, Any]:
    """A video file as a plan in a store's work area depends on it: path, size and time (a
    changed file starts the work over)."""
    p = Path(path.split("#", 1)[0])
    if not p.is_file():
        return {"path": path}
    st = p.stat()
    return {"path": path, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
