"""Precomputed keypoints: users of existing pose data skip parsing.

Formats, found by the video's stem (see ``KeypointsParser.find``):

- ``<stem>.npz`` with ``keypoints`` ``[T, 33, 3]`` (MediaPipe order, pixel x, y, confidence),
  optional ``fps`` (float) and ``size`` (``[H, W]``);
- ``<stem>/`` a folder of OpenPose JSON files, one per frame (``*_keypoints.json``, sorted by
  name), first person of each; ``pose_keypoints_2d`` BODY_25 or COCO-18, with
  ``face_keypoints_2d`` and ``hand_{left,right}_keypoints_2d`` used when present;
- ``<stem>.csv`` one row per frame of ``J × (x, y, confidence)`` numbers (an optional leading
  frame-number column and a header row are skipped). ``J`` = 137 is OpenPose's BODY_25 + face-70 +
  left hand-21 + right hand-21 concatenated (the MiGA/iMiGUE skeleton files: 411 columns); 25, 18,
  17 and 33 are BODY_25, COCO-18, COCO-17 and MediaPipe.

Every format is mapped onto the 33 MediaPipe landmarks (``TO_MEDIAPIPE`` tables: data, not code);
landmarks a format lacks get confidence 0.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from microaction.extract.parsers.base import ParseError, Parser, ParseResult, interpolate_gaps
from microaction.skeleton import LANDMARKS, NUM_LANDMARKS

__all__ = ["TO_MEDIAPIPE", "KeypointsParser", "load_keypoints", "to_mediapipe"]

# source layout -> {mediapipe landmark: source index}; hand and face indices are offsets into
# the concatenated array [body, face-70, left hand-21, right hand-21].
_BODY25 = {
    "nose": 0, "right_shoulder": 2, "right_elbow": 3, "right_wrist": 4, "left_shoulder": 5,
    "left_elbow": 6, "left_wrist": 7, "right_hip": 9, "right_knee": 10, "right_ankle": 11,
    "left_hip": 12, "left_knee": 13, "left_ankle": 14, "right_eye": 15, "left_eye": 16,
    "right_ear": 17, "left_ear": 18, "left_foot_index": 19, "left_heel": 21,
    "right_foot_index": 22, "right_heel": 24,
}  # fmt: skip
_COCO18 = {
    "nose": 0, "right_shoulder": 2, "right_elbow": 3, "right_wrist": 4, "left_shoulder": 5,
    "left_elbow": 6, "left_wrist": 7, "right_hip": 8, "right_knee": 9, "right_ankle": 10,
    "left_hip": 11, "left_knee": 12, "left_ankle": 13, "right_eye": 14, "left_eye": 15,
    "right_ear": 16, "left_ear": 17,
}  # fmt: skip
_COCO17 = {
    "nose": 0, "left_eye": 1, "right_eye": 2, "left_ear": 3, "right_ear": 4, "left_shoulder": 5,
    "right_shoulder": 6, "left_elbow": 7, "right_elbow": 8, "left_wrist": 9, "right_wrist": 10,
    "left_hip": 11, "right_hip": 12, "left_knee": 13, "right_knee": 14, "left_ankle": 15,
    "right_ankle": 16,
}  # fmt: skip
# face-70 (68 + pupils; the subject's right eye is 36-41) and hand-21 (0 wrist, 4 thumb tip,
# 5 index knuckle, 17 little-finger knuckle), as offsets after the body joints
_FACE = {
    "right_eye_outer": 36, "right_eye_inner": 39, "left_eye_inner": 42, "left_eye_outer": 45,
    "mouth_right": 48, "mouth_left": 54,
}  # fmt: skip
_HAND = {"thumb": 4, "index": 5, "pinky": 17}


def _whole(body: dict[str, int], nbody: int) -> dict[str, int]:
    out = dict(body)
    out.update({k: nbody + v for k, v in _FACE.items()})
    for side, off in (("left", nbody + 70), ("right", nbody + 91)):
        out.update({f"{side}_{k}": off + v for k, v in _HAND.items()})
    return out


TO_MEDIAPIPE: dict[int, dict[str, int]] = {
    137: _whole(_BODY25, 25),
    130: _whole(_COCO18, 18),
    25: _BODY25,
    18: _COCO18,
    17: _COCO17,
    33: {n: i for i, n in enumerate(LANDMARKS)},
}


def to_mediapipe(joints: np.ndarray) -> np.ndarray:
    """``[T, J, 3]`` in a known layout (``TO_MEDIAPIPE``) -> ``[T, 33, 3]``."""
    T, J, _ = joints.shape
    table = TO_MEDIAPIPE.get(J)
    if table is None:
        raise ParseError(f"keypoint layout with {J} joints is not known; known: {sorted(TO_MEDIAPIPE)}")
    out = np.zeros((T, NUM_LANDMARKS, 3), dtype=np.float32)
    for name, src in table.items():
        out[:, LANDMARKS.index(name)] = joints[:, src]
    # OpenPose writes (0, 0, 0) for a joint it did not find
    out[(out[..., 0] == 0) & (out[..., 1] == 0), 2] = 0.0
    return out


def _openpose_frame(doc: dict[str, Any]) -> np.ndarray | None:
    people = doc.get("people") or []
    if not people:
        return None
    p = people[0]
    body = np.asarray(p.get("pose_keypoints_2d") or [], dtype=np.float32).reshape(-1, 3)
    if len(body) not in (25, 18):
        raise ParseError(f"pose_keypoints_2d has {len(body)} joints; expected BODY_25 or COCO-18")
    face = np.asarray(p.get("face_keypoints_2d") or np.zeros(70 * 3), dtype=np.float32).reshape(-1, 3)
    lh = np.asarray(p.get("hand_left_keypoints_2d") or np.zeros(21 * 3), dtype=np.float32).reshape(-1, 3)
    rh = np.asarray(p.get("hand_right_keypoints_2d") or np.zeros(21 * 3), dtype=np.float32).reshape(-1, 3)
    if len(face) != 70 or len(lh) != 21 or len(rh) != 21:
        return to_mediapipe(body[None])[0]
    return to_mediapipe(np.concatenate([body, face, lh, rh])[None])[0]


def openpose_docs(d: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, parsed JSON) of every OpenPose frame file of a folder, in name order."""
    files = sorted(d.glob("*.json"))
    if not files:
        raise ParseError(f"{d}: no OpenPose JSON files")
    for f in files:
        try:
            yield f, json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ParseError(f"{f}: unreadable OpenPose JSON ({e})") from None


