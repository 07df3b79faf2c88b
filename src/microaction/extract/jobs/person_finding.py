"""Finding people: per-frame detections from pixels (MediaPipe) or from keypoint files.

Pixels (``PersonFinder``), offline with what mediapipe==0.10.21 ships: its pose model
(``model_complexity=1``, in the wheel) in static-image mode, which finds one person per image,
run

- on a square crop around each tracked person's predicted box (the tracker's, or an
  annotation's person box): one detection per person, each with its own landmarks and
  segmentation mask;
- every ``detect_every`` frames (and every frame while a tracked person is missing) on the whole
  frame, again and again until it finds no one more (at most ``max_people``): people entering
  the scene.

Each person found is painted over (``FILL``, through its segmentation mask) before the next
search, so two people close together or one partly behind the other are found one by one; a
detection whose box lies inside one already found (``SAME_PERSON`` of the smaller box) is the
same person again, or the one behind mixed with it, and is dropped. Each detection carries the
colour histogram of its torso (``appearance``) for the tracker.

Keypoint files (``load_people``): a folder of OpenPose JSON files (every entry of ``people[]``;
a ``person_id`` other than -1 is kept as the person's identity) or an npz whose ``keypoints`` are
``[M, T, 33, 3]`` (M person slots; all-zero slots are absent people).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microaction.extract.jobs.person_tracking import SAME_PERSON, PersonBox, box_iou, box_overlap, keypoint_box
from microaction.extract.parsers.base import VISIBLE, ParseError
from microaction.skeleton import LANDMARKS, NUM_LANDMARKS

__all__ = ["PersonFinder", "appearance", "load_people"]

FILL = (124, 116, 104)


def _square(box: np.ndarray, margin: float, H: int, W: int) -> tuple[int, int, int, int]:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1]) * (0.5 + margin)
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(W, int(np.ceil(cx + half))), min(H, int(np.ceil(cy + half)))
    return x0, y0, x1, y1


_TORSO = [LANDMARKS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


def appearance(img: np.ndarray, kp: np.ndarray) -> np.ndarray | None:
    """Hue-saturation histogram (8 × 4 bins, sums to 1) of the middle of the torso: between the
    shoulders and the hips, or below the shoulders when the hips are not seen."""
    import cv2

    ok = kp[_TORSO, 2] >= VISIBLE
    if not ok[:2].all():
        return None
    xy = kp[_TORSO, :2]
    sh = xy[:2]
    width = float(abs(sh[0, 0] - sh[1, 0]))
    top = float(sh[:, 1].mean())
    bottom = float(xy[2:, 1].mean()) if ok[2:].all() else top + 1.2 * width
    cx = float(sh[:, 0].mean()) if not ok[2:].all() else float(xy[:, 0].mean())
    H, W = img.shape[:2]
    x0, x1 = int(max(0, cx - 0.3 * width)), int(min(W, cx + 0.3 * width + 1))
    y0, y1 = int(max(0, top + 0.2 * (bottom - top))), int(min(H, top + 0.8 * (bottom - top) + 1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    hsv = cv2.cvtColor(np.ascontiguousarray(img[y0:y1, x0:x1]), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [8, 4], [0, 180, 0, 256]).reshape(-1).astype(np.float32)
    total = float(hist.sum())
    return hist / total if total > 0 else None


class PersonFinder:
    """Several people per frame with MediaPipe Pose (see the module docstring)."""

    def __init__(
        self,
        *,
        max_people: int = 6,
        detect_every: int = 10,
        crop_margin: float = 0.25,
        mask_side: int = 160,
        min_detection_confidence: float = 0.5,
        min_confidence: float = VISIBLE,
    ) -> None:
        from microaction.extract.parsers.mediapipe import _quiet

        _quiet()
        import mediapipe as mp

        self.max_people = int(max_people)
        self.detect_every = max(1, int(detect_every))
        self.crop_margin = float(crop_margin)
        self.mask_side = int(mask_side)
        self.min_confidence = float(min_confidence)  # visibility counted as seen (--min-confidence)
        self.pose = mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=True,
            min_detection_confidence=float(min_detection_confidence),
        )

    def close(self) -> None:
        self.pose.close()

    def mask_size(self, H: int, W: int) -> tuple[int, int]:
        s = min(1.0, self.mask_side / max(H, W))
        return max(1, round(H * s)), max(1, round(W * s))

    def _run(self, img: np.ndarray, region: tuple[int, int, int, int], full: tuple[int, int]) -> PersonBox | None:
        """Pose on ``img[region]``; landmarks back in frame pixels, the mask on the frame's mask grid."""
        import cv2

        x0, y0, x1, y1 = region
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        res = self.pose.process(np.ascontiguousarray(img[y0:y1, x0:x1]))
        if res.pose_landmarks is None:
            return None
        cw, ch = x1 - x0, y1 - y0
        lm = res.pose_landmarks.landmark
        kp = np.zeros((NUM_LANDMARKS, 3), np.float32)
        kp[:, 0] = [x0 + p.x * cw for p in lm]
        kp[:, 1] = [y0 + p.y * ch for p in lm]
        kp[:, 2] = [p.visibility for p in lm]
        inside = (kp[:, 0] >= x0 - 0.02 * cw) & (kp[:, 0] <= x1 + 0.02 * cw)
        inside &= (kp[:, 1] >= y0 - 0.02 * ch) & (kp[:, 1] <= y1 + 0.02 * ch)
        kp[~inside, 2] = np.minimum(kp[~inside, 2], 0.1)
        if self.min_confidence != VISIBLE:
            from microaction.extract.parsers.base import to_seen_scale

            kp[:, 2] = to_seen_scale(kp[:, 2], self.min_confidence)
        box = keypoint_box(kp)
        if box is None:
            return None
        H, W = full
        mh, mw = self.mask_size(H, W)
        mask = np.zeros((mh, mw), np.uint8)
        if res.segmentation_mask is not None:
            sx, sy = mw / W, mh / H
            mx0, my0 = round(x0 * sx), round(y0 * sy)
            mx1, my1 = max(mx0 + 1, round(x1 * sx)), max(my0 + 1, round(y1 * sy))
            small = cv2.resize(res.segmentation_mask, (mx1 - mx0, my1 - my0), interpolation=cv2.INTER_AREA)
            mask[my0:my1, mx0:mx1] = small > 0.5
        score = float(np.mean(kp[:, 2]))
        return PersonBox(kp, box, score, mask, appearance=appearance(img, kp))

    def _blank(self, work: np.ndarray, d: PersonBox) -> None:
        """Paint a found person over (its segmentation mask, slightly grown; its box without one),
        so that the next search sees the others, also where they overlap it."""
        import cv2

        H, W = work.shape[:2]
        if d.mask is not None and d.mask.any():
            m = cv2.resize(d.mask, (W, H), interpolation=cv2.INTER_NEAREST)
            k = max(1, round(0.01 * max(H, W)))
            work[cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0] = FILL
        else:
            x0, y0, x1, y1 = _square(d.box, 0.02, H, W)
            work[y0:y1, x0:x1] = FILL

    def detect(self, frame: np.ndarray, hints: list[np.ndarray], *, discover: bool) -> list[PersonBox]:
        """The people of one frame: the pose model on a crop around each hint box, then
        (``discover``) on the whole frame, each time with the people already found painted
        over, until no one more is found."""
        H, W = frame.shape[:2]
        work = frame.copy()
        dets: list[PersonBox] = []

        def add(d: PersonBox | None) -> bool:
            if d is None or any(box_overlap(d.box, k.box) > SAME_PERSON for k in dets):
                return False
            dets.append(d)
            self._blank(work, d)
            return True

        for box in hints:
            if len(dets) < self.max_people:
                add(self._run(work, _square(box, self.crop_margin, H, W), (H, W)))
        while discover and len(dets) < self.max_people:
            d = self._run(work, (0, 0, W, H), (H, W))
            if d is None:
                break
            # the pose model on the whole frame sees small people badly: redo on their crop
            again = self._run(work, _square(d.box, self.crop_margin, H, W), (H, W))
            if again is not None and box_iou(again.box[None], d.box[None])[0, 0] > 0.3:
                d = again
            if not add(d):
                break
        return dets


