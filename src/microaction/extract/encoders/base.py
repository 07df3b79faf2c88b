"""The encoder interface: region clips (or keypoints) → ``[T', D]`` feature sequences per stream."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from microaction.extract.parsers.base import ParseResult
from microaction.extract.regions import RegionLayout

__all__ = ["Encoded", "Encoder", "EncoderInput", "pool_to_steps", "rate_steps", "resample", "windows"]


@dataclass
class EncoderInput:
    clips: dict[int, dict[str, np.ndarray]]  # crop size -> stream name (regions..., "global") -> [T, S, S, 3]
    parse: ParseResult  # keypoints in pixels of the decoded frames
    layout: RegionLayout
    timestamps: np.ndarray  # [T] seconds
    reference: np.ndarray | None = None  # [T, 3] each frame's torso centre and scale (streamed / live pose)
    # the frames go on past the last (a live stream): no window is made to end at the last frame
    partial: bool = False


@dataclass
class Encoded:
    regions: np.ndarray  # [R, T', D] float32
    global_: np.ndarray  # [T', Dg] float32
    times: np.ndarray  # [T'] seconds (centre of each window)


def windows(T: int, window: int, stride: int, tail: bool = True) -> list[tuple[int, int]]:
    """Temporal grid: windows ``[a, b)`` of ``window`` frames every ``stride`` frames; the last
    window ends at ``T`` so the tail is covered; a clip shorter than a window gives one window.
    ``tail=False`` (frames still to come): only the grid's whole windows, none made for the tail,
    so a window is the same whatever follows it."""
    if not tail:
        return [(a, a + window) for a in range(0, T - window + 1, stride)]
    if T <= window:
        return [(0, T)]
    starts = list(range(0, T - window + 1, stride))
    if starts[-1] + window < T:
        starts.append(T - window)
    return [(a, a + window) for a in starts]


def window_times(timestamps: np.ndarray, grid: list[tuple[int, int]]) -> np.ndarray:
    return pool(np.asarray(timestamps, dtype=np.float64), grid).astype(np.float32)


def pool(per_frame: np.ndarray, grid: list[tuple[int, int]]) -> np.ndarray:
    """Mean of per-frame features ``[T, ...]`` over each window -> ``[T', ...]``."""
    x = np.asarray(per_frame)
    if len(grid) == len(x) and all(b - a == 1 for a, b in grid):
        return x.astype(np.float32)
    c = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0, dtype=np.float64)])
    a = np.array([g[0] for g in grid])
    b = np.array([g[1] for g in grid])
    n = (b - a).reshape(-1, *([1] * (x.ndim - 1)))
    return ((c[b] - c[a]) / n).astype(np.float32)


def resample(features: np.ndarray, times: np.ndarray, ref_times: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``[..., T', D]`` from ``times`` onto ``ref_times`` (along axis -2)."""
    if len(times) == len(ref_times) and np.allclose(times, ref_times):
        return features
    if len(times) == 1:
        return np.repeat(features, len(ref_times), axis=-2)
    pos = np.interp(ref_times, times, np.arange(len(times), dtype=np.float64))
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(times) - 1)
    w = (pos - lo).astype(np.float32)[:, None]
    return (features[..., lo, :] * (1 - w) + features[..., hi, :] * w).astype(np.float32)


def rate_steps(first: float, last: float, rate: float, lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
    """A fixed feature grid: step ``j`` at ``first + (j + 0.5) / rate`` seconds, for the steps whose
    time is at most half a step past ``last`` (at least one), and of those the ones in ``[lo, hi)``
    (a streamed chunk's share)."""
    n = max(1, int(np.floor((last - first) * rate + 1e-9)) + 1)
    a = max(0, int(np.ceil((lo - first) * rate - 0.5 - 1e-9))) if np.isfinite(lo) else 0
    b = min(n, int(np.ceil((hi - first) * rate - 0.5 - 1e-9))) if np.isfinite(hi) else n
    return first + (np.arange(a, max(a, b), dtype=np.float64) + 0.5) / rate


def pool_to_steps(features: np.ndarray, times: np.ndarray, steps: np.ndarray, half: float) -> np.ndarray:
    """``[..., T', D]`` at ``times`` onto ``steps``: the mean of the values within ``[s - half, s +
    half)`` of each step, linear interpolation for a step with none."""
    x = np.asarray(features, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.float64)
    a = np.searchsorted(times, steps - half, side="left")
    b = np.searchsorted(times, steps + half, side="left")
    c = np.concatenate([np.zeros_like(x[..., :1, :], dtype=np.float64), np.cumsum(x, axis=-2, dtype=np.float64)], -2)
    n = np.maximum(b - a, 1)[:, None]
    out = ((c[..., b, :] - c[..., a, :]) / n).astype(np.float32)
    empty = b <= a
    if empty.any():
        out[..., empty, :] = resample(x, times, steps[empty])
    return out


class Encoder(ABC):
    """One feature extractor. ``input_size``: side of the square crops it eats (None: keypoints
    only, no pixels needed)."""

    name: str = ""
    window: int = 1
    stride: int = 1
    input_size: int | None = None
    # frames past a window's last that its features read (a central difference reads the next)
    frames_ahead: int = 0

    @property
    def needs_pixels(self) -> bool:
        return self.input_size is not None

    @abstractmethod
    def dims(self, regions: tuple[str, ...]) -> tuple[int, int]:
        """(region_dim, global_dim) for a region list."""

    @abstractmethod
    def encode(self, inp: EncoderInput) -> Encoded: ...

    def describe(self) -> dict[str, Any]:
        """Manifest entry (the runner adds dims and slices)."""
        return {
            "name": self.name,
            "window": self.window,
            "stride": self.stride,
            "input_size": self.input_size,
            "checkpoint": None,
            "checkpoint_sha256": None,
        }
