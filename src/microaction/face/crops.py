"""Aligned face crops from videos, GIFs and images with MediaPipe (offline: the detector and mesh
models ship inside the ``mediapipe`` 0.10.21 wheel; nothing is downloaded).

Per frame: the MediaPipe face detector (BlazeFace; ``model="full"`` is the full-range model for
small / distant faces, ``"short"`` the short-range one, ``"auto"`` tries full then short) gives a
box and six keypoints; the two eye keypoints define the eye line. The crop is a similarity
transform (``cv2.warpAffine``, replicated border) that

* rotates the frame about the box centre so the eye line is horizontal (``angle`` = eye-line
  angle in degrees, image coordinates, y down),
* scales a square of side ``scale · max(box width, box height)`` to ``size`` × ``size`` pixels,
* centres it on the box centre.

``refine=True`` then runs the face mesh (468 landmarks) on that crop and, when it finds the face,
re-aligns on the mesh's eye centres (mean of the eye-corner landmarks 33/133 and 362/263), which
are steadier than the detector's keypoints. In a video, a frame without a detection reuses the
previous one for up to ``hold`` frames (``detected`` False, ``valid`` True); after that the
frame is ``valid`` False and its crop is zeros.

``crop_faces_from_file(path)`` → ``FaceTrack``; ``texture_targets(track.crops[track.valid])``
(``microaction.models.texture``) turns the crops into texture-MAE targets.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = ["FaceBox", "FaceCropper", "FaceTrack", "crop_faces_from_file", "iter_media_frames", "save_crops"]

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
# face-mesh eye corners (subject's right eye: 33 outer, 133 inner; left eye: 362 inner, 263 outer)
_MESH_RIGHT_EYE = (33, 133)
_MESH_LEFT_EYE = (362, 263)


@dataclass
class FaceBox:
    box: np.ndarray  # [4] xyxy, pixels
    right_eye: np.ndarray  # [2] xy, pixels (the subject's right eye: on the image's left for a frontal face)
    left_eye: np.ndarray  # [2] xy, pixels
    score: float


@dataclass
class FaceTrack:
    """Crops and geometry per frame of one clip."""

    crops: np.ndarray  # [T, S, S, 3] uint8 RGB (zeros where not valid)
    valid: np.ndarray  # [T] bool: a crop exists (detected, or held from a recent detection)
    detected: np.ndarray  # [T] bool: the detector found a face in this frame
    boxes: np.ndarray  # [T, 4] xyxy pixels in the source frame (nan where not valid)
    eyes: np.ndarray  # [T, 2, 2] (right eye, left eye) xy pixels in the source frame
    angles: np.ndarray  # [T] eye-line angle removed by the alignment, degrees
    transforms: np.ndarray  # [T, 2, 3] source -> crop affine matrices
    scores: np.ndarray  # [T] detector confidence (0 where not detected)
    frame_indices: np.ndarray  # [T] index of each frame in the source
    frame_size: tuple[int, int]  # (width, height) of the source frames


def iter_media_frames(path: str | Path, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``(index, RGB uint8 [H, W, 3])`` for every ``stride``-th frame of a video, GIF or image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    stride = max(1, int(stride))
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES or suffix == ".gif":
        from PIL import Image, ImageSequence

        with Image.open(path) as im:
            for i, frame in enumerate(ImageSequence.Iterator(im)):
                if i % stride == 0:
                    yield i, np.asarray(frame.convert("RGB"))
        return
    import av

    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:  # type: ignore[attr-defined]
        raise ValueError(f"{path}: cannot open video ({e})") from None
    with container:
        for i, video_frame in enumerate(container.decode(video=0)):
            if i % stride == 0:
                yield i, video_frame.to_ndarray(format="rgb24")


class FaceCropper:
    """MediaPipe face detection (+ optional mesh refinement) → aligned square crops."""

    def __init__(
        self,
        *,
        size: int = 112,
        scale: float = 1.5,
        model: Literal["auto", "full", "short"] = "auto",
        min_confidence: float = 0.5,
        refine: bool = False,
        hold: int = 5,
    ) -> None:
        if model not in ("auto", "full", "short"):
            raise ValueError(f"unknown face detector model {model!r} (known: auto, full, short)")
        import mediapipe as mp

        self.size, self.scale, self.refine, self.hold = int(size), float(scale), refine, int(hold)
        fd = mp.solutions.face_detection
        selections = {"auto": (1, 0), "full": (1,), "short": (0,)}[model]
        self._detectors = [
            fd.FaceDetection(model_selection=s, min_detection_confidence=min_confidence) for s in selections
        ]
        self._mesh = None
        if refine:
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False, min_detection_confidence=0.3
            )

    def close(self) -> None:
        for d in self._detectors:
            d.close()
        if self._mesh is not None:
            self._mesh.close()

    def __enter__(self) -> FaceCropper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def detect(self, rgb: np.ndarray) -> FaceBox | None:
        """The most confident face in an RGB uint8 frame, or None."""
        h, w = rgb.shape[:2]
        frame = np.ascontiguousarray(rgb)
        for det in self._detectors:
            result = det.process(frame)
            if not result.detections:
                continue
            best = max(result.detections, key=lambda d: d.score[0])
            loc = best.location_data
            bb = loc.relative_bounding_box
            box = np.array([bb.xmin * w, bb.ymin * h, (bb.xmin + bb.width) * w, (bb.ymin + bb.height) * h])
            kp = loc.relative_keypoints  # right eye, left eye, nose tip, mouth, right ear, left ear
            right = np.array([kp[0].x * w, kp[0].y * h])
            left = np.array([kp[1].x * w, kp[1].y * h])
            return FaceBox(box, right, left, float(best.score[0]))
        return None

    def transform(self, box: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray) -> tuple[np.ndarray, float]:
        """Source → crop affine ``[2, 3]`` and the eye-line angle (degrees) it removes."""
        import cv2

        dx, dy = left_eye - right_eye
        angle = math.degrees(math.atan2(dy, dx))
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = self.scale * max(box[2] - box[0], box[3] - box[1], 1.0)
        m = np.asarray(cv2.getRotationMatrix2D((float(cx), float(cy)), angle, self.size / side), dtype=np.float64)
        m[:, 2] += np.array([self.size / 2 - cx, self.size / 2 - cy])
        return m, angle

    def _warp(self, rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.warpAffine(rgb, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _refine_eyes(self, rgb: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        if self._mesh is None:
            return None
        crop = self._warp(rgb, m)
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([[lm[i].x * self.size, lm[i].y * self.size] for i in (*_MESH_RIGHT_EYE, *_MESH_LEFT_EYE)])
        inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
        src = pts @ inv[:, :2].T + inv[:, 2]
        return src[:2].mean(0), src[2:].mean(0)

    def crop(self, rgb: np.ndarray, det: FaceBox) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """Aligned crop, affine matrix, angle and the (possibly refined) eyes ``[2, 2]``."""
        right, left = det.right_eye, det.left_eye
        m, angle = self.transform(det.box, right, left)
        refined = self._refine_eyes(rgb, m)
        if refined is not None:
            right, left = refined
            m, angle = self.transform(det.box, right, left)
        return self._warp(rgb, m), m, angle, np.stack([right, left])

    def track(self, frames: Iterable[tuple[int, np.ndarray]]) -> FaceTrack:
        """Crops for a sequence of ``(index, RGB frame)``."""
        rows: list[dict[str, Any]] = []
        last: FaceBox | None = None
        since = 0
        frame_size = (0, 0)
        for index, rgb in frames:
            frame_size = (int(rgb.shape[1]), int(rgb.shape[0]))
            det = self.detect(rgb)
            detected = det is not None
            if det is None and last is not None and since < self.hold:
                det, since = last, since + 1
            elif det is not None:
                last, since = det, 0
            if det is None:
                rows.append({"index": index, "valid": False, "detected": False})
                continue
            crop, m, angle, eyes = self.crop(rgb, det)
            rows.append(
                {
                    "index": index,
                    "valid": True,
                    "detected": detected,
                    "crop": crop,
                    "m": m,
                    "angle": angle,
                    "eyes": eyes,
                    "box": det.box,
                    "score": det.score if detected else 0.0,
                }
            )
        t, s = len(rows), self.size
        nan2 = np.full((2, 2), np.nan)
        return FaceTrack(
            crops=np.stack([r.get("crop", np.zeros((s, s, 3), np.uint8)) for r in rows])
            if rows
            else np.zeros((0, s, s, 3), np.uint8),
            valid=np.array([r["valid"] for r in rows], dtype=bool),
            detected=np.array([r["detected"] for r in rows], dtype=bool),
            boxes=np.array([r.get("box", np.full(4, np.nan)) for r in rows]).reshape(t, 4),
            eyes=np.array([r.get("eyes", nan2) for r in rows]).reshape(t, 2, 2),
            angles=np.array([r.get("angle", np.nan) for r in rows], dtype=np.float64),
            transforms=np.array([r.get("m", np.full((2, 3), np.nan)) for r in rows]).reshape(t, 2, 3),
            scores=np.array([r.get("score", 0.0) for r in rows], dtype=np.float64),
            frame_indices=np.array([r["index"] for r in rows], dtype=np.int64),
            frame_size=frame_size,
        )


def crop_faces_from_file(
    path: str | Path,
    *,
    size: int = 112,
    stride: int = 1,
    scale: float = 1.5,
    model: Literal["auto", "full", "short"] = "auto",
    refine: bool = False,
    hold: int = 5,
) -> FaceTrack:
    """Aligned face crops of every ``stride``-th frame of a video, GIF or image file."""
    with FaceCropper(size=size, scale=scale, model=model, refine=refine, hold=hold) as cropper:
        return cropper.track(iter_media_frames(path, stride))


def save_crops(track: FaceTrack, out: str | Path) -> None:
    """``out/crop_<frame>.png`` for valid frames and ``out/faces.json`` with the geometry."""
    from PIL import Image

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, index in enumerate(track.frame_indices.tolist()):
        entry: dict[str, Any] = {"frame": index, "valid": bool(track.valid[i]), "detected": bool(track.detected[i])}
        if track.valid[i]:
            name = f"crop_{index:05d}.png"
            Image.fromarray(track.crops[i]).save(out / name)
            entry.update(
                crop=name,
                box=[round(float(v), 2) for v in track.boxes[i]],
                eyes=[[round(float(v), 2) for v in e] for e in track.eyes[i]],
                angle=round(float(track.angles[i]), 3),
                score=round(float(track.scores[i]), 4),
            )
        frames.append(entry)
    meta = {"frame_size": list(track.frame_size), "crop_size": int(track.crops.shape[1]), "frames": frames}
    (out / "faces.json").write_text(json.dumps(meta, indent=1) + "\n")
