"""MediaPipe Pose backend (default, offline, CPU): mediapipe==0.10.21 ``mp.solutions.pose`` with
``model_complexity=1`` (the model ships in the wheel), tracking mode (one tracker per clip) and its
person segmentation mask. The four region masks are derived from the landmarks and the person
mask (``landmark_region_masks``)."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

import cv2
import numpy as np

from microaction.extract.parsers.base import (
    VISIBLE,
    Parser,
    ParseResult,
    interpolate_gaps,
    landmark_region_masks,
    to_seen_scale,
)
from microaction.skeleton import NUM_LANDMARKS

__all__ = ["MediaPipeParser", "MediaPipeSession"]


def _quiet() -> None:
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class MediaPipeSession:
    """Parse a clip frame by frame (lets the caller decode the next frame meanwhile)."""

    def __init__(self, parser: MediaPipeParser) -> None:
        import mediapipe as mp

        from microaction.extract.native_logs import quiet_native_logs

        # the graph's routine absl / TFLite log lines are dropped until result() (MAR_VERBOSE=1 shows them)
        self._quiet: AbstractContextManager[None] | None = quiet_native_logs()
        self._quiet.__enter__()
        self.p = parser
        self.pose = mp.solutions.pose.Pose(
            static_image_mode=False,
            model_complexity=parser.model_complexity,
            smooth_landmarks=True,
            enable_segmentation=True,
            smooth_segmentation=True,
            min_detection_confidence=parser.min_detection_confidence,
            min_tracking_confidence=parser.min_tracking_confidence,
        )
        self.kps: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.size: tuple[int, int] | None = None

    def add(self, frame: np.ndarray) -> None:
        kp, mask = self.step(frame)
        self.kps.append(kp)
        self.masks.append(mask)

    def step(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Parse one frame (tracking from the previous ones) -> raw landmarks ``[33, 3]`` and person
        mask ``[h, w]``, kept by the caller (a streamed recording keeps only a window of them)."""
        H, W = frame.shape[:2]
        self.size = (H, W)
        mh, mw = self.p.mask_size(H, W)
        res = self.pose.process(np.ascontiguousarray(frame))
        kp = np.zeros((NUM_LANDMARKS, 3), dtype=np.float32)
        mask = np.zeros((mh, mw), dtype=np.uint8)
        if res.pose_landmarks is not None:
            lm = res.pose_landmarks.landmark
            kp[:, 0] = [p.x * W for p in lm]
            kp[:, 1] = [p.y * H for p in lm]
            kp[:, 2] = [p.visibility for p in lm]
            # a landmark placed outside the image is not seen, whatever its visibility score
            out = (kp[:, 0] < -0.02 * W) | (kp[:, 0] > 1.02 * W) | (kp[:, 1] < -0.02 * H) | (kp[:, 1] > 1.02 * H)
            kp[out, 2] = np.minimum(kp[out, 2], 0.1)
            if self.p.min_confidence != VISIBLE:  # the visibility read at another cut
                kp[:, 2] = to_seen_scale(kp[:, 2], self.p.min_confidence)
            if res.segmentation_mask is not None:
                small = cv2.resize(res.segmentation_mask, (mw, mh), interpolation=cv2.INTER_AREA)
                mask = (small > 0.5).astype(np.uint8)
        return kp, mask

    def close(self) -> None:
        """Release the graph and the log filter (``result`` does it; safe to call twice)."""
        quiet, self._quiet = self._quiet, None
        if quiet is None:
            return
        try:
            pose = getattr(self, "pose", None)  # None: the graph failed to build
            if pose is not None:
                pose.close()
        finally:
            quiet.__exit__(None, None, None)

    def __del__(self) -> None:  # a session dropped by an error before result()
        if getattr(self, "_quiet", None) is not None:
            self.close()

    def result(self) -> ParseResult:
        self.close()
        if self.size is None:
            raise ValueError("no frames were parsed")
        return self.p.finish(self.kps, self.masks, self.size)


class MediaPipeParser(Parser):
    name = "mediapipe"
    needs_pixels = True

    def __init__(
        self,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        mask_side: int = 160,
        max_gap: int = 8,
        min_confidence: float = VISIBLE,
    ) -> None:
        _quiet()
        import mediapipe  # noqa: F401 - fail early with a clear import error

        self.model_complexity = int(model_complexity)
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_tracking_confidence = float(min_tracking_confidence)
        self.mask_side = int(mask_side)
        self.max_gap = int(max_gap)
        # landmark visibility is a probability: seen from 0.5 on unless asked otherwise
        if not 0 <= float(min_confidence) < 1:
            raise ValueError(f"minimum landmark visibility must be in [0, 1), got {min_confidence}")
        self.min_confidence = float(min_confidence)

    def mask_size(self, H: int, W: int) -> tuple[int, int]:
        s = min(1.0, self.mask_side / max(H, W))
        return max(1, round(H * s)), max(1, round(W * s))

    def session(self) -> MediaPipeSession:
        return MediaPipeSession(self)

    def finish(self, kps: list[np.ndarray], masks: list[np.ndarray], size: tuple[int, int]) -> ParseResult:
        """A clip's ``ParseResult`` from its frames' ``MediaPipeSession.step`` results: short
        gaps filled, region masks derived."""
        kp = interpolate_gaps(np.stack(kps), self.max_gap)
        person = np.stack(masks)
        info = {"thresholds": np.full(NUM_LANDMARKS, self.min_confidence, np.float32)}
        return ParseResult(kp, size, landmark_region_masks(kp, person, size), person_mask=person, info=info)

    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        if frames is None:
            raise ValueError("the mediapipe parser needs decoded frames")
        s = self.session()
        for f in frames:
            s.add(f)
        return s.result()

    def describe(self) -> dict[str, Any]:
        import mediapipe

        return {
            "name": self.name,
            "version": mediapipe.__version__,
            "model_complexity": self.model_complexity,
            "min_detection_confidence": self.min_detection_confidence,
            "min_tracking_confidence": self.min_tracking_confidence,
            "mask_side": self.mask_side,
            "max_gap": self.max_gap,
            "min_confidence": self.min_confidence,
        }
