"""The body-parser interface and what every backend shares (gap filling, landmark region masks)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microaction.skeleton import MASK_REGIONS, NUM_LANDMARKS, REGION_SEGMENTS

__all__ = [
    "VISIBLE",
    "ParseError",
    "ParseResult",
    "Parser",
    "from_seen_scale",
    "interpolate_gaps",
    "landmark_region_masks",
    "to_seen_scale",
]

VISIBLE = 0.5  # a landmark with confidence >= VISIBLE counts as seen (the toolkit's scale, below)


def to_seen_scale(conf: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """A source's confidences -> the toolkit's scale, on which ``VISIBLE`` (0.5) means what the
    source's own threshold means: piecewise linear, ``[0, thr]`` -> ``[0, 0.5]`` and ``[thr, 1]``
    -> ``[0.5, 1]``, so the order of scores is kept. A threshold of 0 (a source without scores)
    makes every joint it gives (confidence > 0) fully seen. ``thresholds`` broadcasts against
    ``conf`` (per landmark: ``[33]``)."""
    c = np.clip(np.asarray(conf, np.float32), 0.0, 1.0)
    thr = np.broadcast_to(np.asarray(thresholds, np.float32), c.shape)
    safe = np.clip(thr, 1e-6, 1 - 1e-6)
    low = 0.5 * c / safe
    high = 0.5 + 0.5 * (c - safe) / (1 - safe)
    out = np.where(c < safe, low, high)
    return np.where(thr <= 0, (c > 0).astype(np.float32), out).astype(np.float32)


def from_seen_scale(conf: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """The inverse of ``to_seen_scale`` (a source without scores reads back as 1 where given)."""
    c = np.clip(np.asarray(conf, np.float32), 0.0, 1.0)
    thr = np.broadcast_to(np.asarray(thresholds, np.float32), c.shape)
    safe = np.clip(thr, 1e-6, 1 - 1e-6)
    out = np.where(c < 0.5, 2 * c * safe, safe + (c - 0.5) * 2 * (1 - safe))
    return np.where(thr <= 0, (c > 0).astype(np.float32), out).astype(np.float32)


class ParseError(RuntimeError):
    """A parse that cannot be done (missing sidecar or keypoint file, bad shapes)."""


@dataclass
class ParseResult:
    """Per-frame body parse of a clip.

    ``keypoints``: ``[T, 33, 3]`` float32, MediaPipe landmark order, x and y in pixels of the parsed
    frames (``image_size``), confidence in [0, 1] (0: not seen). ``region_masks``: optional
    ``[T, h, w]`` uint8 label maps covering the whole image at any resolution (0: none, ``1+i``:
    ``mask_regions[i]``). ``person_mask``: optional ``[T, h, w]`` uint8 0/1.
    """

    keypoints: np.ndarray
    image_size: tuple[int, int]  # (H, W) of the frames the coordinates refer to
    region_masks: np.ndarray | None = None
    mask_regions: tuple[str, ...] = MASK_REGIONS
    person_mask: np.ndarray | None = None
    fps: float | None = None  # sidecar frame rate (keypoints-only path)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kp = np.asarray(self.keypoints, dtype=np.float32)
        if kp.ndim != 3 or kp.shape[1:] != (NUM_LANDMARKS, 3):
            raise ParseError(f"keypoints must be [T, {NUM_LANDMARKS}, 3], got {kp.shape}")
        kp = np.where(np.isfinite(kp), kp, 0.0).astype(np.float32)
        kp[..., 2] = np.clip(kp[..., 2], 0.0, 1.0)
        self.keypoints = kp
        for name in ("region_masks", "person_mask"):
            m = getattr(self, name)
            if m is not None and (m.ndim != 3 or m.shape[0] != kp.shape[0]):
                raise ParseError(f"{name} must be [T={kp.shape[0]}, h, w], got {m.shape}")

    @property
    def num_frames(self) -> int:
        return int(self.keypoints.shape[0])

    def rescaled(self, size: tuple[int, int]) -> ParseResult:
        """The same parse with coordinates in pixels of an image of ``size`` (H, W)."""
        if tuple(size) == tuple(self.image_size):
            return self
        kp = self.keypoints.copy()
        kp[..., 0] *= size[1] / self.image_size[1]
        kp[..., 1] *= size[0] / self.image_size[0]
        return ParseResult(
            kp,
            (int(size[0]), int(size[1])),
            self.region_masks,
            self.mask_regions,
            self.person_mask,
            self.fps,
            dict(self.info),
        )

    def flipped(self) -> ParseResult:
        """The parse of the horizontally mirrored clip (left and right landmarks swapped)."""
        from microaction.skeleton import flip_keypoints

        kp = flip_keypoints(self.keypoints, self.image_size[1])
        rm = None if self.region_masks is None else np.ascontiguousarray(self.region_masks[:, :, ::-1])
        pm = None if self.person_mask is None else np.ascontiguousarray(self.person_mask[:, :, ::-1])
        return ParseResult(kp, self.image_size, rm, self.mask_regions, pm, self.fps, dict(self.info))

    def take(self, idx: np.ndarray) -> ParseResult:
        """The parse of a subset of frames (sampling applied to precomputed keypoints)."""
        return ParseResult(
            self.keypoints[idx],
            self.image_size,
            None if self.region_masks is None else self.region_masks[idx],
            self.mask_regions,
            None if self.person_mask is None else self.person_mask[idx],
            self.fps,
            dict(self.info),
        )


class Parser(ABC):
    """A body-parsing backend. ``needs_pixels`` False: works from files beside the video, so the
    runner does not decode the video when no encoder needs pixels either."""

    name: str = ""
    needs_pixels: bool = True

    @abstractmethod
    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        """``frames``: ``[T, H, W, 3]`` uint8 RGB (None on the keypoints-only path)."""

    def describe(self) -> dict[str, Any]:
        """Parameters recorded in the store manifest."""
        return {"name": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release backend resources."""

    @staticmethod
    def sidecar(video_path: str | os.PathLike[str], folder: str, suffix: str) -> Path:
        """``<root>/<folder>/<stem><suffix>`` for a video at ``<root>/videos/<stem>.<ext>``."""
        p = Path(video_path)
        root = p.parent.parent if p.parent.name == "videos" else p.parent
        return root / folder / (p.stem + suffix)