def _openpose_people(doc: dict, where: str, min_confidence: float | None) -> list[tuple[np.ndarray, int | None]]:
    from microaction.extract.parsers.keypoints import keypoints_to_mediapipe

    out = []
    for i, p in enumerate(doc.get("people") or []):
        body = np.asarray(p.get("pose_keypoints_2d") or [], dtype=np.float32).reshape(-1, 3)
        if len(body) not in (25, 18):
            raise ParseError(f"{where}: people[{i}].pose_keypoints_2d has {len(body)} joints; expected 25 or 18")
        parts = [body]
        extra = [p.get("face_keypoints_2d"), p.get("hand_left_keypoints_2d"), p.get("hand_right_keypoints_2d")]
        arrs = [np.asarray(e or [], dtype=np.float32).reshape(-1, 3) for e in extra]
        if [len(a) for a in arrs] == [70, 21, 21]:
            parts += arrs
        kp = keypoints_to_mediapipe(np.concatenate(parts)[None], source=where, min_confidence=min_confidence)[0]
        pid = p.get("person_id")
        if isinstance(pid, list):
            pid = pid[0] if pid else -1
        out.append((kp, None if pid is None or int(pid) < 0 else int(pid)))
    return out


def _dets(kps: list[tuple[np.ndarray, int | None]]) -> list[PersonBox]:
    out = []
    for kp, pid in kps:
        box = keypoint_box(kp)
        if box is not None:
            out.append(PersonBox(kp, box, float(kp[:, 2].mean()), None, pid))
    return out


