"""Annotation readers: one ``Sample`` per clip, whatever the dataset's own format.

Formats (documented for users in ``docs/data_formats.md``):

- the generic CSV manifest (``video,label[,body][,split][,start,end]``), the format for users' own
  data and the one the synthetic generator writes (``read_manifest_csv``);
- MA-52 list files (``"<file> <label>"`` per line, CRLF) and ``label_name.txt``
  (``read_ma52_list``, ``read_label_names``), and the video folder layouts
  (``videos_{train,val,test}/`` or flat; ``resolve_video``);
- iMiGUE / MiGA ``<VID>_label.csv`` (``classID,startFrame,endFrame``), skeleton CSVs, and the
  cross-subject split as a data file (``read_imigue_labels``, ``read_skeleton_csv``,
  ``load_split``);
- pose pickles from MMAction2 / PySKL, only through the restricted unpickler of
  ``microaction.data.readers.pickles``;

and ``read_annotations`` picks the reader from the file. Every error is an ``AnnotationError``
(a ``ValueError``) naming the file and, where there is one, the line.

Why a file name is never model input: a sample's ``video`` is only an identifier (to find the
file and to key the feature store). MA-52's train/val names are ``PPPP_BB_NNNN.mp4`` where
``BB`` *is* the body-level label, and its test names ``testNNNN.mp4`` tell the split; a model,
a sampler or a feature that read them would learn the label from the name and score well on the
benchmark while recognising nothing in the video. So no reader derives anything from a name
except (documented) whether the MA-52 list in hand holds hidden test labels, which only decides
that those labels are unknown -- never a label.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from microaction.data.errors import AnnotationError
from microaction.data.readers.person_boxes import PERSON_COLUMNS, add_sample, check_person_columns, person_fields
from microaction.data.readers.samples import UNKNOWN, Sample, csv_rows, split_from_list_name
from microaction.data.readers.samples import int_field as _int_field
from microaction.data.readers.samples import read_text as _read_text
from microaction.taxonomy import Taxonomy, TaxonomyError, check_names

__all__ = [
    "IMIGUE_LABEL_ID_BASE",
    "MA52_LIST_ID_BASE",
    "MANIFEST_ID_BASE",
    "UNKNOWN",
    "AnnotationError",
    "Sample",
    "SplitPlan",
    "check_label_names",
    "load_split",
    "read_annotations",
    "read_imigue_dir",
    "read_imigue_labels",
    "read_label_names",
    "read_ma52_list",
    "read_manifest_csv",
    "read_skeleton_csv",
    "resolve_video",
    "resolve_videos",
    "split_from_list_name",
]

_SPLITS = Path(__file__).resolve().parents[1]  # data/: the split plans shipped with the package

_MANIFEST_COLUMNS = ("video", "label", "body", "split", "start", "end", *PERSON_COLUMNS)

# The id base of each reader's class numbers: a fact of its format (sources in
# docs/data_formats.md). 0: the label set's own ids; 1: the release numbers classes from 1.
MANIFEST_ID_BASE = 0
MA52_LIST_ID_BASE = 0  # MA-52 lists: 0..51, the ids of its label_name.txt
IMIGUE_LABEL_ID_BASE = 1  # iMiGUE <VID>_label.csv: 1..31 and 99 ("illustrative"), as the instance CSV


def read_manifest_csv(path: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None) -> list[Sample]:
    """Read a generic manifest CSV (header required; ``video`` and ``label`` columns required).

    ``label`` is a class id of the label set (``MANIFEST_ID_BASE``: 0-based) or a class name; an
    empty label or ``-1`` marks an unknown label.
    Multi-label taxonomies take ids separated by ``;``. Rows whose ``split`` differs from
    ``split`` (when given) are skipped.
    """
    path = Path(path)
    header, rows = csv_rows(_read_text(path), path, "empty file (expected a header with video,label)")
    cols = [h.strip().lower() for h in header]
    for need in ("video", "label"):
        if need not in cols:
            raise AnnotationError(f"{path}:1: header lacks the {need!r} column (has {cols})")
    unknown = [c for c in cols if c not in _MANIFEST_COLUMNS]
    if unknown:
        raise AnnotationError(f"{path}:1: unknown columns {unknown}; allowed: {list(_MANIFEST_COLUMNS)}")
    if ("start" in cols) != ("end" in cols):
        raise AnnotationError(f"{path}:1: 'start' and 'end' go together")
    try:
        check_person_columns(cols, f"{path}:1")
    except ValueError as e:
        raise AnnotationError(str(e)) from None
    pos = {c: i for i, c in enumerate(cols)}
    out: list[Sample] = []
    boxed: dict[str, int] = {}  # key -> position in out of a sample with a person box
    for line, row in rows:
        where = f"{path}:{line}"
        if len(row) != len(cols):
            raise AnnotationError(f"{where}: {len(row)} fields, header has {len(cols)}")
        get = {c: row[i] for c, i in pos.items()}
        if not get["video"]:
            raise AnnotationError(f"{where}: empty video name")
        if split is not None and get.get("split", split) != split:
            continue
        label = UNKNOWN
        labels: tuple[int, ...] = ()
        lab = get["label"]
        try:
            if taxonomy.multi_label:
                labels = tuple(
                    taxonomy.label_id(x, source=where, base=MANIFEST_ID_BASE) for x in lab.split(";") if x.strip()
                )
            elif lab and lab != "-1":
                label = taxonomy.label_id(lab, source=where, base=MANIFEST_ID_BASE)
        except TaxonomyError as e:
            raise AnnotationError(str(e)) from None
        body = UNKNOWN
        if get.get("body"):
            body = _int_field(get["body"], what="body", where=where, lo=0)
            if taxonomy.has_body and body >= taxonomy.num_body:
                raise AnnotationError(f"{where}: body {body} out of range 0..{taxonomy.num_body - 1}")
            if taxonomy.has_body and label != UNKNOWN and int(taxonomy.body_of(label)) != body:
                raise AnnotationError(f"{where}: body {body} disagrees with label {label}'s body group")
        start = end = None
        if get.get("start") or get.get("end"):
            start = _int_field(get["start"], what="start", where=where, lo=0)
            end = _int_field(get["end"], what="end", where=where, lo=0)
            if end <= start:
                raise AnnotationError(f"{where}: end {end} must be greater than start {start}")
        try:
            person, box = person_fields(get, where, start)
            add_sample(out, boxed, Sample(get["video"], label, body, get.get("split"), start, end, labels, person), box)
        except ValueError as e:
            raise AnnotationError(f"{where}: {e}" if not str(e).startswith(str(path)) else str(e)) from None
    return out


# ---------------------------------------------------------------------------------------------
# plain-text helpers


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every non-blank line; CRLF or LF, final newline or not."""
    # split on "\n" only: str.splitlines also breaks on form feeds and Unicode separators, which
    # would shift the line numbers the errors report.
    lines = ((no, line.rstrip("\r")) for no, line in enumerate(text.split("\n"), start=1))
    return [(no, line) for no, line in lines if line.strip()]


