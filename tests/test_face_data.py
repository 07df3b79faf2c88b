"""Face CSV reader errors and the synthetic face-like dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
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
