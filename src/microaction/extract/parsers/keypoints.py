"""Precomputed keypoints: users of existing pose data skip parsing.

Formats, found by the video's stem (see ``KeypointsParser.find``):

- ``<stem>.npz`` with ``keypoints`` ``[T, J, 3]`` (pixel x, y, confidence; MediaPipe's 33 or any
  layout below), optional ``fps`` (float) and ``size`` (``[H, W]``);
- ``<stem>/`` a folder of OpenPose JSON files, one per frame (``*_keypoints.json``, sorted by
  name), first person of each; ``pose_keypoints_2d`` BODY_25 or COCO-18, with
  ``face_keypoints_2d`` and ``hand_{left,right}_keypoints_2d`` used when present;
- ``<stem>.csv``, ``[<stem>/]<stem>_skeleton.csv`` one row per frame of ``J × (x, y, confidence)``
  numbers (an optional leading frame-number column and a header row are skipped), e.g. the
  MiGA/iMiGUE files (OpenPose-137: 411 columns); SMG's Kinect files (25 joints × 11 values:
  camera-space x, y, z, ...) are projected to pixels (``kinect_to_pixels``);
- one sample of a pose pickle, ``<file.pkl>#<name>`` (``pose_ref``; ``mar extract --videos
  POSES.pkl`` makes one job per annotation; see ``microaction.data.poses``).

Every layout is mapped onto the 33 MediaPipe landmarks by the tables of
``microaction.layouts`` (data: ``layouts.yaml``), found by the joint count or named
(``layout``); landmarks a layout lacks get confidence 0. Normalised coordinates are recognised or
declared (``coords``, ``to_pixels``); files without a frame rate take ``fps``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from microaction import layouts
from microaction.data.archives import load_npz
from microaction.extract.parsers.base import ParseError, Parser, ParseResult, interpolate_gaps
from microaction.layouts import Layout, LayoutError, detect_layout, get_layout, layout_names
from microaction.skeleton import LANDMARKS, NUM_LANDMARKS

__all__ = [
    "COORDS",
    "TO_MEDIAPIPE",
    "KeypointsParser",
    "is_keypoint_source",
    "load_keypoints",
    "pose_ref",
    "pose_set",
    "split_ref",
    "to_mediapipe",
]

# joint count -> {mediapipe landmark: joint index} of the layout found by that count (the tables
# themselves are data: ``microaction/layouts.yaml``)
TO_MEDIAPIPE: dict[int, dict[str, int]] = {
    get_layout(n).num_joints: {LANDMARKS[m]: j for m, j in get_layout(n).mediapipe}
    for n in layout_names()
    if get_layout(n).auto
}
COORDS = ("auto", "pixels", "unit", "centred")
_CANVAS = (1000, 1000)  # (H, W) normalised coordinates are drawn on when the file gives no size


def to_mediapipe(joints: np.ndarray, layout: str | Layout | None = None, *, source: str = "keypoints") -> np.ndarray:
    """``[T, J, 3]`` joints (x, y, confidence) of ``layout`` (default: found by ``J``) -> ``[T, 33, 3]``."""
    try:
        lay = (
            layout
            if isinstance(layout, Layout)
            else get_layout(layout)
            if layout
            else detect_layout(joints.shape[1], source)
        )
        return layouts.to_mediapipe(joints, lay)
    except LayoutError as e:
        raise ParseError(str(e)) from None


def to_pixels(
    kp: np.ndarray, coords: str, size: tuple[int, int] | None, *, source: str = "keypoints"
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """Keypoints ``[..., 3]`` in ``coords`` -> pixels of ``size`` (H, W) (a canvas when the file gives
    none). ``unit``: [0, 1] of the frame; ``centred``: [-1, 1] (MMN's normalisation after its own
    centring); ``auto``: ``centred`` or ``unit`` when every seen value lies in that range, else pixels."""
    if coords not in COORDS:
        raise ParseError(f"{source}: coordinates {coords!r}; choose from {', '.join(COORDS)}")
    seen = kp[..., 2] > 0
    if coords == "auto":
        coords = "pixels"
        if seen.any():
            xy = kp[..., :2][seen]
            lo, hi = float(xy.min()), float(xy.max())
            if lo >= -1.0001 and hi <= 1.0001:
                coords = "centred" if lo < 0 else "unit"
    if coords == "pixels":
        return kp, size
    H, W = size or _CANVAS
    out = kp.copy()
    if coords == "centred":
        out[..., 0] = (out[..., 0] + 1.0) * 0.5
        out[..., 1] = (out[..., 1] + 1.0) * 0.5
    out[..., 0] *= W - 1
    out[..., 1] *= H - 1
    out[~seen] = 0.0
    return out, (H, W)


def _openpose_frame(doc: dict[str, Any], source: Path) -> np.ndarray | None:
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


def _read_openpose_dir(d: Path) -> np.ndarray:
    """``[T, 33, 3]`` of a folder of OpenPose JSON files (one per frame, sorted by name); a frame
    without anyone is unseen. Frames are mapped in groups of one joint count."""
    joints = [_openpose_frame(doc, f) for f, doc in openpose_docs(d)]
    out = np.zeros((len(joints), NUM_LANDMARKS, 3), np.float32)
    for v in sorted({len(j) for j in joints if j is not None}):
        idx = [t for t, j in enumerate(joints) if j is not None and len(j) == v]
        out[idx] = to_mediapipe(np.stack([joints[t] for t in idx]), source=str(d))  # type: ignore[misc]
    return out


# Kinect v2 colour camera, nominal intrinsics (1920 x 1080): camera-space metres -> pixels
_KINECT = {"fx": 1081.37, "fy": 1081.37, "cx": 959.5, "cy": 539.5}
_KINECT_VALUES = 11  # SMG <Sample>_skeleton.csv: per joint x, y, z, orientation (4), 4 image coordinates


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


def _read_skeleton_csv(p: Path, layout: str | None, kinect: str) -> tuple[np.ndarray, tuple[int, int] | None]:
    from microaction.data.annotations import read_skeleton_csv
    from microaction.data.errors import AnnotationError

    try:
        width = _csv_width(p)
        if layout == "kinect25" or (layout is None and width in (25 * _KINECT_VALUES, 25 * _KINECT_VALUES + 1)):
            per = _KINECT_VALUES if width in (25 * _KINECT_VALUES, 25 * _KINECT_VALUES + 1) else 3
            raw = _numeric_csv(p, 25 * per).reshape(-1, 25, per)
            return to_mediapipe(kinect_to_pixels(raw[..., :3], kinect), "kinect25", source=str(p)), (1080, 1920)
        return to_mediapipe(read_skeleton_csv(p), layout, source=str(p)), None
    except AnnotationError as e:
        raise ParseError(str(e)) from None


def _numeric_csv(p: Path, width: int) -> np.ndarray:
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


def _csv_width(p: Path) -> int:
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


# ---------------------------------------------------------------------------------------------
# pose pickles: one store item per annotation; a job's "video" is "<file.pkl>#<sample name>"

_PICKLES = (".pkl", ".pickle")
_SETS: dict[tuple[str, int, int], Any] = {}


def pose_ref(pickle_path: str | os.PathLike[str], name: str) -> str:
    """The job path of one sample of a pose pickle."""
    return f"{pickle_path}#{name}"


def split_ref(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """(pickle file, sample name) of a ``pose_ref``, else None."""
    text = str(path)
    for ext in _PICKLES:
        i = text.find(ext + "#")
        if i >= 0:
            return Path(text[: i + len(ext)]), text[i + len(ext) + 1 :]
    return None


def pose_set(path: str | os.PathLike[str]) -> Any:
    """The pickle's PoseSet, loaded once per process (and again when the file changes)."""
    from microaction.data.errors import AnnotationError
    from microaction.data.poses import load_pose_set

    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key not in _SETS:
            _SETS.clear()
            _SETS[key] = load_pose_set(path)
        return _SETS[key]
    except (OSError, AnnotationError) as e:
        raise ParseError(str(e) if isinstance(e, AnnotationError) else f"{path}: cannot read ({e})") from None