def _check_name(name: str, where: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise AnnotationError(f"{where}: video name {name!r} contains control characters")
    return name


# ---------------------------------------------------------------------------------------------
# MA-52: list files, label_name.txt, video folders

# MA-52's test videos are named testNNNN.mp4 and listed with placeholder label 0
_HIDDEN_TEST_NAME = re.compile(r"^test\d+\.\w+$", re.IGNORECASE)


def read_ma52_list(
    path: str | os.PathLike[str],
    taxonomy: Taxonomy,
    *,
    split: str | None = None,
    hidden: bool | None = None,
) -> list[Sample]:
    """Read an MA-52 list file: one ``"<file> <label>"`` per line (CRLF or LF, final newline or
    not; a file name may contain spaces, the label is the last field). Labels are MA-52's ids
    (``MA52_LIST_ID_BASE``: 0-based, 0..51 as in ``label_name.txt``).

    ``split`` defaults to the one named by the file (``train_list_videos.txt`` -> ``train``).
    The test list's labels are placeholders (the real ones are hidden on the evaluation server):
    unless ``hidden`` says otherwise, a list is taken to hold hidden labels when its split is
    ``test`` or every name in it is ``testNNNN.<ext>``, and its samples get ``label == UNKNOWN``.
    """
    path = Path(path)
    split = split or split_from_list_name(path)
    rows: list[tuple[str, int, str]] = []
    seen: dict[str, int] = {}
    for no, line in _lines(_read_text(path)):
        where = f"{path}:{no}"
        parts = line.strip().rsplit(None, 1)
        if len(parts) != 2:
            raise AnnotationError(f"{where}: expected '<file> <label>', got {line.strip()[:80]!r}")
        name = _check_name(parts[0].strip(), where)
        if name in seen:
            raise AnnotationError(f"{where}: video {name!r} already listed on line {seen[name]}")
        seen[name] = no
        rows.append((name, _int_field(parts[1], what="label", where=where), where))
    if not rows:
        raise AnnotationError(f"{path}: no entries (expected '<file> <label>' lines)")
    if hidden is None:
        hidden = split == "test" or all(_HIDDEN_TEST_NAME.match(n) for n, _, _ in rows)
    out = []
    for name, lab, where in rows:
        label = UNKNOWN
        if not hidden:
            if not 0 <= lab < taxonomy.num_classes:
                raise AnnotationError(
                    f"{where}: label {lab} out of range 0..{taxonomy.num_classes - 1} ({taxonomy.name})"
                )
            label = lab
        out.append(Sample(name, label, split=split))
    return out


def read_label_names(path: str | os.PathLike[str]) -> list[str]:
    """Read a label-name file: ``"<id>\\t<name>"`` or ``"<id> <name>"`` per line, ids 0..C-1 in order."""
    path = Path(path)
    names: list[str] = []
    for no, line in _lines(_read_text(path)):
        where = f"{path}:{no}"
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise AnnotationError(f"{where}: expected '<id> <name>', got {line.strip()[:80]!r}")
        i = _int_field(parts[0], what="id", where=where, lo=0)
        if i != len(names):
            raise AnnotationError(f"{where}: id {i} out of order (expected {len(names)})")
        names.append(parts[1].strip())
    if not names:
        raise AnnotationError(f"{path}: no label names")
    return names


def check_label_names(path: str | os.PathLike[str], taxonomy: Taxonomy) -> list[str]:
    """Read a label-name file and check it names the taxonomy's classes, id by id."""
    names = read_label_names(path)
    try:
        check_names(names, taxonomy, source=str(path))
    except TaxonomyError as e:
        raise AnnotationError(str(e)) from None
    return names


def _video_candidates(root: Path, video: str, split: str | None) -> list[Path]:
    rel = Path(video)
    if rel.is_absolute() or ".." in rel.parts:
        raise AnnotationError(f"video {video!r}: must be a path relative to the video root")
    folders: list[Path] = []
    if split:
        folders += [root / f"videos_{split}", root / split]
    folders.append(root)
    if not split:
        folders += sorted(p for p in root.glob("videos_*") if p.is_dir())
    return [f / rel for f in folders]


def resolve_video(root: str | os.PathLike[str], video: str, split: str | None = None) -> Path:
    """The file of ``video`` under a video root: ``root/videos_<split>/``, ``root/<split>/`` or
    ``root/`` itself (flat); without a split, every ``root/videos_*/`` is searched too."""
    root = Path(root)
    tried = _video_candidates(root, video, split)
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(f"video {video!r} not found under {root} (tried {', '.join(str(p) for p in tried[:4])})")


def resolve_videos(root: str | os.PathLike[str], samples: Sequence[Sample]) -> list[Path]:
    """``resolve_video`` for every sample; one error listing how many (and which) are missing."""
    found: list[Path] = []
    missing: list[str] = []
    for s in samples:
        try:
            found.append(resolve_video(root, s.video, s.split))
        except FileNotFoundError:
            missing.append(s.video)
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(samples)} videos not found under {root}, e.g. {missing[:3]}")
    return found


