"""Face datasets: an image folder plus a CSV ``path,label[,group]``.

* ``path``: image file, relative to ``image_root`` (default: the CSV's folder) or absolute;
* ``label``: an integer class id (``multiclass``), 0 or 1 (``binary``), or for ``multilabel`` the
  ids of the attributes that are present separated by ``;`` (``"0;3"``; empty = none);
* ``group`` (optional): any string (a demographic or nuisance attribute) used by the fairness
  metrics; a missing column means one group ``"all"``.

Other columns are ignored. Errors name the file and the line.

CelebA (``read_celeba``): ``list_attr_celeba.txt`` (a count line, a line of the 40 attribute
names, then ``<image> ±1 ... ±1`` per image) and ``list_eval_partition.txt`` (``<image> 0|1|2``
for train / val / test) become items of the ``multilabel`` task over the chosen attributes (the
ids of the attributes marked ``1``), or of the ``binary`` task over one attribute; another
attribute can be the fairness group (``"Male"`` / ``"not Male"``). Images are read with Pillow,
converted to grey (``channels: 1``, PIL's ITU-R 601 luma) or RGB (``channels: 3``) and resized to
``img_size`` × ``img_size`` (bilinear) when their size differs: give aligned face crops
(``microaction.face.crops``). A split is loaded into memory as uint8 (a 112 × 112 grey crop is
12.5 kB; 100 k crops are 1.25 GB).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from microaction.engine.yamlconfig import ConfigError
from microaction.models.texture import to_grey

if TYPE_CHECKING:
    from microaction.face.config import FaceAugmentConfig, FaceTrainConfig

__all__ = [
    "CELEBA_SPLITS",
    "FaceData",
    "FaceImages",
    "FaceItem",
    "FaceSplit",
    "load_face_split",
    "prepare_face_data",
    "read_celeba",
    "read_celeba_attributes",
    "read_celeba_partition",
    "read_face_csv",
]

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


CELEBA_SPLITS = {0: "train", 1: "val", 2: "test"}  # list_eval_partition.txt's codes


def _celeba_lines(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text") from None
    return [(i, line.split()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_celeba_attributes(path: str | Path) -> tuple[list[str], dict[str, list[int]]]:
    """``list_attr_celeba.txt`` -> (attribute names, ``{image: [±1, ...]}``); errors name the line."""
    path = Path(path)
    lines = _celeba_lines(path)
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a count line and a line of attribute names")
    (n_line, count), (_, names) = lines[0], lines[1]
    if len(count) != 1 or not count[0].isdigit():
        raise ValueError(f"{path}:{n_line}: expected the number of images, got {' '.join(count)!r}")
    values: dict[str, list[int]] = {}
    for lineno, parts in lines[2:]:
        where = f"{path}:{lineno}"
        if len(parts) != len(names) + 1:
            raise ValueError(f"{where}: {len(parts) - 1} values for {len(names)} attributes")
        if parts[0] in values:
            raise ValueError(f"{where}: image {parts[0]} listed twice")
        bad = [v for v in parts[1:] if v not in ("1", "-1")]
        if bad:
            raise ValueError(f"{where}: attribute value {bad[0]!r} is not 1 or -1")
        values[parts[0]] = [int(v) for v in parts[1:]]
    if len(values) != int(count[0]):
        raise ValueError(f"{path}: the first line announces {count[0]} images, the file lists {len(values)}")
    return names, values


def read_celeba_partition(path: str | Path) -> dict[str, str]:
    """``list_eval_partition.txt`` -> ``{image: "train" | "val" | "test"}``; errors name the line."""
    path = Path(path)
    out: dict[str, str] = {}
    for lineno, parts in _celeba_lines(path):
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}:{lineno}: expected '<image> 0|1|2', got {' '.join(parts)!r}")
        out[parts[0]] = CELEBA_SPLITS[int(parts[1])]
    return out


def read_celeba(
    root: str | Path,
    *,
    attributes: Sequence[str] | None = None,
    group_attribute: str | None = None,
    task: str = "multilabel",
    image_root: str | Path | None = None,
    attr_file: str = "list_attr_celeba.txt",
    partition_file: str = "list_eval_partition.txt",
    check_files: bool = True,
) -> tuple[dict[str, list[FaceItem]], list[str]]:
    """CelebA's attribute and partition lists under ``root`` -> (``{split: items}``, class names).

    ``attributes``: the target attributes (default: all 40; ``task="binary"`` needs exactly one);
    ``group_attribute``: the attribute whose value is each image's fairness group (``"Male"`` /
    ``"not Male"``; default: one group ``"all"``). Images are ``image_root`` (default
    ``root/img_align_celeba``) / the listed name."""
    if task not in ("multilabel", "binary"):
        raise ValueError(f"CelebA attributes make a multilabel or binary task, not {task!r}")
    root = Path(root)
    names, values = read_celeba_attributes(root / attr_file)
    partition = read_celeba_partition(root / partition_file)
    chosen = list(attributes) if attributes else list(names)
    for a in chosen + ([group_attribute] if group_attribute else []):
        if a not in names:
            raise ValueError(f"{root / attr_file}: no attribute {a!r} (attributes: {', '.join(names)})")
    if task == "binary" and len(chosen) != 1:
        raise ValueError(f"a binary CelebA task needs exactly one attribute, got {len(chosen)}")
    cols = [names.index(a) for a in chosen]
    gcol = names.index(group_attribute) if group_attribute else None
    images = Path(image_root) if image_root is not None else root / "img_align_celeba"
    missing = sorted(set(partition) - set(values))
    if missing:
        raise ValueError(f"{root / partition_file}: image {missing[0]} has no attributes in {attr_file}")
    splits: dict[str, list[FaceItem]] = {s: [] for s in CELEBA_SPLITS.values()}
    for image, split in partition.items():
        v = values[image]
        label: int | tuple[int, ...] = (
            int(v[cols[0]] == 1) if task == "binary" else tuple(k for k, c in enumerate(cols) if v[c] == 1)
        )
        group = "all" if gcol is None else (group_attribute if v[gcol] == 1 else f"not {group_attribute}")
        path = images / image
        if check_files and not path.is_file():
            raise FileNotFoundError(f"{root / partition_file}: image not found: {path}")
        splits[split].append(FaceItem(path, label, str(group)))
    return splits, chosen


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


# --------------------------------------------------------------------------------------------
# a config's splits, and the training dataset the engine's loop draws batches from


@dataclass
class FaceData:
    """The splits of a face config, its class names, group names and number of model outputs."""

    train: FaceSplit
    val: FaceSplit
    test: FaceSplit | None
    class_names: list[str]
    group_names: list[str]
    num_outputs: int


def prepare_face_data(cfg: FaceTrainConfig, log: Callable[[str], None]) -> FaceData:
    d = cfg.data
    root = Path(d.root)
    if not (root / d.train_csv).is_file() and d.synthesize_if_missing:
        from microaction.face.synthetic import generate_face_dataset

        log(f"generating the synthetic face dataset into {root} ({d.synth or 'defaults'})")
        generate_face_dataset(root, **d.synth)
    image_root = d.image_root or root
    attr_names: list[str] | None = None
    if d.format == "celeba":
        items, attr_names = read_celeba(
            root, attributes=d.attributes, group_attribute=d.group_attribute, task=d.task, image_root=d.image_root
        )
    else:
        csvs = {"train": d.train_csv, "val": d.val_csv, **({"test": d.test_csv} if d.test_csv else {})}
        items = {
            s: read_face_csv(root / c, image_root=image_root, task=d.task, num_classes=d.num_classes)
            for s, c in csvs.items()
        }
    if attr_names is not None and d.task == "multilabel":
        num_classes = num_outputs = len(attr_names)
    elif d.task == "binary":
        num_classes, num_outputs = 2, 1
    elif d.num_classes is not None:
        num_classes = num_outputs = d.num_classes
    elif d.task == "multilabel":
        raise ConfigError("data.num_classes is required for a multilabel task")
    else:
        num_classes = num_outputs = 1 + max(int(it.label) for v in items.values() for it in v)  # type: ignore[arg-type]
    class_names = d.class_names
    if class_names is None and attr_names is not None:
        class_names = attr_names if d.task == "multilabel" else [f"not {attr_names[0]}", attr_names[0]]
    if class_names is None and (root / "meta.json").is_file():
        class_names = json.loads((root / "meta.json").read_text()).get("class_names")
    if class_names is None or len(class_names) != num_classes:
        class_names = [str(i) for i in range(num_classes)]
    group_names = sorted({it.group for v in items.values() for it in v})
    splits = {
        s: load_face_split(
            v, img_size=d.img_size, channels=d.channels, task=d.task, num_classes=num_outputs, group_names=group_names
        )
        for s, v in items.items()
    }
    return FaceData(splits["train"], splits["val"], splits.get("test"), list(class_names), group_names, num_outputs)


class FaceImages:
    """A split as the engine's training loop reads it: ``__getitems__(keys)`` with keys
    ``(index, epoch, position)`` (``data.samplers.TrainBatchSampler``) -> a batch ``{"image"`` uint8
    ``[B, C, H, W]``, ``"grey"`` uint8 ``[B, H, W]`` (texture targets), ``"label"``, ``"index"}``.
    Augmentation (random shift with reflect padding, optional horizontal flip) draws from a
    generator seeded with ``(seed, epoch, position)``, so a resumed epoch replays its batches
    exactly; plain integer keys give the images unchanged."""

    def __init__(self, split: FaceSplit, *, augment: FaceAugmentConfig | None = None, seed: int = 0) -> None:
        self.split, self.augment, self.seed = split, augment, seed

    def __len__(self) -> int:
        return len(self.split)

    def _augmented(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        assert self.augment is not None
        _, h, w = img.shape
        s = self.augment.shift
        if s > 0:
            oy, ox = (int(v) for v in rng.integers(0, 2 * s + 1, 2))
            img = np.pad(img, ((0, 0), (s, s), (s, s)), mode="reflect")[:, oy : oy + h, ox : ox + w]
        if self.augment.hflip and rng.random() < 0.5:
            img = img[:, :, ::-1]
        return img

    def __getitems__(self, keys: Sequence[int | tuple[int, int, int]]) -> dict[str, torch.Tensor]:
        index = [int(k) if isinstance(k, int | np.integer) else int(k[0]) for k in keys]
        images = self.split.images[index].numpy()
        if self.augment is not None:
            out = []
            for img, key in zip(images, keys):
                if isinstance(key, int | np.integer) or key[1] < 0:
                    out.append(img)
                    continue
                out.append(self._augmented(img, np.random.default_rng((self.seed, key[1], key[2]))))
            images = np.stack(out)
        x = torch.from_numpy(np.ascontiguousarray(images))
        grey = x[:, 0] if x.shape[1] == 1 else to_grey(x)
        return {"image": x, "grey": grey, "label": self.split.labels[index], "index": torch.tensor(index)}

    def __getitem__(self, key: int | tuple[int, int, int]) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([key]).items()}