def _read_pickle_sample(
    path: Path, name: str, layout: str | None, coords: str
) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    from microaction.data.errors import AnnotationError

    try:
        clip = pose_set(path).clip(name)
    except AnnotationError as e:
        raise ParseError(str(e)) from None
    where = f"{path}: sample {name!r}"
    joints = clip.joints()  # the main person, [T, V, 3]
    try:
        lay = get_layout(layout) if layout else detect_layout(joints.shape[1], where)
        kp = layouts.to_mediapipe(joints, lay, zero_is_missing=False)
    except LayoutError as e:
        raise ParseError(str(e)) from None
    kp, size = to_pixels(kp, coords, clip.img_shape, source=where)
    return kp, clip.fps, size


def read_keypoints_npz(p: Path) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    """``keypoints`` (any shape, float32), ``fps`` and ``size`` (H, W) of an npz (shapes are the caller's)."""
    try:  # bounded: an .npz is a zip, and may come from anywhere
        z = load_npz(p)
        kp = np.asarray(z["keypoints"], dtype=np.float32)
        fps = float(z["fps"]) if "fps" in z else None
        hw = [int(v) for v in z["size"]] if "size" in z else None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ParseError(f"{p}: unreadable keypoints npz ({e})") from None
    if hw is not None and len(hw) != 2:
        raise ParseError(f"{p}: size {hw} is not [H, W]")
    return kp, fps, ((hw[0], hw[1]) if hw is not None else None)


