"""The synthetic generator's sidecars: exact keypoints and region masks, no parsing.

A dataset dir holds ``manifest.csv`` (video,label,body,split), ``keypoints/<stem>.npz``
(``keypoints`` float32 ``[T, 33, 3]`` pixel x, y, confidence; ``fps`` float; ``size`` int ``[2]``
= H, W) and, when rendered, ``videos/<stem>.mp4`` and ``masks/<stem>.npz`` (``masks`` uint8
``[T, H, W]``: 0 background, 1+i for region i of ("head", "body", "upper_limbs", "lower_limbs")).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from microaction.data.archives import load_npz
from microaction.extract.parsers.base import ParseError, Parser, ParseResult
from microaction.extract.parsers.keypoints import load_keypoints
from microaction.skeleton import MASK_REGIONS

__all__ = ["GroundTruthParser"]


class GroundTruthParser(Parser):
    name = "groundtruth"
    needs_pixels = False

    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        kp_path = self.sidecar(video_path, "keypoints", ".npz")
        if not kp_path.is_file():
            raise ParseError(f"no ground-truth keypoints for {video_path} (expected {kp_path})")
        kp, fps, size = load_keypoints(kp_path)
        if size is None:
            raise ParseError(f"{kp_path}: lacks 'size' ([H, W])")
        masks = None
        m_path = self.sidecar(video_path, "masks", ".npz")
        if m_path.is_file():
            try:
                masks = np.asarray(load_npz(m_path)["masks"], dtype=np.uint8)
            except (OSError, ValueError, KeyError) as e:
                raise ParseError(f"{m_path}: unreadable masks ({e})") from None
            if masks.shape[0] != len(kp):
                raise ParseError(f"{m_path}: {masks.shape[0]} mask frames for {len(kp)} keypoint frames")
            if int(masks.max(initial=0)) > len(MASK_REGIONS):
                raise ParseError(f"{m_path}: mask labels above {len(MASK_REGIONS)}")
        if frames is not None and len(frames) != len(kp):
            raise ParseError(f"{video_path}: {len(kp)} sidecar frames for {len(frames)} video frames")
        person = None if masks is None else (masks > 0).astype(np.uint8)
        return ParseResult(kp, size, masks, MASK_REGIONS, person, fps=fps)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}
