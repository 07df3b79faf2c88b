"""B-MoE's head-texture branch end to end: face crops at extraction, in the store, through the
loader (aligned with the sampled steps, mirrored with flips), into training with the texture-MAE
auxiliary loss, and back out through evaluation and prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from baselines import chance_f1_mean
from microaction.cli import main as mar
from microaction.data.loader import ClipDataset, sample_steps, select_samples
from microaction.data.readers.annotations import read_annotations
from microaction.data.store import FeatureStore, StoreError, StoreMismatch
from microaction.engine import Predictor, evaluate_run, load_run
from microaction.engine.testing import make_random_dataset
from microaction.extract.pipeline import ExtractParams, face_crops
from microaction.extract.regions import RegionLayout
from microaction.taxonomy import load_taxonomy

S = 16


@pytest.fixture(scope="module")
def face_ds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("face")
    d = make_random_dataset(root, splits={"train": 48, "val": 24, "test": 12}, face_size=S, lengths=(6, 24))
    d["root"] = root
    return d


# -- extraction --------------------------------------------------------------------------------
def test_face_crops_take_the_nearest_frame_and_its_visibility() -> None:
    N, H, W = 6, 40, 40
    frames = np.zeros((N, H, W, 3), np.uint8)
    for t in range(N):
        frames[t] = 20 * t + 10  # a flat frame whose grey level names it
    times = np.arange(N, dtype=np.float32) / 10.0  # 10 fps
    boxes = np.array([[8, 8, 24, 24], [0, 0, 40, 40], [0, 0, 40, 40]], np.float32)  # head, body, person
    visible = np.ones((N, 2), bool)
    visible[3, 0] = False  # head not seen in frame 3
    layout = RegionLayout(("head", "body"), boxes, np.array([True, True]), visible)
    steps = np.array([0.0, 0.04, 0.26, 0.31, 0.5, 0.9], np.float32)  # nearest frames 0, 0, 3, 3, 5, 5
    crops, valid = face_crops(frames, times, steps, layout, 12)
    assert crops.shape == (6, 12, 12) and crops.dtype == np.uint8
    assert [int(c.mean()) for c in crops] == [10, 10, 70, 70, 110, 110]
    assert valid.tolist() == [True, True, False, False, True, True]
    layout.valid[0] = False  # a head invisible over the clip: no valid crop at all
    assert not face_crops(frames, times, steps, layout, 12)[1].any()


def test_face_size_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        ExtractParams(face_size=4)
    with pytest.raises(ValueError, match="'head' region"):
        ExtractParams(face_size=32, regions=["body", "upper_limbs"])
    assert ExtractParams(face_size=32).to_dict()["face_size"] == 32


# -- store and loader --------------------------------------------------------------------------
def _train_clips(d: dict[str, Any]) -> tuple[FeatureStore, list[Any], Any]:
    store, tax = FeatureStore.open(d["store"]), load_taxonomy(str(d["taxonomy"]))
    samples = [s for s in read_annotations(d["manifest"], tax) if s.split == "train"]
    return store, select_samples(store, samples)[0], tax


@pytest.mark.parametrize("packed", [False, True])
def test_loader_face_crops_follow_the_sampled_steps(face_ds: dict[str, Any], tmp_path: Path, packed: bool) -> None:
    d = (
        make_random_dataset(tmp_path, splits={"train": 12}, face_size=S, lengths=(6, 24), pack=True)
        if packed
        else face_ds
    )
    store, samples, tax = _train_clips(d)
    T = 8
    ds = ClipDataset(store, samples, tax, num_steps=T, face_size=S)
    batch = ds.__getitems__(list(range(len(samples))))
    assert batch["face"].shape == (len(samples), T, S, S) and batch["face_valid"].shape == (len(samples), T)
    for j, s in enumerate(samples):
        ex = store.read_extras(s.key, ("face", "face_valid"))
        L = len(ex["face_valid"])
        idx = sample_steps(L, T, "uniform")
        n = len(idx)
        assert batch["face"][j, :n, 0, 0].tolist() == (idx % 256).tolist()  # the first pixel is the step index
        assert batch["face_valid"][j, :n].tolist() == ex["face_valid"][idx].tolist()
        assert not batch["face_valid"][j, n:].any()  # padding


def test_flipped_clips_get_mirrored_crops(face_ds: dict[str, Any]) -> None:
    store, samples, tax = _train_clips(face_ds)
    samples = samples[:6]
    plain = ClipDataset(store, samples, tax, num_steps=4, face_size=S, flip_prob=0.0, seed=1)
    flip = ClipDataset(store, samples, tax, num_steps=4, face_size=S, flip_prob=1.0, seed=1)
    keys = [(i, 0, i) for i in range(len(samples))]
    a, b = plain.__getitems__(keys), flip.__getitems__(keys)  # same seed: the same sampled steps
    assert (b["face"] == a["face"].flip(-1)).all() and (b["face_valid"] == a["face_valid"]).all()


def test_loader_refuses_a_store_without_face_crops(tmp_path: Path) -> None:
    d = make_random_dataset(tmp_path, splits={"train": 4})
    store = FeatureStore.open(d["store"])
    with pytest.raises(StoreMismatch, match=r"no face crops.*--face-size 16"):
        ClipDataset(store, [], load_taxonomy(str(d["taxonomy"])), num_steps=4, face_size=16)
    other = make_random_dataset(tmp_path / "b", splits={"train": 4}, face_size=16)
    with pytest.raises(StoreMismatch, match="holds 16-pixel face crops, the model needs 32"):
        ClipDataset(FeatureStore.open(other["store"]), [], load_taxonomy(str(d["taxonomy"])), num_steps=4, face_size=32)


# -- training, evaluation, prediction ----------------------------------------------------------
def _config(ds: dict[str, Any], out: Path, name: str, **model_kwargs: Any) -> Path:
    cfg = {
        "data": {
            "store": str(ds["store"]),
            "taxonomy": str(ds["taxonomy"]),
            "manifest": str(ds["manifest"]),
            "num_steps": 8,
            "flip_prob": 0.5,
        },
        "model": {
            "name": "bmoe",
            "preset": "tiny",
            "kwargs": {"face_size": S, "face_patch": 8, "face_dim": 32, "face_depth": 1, **model_kwargs},
        },
        "loss": {"aux_weights": {"texture": 0.5}, "emb_weight": 0.1},  # L_emb: a probe forward pass needs faces too
        "optim": {"lr": 2e-3, "warmup_epochs": 0.5},
        "run": {"name": name, "out_dir": str(out), "epochs": 2, "batch_size": 16, "progress": False, "threads": 1},
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_with_texture_loss_then_eval_and_predict(face_ds: dict[str, Any], tmp_path: Path) -> None:
    assert mar(["train", str(_config(face_ds, tmp_path, "tex"))]) == 0
    run = tmp_path / "tex"
    metrics = json.loads((run / "metrics.json").read_text())
    parts = [e["train_parts"] for e in metrics["epochs"]]
    key = next(k for k in parts[0] if "texture" in k)
    assert all(np.isfinite(p[key]) and p[key] > 0 for p in parts)
    loaded = load_run(run)
    assert loaded.face_size == S and loaded.model.head_texture is not None
    # the projection left zero: the face crops now feed the head expert
    assert loaded.model.head_texture.proj.weight.abs().sum() > 0
    report = evaluate_run(run, "val", progress=False)  # the face crops reach evaluation as they reached validation
    assert report["metrics"]["f1_mean"] == pytest.approx(metrics["best"]["value"])
    # B-MoE learnt the clips' classes: above the majority-class / shuffled-prediction ceiling of the
    # split (data and run seeds 0-3: by 0.08-0.20; on zeroed class signal: 0.03 below to level)
    chance = chance_f1_mean(report["confusion_action"], report["confusion_body"])
    assert report["metrics"]["f1_mean"] > chance + 0.04, (report["metrics"]["f1_mean"], chance)
    p = Predictor(loaded)
    preds = {q.key: q for q in p.predict_store(face_ds["store"])}
    assert len(preds) == 84
    key = "videos__val_0003"
    item = FeatureStore.open(face_ds["store"]).read(key)
    one = p.predict_arrays(
        item.regions, item.global_, item.region_valid, face=item.extras["face"], face_valid=item.extras["face_valid"]
    )
    assert one.actions[0][2] == pytest.approx(preds[key].actions[0][2], abs=1e-5)
    with pytest.raises(StoreError, match="needs face crops"):
        p.predict_arrays(item.regions, item.global_, item.region_valid)


def test_texture_target_none_trains_the_face_branch_without_aux_loss(face_ds: dict[str, Any], tmp_path: Path) -> None:
    assert mar(["train", str(_config(face_ds, tmp_path, "plain", texture_target="none"))]) == 0
    parts = json.loads((tmp_path / "plain" / "metrics.json").read_text())["epochs"][0]["train_parts"]
    assert not any("texture" in k for k in parts)


def test_training_refuses_a_store_without_faces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = make_random_dataset(tmp_path / "data", splits={"train": 16, "val": 8})
    assert mar(["train", str(_config(d, tmp_path, "noface"))]) == 1
    assert "no face crops" in capsys.readouterr().err
    assert not (tmp_path / "noface").exists()  # refused before anything was written


def test_face_branch_under_bf16_autocast() -> None:
    import torch

    from microaction.models import create_model

    kw = {"face_size": S, "face_patch": 8, "face_dim": 32, "face_depth": 1}
    m = create_model("bmoe", preset="tiny", num_classes=5, num_body=2, region_dim=12, global_dim=10, **kw)
    B, T = 2, 5
    batch = {
        "regions": torch.randn(B, 4, T, 12),
        "global": torch.randn(B, T, 10),
        "mask": torch.ones(B, T, dtype=torch.bool),
        "region_valid": torch.ones(B, 4, dtype=torch.bool),
        "face": torch.randint(0, 256, (B, T, S, S), dtype=torch.uint8),
        "face_valid": torch.ones(B, T, dtype=torch.bool),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(batch)
    (out["action"].float().sum() + out["aux_losses"]["texture"]).backward()
    assert m.head_texture.encoder.patch_embed.weight.grad is not None