def load_keypoints(
    path: str | os.PathLike[str], *, layout: str | None = None, coords: str = "auto", kinect: str = "project"
) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    """Read one keypoint file / folder / pose-pickle sample -> (``[T, 33, 3]`` pixels, fps or None,
    (H, W) or None). ``layout`` names the joints' layout (default: found by the joint count);
    ``coords`` the coordinates (``to_pixels``); ``kinect`` how Kinect camera coordinates become
    pixels (``kinect_to_pixels``)."""
    ref = split_ref(path)
    if ref is not None:
        return _read_pickle_sample(ref[0], ref[1], layout, coords)
    p = Path(path)
    if p.is_dir():
        kp, size = to_pixels(_read_openpose_dir(p), coords, None, source=str(p))
        return kp, None, size
    if p.suffix == ".csv":
        kp, size = _read_skeleton_csv(p, layout, kinect)
        kp, size = to_pixels(kp, coords, size, source=str(p))
        return kp, None, size
    if p.suffix == ".npz":
        kp, fps, size = read_keypoints_npz(p)
        if kp.ndim != 3 or kp.shape[2] != 3:
            raise ParseError(f"{p}: keypoints {kp.shape}, expected [T, J, 3]")
        if kp.shape[1] != NUM_LANDMARKS or layout:
            kp = to_mediapipe(kp, layout, source=str(p))
        return kp, fps, size
    raise ParseError(f"{p}: unknown keypoint file type (npz, csv, a pose .pkl or a folder of OpenPose JSON)")


class KeypointsParser(Parser):
    """Keypoints read from files; coordinates are native video pixels (or normalised, see ``coords``).

    ``layout``: the files' joint layout (``microaction.layouts``; default: found by the
    joint count); ``coords``: ``auto`` / ``pixels`` / ``unit`` / ``centred``; ``fps``: the frame
    rate of files that do not carry one; ``kinect``: ``project`` or ``xy`` for Kinect files."""

    name = "keypoints"
    needs_pixels = False

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        max_gap: int = 8,
        layout: str | None = None,
        coords: str = "auto",
        fps: float | None = None,
        kinect: str = "project",
    ) -> None:
        self.root = Path(root) if root else None
        self.max_gap = int(max_gap)
        if layout:
            try:
                get_layout(layout)
            except LayoutError as e:
                raise ParseError(str(e)) from None
        if coords not in COORDS:
            raise ParseError(f"coordinates {coords!r}; choose from {', '.join(COORDS)}")
        if fps is not None and not float(fps) > 0:
            raise ParseError(f"keypoint frame rate must be positive, got {fps}")
        if kinect not in ("project", "xy"):
            raise ParseError(f"Kinect coordinates {kinect!r}: choose project or xy")
        self.layout, self.coords, self.kinect = layout or None, coords, kinect
        self.fps = float(fps) if fps is not None else None

    def find(self, video_path: str | os.PathLike[str]) -> Path:
        v = Path(video_path)
        stem = v.stem
        dirs = [self.root] if self.root else []
        dirs += [self.sidecar(v, "keypoints", "").parent, v.parent]
        for d in dirs:
            cands = (
                d / f"{stem}.npz",
                d / f"{stem}.csv",
                d / f"{stem}_skeleton.csv",
                d / stem / f"{stem}_skeleton.csv",
                d / stem,
            )
            for cand in cands:
                if cand.is_file() or (cand.is_dir() and any(cand.glob("*.json"))):
                    return cand
        raise ParseError(
            f"no keypoint file for {v} (looked for {stem}.npz, {stem}.csv, [{stem}/]{stem}_skeleton.csv, {stem}/*.json "
            f"in {[str(d) for d in dirs]})"
        )

    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        source = video_path if split_ref(video_path) is not None else self.find(video_path)
        kp, fps, size = load_keypoints(source, layout=self.layout, coords=self.coords, kinect=self.kinect)
        if frames is not None and len(frames) != len(kp):
            raise ParseError(f"{video_path}: {len(kp)} keypoint frames for {len(frames)} video frames")
        if size is None:
            size = _size_of(video_path, frames, kp)
        # landmarks the file never gives are the ones its layout lacks: regions count only the rest
        provided = kp[..., 2].max(axis=0) > 0 if len(kp) else np.zeros(NUM_LANDMARKS, bool)
        info = {"provided": provided}
        return ParseResult(interpolate_gaps(kp, self.max_gap), size, None, fps=fps or self.fps, info=info)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_gap": self.max_gap,
            "layout": self.layout,
            "coords": self.coords,
            "fps": self.fps,
            "kinect": self.kinect,
        }


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


def is_keypoint_source(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a keypoint file ``load_keypoints`` reads (``.npz``, ``.csv``) or a folder
    of OpenPose JSON, rather than a video."""
    p = Path(path)
    return p.suffix.lower() in (".npz", ".csv") if p.is_file() else (p.is_dir() and any(p.glob("*.json")))