def load_people(
    path: str | os.PathLike[str],
    *,
    min_confidence: float | None = None,
    layout: str | None = None,
    kinect: str = "project",
) -> tuple[list[list[PersonBox]], float | None, tuple[int, int] | None]:
    """Every person of every frame of a keypoint file/folder -> (detections per frame, fps, (H, W)).
    Confidences are read as the source means them (``keypoints.keypoints_to_mediapipe``; ``min_confidence``
    for all instead)."""
    p = Path(path)
    if p.is_dir():
        from microaction.extract.parsers.keypoint_files import openpose_docs

        return [_dets(_openpose_people(doc, str(f), min_confidence)) for f, doc in openpose_docs(p)], None, None
    if p.suffix == ".npz":
        from microaction.extract.parsers.base import to_seen_scale
        from microaction.extract.parsers.keypoints import read_keypoints_npz

        kp, fps, size = read_keypoints_npz(p)
        if kp.ndim == 3:
            kp = kp[None]
        if kp.ndim != 4 or kp.shape[2:] != (NUM_LANDMARKS, 3):
            raise ParseError(f"{p}: keypoints {kp.shape}, expected [M, T, 33, 3] or [T, 33, 3]")
        if min_confidence is not None:  # MediaPipe's 33: visibility, seen from 0.5 unless asked
            kp = kp.copy()
            kp[..., 2] = to_seen_scale(kp[..., 2], min_confidence)
        frames = [_dets([(kp[m, t], None) for m in range(kp.shape[0])]) for t in range(kp.shape[1])]
        return frames, fps, size
    if p.suffix == ".csv":  # one person per row: the single-person reader
        from microaction.extract.parsers.keypoints import load_keypoints

        kp1, fps, size = load_keypoints(p, layout=layout, kinect=kinect, min_confidence=min_confidence)
        return [_dets([(k, None)]) for k in kp1], fps, size
    raise ParseError(f"{p}: unknown keypoint file type (npz, csv or a folder of OpenPose JSON)")
