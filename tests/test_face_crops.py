"""Aligned face crops with MediaPipe on the real iMiGUE GIFs and MA-52 clips in ../shared."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from microaction.face.crops import FaceCropper, crop_faces_from_file, iter_media_frames, save_crops
from microaction.models.texture import texture_targets

pytest.importorskip("mediapipe")


def test_imigue_gif_face_found_and_aligned(shared: Path, tmp_path: Path) -> None:
    track = crop_faces_from_file(shared / "imigue" / "demo_clips" / "scratching-neck.gif", size=96, stride=12)
    assert track.crops.shape[1:] == (96, 96, 3) and track.detected.any()
    i = int(np.flatnonzero(track.detected)[0])
    assert track.frame_size == (600, 338)
    # the alignment maps the two eyes onto one horizontal line inside the crop
    m = track.transforms[i]
    eyes = track.eyes[i] @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6
    assert 0 < eyes[0, 0] < eyes[1, 0] < 96  # subject's right eye on the crop's left
    assert abs(track.angles[i]) < 30
    # crops feed the texture targets directly
    bits = texture_targets(track.crops[track.valid], "ldp")
    assert bits.shape[1:] == (8, 96, 96)
    save_crops(track, tmp_path / "out")
    assert (tmp_path / "out" / "faces.json").is_file() and any((tmp_path / "out").glob("crop_*.png"))


def test_ma52_clip_face_found(shared: Path) -> None:
    frames = iter_media_frames(shared / "ma52" / "demo_clips" / "B1_nodding.mp4", stride=20)
    with FaceCropper(size=64, model="full") as cropper:
        track = cropper.track(frames)
    assert track.frame_size == (1080, 1296) and track.detected.all()
    box = track.boxes[0]
    # a seated person filmed whole: the face is small and in the upper half of the frame
    assert box[2] - box[0] < 300 and (box[1] + box[3]) / 2 < 1296 / 2


def test_rotation_removed_on_a_rotated_frame(shared: Path) -> None:
    import cv2

    _, frame = next(iter_media_frames(shared / "imigue" / "demo_clips" / "folding-arms.gif"))
    h, w = frame.shape[:2]
    with FaceCropper(size=96) as cropper:
        det = cropper.detect(frame)
        assert det is not None
        rot = cv2.warpAffine(frame, cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0), (w, h))
        det_rot = cropper.detect(rot)
    assert det_rot is not None
    a0 = math.degrees(math.atan2(*(det.left_eye - det.right_eye)[::-1]))
    a1 = math.degrees(math.atan2(*(det_rot.left_eye - det_rot.right_eye)[::-1]))
    # rotating the image by +15° (counter-clockwise) tilts the eye line by about -15°
    assert abs((a1 - a0) + 15) < 6