def interpolate_gaps(kp: np.ndarray, max_gap: int = 8, thr: float = VISIBLE) -> np.ndarray:
    """Fill runs of at most ``max_gap`` unseen frames between two seen frames of each landmark by
    linear interpolation (confidence: the lower of the two ends). Leading/trailing gaps stay."""
    kp = kp.copy()
    T = kp.shape[0]
    if T < 3 or max_gap <= 0:
        return kp
    seen = kp[..., 2] >= thr  # [T, K]
    for j in range(kp.shape[1]):
        s = np.flatnonzero(seen[:, j])
        if len(s) < 2:
            continue
        gaps = np.flatnonzero(np.diff(s) > 1)
        for g in gaps:
            a, b = s[g], s[g + 1]
            if b - a - 1 > max_gap:
                continue
            w = ((np.arange(a + 1, b) - a) / (b - a))[:, None]
            kp[a + 1 : b, j, :2] = (1 - w) * kp[a, j, :2] + w * kp[b, j, :2]
            kp[a + 1 : b, j, 2] = min(kp[a, j, 2], kp[b, j, 2])
    return kp


_DRAW_ORDER = ("body", "lower_limbs", "upper_limbs", "head")  # later segments win where they cross


def landmark_region_masks(
    keypoints: np.ndarray, person_mask: np.ndarray, image_size: tuple[int, int], thr: float = VISIBLE
) -> np.ndarray:
    """Split person masks ``[T, h, w]`` into the four mask regions: each person pixel takes the
    region of the nearest visible skeleton segment (``REGION_SEGMENTS``), found with a labelled
    distance transform. Returns label maps ``[T, h, w]`` uint8 (0: background, 1+i:
    ``MASK_REGIONS[i]``)."""
    import cv2

    T, h, w = person_mask.shape
    H, W = image_size
    scale = np.array([w / W, h / H], dtype=np.float32)
    out = np.zeros((T, h, w), dtype=np.uint8)
    canvas = np.zeros((h, w), dtype=np.uint8)
    for t in range(T):
        if not person_mask[t].any():
            continue
        kp = keypoints[t]
        canvas[:] = 0
        for r in _DRAW_ORDER:
            lab = MASK_REGIONS.index(r) + 1
            for i, j in REGION_SEGMENTS[r]:
                if kp[i, 2] >= thr and kp[j, 2] >= thr:
                    a = np.round(kp[i, :2] * scale).astype(int)
                    b = np.round(kp[j, :2] * scale).astype(int)
                    cv2.line(canvas, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), (lab,), 1)
        seeds = np.flatnonzero(canvas)
        if len(seeds) == 0:
            continue
        _, labels = cv2.distanceTransformWithLabels(
            (canvas == 0).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        lut = np.zeros(len(seeds) + 1, dtype=np.uint8)
        lut[1:] = canvas.reshape(-1)[seeds]
        out[t] = np.where(person_mask[t] > 0, lut[np.clip(labels, 0, len(seeds))], 0)
    return out
