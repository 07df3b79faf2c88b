"""Pose releases as annotation files and as keypoint sources.

Files read (always through the restricted unpickler of ``microaction.data.pickles``):

- MMAction2 / PySKL pose pickles: ``{"split": {name: [ids]}, "annotations": [...]}`` or a bare
  list of annotation dicts; per annotation ``frame_dir`` (or ``filename``), ``label``,
  ``img_shape``, ``total_frames``, ``keypoint`` ``[M, T, V, C]`` (C = 2, or 3 for 3-D poses),
  ``keypoint_score`` ``[M, T, V]`` (absent: 1), optional ``fps``;
- MMN's two pickles: ``{split}_label.pkl`` (a list of ``{file_name, label}``) and
  ``{split}_data.pkl`` (``{"annotations": [{frame_dir, keypoint, ...}]}``) joined on
  ``file_name == frame_dir``; either file names the pair;
- ST-GCN label pickles: a tuple ``(names, labels)`` (iMiGUE's ``0187_0`` = video 0187,
  instance 0), labels only.

Labels in all of them are the label set's ids (``POSE_PICKLE_ID_BASE``: 0-based): the ST-GCN
pipeline of the MiGA challenge writes iMiGUE's release numbers minus one (99 -> 31), PySKL and
MMN write MA-52's 0..51.

``read_pose_pickle`` gives one ``Sample`` per annotation (labels and splits);
``load_pose_set`` gives the keypoints, one ``PoseClip`` per annotation, every person kept
(``PoseClip.main_person`` picks the one a single-person store follows). An annotation whose
arrays have the wrong shape is refused naming it, when that clip is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.errors import AnnotationError
from microaction.data.samples import UNKNOWN, Sample, split_from_list_name
from microaction.taxonomy import Taxonomy

__all__ = ["POSE_PICKLE_ID_BASE", "PoseClip", "PoseSet", "load_pose_set", "pair_of", "read_pose_pickle"]

POSE_PICKLE_ID_BASE = 0  # labels of every pose pickle form: the label set's ids

_ID_KEYS = ("frame_dir", "filename", "file_name")


def _name_of(ann: Any, where: str) -> str:
    if not isinstance(ann, dict):
        raise AnnotationError(f"{where}: expected a dict with 'frame_dir' (or 'filename'), got {type(ann).__name__}")
    for k in _ID_KEYS:
        if k in ann and ann[k] is not None:
            name = str(ann[k])
            if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
                raise AnnotationError(f"{where}: bad sample name {name!r}")
            return name
    raise AnnotationError(f"{where}: expected a dict with 'frame_dir' (or 'filename' / 'file_name')")


def pair_of(path: Path) -> Path | None:
    """MMN's other pickle: ``train_label.pkl`` <-> ``train_data.pkl`` when it exists."""
    for a, b in (("_label", "_data"), ("_data", "_label")):
        if path.stem.endswith(a):
            other = path.with_name(path.stem[: -len(a)] + b + path.suffix)
            return other if other.is_file() else None
    return None


def _split_name(path: Path) -> str | None:
    split = split_from_list_name(path)
    if split is None and path.name.lower().startswith("valid_"):
        split = "val"
    return split


def _unpack(path: Path, data: Any) -> tuple[list[Any], dict[str, set[str]]]:
    """(annotation list, split sets) of a loaded pose pickle."""
    splits: dict[str, set[str]] = {}
    if isinstance(data, dict):
        if "annotations" not in data:
            raise AnnotationError(f"{path}: pose pickle dict lacks 'annotations' (has {sorted(map(str, data))[:8]})")
        split_ids = data.get("split") or {}
        if not isinstance(split_ids, dict):
            raise AnnotationError(f"{path}: 'split' must map split names to lists of ids")
        for k, v in split_ids.items():
            if not isinstance(v, list | tuple):
                raise AnnotationError(f"{path}: split {k!r} is not a list of ids")
            splits[str(k)] = {str(x) for x in v}
        annotations = data["annotations"]
    else:
        annotations = data
    if not isinstance(annotations, list | tuple):
        raise AnnotationError(f"{path}: annotations must be a list of dicts")
    return list(annotations), splits


