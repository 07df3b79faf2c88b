"""Face CSV reader errors and the synthetic face-like dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from microaction.face.data import load_face_split, read_face_csv
from microaction.face.synthetic import SynthFaceConfig, generate_face_dataset, render_faces


def _images(folder: Path, n: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((20, 24, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")


def test_csv_reader_and_split(tmp_path: Path) -> None:
    _images(tmp_path / "img", 3)
    csv = tmp_path / "faces.csv"
    csv.write_text("path,label,group,extra\nimg/0.png,2,x,1\nimg/1.png,0,y,2\nimg/2.png,1,,3\n")
    items = read_face_csv(csv)
    assert [it.label for it in items] == [2, 0, 1] and [it.group for it in items] == ["x", "y", "all"]
    split = load_face_split(items, img_size=16, channels=1)
    assert split.images.shape == (3, 1, 16, 16) and split.images.dtype.is_floating_point is False
    assert split.labels.tolist() == [2, 0, 1] and split.group_names == ["all", "x", "y"]
    rgb = load_face_split(items, img_size=8, channels=3, group_names=["all", "x", "y"])
    assert rgb.images.shape == (3, 3, 8, 8)
    # multilabel: ';'-separated ids
    ml = tmp_path / "ml.csv"
    ml.write_text("path,label\nimg/0.png,0;2\nimg/1.png,\n")
    ml_items = read_face_csv(ml, task="multilabel", num_classes=3)
    assert [it.label for it in ml_items] == [(0, 2), ()]
    assert load_face_split(ml_items, img_size=8, task="multilabel", num_classes=3).labels.tolist() == [
        [1, 0, 1],
        [0, 0, 0],
    ]


@pytest.mark.parametrize(
    ("text", "kwargs", "error", "match"),
    [
        ("file,label\na.png,1\n", {}, ValueError, "missing column 'path'"),
        ("path,label\n", {}, ValueError, "no rows"),
        ("path,label\nimg/0.png,cat\n", {}, ValueError, r"faces\.csv:2: label 'cat' is not an integer"),
        ("path,label\nimg/0.png,1\nimg/9.png,1\n", {}, FileNotFoundError, r"faces\.csv:3: image not found"),
        ("path,label\nimg/0.png,5\n", {"num_classes": 3}, ValueError, "outside 0..2"),
        ("path,label\nimg/0.png,2\n", {"task": "binary"}, ValueError, "must be 0 or 1"),
        ("path,label\nimg/0.png,1\n", {"task": "regression"}, ValueError, "unknown task"),
    ],
)
def test_csv_errors(tmp_path: Path, text: str, kwargs: dict, error: type, match: str) -> None:
    _images(tmp_path / "img", 1)
    csv = tmp_path / "faces.csv"
    csv.write_text(text)
    with pytest.raises(error, match=match):
        read_face_csv(csv, **kwargs)


def test_missing_csv(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such CSV"):
        read_face_csv(tmp_path / "nope.csv")


def test_synthetic_dataset(tmp_path: Path) -> None:
    meta = generate_face_dataset(tmp_path / "s", n_train=40, n_val=20, n_test=20, seed=3)
    assert meta["group_counts"]["train"] == {"A": 34, "B": 6}  # imbalanced groups in training
    assert meta["group_counts"]["test"] == {"A": 10, "B": 10}  # balanced in test
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["class_names"][1] == "texture_45deg"
    items = read_face_csv(tmp_path / "s" / "train.csv")
    assert len(items) == 40 and sorted({it.label for it in items}) == [0, 1, 2, 3]
    # deterministic
    generate_face_dataset(tmp_path / "t", n_train=40, n_val=20, n_test=20, seed=3)
    a = np.asarray(Image.open(tmp_path / "s" / "images" / "train" / "00007.png"))
    b = np.asarray(Image.open(tmp_path / "t" / "images" / "train" / "00007.png"))
    assert a.shape == (64, 64) and np.array_equal(a, b)


def test_synthetic_classes_differ_only_in_texture() -> None:
    cfg = SynthFaceConfig()
    n = 200
    labels = np.repeat(np.arange(4), n // 4)
    imgs = render_faces(labels, np.zeros(n, np.int64), cfg, np.random.default_rng(0)).astype(np.float64)
    means = np.stack([imgs[labels == c].mean(0) for c in range(4)])
    # the class-mean images are alike (the texture has random phase) ...
    assert np.abs(means - means.mean(0)).mean() < 3.0
    # ... but the local gradient direction statistics differ by class
    dy = np.abs(np.diff(imgs, axis=1))[:, :, :-1].mean((1, 2))
    dx = np.abs(np.diff(imgs, axis=2))[:, :-1, :].mean((1, 2))
    ratio = [float((dy / dx)[labels == c].mean()) for c in range(4)]
    assert ratio[0] > 1.05 * ratio[1] and ratio[2] < ratio[1] / 1.05  # 0°: vertical changes; 90°: horizontal
    # group B is darker and flatter
    b = render_faces(labels[:20], np.ones(20, np.int64), cfg, np.random.default_rng(0)).astype(np.float64)
    assert b.mean() < imgs.mean() - 30 and b.std() < imgs.std()


def _celeba(root: Path, attr: str | None = None, part: str | None = None, images: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "list_attr_celeba.txt").write_text(
        attr
        or "4\nSmiling Male Young\n000001.jpg  1 -1  1\n000002.jpg -1  1  1\n000003.jpg  1  1 -1\n000004.jpg -1 -1 -1\n"
    )
    (root / "list_eval_partition.txt").write_text(part or "000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n000004.jpg 2\n")
    if images:
        (root / "img_align_celeba").mkdir(exist_ok=True)
        for i in range(1, 5):
            Image.fromarray(np.full((12, 10, 3), 40 * i, np.uint8)).save(root / "img_align_celeba" / f"00000{i}.jpg")
    return root


def test_celeba_reader(tmp_path: Path) -> None:
    from microaction.face.data import read_celeba

    root = _celeba(tmp_path / "celeba")
    splits, names = read_celeba(root, attributes=["Smiling", "Young"], group_attribute="Male")
    assert names == ["Smiling", "Young"]
    assert [len(splits[s]) for s in ("train", "val", "test")] == [2, 1, 1]
    assert [it.label for it in splits["train"]] == [(0, 1), (1,)]
    assert [it.group for it in splits["train"]] == ["not Male", "Male"]
    assert splits["test"][0].label == () and splits["test"][0].path.name == "000004.jpg"
    every, all_names = read_celeba(root)
    assert all_names == ["Smiling", "Male", "Young"] and every["val"][0].label == (0, 1)
    assert every["val"][0].group == "all"
    binary, _ = read_celeba(root, attributes=["Male"], task="binary")
    assert [it.label for it in binary["train"]] == [0, 1]
    split = load_face_split(splits["train"], img_size=8, task="multilabel", num_classes=2)
    assert split.labels.tolist() == [[1.0, 1.0], [0.0, 1.0]] and split.group_names == ["Male", "not Male"]


@pytest.mark.parametrize(
    ("attr", "part", "kwargs", "match"),
    [
        ("4\nSmiling Male Young\n000001.jpg 1 -1\n", None, {}, r"list_attr_celeba.txt:3: 2 values for 3"),
        ("1\nSmiling\n000001.jpg 0\n", "000001.jpg 0\n", {}, r"list_attr_celeba.txt:3: .*'0' is not 1 or -1"),
        ("x\nSmiling\n", "", {}, r"list_attr_celeba.txt:1: expected the number of images"),
        ("2\nSmiling\n000001.jpg 1\n", "000001.jpg 0\n", {}, r"announces 2 images, the file lists 1"),
        (None, "000001.jpg 3\n", {}, r"list_eval_partition.txt:1: expected '<image> 0\|1\|2'"),
        (None, "000009.jpg 0\n", {}, r"000009.jpg has no attributes"),
        (None, None, {"attributes": ["Bald"]}, r"no attribute 'Bald'"),
        (None, None, {"group_attribute": "Bald"}, r"no attribute 'Bald'"),
        (None, None, {"task": "binary"}, r"exactly one attribute"),
        (None, None, {"task": "multiclass"}, r"multilabel or binary"),
    ],
)
def test_celeba_errors(tmp_path: Path, attr: str | None, part: str | None, kwargs: dict, match: str) -> None:
    from microaction.face.data import read_celeba

    root = _celeba(tmp_path / "c", attr, part, images=False)
    with pytest.raises(ValueError, match=match):
        read_celeba(root, check_files=False, **kwargs)


def test_celeba_missing_image(tmp_path: Path) -> None:
    from microaction.face.data import read_celeba

    root = _celeba(tmp_path / "c", images=False)
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_celeba(root)


def test_face_images_augment_reproducibly(tmp_path: Path) -> None:
    """Training keys (index, epoch, position) give the same augmented batch every time, another
    epoch another one; plain keys and the grey channel are the images as stored."""
    from microaction.face.config import FaceAugmentConfig
    from microaction.face.data import FaceImages, FaceSplit

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8, generator=g)
    split = FaceSplit(images, torch.arange(4), torch.zeros(4, dtype=torch.long), ["all"], [str(i) for i in range(4)])
    ds = FaceImages(split, augment=FaceAugmentConfig(shift=3, hflip=True), seed=5)
    keys = [(2, 0, 0), (0, 0, 1), (3, 0, 2)]
    a, b = ds.__getitems__(keys), ds.__getitems__(keys)
    assert torch.equal(a["image"], b["image"]) and a["index"].tolist() == [2, 0, 3] and a["label"].tolist() == [2, 0, 3]
    other = ds.__getitems__([(2, e, 0) for e in range(1, 9)])["image"]
    assert any(not torch.equal(img, a["image"][0]) for img in other)
    plain = ds.__getitems__([2, 0])
    assert torch.equal(plain["image"], images[[2, 0]])
    assert plain["grey"].shape == (2, 12, 12) and plain["grey"].dtype == torch.uint8
    assert ds[(1, 0, 0)]["image"].shape == (3, 12, 12)