# ---------------------------------------------------------------------------------------------
# iMiGUE / MiGA


def read_imigue_labels(
    path: str | os.PathLike[str],
    taxonomy: Taxonomy,
    *,
    video: str | None = None,
    split: str | None = None,
) -> list[Sample]:
    """Read ``<VID>_label.csv``: one micro-gesture per line, ``classID,startFrame,endFrame``.

    ``classID`` is the release's class number (``IMIGUE_LABEL_ID_BASE``: 1-based, 1..31, with 99
    for "illustrative"): the class id is ``classID - 1``, 99 -> 31 (the taxonomy's
    ``raw_id_map``), as the MiGA challenge's own reader converts it. Frames are 0-based rows of the
    video's skeleton file and ``endFrame`` is inclusive (the challenge's reader takes frames
    ``startFrame..endFrame``): the sample's window is ``[startFrame, endFrame + 1)``, the same
    instance as the instance CSV's row (``read_imigue_instances``). ``video`` defaults to the file
    name without ``_label.csv``. A header line (``classID,...``) is allowed.
    """
    path = Path(path)
    if video is None:
        video = path.name[: -len("_label.csv")] if path.name.endswith("_label.csv") else path.stem
    out: list[Sample] = []
    for no, line in _lines(_read_text(path)):
        where = f"{path}:{no}"
        cells = [c.strip() for c in line.split(",")]
        if not out and cells[0] and not cells[0].lstrip("+-").isdigit() and "class" in cells[0].lower():
            continue  # header
        if len(cells) != 3:
            raise AnnotationError(f"{where}: expected 'classID,startFrame,endFrame', got {len(cells)} fields")
        raw = _int_field(cells[0], what="classID", where=where)
        try:
            label = taxonomy.from_raw(raw, base=IMIGUE_LABEL_ID_BASE, source=where)
        except TaxonomyError as e:
            raise AnnotationError(str(e)) from None
        start = _int_field(cells[1], what="startFrame", where=where, lo=0)
        stop = _int_field(cells[2], what="endFrame", where=where, lo=0)
        if stop < start:
            raise AnnotationError(f"{where}: endFrame {stop} before startFrame {start}")
        out.append(Sample(video, label, split=split, start=start, end=stop + 1))
    return out