def _stgcn_pairs(path: Path, data: Any) -> list[tuple[str, Any]] | None:
    """``(names, labels)`` of an ST-GCN label pickle, or None when ``data`` is not one."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        return None
    names, labels = data
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        return None
    try:
        labels = list(labels)
    except TypeError:
        raise AnnotationError(f"{path}: (names, labels) pickle: labels are not a list") from None
    if len(labels) != len(names):
        raise AnnotationError(f"{path}: (names, labels) pickle has {len(names)} names and {len(labels)} labels")
    return list(zip(names, labels))


def _label(value: Any, taxonomy: Taxonomy, where: str) -> int:
    if value is None:
        return UNKNOWN
    try:
        if isinstance(value, np.ndarray):
            if value.size != 1:
                raise ValueError(f"a label array of {value.size} values")
            value = value.reshape(-1)[0]
        v = int(value)
        if v != value:
            raise ValueError("not an integer")
    except (TypeError, ValueError, OverflowError) as e:
        raise AnnotationError(f"{where}: label {value!r}: {e}") from None
    if v == UNKNOWN:
        return UNKNOWN
    try:
        return taxonomy.label_id(v, source=where, base=POSE_PICKLE_ID_BASE)
    except ValueError as e:
        raise AnnotationError(str(e)) from None


def read_pose_pickle(path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None) -> list[Sample]:
    """Samples of a pose pickle (any form in the module doc), in the file's order.

    A pickle with a ``split`` dict gives each sample its split, and ``split`` keeps that one. A
    file without (a bare list, MMN's or ST-GCN's per-split files) is one split: ``split`` when
    given, else the one its name starts with (``train_label.pkl`` -> ``train``). MMN's data
    pickle reads its labels from the label pickle beside it.
    """
    from microaction.data.pickles import load_pose_pickle

    path = Path(path)
    if path.stem.endswith("_data") and (other := pair_of(path)) is not None:
        return read_pose_pickle(other, taxonomy, split=split)
    data = load_pose_pickle(path)
    pairs = _stgcn_pairs(path, data)
    splits: dict[str, set[str]] = {}
    if pairs is None:
        annotations, splits = _unpack(path, data)
        pairs = []
        for i, ann in enumerate(annotations):
            where = f"{path}: annotations[{i}]"
            pairs.append((_name_of(ann, where), ann.get("label")))
    if splits and split is not None and split not in splits:
        raise AnnotationError(f"{path}: no split {split!r} (has {sorted(splits)})")
    whole = None if splits else (split or _split_name(path))
    out: list[Sample] = []
    seen: dict[str, int] = {}
    for i, (video, lab) in enumerate(pairs):
        where = f"{path}: entry {i} ({video!r})"
        if video in seen:
            raise AnnotationError(f"{where}: sample listed twice (first as entry {seen[video]})")
        seen[video] = i
        member = next((k for k, ids in splits.items() if video in ids), None) if splits else whole
        if splits and split is not None and member != split:
            continue
        out.append(Sample(video, _label(lab, taxonomy, where), split=member))
    return out


# ---------------------------------------------------------------------------------------------
# keypoints


@dataclass
class PoseClip:
    """One annotation's poses: every person kept."""

    name: str
    keypoint: np.ndarray  # [M, T, V, C] float32, C = 2 (x, y) or 3 (x, y, z)
    score: np.ndarray  # [M, T, V] float32
    img_shape: tuple[int, int] | None  # (H, W) of the frames the coordinates refer to
    fps: float | None
    label: Any = None

    @property
    def num_persons(self) -> int:
        return int(self.keypoint.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.keypoint.shape[1])

    def joints(self, person: int | None = None) -> np.ndarray:
        """``[T, V, 3]`` (x, y, score) of one person (default: the main one)."""
        m = self.main_person() if person is None else int(person)
        return np.concatenate([self.keypoint[m, ..., :2], self.score[m, ..., None]], -1).astype(np.float32)

    def main_person(self) -> int:
        """The person a single-person store follows: the largest total of confidence times body
        size over the clip (a bystander is smaller, less confident or present for less time)."""
        if self.num_persons == 1:
            return 0
        seen = self.score > 0
        xy = self.keypoint[..., :2]
        big, small = np.where(seen[..., None], xy, -np.inf), np.where(seen[..., None], xy, np.inf)
        with np.errstate(invalid="ignore"):
            ext = np.nan_to_num(big.max(axis=2) - small.min(axis=2), posinf=0.0, neginf=0.0)  # [M, T, 2]
        size = np.sqrt(np.maximum(ext[..., 0], 0.0) * np.maximum(ext[..., 1], 0.0))  # [M, T]
        conf = np.where(seen, self.score, 0.0).mean(axis=2)  # [M, T]
        return int(np.argmax((conf * size).sum(axis=1)))


def _shape(v: Any) -> tuple[int, ...] | None:
    return tuple(v.shape) if isinstance(v, np.ndarray) else None


