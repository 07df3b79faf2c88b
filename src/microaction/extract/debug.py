"""Debug images so a person can check the crops: ``DIR/<key>/<region>.png`` (the masked crop of
the middle frame, as the encoders see it, one per region and ``global``) and
``DIR/<key>/overview.png`` (the middle frame with the clip-stable boxes and the skeleton)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from microaction.extract.parsers.base import VISIBLE
from microaction.extract.pipeline import Extraction
from microaction.extract.regions import GLOBAL, crop_clips
from microaction.skeleton import BONES

__all__ = ["COLORS", "write_debug_crops"]

COLORS = [(230, 60, 60), (60, 200, 60), (60, 90, 230), (230, 200, 40), (200, 60, 200), (40, 200, 200), (255, 140, 0)]
CROP_SIZE = 160


def _save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OSError(f"{path}: cannot write image")


def write_debug_crops(directory: str | os.PathLike[str], key: str, ex: Extraction, size: int = CROP_SIZE) -> list[Path]:
    """Write the debug images of one extraction made with ``keep=True``; returns the paths."""
    if ex.frames is None or ex.parse is None or ex.layout is None:
        raise ValueError("debug crops need an extraction made with keep=True and decoded frames")
    out = Path(directory) / key
    t = len(ex.frames) // 2
    sub = ex.frames[t : t + 1]
    clips = crop_clips(sub, ex.parse.take(np.array([t])), ex.layout, size)
    paths = []
    for name in [*ex.layout.regions, GLOBAL]:
        p = out / f"{name}.png"
        _save(p, clips[name][0])
        paths.append(p)
    img = ex.frames[t].copy()
    kp = ex.parse.keypoints[t]
    for a, b in BONES:
        if kp[a, 2] >= VISIBLE and kp[b, 2] >= VISIBLE:
            cv2.line(img, tuple(int(v) for v in kp[a, :2]), tuple(int(v) for v in kp[b, :2]), (255, 255, 255), 2)
    names = [*ex.layout.regions, GLOBAL]
    th = max(1, img.shape[0] // 300)
    for i, (name, box) in enumerate(zip(names, ex.layout.boxes)):
        color = COLORS[i % len(COLORS)]
        valid = name == GLOBAL or bool(ex.layout.valid[i])
        x0, y0, x1, y1 = (round(v) for v in box)
        cv2.rectangle(img, (x0, y0), (x1, y1), color if valid else (128, 128, 128), th)
        cv2.putText(img, name if valid else f"{name} (invalid)", (max(0, x0) + 3, max(12, y0 + 14)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)  # fmt: skip
    p = out / "overview.png"
    _save(p, img)
    paths.append(p)
    return paths
