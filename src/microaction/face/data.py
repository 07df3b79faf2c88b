"""Face datasets: an image folder plus a CSV ``path,label[,group]``.

* ``path``: image file, relative to ``image_root`` (default: the CSV's folder) or absolute;
* ``label``: an integer class id (``multiclass``), 0 or 1 (``binary``), or for ``multilabel`` the
  ids of the attributes that are present separated by ``;`` (``"0;3"``; empty = none);
* ``group`` (optional): any string (a demographic or nuisance attribute) used by the fairness
  metrics; a missing column means one group ``"all"``.

Other columns are ignored. Errors name the file and the line. Images are read with Pillow,
converted to grey (``channels: 1``, PIL's ITU-R 601 luma) or RGB (``channels: 3``) and resized to
``img_size`` × ``img_size`` (bilinear) when their size differs: give aligned face crops
(``microaction.face.crops``). A split is loaded into memory as uint8 (a 112 × 112 grey crop is
12.5 kB; 100 k crops are 1.25 GB).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["FaceItem", "FaceSplit", "load_face_split", "read_face_csv"]

TASKS = ("multiclass", "multilabel", "binary")


@dataclass(frozen=True)
class FaceItem:
    path: Path
    label: int | tuple[int, ...]
    group: str


@dataclass
class FaceSplit:
    """One split in memory: ``images`` uint8 ``[N, C, H, W]``, ``labels`` (long ``[N]`` or float
    ``[N, K]`` for multilabel), ``groups`` long ``[N]`` indexing ``group_names``."""

    images: torch.Tensor
    labels: torch.Tensor
    groups: torch.Tensor
    group_names: list[str]
    paths: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _parse_label(raw: str, task: str, where: str) -> int | tuple[int, ...]:
    raw = raw.strip()
    if task == "multilabel":
        parts = [s.strip() for s in raw.replace(",", ";").split(";") if s.strip()]
        try:
            return tuple(sorted({int(s) for s in parts}))
        except ValueError:
            raise ValueError(f"{where}: label {raw!r} is not a ';'-separated list of integers") from None
    try:
        value = int(raw)
    except ValueError:
        try:
            f = float(raw)
        except ValueError:
            raise ValueError(f"{where}: label {raw!r} is not an integer") from None
        if not f.is_integer():
            raise ValueError(f"{where}: label {raw!r} is not an integer") from None
        value = int(f)
    if task == "binary" and value not in (0, 1):
        raise ValueError(f"{where}: a binary label must be 0 or 1, got {raw!r}")
    return value


def read_face_csv(
    csv_path: str | Path,
    *,
    image_root: str | Path | None = None,
    task: str = "multiclass",
    num_classes: int | None = None,
    check_files: bool = True,
) -> list[FaceItem]:
    """Rows of a ``path,label[,group]`` CSV; errors name the file and line."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: no such CSV file")
    root = Path(image_root) if image_root is not None else csv_path.parent
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        for needed in ("path", "label"):
            if needed not in header:
                raise ValueError(f"{csv_path}: missing column {needed!r} (header: {','.join(header) or 'empty'})")
        items: list[FaceItem] = []
        for lineno, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "") for k, v in row.items()}
            where = f"{csv_path}:{lineno}"
            rel = row["path"].strip()
            if not rel:
                raise ValueError(f"{where}: empty path")
            label = _parse_label(row["label"], task, where)
            if num_classes is not None:
                ids = label if isinstance(label, tuple) else (label,)
                bad = [i for i in ids if not 0 <= i < num_classes]
                if bad and task != "binary":
                    raise ValueError(f"{where}: label {bad[0]} outside 0..{num_classes - 1}")
            path = Path(rel) if Path(rel).is_absolute() else root / rel
            if check_files and not path.is_file():
                raise FileNotFoundError(f"{where}: image not found: {path}")
            group = row.get("group", "").strip() or "all"
            items.append(FaceItem(path, label, group))
    if not items:
        raise ValueError(f"{csv_path}: no rows")
    return items


def _load_image(path: Path, size: int, channels: int) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as f:
            im = f.convert("L" if channels == 1 else "RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    except OSError as e:
        raise ValueError(f"{path}: cannot read image ({e})") from None
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1)


def load_face_split(
    items: Sequence[FaceItem],
    *,
    img_size: int,
    channels: int = 1,
    task: str = "multiclass",
    num_classes: int | None = None,
    group_names: Sequence[str] | None = None,
) -> FaceSplit:
    """Read the images of ``items`` into memory (uint8) with their labels and group indices."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    images = np.stack([_load_image(it.path, img_size, channels) for it in items])
    if task == "multilabel":
        if num_classes is None:
            raise ValueError("a multilabel split needs num_classes")
        labels = torch.zeros(len(items), num_classes)
        for i, it in enumerate(items):
            labels[i, list(it.label if isinstance(it.label, tuple) else (it.label,))] = 1.0
    else:
        labels = torch.tensor([int(it.label) for it in items], dtype=torch.long)  # type: ignore[arg-type]
    names = list(group_names) if group_names is not None else sorted({it.group for it in items})
    index = {g: i for i, g in enumerate(names)}
    unknown = sorted({it.group for it in items} - set(index))
    if unknown:
        raise ValueError(f"group {unknown[0]!r} is not among the known groups {names}")
    groups = torch.tensor([index[it.group] for it in items], dtype=torch.long)
    return FaceSplit(torch.from_numpy(images), labels, groups, names, [str(it.path) for it in items])