def _read_openpose_dir(d: Path) -> np.ndarray:
    frames = []
    for _, doc in openpose_docs(d):
        kp = _openpose_frame(doc)
        frames.append(np.zeros((NUM_LANDMARKS, 3), np.float32) if kp is None else kp)
    return np.stack(frames)


def _read_skeleton_csv(p: Path) -> np.ndarray:
    from microaction.data.annotations import AnnotationError, read_skeleton_csv

    try:
        return to_mediapipe(read_skeleton_csv(p))
    except AnnotationError as e:
        raise ParseError(str(e)) from None


def read_keypoints_npz(p: Path) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    """``keypoints`` (any shape, float32), ``fps`` and ``size`` of an npz (shapes are the caller's)."""
    try:
        with np.load(p, allow_pickle=False) as z:
            kp = np.asarray(z["keypoints"], dtype=np.float32)
            fps = float(z["fps"]) if "fps" in z.files else None
            size = tuple(int(v) for v in z["size"]) if "size" in z.files else None
    except (OSError, ValueError, KeyError) as e:
        raise ParseError(f"{p}: unreadable keypoints npz ({e})") from None
    return kp, fps, size  # type: ignore[return-value]


def load_keypoints(path: str | os.PathLike[str]) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    """Read one keypoint file/folder -> (``[T, 33, 3]``, fps or None, (H, W) or None)."""
    p = Path(path)
    if p.is_dir():
        return _read_openpose_dir(p), None, None
    if p.suffix == ".csv":
        return _read_skeleton_csv(p), None, None
    if p.suffix == ".npz":
        kp, fps, size = read_keypoints_npz(p)
        if kp.ndim != 3 or kp.shape[1:] != (NUM_LANDMARKS, 3):
            raise ParseError(f"{p}: keypoints {kp.shape}, expected [T, 33, 3]")
        return kp, fps, size  # type: ignore[return-value]
    raise ParseError(f"{p}: unknown keypoint file type (npz, csv or a folder of OpenPose JSON)")


class KeypointsParser(Parser):
    """Keypoints read from files; coordinates are native video pixels."""

    name = "keypoints"
    needs_pixels = False

    def __init__(self, root: str | os.PathLike[str] | None = None, max_gap: int = 8) -> None:
        self.root = Path(root) if root else None
        self.max_gap = int(max_gap)

    def find(self, video_path: str | os.PathLike[str]) -> Path:
        v = Path(video_path)
        stem = v.stem
        dirs = [self.root] if self.root else []
        dirs += [self.sidecar(v, "keypoints", "").parent, v.parent]
        for d in dirs:
            for cand in (d / f"{stem}.npz", d / f"{stem}.csv", d / stem):
                if cand.is_file() or (cand.is_dir() and any(cand.glob("*.json"))):
                    return cand
        raise ParseError(f"no keypoint file for {v} (looked for {stem}.npz, {stem}.csv, {stem}/*.json in {dirs})")

    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        kp, fps, size = load_keypoints(self.find(video_path))
        if frames is not None and len(frames) != len(kp):
            raise ParseError(f"{video_path}: {len(kp)} keypoint frames for {len(frames)} video frames")
        if size is None:
            size = _size_of(video_path, frames, kp)
        return ParseResult(interpolate_gaps(kp, self.max_gap), size, None, fps=fps)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "max_gap": self.max_gap}


def _size_of(video_path: str | os.PathLike[str], frames: np.ndarray | None, kp: np.ndarray) -> tuple[int, int]:
    """Native (H, W): from the container's metadata (no decoding), else the keypoints' extent."""
    from microaction.extract.video import VideoError, probe

    try:
        info = probe(video_path)
        return info.height, info.width
    except VideoError:
        pass
    seen = kp[..., 2] > 0
    if frames is not None:
        return int(frames.shape[1]), int(frames.shape[2])
    if not seen.any():
        return 1, 1
    return int(np.ceil(kp[..., 1][seen].max() + 1)), int(np.ceil(kp[..., 0][seen].max() + 1))
