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
(``layout``); landmarks a layout lacks get confidence 0. Confidences are read as the layout's
source means them (``Layout.thresholds``, or one ``min_confidence`` for all) and mapped onto the
toolkit's scale (``to_seen_scale``: the source's threshold becomes ``VISIBLE``). Normalised
coordinates are recognised or declared (``coords``, ``to_pixels``); files without a frame rate
take ``fps``, files without a frame size ``frame_size`` (else the video's, else a guess from the
points' extent, recorded as such).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microaction import layouts
from microaction.data.archives import load_npz
from microaction.extract.parsers.base import ParseError, Parser, ParseResult, interpolate_gaps, to_seen_scale
from microaction.layouts import Layout, LayoutError, detect_layout, get_layout, layout_names
from microaction.skeleton import LANDMARKS, NUM_LANDMARKS

__all__ = [
    "COORDS",
    "TO_MEDIAPIPE",
    "KeypointFile",
    "KeypointsParser",
    "guess_size",
    "is_keypoint_source",
    "load_keypoints",
    "parse_frame_size",
    "pose_ref",
    "pose_set",
    "read_keypoints",
    "source_layout",
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


@dataclass
class KeypointFile:
    """One keypoint source read: ``keypoints`` ``[T, 33, 3]`` (pixels, confidence on the toolkit's
    scale), its ``fps`` and ``size`` (H, W) when the file gives them, the source's seen-threshold
    per landmark (``thresholds`` ``[33]``) and the landmarks its layout has (``provided``)."""

    keypoints: np.ndarray
    fps: float | None
    size: tuple[int, int] | None
    thresholds: np.ndarray
    provided: np.ndarray
    layout: str


def _find_layout(joints: np.ndarray, layout: str | Layout | None, source: str) -> Layout:
    try:
        if isinstance(layout, Layout):
            return layout
        return get_layout(layout) if layout else detect_layout(joints.shape[-2], source)
    except LayoutError as e:
        raise ParseError(str(e)) from None


def _mapped(
    joints: np.ndarray, lay: Layout, min_confidence: float | None, *, zero_is_missing: bool = True
) -> np.ndarray:
    """``[..., V, 3]`` joints of ``lay`` -> ``[..., 33, 3]``, confidence on the toolkit's scale."""
    try:
        kp = layouts.to_mediapipe(joints, lay, zero_is_missing=zero_is_missing)
    except LayoutError as e:
        raise ParseError(str(e)) from None
    kp[..., 2] = to_seen_scale(kp[..., 2], lay.thresholds if min_confidence is None else min_confidence)
    return kp


def to_mediapipe(
    joints: np.ndarray,
    layout: str | Layout | None = None,
    *,
    source: str = "keypoints",
    min_confidence: float | None = None,
) -> np.ndarray:
    """``[T, J, 3]`` joints (x, y, confidence) of ``layout`` (default: found by ``J``) -> ``[T, 33, 3]``,
    confidence on the toolkit's scale (the layout's thresholds, or ``min_confidence`` for all)."""
    return _mapped(joints, _find_layout(joints, layout, source), min_confidence)


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


def _read_openpose_dir(d: Path, min_confidence: float | None) -> tuple[np.ndarray, Layout | None]:
    """``[T, 33, 3]`` of a folder of OpenPose JSON files (one per frame, sorted by name), and the
    layout of most frames; a frame without anyone is unseen. Frames are mapped in groups of one
    joint count."""
    joints = [_openpose_frame(doc, f) for f, doc in openpose_docs(d)]
    out = np.zeros((len(joints), NUM_LANDMARKS, 3), np.float32)
    counts = Counter(len(j) for j in joints if j is not None)
    lays: dict[int, Layout] = {}
    for v in sorted(counts):
        idx = [t for t, j in enumerate(joints) if j is not None and len(j) == v]
        lays[v] = _find_layout(np.zeros((v, 3)), None, str(d))
        out[idx] = _mapped(np.stack([joints[t] for t in idx]), lays[v], min_confidence)  # type: ignore[misc]
    return out, (lays[counts.most_common(1)[0][0]] if counts else None)


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


def _read_skeleton_csv(
    p: Path, layout: str | None, kinect: str, min_confidence: float | None
) -> tuple[np.ndarray, tuple[int, int] | None, Layout]:
    from microaction.data.annotations import read_skeleton_csv
    from microaction.data.errors import AnnotationError

    try:
        width = _csv_width(p)
        if layout == "kinect25" or (layout is None and width in (25 * _KINECT_VALUES, 25 * _KINECT_VALUES + 1)):
            per = _KINECT_VALUES if width in (25 * _KINECT_VALUES, 25 * _KINECT_VALUES + 1) else 3
            raw = _numeric_csv(p, 25 * per).reshape(-1, 25, per)
            lay = get_layout("kinect25")
            return _mapped(kinect_to_pixels(raw[..., :3], kinect), lay, min_confidence), (1080, 1920), lay
        joints = read_skeleton_csv(p)
        lay = _find_layout(joints, layout, str(p))
        return _mapped(joints, lay, min_confidence), None, lay
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
    path: Path, name: str, layout: str | None, coords: str, min_confidence: float | None, frame: tuple[int, int] | None
) -> KeypointFile:
    from microaction.data.errors import AnnotationError

    try:
        clip = pose_set(path).clip(name)
    except AnnotationError as e:
        raise ParseError(str(e)) from None
    where = f"{path}: sample {name!r}"
    joints = clip.joints()  # the main person, [T, V, 3]
    lay = _find_layout(joints, layout, where)
    kp = _mapped(joints, lay, min_confidence, zero_is_missing=False)
    kp, size = to_pixels(kp, coords, clip.img_shape or frame, source=where)
    return KeypointFile(kp, clip.fps, clip.img_shape or size, _thresholds(lay, min_confidence), lay.provided, lay.name)


def _thresholds(lay: Layout | None, min_confidence: float | None) -> np.ndarray:
    base = lay.thresholds if lay is not None else np.full(NUM_LANDMARKS, 0.5, np.float32)
    return base if min_confidence is None else np.full(NUM_LANDMARKS, min_confidence, np.float32)


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


def read_keypoints(
    path: str | os.PathLike[str],
    *,
    layout: str | None = None,
    coords: str = "auto",
    kinect: str = "project",
    min_confidence: float | None = None,
    frame_size: tuple[int, int] | None = None,
) -> KeypointFile:
    """Read one keypoint file / folder / pose-pickle sample (``KeypointFile``). ``layout`` names
    the joints' layout (default: found by the joint count); ``coords`` the coordinates
    (``to_pixels``; normalised ones are drawn on the file's size, else ``frame_size`` (H, W));
    ``kinect`` how Kinect camera coordinates become pixels (``kinect_to_pixels``);
    ``min_confidence`` replaces the layout's seen-thresholds."""
    ref = split_ref(path)
    if ref is not None:
        return _read_pickle_sample(ref[0], ref[1], layout, coords, min_confidence, frame_size)
    p = Path(path)
    lay: Layout | None
    if p.is_dir():
        kp, lay = _read_openpose_dir(p, min_confidence)
        kp, size = to_pixels(kp, coords, frame_size, source=str(p))
        return KeypointFile(kp, None, None if size == frame_size else size, _thresholds(lay, min_confidence),
                            _provided(lay), lay.name if lay else "")  # fmt: skip
    if p.suffix == ".csv":
        kp, size, lay = _read_skeleton_csv(p, layout, kinect, min_confidence)
        kp, size2 = to_pixels(kp, coords, size or frame_size, source=str(p))
        return KeypointFile(kp, None, size or (None if size2 == frame_size else size2),
                            _thresholds(lay, min_confidence), lay.provided, lay.name)  # fmt: skip
    if p.suffix == ".npz":
        raw, fps, size = read_keypoints_npz(p)
        if raw.ndim != 3 or raw.shape[2] != 3:
            raise ParseError(f"{p}: keypoints {raw.shape}, expected [T, J, 3]")
        lay = _find_layout(raw, layout or ("mediapipe33" if raw.shape[1] == NUM_LANDMARKS else None), str(p))
        # MediaPipe's own landmarks keep their zeros at (0, 0) as seen (a corner is a place)
        kp = _mapped(raw, lay, min_confidence, zero_is_missing=lay.name != "mediapipe33")
        kp, size2 = to_pixels(kp, coords, size or frame_size, source=str(p))
        return KeypointFile(kp, fps, size or (None if size2 == frame_size else size2),
                            _thresholds(lay, min_confidence), lay.provided, lay.name)  # fmt: skip
    raise ParseError(f"{p}: unknown keypoint file type (npz, csv, a pose .pkl or a folder of OpenPose JSON)")


def _provided(lay: Layout | None) -> np.ndarray:
    return lay.provided if lay is not None else np.zeros(NUM_LANDMARKS, bool)


def load_keypoints(
    path: str | os.PathLike[str],
    *,
    layout: str | None = None,
    coords: str = "auto",
    kinect: str = "project",
    min_confidence: float | None = None,
) -> tuple[np.ndarray, float | None, tuple[int, int] | None]:
    """``read_keypoints`` as (``[T, 33, 3]`` pixels, fps or None, (H, W) or None)."""
    f = read_keypoints(path, layout=layout, coords=coords, kinect=kinect, min_confidence=min_confidence)
    return f.keypoints, f.fps, f.size


def source_layout(path: str | os.PathLike[str], layout: str | None = None) -> Layout:
    """The layout of a keypoint file without reading it whole: the named one, or the one found by
    the first frame's joint count (the first OpenPose frame with someone in it, a CSV's first
    line); MediaPipe's 33 for npz files."""
    if layout:
        return _find_layout(np.zeros((1, 3)), layout, str(path))
    p = Path(path)
    count = NUM_LANDMARKS
    if p.is_dir():
        for f, doc in openpose_docs(p):
            joints = _openpose_frame(doc, f)
            if joints is not None:
                count = len(joints)
                break
    elif p.suffix == ".csv":
        width = _csv_width(p)
        if width in (25 * _KINECT_VALUES, 25 * _KINECT_VALUES + 1):
            return get_layout("kinect25")
        count = width // 3
    return _find_layout(np.zeros((count, 3)), None, str(p))


def parse_frame_size(text: str | None) -> tuple[int, int] | None:
    """``"WxH"`` (``--frame-size``) -> (H, W); None passes."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ParseError(f"frame size {text!r}: expected WxH in pixels, e.g. 1280x720") from None
    if w <= 0 or h <= 0:
        raise ParseError(f"frame size {text!r}: width and height must be positive")
    return h, w


def guess_size(kp: np.ndarray) -> tuple[int, int]:
    """(H, W) that holds every given point of ``[..., 33, 3]`` (a guess: the points' extent is
    not the frame; said so wherever it is used)."""
    seen = kp[..., 2] > 0
    if not seen.any():
        return 1, 1
    return int(np.ceil(kp[..., 1][seen].max() + 1)), int(np.ceil(kp[..., 0][seen].max() + 1))


class KeypointsParser(Parser):
    """Keypoints read from files; coordinates are native video pixels (or normalised, see ``coords``).

    ``layout``: the files' joint layout (``microaction.layouts``; default: found by the
    joint count); ``coords``: ``auto`` / ``pixels`` / ``unit`` / ``centred``; ``fps``: the frame
    rate of files that do not carry one; ``kinect``: ``project`` or ``xy`` for Kinect files;
    ``min_confidence``: the score at which a joint counts as seen, for every source (default,
    ``confidence="source"``: what each layout declares); ``frame_size``: ``"WxH"`` of the frames the points are in, for files
    that do not say (default: the video's, else a guess from the points' extent, one per file,
    recorded in the item's ``size_from``)."""

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
        min_confidence: float | None = None,
        frame_size: str | None = None,
        confidence: str = "source",
    ) -> None:
        self.root = Path(root) if root else None
        if confidence != "source":
            raise ParseError(
                f"keypoint confidence {confidence!r}: 'source' (each layout's threshold) is the one reading"
            )
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
        if min_confidence is not None and not 0 <= float(min_confidence) < 1:
            raise ParseError(f"minimum keypoint confidence must be in [0, 1), got {min_confidence}")
        self.layout, self.coords, self.kinect = layout or None, coords, kinect
        self.fps = float(fps) if fps is not None else None
        self.min_confidence = float(min_confidence) if min_confidence is not None else None
        self.frame_size = frame_size
        self.frame = parse_frame_size(frame_size)  # (H, W)
        self._guessed: dict[str, tuple[int, int]] = {}  # one guessed size per keypoint source

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

    def read(self, video_path: str | os.PathLike[str]) -> KeypointFile:
        """The keypoint source of ``video_path`` read with this parser's options."""
        source = video_path if split_ref(video_path) is not None else self.find(video_path)
        return read_keypoints(source, layout=self.layout, coords=self.coords, kinect=self.kinect,
                              min_confidence=self.min_confidence, frame_size=self.frame)  # fmt: skip

    def frame_of(
        self, video_path: str | os.PathLike[str], file_size: tuple[int, int] | None, kp: np.ndarray
    ) -> tuple[tuple[int, int], str]:
        """(H, W) of the frames a keypoint source's points are in, and where it came from: the
        file, ``--frame-size``, the video's metadata, or a guess from the points' extent (one per
        source: every job on one file gets the same)."""
        if file_size is not None:
            return file_size, "file"
        if self.frame is not None:
            return self.frame, "--frame-size"
        from microaction.extract.video import VideoError, probe

        try:
            info = probe(video_path)
            return (info.height, info.width), "video"
        except VideoError:
            pass
        ref = split_ref(video_path)
        key = str(video_path) if ref is not None else str(self.find(video_path))
        if key not in self._guessed:
            self._guessed[key] = guess_size(kp)
        return self._guessed[key], "guessed"

    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        got = self.read(video_path)
        kp = got.keypoints
        if frames is not None and len(frames) != len(kp):
            raise ParseError(f"{video_path}: {len(kp)} keypoint frames for {len(frames)} video frames")
        if frames is not None and got.size is None:
            size, size_from = (int(frames.shape[1]), int(frames.shape[2])), "video"
        else:
            size, size_from = self.frame_of(video_path, got.size, kp)
        # a region counts only the landmarks the source gives: those of the layout's blocks that
        # the file gives at all (a 137-point file written without its face or hands gives neither)
        given = kp[..., 2].max(axis=0) > 0 if len(kp) else np.zeros(NUM_LANDMARKS, bool)
        provided = get_layout(got.layout).provided_by(given) if got.layout else given
        info = {"provided": provided, "thresholds": got.thresholds, "layout": got.layout, "size_from": size_from}
        return ParseResult(interpolate_gaps(kp, self.max_gap), size, None, fps=got.fps or self.fps, info=info)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_gap": self.max_gap,
            "layout": self.layout,
            "coords": self.coords,
            "fps": self.fps,
            "kinect": self.kinect,
            "min_confidence": self.min_confidence,
            "frame_size": self.frame_size,
        }


def is_keypoint_source(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a keypoint file ``load_keypoints`` reads (``.npz``, ``.csv``) or a folder
    of OpenPose JSON, rather than a video."""
    p = Path(path)
    return p.suffix.lower() in (".npz", ".csv") if p.is_file() else (p.is_dir() and any(p.glob("*.json")))
