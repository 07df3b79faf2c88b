"""Keypoint files read as their formats write them, before any layout mapping: OpenPose's JSON
frames (``openpose_docs``, ``openpose_frame``), CSVs of numbers per frame (``numeric_csv``,
``csv_width``) and Kinect camera space (``kinect_to_pixels``). ``keypoints`` maps what these give
onto the MediaPipe 33."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from microaction.extract.parsers.base import ParseError

__all__ = ["KINECT_VALUES", "csv_width", "kinect_to_pixels", "numeric_csv", "openpose_docs", "openpose_frame"]


def openpose_frame(doc: dict[str, Any], source: Path) -> np.ndarray | None:
    """The first person's joints ``[V, 3]`` (body, then face-70 and the hands when all are there)."""
    people = doc.get("people") or []
    if not people:
        return None
    p = people[0]
    body = np.asarray(p.get("pose_keypoints_2d") or [], dtype=np.float32).reshape(-1, 3)
    if len(body) not in (25, 18):
        raise ParseError(f"{source}: pose_keypoints_2d has {len(body)} joints; expected BODY_25 or COCO-18")
    extra = [p.get(k) for k in ("face_keypoints_2d", "hand_left_keypoints_2d", "hand_right_keypoints_2d")]
    if not all(extra):
        return body
    whole = np.asarray(p["pose_keypoints_2d"] + extra[0] + extra[1] + extra[2], dtype=np.float32).reshape(-1, 3)
    return whole if len(whole) == len(body) + 70 + 42 else body


def openpose_docs(d: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, parsed JSON object) of every OpenPose frame file of a folder, in name order."""
    try:
        names = sorted(e.name for e in os.scandir(d) if e.name.endswith(".json"))
    except OSError as e:
        raise ParseError(f"{d}: cannot list ({e})") from None
    if not names:
        raise ParseError(f"{d}: no OpenPose JSON files")
    for name in names:
        f = d / name
        try:
            doc = json.loads(f.read_bytes())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ParseError(f"{f}: unreadable OpenPose JSON ({e})") from None
        if not isinstance(doc, dict):
            raise ParseError(f"{f}: not an OpenPose JSON object")
        yield f, doc


# Kinect v2 colour camera, nominal intrinsics (1920 x 1080): camera-space metres -> pixels
_KINECT = {"fx": 1081.37, "fy": 1081.37, "cx": 959.5, "cy": 539.5}
KINECT_VALUES = 11  # SMG <Sample>_skeleton.csv: per joint x, y, z, orientation (4), 4 image coordinates


def kinect_to_pixels(xyz: np.ndarray, mode: str = "project") -> np.ndarray:
    """``[T, 25, 3]`` Kinect camera-space metres -> ``[T, 25, 3]`` (x, y pixels, confidence).

    ``project``: perspective projection with the colour camera's nominal intrinsics (a
    1920 x 1080 frame); ``xy``: the camera's x and y (millimetres, y down, about the frame
    centre) without perspective. A joint with z <= 0 (not tracked) is unseen."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    seen = z > 0
    out = np.zeros((*xyz.shape[:-1], 3), np.float32)
    if mode == "project":
        zz = np.where(seen, z, 1.0)
        out[..., 0] = _KINECT["cx"] + _KINECT["fx"] * x / zz
        out[..., 1] = _KINECT["cy"] - _KINECT["fy"] * y / zz
    elif mode == "xy":
        out[..., 0] = _KINECT["cx"] + 1000.0 * x
        out[..., 1] = _KINECT["cy"] - 1000.0 * y
    else:
        raise ParseError(f"Kinect coordinates {mode!r}: choose project or xy")
    out[..., 2] = seen
    out[~seen] = 0.0
    return out


def numeric_csv(p: Path, width: int) -> np.ndarray:
    """``[T, width]`` float32 of a CSV of ``width`` numbers per line (or ``width + 1`` with a
    leading frame number); a header line is skipped."""
    from microaction.data.errors import AnnotationError

    rows: list[np.ndarray] = []
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise AnnotationError(f"{p}: cannot read ({e})") from None
    for no, line in enumerate(text.split("\n"), start=1):
        cells = line.strip().split(",")
        if not line.strip():
            continue
        try:
            row = np.asarray(cells, dtype=np.float64)
        except ValueError:
            if not rows:
                continue  # header
            raise AnnotationError(f"{p}:{no}: not {width} numbers") from None
        if len(row) == width + 1:
            row = row[1:]
        if len(row) != width or not np.isfinite(row).all():
            raise AnnotationError(f"{p}:{no}: {len(row)} values, expected {width} finite numbers")
        rows.append(row)
    if not rows:
        raise AnnotationError(f"{p}: no skeleton frames")
    return np.asarray(rows, dtype=np.float32)


def csv_width(p: Path) -> int:
    """Values on the first line of a CSV that starts with a number (0 when unreadable)."""
    try:
        with open(p, encoding="utf-8-sig") as f:
            for line in f:
                cells = line.strip().split(",")
                if cells and cells[0].strip():
                    try:
                        float(cells[0])
                    except ValueError:
                        continue  # a header
                    return len(cells)
    except (OSError, UnicodeDecodeError):
        return 0
    return 0