def _clip(source: Path, ann: dict[str, Any], name: str) -> PoseClip:
    where = f"{source}: sample {name!r}"
    kp = ann.get("keypoint")
    if not isinstance(kp, np.ndarray):
        raise AnnotationError(f"{where}: no 'keypoint' array (has {sorted(map(str, ann))[:10]})")
    given = kp.shape
    if kp.ndim == 3:  # a single person stored without its M axis
        kp = kp[None]
    if kp.ndim != 4 or kp.shape[-1] not in (2, 3) or min(kp.shape) == 0:
        raise AnnotationError(f"{where}: keypoint has shape {given}; expected [M, T, V, 2] (or 3 for 3-D)")
    if not np.issubdtype(kp.dtype, np.number):
        raise AnnotationError(f"{where}: keypoint has dtype {kp.dtype}; expected numbers")
    sc = ann.get("keypoint_score")
    if sc is None:
        score = np.ones(kp.shape[:3], np.float32)
    elif isinstance(sc, np.ndarray) and np.issubdtype(sc.dtype, np.number):
        score = sc[None] if sc.ndim == 2 else sc
        if score.shape != kp.shape[:3]:
            raise AnnotationError(
                f"{where}: keypoint_score {_shape(sc)} does not match keypoint {kp.shape} ([M, T, V])"
            )
    else:
        raise AnnotationError(f"{where}: keypoint_score must be a numeric [M, T, V] array")
    total = ann.get("total_frames")
    if total is not None and isinstance(total, int | np.integer) and int(total) != kp.shape[1]:
        raise AnnotationError(f"{where}: total_frames {int(total)} but keypoint has {kp.shape[1]} frames")
    img = ann.get("img_shape") or ann.get("original_shape")
    shape: tuple[int, int] | None = None
    if img is not None:
        try:
            h, w = (int(x) for x in tuple(img)[:2])
        except (TypeError, ValueError):
            raise AnnotationError(f"{where}: img_shape {img!r} is not (H, W)") from None
        if h <= 0 or w <= 0:
            raise AnnotationError(f"{where}: img_shape {img!r} is not positive")
        shape = (h, w)
    fps = ann.get("fps")
    try:
        fps = float(fps) if fps is not None else None
    except (TypeError, ValueError):
        raise AnnotationError(f"{where}: fps {fps!r} is not a number") from None
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise AnnotationError(f"{where}: fps {fps!r} must be positive")
    kp32 = np.nan_to_num(kp.astype(np.float32, copy=False))
    score32 = np.clip(np.nan_to_num(score.astype(np.float32, copy=False)), 0.0, 1.0)
    return PoseClip(name, kp32, score32, shape, fps, ann.get("label"))


@dataclass
class PoseSet:
    """The annotations of a pose pickle by name; clips are checked when taken."""

    source: Path
    entries: dict[str, dict[str, Any]]
    order: list[str]  # names to extract (MMN: the label file's)

    def clip(self, name: str) -> PoseClip:
        ann = self.entries.get(name)
        if ann is None:
            raise AnnotationError(f"{self.source}: no sample {name!r}")
        return _clip(self.source, ann, name)


def load_pose_set(path: str | os.PathLike[str]) -> PoseSet:
    """The keypoints of a pose pickle (MMN: either file of the pair)."""
    from microaction.data.pickles import load_pose_pickle

    path = Path(path)
    data = load_pose_pickle(path)
    if _stgcn_pairs(path, data) is not None:
        raise AnnotationError(f"{path}: a (names, labels) label pickle holds no keypoints")
    annotations, _ = _unpack(path, data)
    order = [_name_of(a, f"{path}: annotations[{i}]") for i, a in enumerate(annotations)]
    has_keypoints = any(isinstance(a, dict) and "keypoint" in a for a in annotations)
    other = pair_of(path)
    if not has_keypoints and other is None:
        raise AnnotationError(f"{path}: no annotation holds a 'keypoint' array (a label file without its _data.pkl?)")
    if has_keypoints:
        entries = dict(zip(order, annotations))
        source = path
    else:  # MMN label pickle: keypoints from the data pickle, in the label file's order
        assert other is not None
        data_anns, _ = _unpack(other, load_pose_pickle(other))
        entries = {_name_of(a, f"{other}: annotations[{i}]"): a for i, a in enumerate(data_anns)}
        missing = [n for n in order if n not in entries]
        if missing:
            raise AnnotationError(f"{path}: {len(missing)} samples have no keypoints in {other}, e.g. {missing[:3]}")
        source = other
    if len(set(order)) != len(order):
        dup = next(n for n in order if order.count(n) > 1)
        raise AnnotationError(f"{path}: sample {dup!r} listed twice")
    return PoseSet(source, entries, order)