def read_imigue_dir(root: str | os.PathLike[str], taxonomy: Taxonomy, *, split: str | None = None) -> list[Sample]:
    """Every ``<VID>_label.csv`` under ``root`` (e.g. ``<root>/<VID>/<VID>_label.csv``), sorted.

    ``split`` keeps the videos of one split of the built-in cross-subject split (``load_split``);
    without it, every video is read with ``split`` unset.
    """
    root = Path(root)
    files = sorted(root.rglob("*_label.csv"))
    if not files:
        raise AnnotationError(f"{root}: no *_label.csv files")
    if split is None:
        return [s for f in files for s in read_imigue_labels(f, taxonomy)]
    plan = load_split("imigue")
    out: list[Sample] = []
    for f in files:
        out.extend(s for s in plan.apply(read_imigue_labels(f, taxonomy)) if s.split == split)
    return out


def read_skeleton_csv(path: str | os.PathLike[str], joints: int | None = None) -> np.ndarray:
    """Read a skeleton CSV: one frame per line, ``joints`` x (x, y, confidence) values, optionally
    led by a frame index column and a header line. Returns ``[T, joints, 3]`` float32.

    ``joints=None`` takes the count from the first frame (a width of 3J + 1 means a leading frame
    index). The MiGA/iMiGUE files seen in public tooling have 137 joints (OpenPose BODY_25 +
    face-70 + two hands-21); the extraction's keypoints parser maps known layouts onto MediaPipe's.
    """
    path = Path(path)
    width = 3 * joints if joints is not None else None
    frames: list[list[float]] = []
    for no, line in _lines(_read_text(path)):
        where = f"{path}:{no}"
        cells = line.split(",")
        if not frames and not _is_number(cells[0]):
            continue  # header
        if width is None:
            width = len(cells) - (len(cells) % 3 == 1)
            if width == 0 or width % 3:
                raise AnnotationError(f"{where}: {len(cells)} values is not joints x (x, y, confidence)")
        if len(cells) == width + 1:
            cells = cells[1:]  # leading frame index
        if len(cells) != width:
            raise AnnotationError(f"{where}: {len(cells)} values, expected {width} ({width // 3} joints x 3)")
        try:
            row = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise AnnotationError(f"{where}: {bad.strip()[:40]!r} is not a number") from None
        if not all(math.isfinite(v) for v in row):
            raise AnnotationError(f"{where}: non-finite value (NaN or out of float range)")
        frames.append(row)
    if not frames or width is None:
        raise AnnotationError(f"{path}: no skeleton frames")
    return np.asarray(frames, dtype=np.float32).reshape(len(frames), width // 3, 3)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------
# splits as data (iMiGUE's cross-subject protocol)


def _norm_id(x: object) -> str:
    text = str(x).strip()
    return (
        str(int(text)) if text.isascii() and text.isdigit() and len(text) < 30 else text
    )  # "0001" and 1 name the same video


@dataclass(frozen=True)
class SplitPlan:
    """Which videos belong to which split. ``subject_of`` (video -> subject), when the file gives
    it, is used to check that no subject appears in two splits (the cross-subject guarantee)."""

    name: str
    members: dict[str, frozenset[str]]
    subject_of: dict[str, str] = field(default_factory=dict)
    excluded: frozenset[str] = frozenset()

    def split_of(self, video: str) -> str | None:
        key = _norm_id(video)
        for split, ids in self.members.items():
            if key in ids:
                return split
        return None

    def apply(self, samples: Sequence[Sample]) -> list[Sample]:
        """The samples with ``split`` set from this plan (videos in no split keep theirs)."""
        return [replace(s, split=self.split_of(s.video) or s.split) for s in samples]


def load_split(name_or_path: str | os.PathLike[str]) -> SplitPlan:
    """A split file: built-in ``imigue`` (``data/imigue_split.yaml``) or a YAML file of the shape
    ``{name, splits: {train: [ids], test: [ids], ...}, subject_of: {video: subject}, excluded: [ids]}``."""
    key = str(name_or_path)
    path = _SPLITS / f"{key.lower()}_split.yaml" if key.lower() == "imigue" else Path(key)
    text = _read_text(path)
    try:
        doc = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as e:
        # safe_load raises ValueError for impossible dates, RecursionError for deep nesting
        raise AnnotationError(f"{path}: not valid YAML ({str(e)[:200]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("splits"), dict) or not doc["splits"]:
        raise AnnotationError(f"{path}: expected a mapping with 'splits: {{name: [video ids]}}'")
    members: dict[str, frozenset[str]] = {}
    owner: dict[str, str] = {}
    for split, ids in doc["splits"].items():
        if not isinstance(ids, list):
            raise AnnotationError(f"{path}: splits.{split} must be a list of video ids")
        members[str(split)] = frozenset(_norm_id(i) for i in ids)
        for i in members[str(split)]:
            if i in owner:
                raise AnnotationError(f"{path}: video {i} is in both {owner[i]!r} and {split!r}")
            owner[i] = str(split)
    subjects = doc.get("subject_of") or {}
    excluded = doc.get("excluded") or []
    if not isinstance(subjects, dict) or not isinstance(excluded, list):
        raise AnnotationError(f"{path}: 'subject_of' must be a mapping and 'excluded' a list")
    subject_of = {_norm_id(k): str(v) for k, v in subjects.items()}
    sides: dict[str, str] = {}
    for video, subject in subject_of.items():
        side = owner.get(video)
        if side is not None and sides.setdefault(subject, side) != side:
            raise AnnotationError(f"{path}: subject {subject!r} appears in {sides[subject]!r} and {side!r}")
    return SplitPlan(
        name=str(doc.get("name", path.stem)),
        members=members,
        subject_of=subject_of,
        excluded=frozenset(_norm_id(i) for i in excluded),
    )


# ---------------------------------------------------------------------------------------------
# the dispatcher


def read_annotations(path: str | os.PathLike[str], taxonomy: Taxonomy, split: str | None = None) -> list[Sample]:
    """Read any supported annotation file, picking the reader from the file:

    a folder of iMiGUE ``*_label.csv`` files; ``<VID>_label.csv``; an MPII-GI sample CSV; a
    generic manifest (``.csv`` with a header); an MA-52 list (``.txt``); a pose pickle (``.pkl`` /
    ``.pickle``: MMAction2 / PySKL, MMN, ST-GCN ``(names, labels)``). ``split``
    keeps one split of a file that holds several, and names the split of an MA-52 list.
    """
    path = Path(path)
    if path.is_dir():
        return read_imigue_dir(path, taxonomy, split=split)
    name = path.name.lower()
    if name.endswith("_label.csv"):
        return read_imigue_labels(path, taxonomy, split=split)
    if path.suffix.lower() == ".csv":
        from microaction.data.readers.mpiigi import is_mpiigi_csv, read_mpiigi_csv

        if is_mpiigi_csv(path):
            return read_mpiigi_csv(path, taxonomy, split=split)
        return read_manifest_csv(path, taxonomy, split=split)
    if path.suffix.lower() in (".pkl", ".pickle"):
        from microaction.data.readers.poses import read_pose_pickle

        return read_pose_pickle(path, taxonomy, split=split)
    if path.suffix.lower() in (".txt", ".list", ""):
        return read_ma52_list(path, taxonomy, split=split)
    raise AnnotationError(
        f"{path}: unknown annotation format {path.suffix!r} (expected a manifest .csv, an MA-52 list .txt, "
        "an iMiGUE <VID>_label.csv or folder, or a pose .pkl)"
    )
