"""Every artefact is verifiable and every failure visible to scripts: packed arrays carry checksums
(``mar extract --verify`` hashes them, readers check sizes and shapes at open and refuse NaN naming
the item), ``mar pack`` rebuilds a damaged pack from the items, checkpoints carry a checksum that
every load checks, and ``mar extract`` / ``mar predict`` exit 3 when some items failed (1 when all
did, 0 with ``--allow-failures``) and keep what they could do."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save as st_save

from microaction.cli import main as mar
from microaction.data.loader import ClipDataset
from microaction.data.samples import Sample
from microaction.data.store import FeatureStore, StoreError
from microaction.engine.checkpoint import (
    SUM_KEY,
    CheckpointError,
    CheckpointWarning,
    load_weights,
    save_weights,
)
from microaction.engine.testing import make_random_dataset
from microaction.taxonomy import load_taxonomy


def _config(d: dict[str, Any], path: Path) -> Path:
    """A one-epoch mean_mlp run on ``make_random_dataset``'s files."""
    data = {"store": str(d["store"]), "taxonomy": str(d["taxonomy"]), "manifest": str(d["manifest"]), "num_steps": 4}
    run = {"name": "r", "out_dir": str(path.parent / "runs"), "epochs": 1, "batch_size": 8, "progress": False,
           "threads": 1}  # fmt: skip
    path.write_text(yaml.safe_dump({"data": data, "model": {"name": "mean_mlp", "preset": "tiny"}, "run": run}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A packed store and a run trained on it (copied by each test before it damages anything)."""
    root = tmp_path_factory.mktemp("trained")
    d = make_random_dataset(root, splits={"train": 16, "val": 8}, pack=True)
    cfg = _config(d, root / "config.yaml")
    assert mar(["train", str(cfg)]) == 0
    return {**d, "config": cfg, "run": root / "runs" / "r"}


def _copy(trained: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """The store and run copied under ``tmp_path``, the run's config pointing at the copied store."""
    store = Path(shutil.copytree(trained["store"], tmp_path / "store"))
    run = Path(shutil.copytree(trained["run"], tmp_path / "run"))
    doc = yaml.safe_load((run / "config.yaml").read_text())
    doc["data"]["store"] = str(store)
    (run / "config.yaml").write_text(yaml.safe_dump(doc))
    cfg = yaml.safe_load(trained["config"].read_text())
    cfg["data"]["store"] = str(store)
    cfg["run"]["out_dir"] = str(tmp_path / "runs")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return {"store": store, "run": run, "config": tmp_path / "config.yaml"}


def _flip(path: Path, at: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[at : at + n] = bytes(b ^ 0x5A for b in data[at : at + n])
    path.write_bytes(bytes(data))


# -- packed stores ---------------------------------------------------------------------------------
def test_pack_records_checksums_and_verify_passes(trained: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    rec = json.loads((trained["store"] / "packed" / "pack.json").read_text())
    assert set(rec["files"]) == {"regions.npy", "global.npy", "timestamps.npy", "step_valid.npy", "offsets.npy",
                                 "region_valid.npy", "keys.json"}  # fmt: skip
    for name, r in rec["files"].items():
        assert r["bytes"] == (trained["store"] / "packed" / name).stat().st_size and len(r["sha256"]) == 64
    statuses = FeatureStore.open(trained["store"]).statuses()
    assert rec["items"] == {k: statuses[k]["sha256"] for k in rec["items"]} and len(rec["items"]) == 24
    assert mar(["extract", "--verify", str(trained["store"])]) == 0
    assert "packed arrays: 7 files hashed, 0 damaged" in capsys.readouterr().out


def test_truncated_packed_file_is_named_everywhere_and_rebuilt(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    c = _copy(trained, tmp_path)
    glob = c["store"] / "packed" / "global.npy"
    before = FeatureStore.open(c["store"]).read("videos__train_0003").global_.copy()
    with open(glob, "r+b") as f:
        f.truncate(5000)
    capsys.readouterr()
    assert mar(["extract", "--verify", str(c["store"])]) == 1
    out = capsys.readouterr().out
    assert "packed arrays:" in out and "1 damaged" in out and f"damaged packed/global.npy: {glob}" in out
    assert "5000 bytes" in out and f"mar pack --force {c['store']}" in out
    for argv in (["train", str(c["config"])], ["eval", str(c["run"]), "--quiet"]):
        assert mar(argv) == 1, argv
        err = capsys.readouterr().err
        assert str(glob) in err and "mar pack --force" in err and "mmap length" not in err, (argv, err)
    # plain `mar pack` sees the damage and rebuilds from the items; verify then finds nothing
    assert mar(["pack", str(c["store"])]) == 0
    assert "rebuilding" in capsys.readouterr().out
    assert mar(["extract", "--verify", str(c["store"])]) == 0
    assert "0 damaged" in capsys.readouterr().out
    np.testing.assert_array_equal(FeatureStore.open(c["store"]).read("videos__train_0003").global_, before)
    assert mar(["pack", str(c["store"])]) == 0  # intact and up to date: kept
    assert "up to date" in capsys.readouterr().out
    assert mar(["eval", str(c["run"]), "--quiet"]) == 0


def test_truncated_file_of_a_pack_without_checksums_is_named(tmp_path: Path) -> None:
    from microaction.engine.testing import make_packed_store

    make_packed_store(tmp_path / "s", 3, region_dim=8, global_dim=8)  # no pack.json: the headers alone tell
    reg = tmp_path / "s" / "packed" / "regions.npy"
    size = reg.stat().st_size
    with open(reg, "r+b") as f:
        f.truncate(size - 16)
    with pytest.raises(StoreError) as e:
        FeatureStore.open(tmp_path / "s").packed_arrays()
    assert str(reg) in str(e.value) and f"{size - 16} bytes, its header needs {size}" in str(e.value)


def test_flipped_bytes_in_packed_regions_are_found_and_force_rebuilds(
    trained: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    c = _copy(trained, tmp_path)
    reg = c["store"] / "packed" / "regions.npy"
    want = reg.read_bytes()
    _flip(reg, reg.stat().st_size // 2)  # same size: only the checksum can tell
    FeatureStore.open(c["store"]).packed_arrays()  # opening checks sizes and shapes only: passes
    capsys.readouterr()
    assert mar(["extract", "--verify", str(c["store"]), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (
        list(doc["packed_damaged"]) == ["packed/regions.npy"]
        and "checksum differs" in doc["packed_damaged"]["packed/regions.npy"]
    )
    assert doc["damaged"] == {}  # the items are fine: they are what the pack is rebuilt from
    assert mar(["pack", "--force", str(c["store"])]) == 0
    assert reg.read_bytes() == want
    assert mar(["extract", "--verify", str(c["store"])]) == 0
    assert "0 damaged" in capsys.readouterr().out


def test_verify_repair_rebuilds_a_damaged_pack(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    c = _copy(trained, tmp_path)
    _flip(c["store"] / "packed" / "global.npy", 300)
    assert mar(["extract", "--verify", str(c["store"]), "--repair", "--quiet"]) == 0
    assert "rebuilt" in capsys.readouterr().out
    assert FeatureStore.open(c["store"]).verify_packed().damaged == {}


def test_a_pack_older_than_its_items_is_stale(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    c = _copy(trained, tmp_path)
    store = FeatureStore.open(c["store"])
    key = "videos__train_0005"
    it = store.read(key, packed=False)
    store.write(key, regions=it.regions * 0.5, global_=it.global_, region_valid=it.region_valid,
                timestamps=it.timestamps, extras=it.extras)  # fmt: skip  # re-extracted after mar pack
    assert mar(["extract", "--verify", str(c["store"])]) == 1
    out = capsys.readouterr().out
    assert "packed from an earlier extraction of 1 item(s): videos__train_0005" in out
    assert mar(["pack", str(c["store"])]) == 0  # rebuilt: the pack now holds the new features
    np.testing.assert_array_equal(
        FeatureStore.open(c["store"]).read(key).regions, (it.regions * 0.5).astype(np.float16)
    )


def test_nan_in_packed_features_names_item_and_file(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    c = _copy(trained, tmp_path)
    store = FeatureStore.open(c["store"])
    pa = store.packed_arrays()
    assert pa is not None
    key = "videos__val_0002"
    a, b = pa.span(key)
    reg = c["store"] / "packed" / "regions.npy"
    with open(reg, "r+b") as f:  # bytes that decode to float16 NaN over the clip's steps
        f.seek(pa.regions.offset + a * pa.regions.row_bytes)
        f.write(np.full((b - a) * pa.regions.row_bytes // 2, np.nan, np.float16).tobytes())
    with pytest.raises(StoreError) as e:
        FeatureStore.open(c["store"]).read(key)
    assert key in str(e.value) and str(reg) in str(e.value) and "NaN" in str(e.value)
    ds = ClipDataset(FeatureStore.open(c["store"]), [Sample(key)], load_taxonomy(trained["taxonomy"]), num_steps=64)
    with pytest.raises(StoreError, match=key):
        ds.__getitems__([0])
    assert mar(["eval", str(c["run"]), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert key in err and str(reg) in err


def test_nan_in_an_item_file_names_item_and_file(tmp_path: Path) -> None:
    d = make_random_dataset(tmp_path, splits={"train": 3})
    store = FeatureStore.open(d["store"])
    key = store.keys()[1]
    path = store.root / "items" / f"{key}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["global"][2, 3] = np.inf
    np.savez(path, **arrays)
    with pytest.raises(StoreError) as e:
        store.read(key)
    assert key in str(e.value) and str(path) in str(e.value) and "non-finite" in str(e.value)


def test_a_pack_whose_items_are_gone_is_not_rebuilt_empty(tmp_path: Path) -> None:
    from microaction.engine.testing import make_packed_store

    keys = make_packed_store(tmp_path / "s", 4, region_dim=8, global_dim=8)
    assert FeatureStore.open(tmp_path / "s").verify_packed().note  # packed without checksums: said so
    assert mar(["pack", "--force", str(tmp_path / "s")]) == 1
    assert json.loads((tmp_path / "s" / "packed" / "keys.json").read_text()) == keys


# -- checkpoints ---------------------------------------------------------------------------------
def test_checkpoint_with_flipped_bytes_is_refused(trained: dict[str, Path], tmp_path: Path, capsys) -> None:
    c = _copy(trained, tmp_path)
    ckpt = c["run"] / "best.safetensors"
    with safe_open(str(ckpt), framework="pt") as f:
        assert len(f.metadata()[SUM_KEY]) == 64
    _flip(ckpt, ckpt.stat().st_size // 2 + 200)
    capsys.readouterr()
    assert mar(["eval", str(c["run"]), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(ckpt) in err and "checksum mismatch" in err
    assert mar(["predict", str(c["run"]), str(c["store"]), "--quiet"]) == 1
    assert str(ckpt) in capsys.readouterr().err
    key = FeatureStore.open(c["store"]).keys()[0]
    timeline = ["timeline", str(c["run"]), "--store", str(c["store"]), "--key", key, "--out", str(tmp_path / "tl")]
    for argv in (timeline, ["submit", "--run", str(c["run"]), "--split", "val", "--out", str(tmp_path / "s.zip")]):
        assert mar(argv) == 1, argv
        err = capsys.readouterr().err
        assert str(ckpt) in err and "checksum mismatch" in err, (argv, err)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_weights(ckpt)


def test_checkpoint_metadata_edits_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, {"w": torch.arange(4.0)}, {"model": "m", "num_steps": 8})
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
    meta["microaction"] = meta["microaction"].replace('"num_steps": 8', '"num_steps": 9')
    path.write_bytes(st_save({"w": torch.arange(4.0)}, metadata=meta))
    with pytest.raises(CheckpointError, match=str(path)):
        load_weights(path)


def test_checkpoint_without_checksum_loads_with_a_warning(trained: dict[str, Path], tmp_path: Path) -> None:
    c = _copy(trained, tmp_path)
    ckpt = c["run"] / "best.safetensors"
    with safe_open(str(ckpt), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != SUM_KEY}
        tensors = {k: f.get_tensor(k).clone() for k in f.keys()}  # noqa: SIM118
    ckpt.write_bytes(st_save(tensors, metadata=meta))  # what versions before checksums wrote
    with pytest.warns(CheckpointWarning, match="without a checksum"):
        state, _ = load_weights(ckpt)
    assert all(torch.equal(state[k], v) for k, v in tensors.items())
    with pytest.warns(CheckpointWarning):
        assert mar(["eval", str(c["run"]), "--quiet"]) == 0


# -- exit status and kept work -------------------------------------------------------------------
def _pose_pickle(path: Path, good: int, bad: int) -> Path:
    """A PySKL-style pose pickle: ``good`` COCO-17 clips and ``bad`` ones with a wrong keypoint shape."""
    rng = np.random.default_rng(0)
    anns = []
    for i in range(good + bad):
        kp = (rng.random((1, 10, 17, 2)) * 200 + 100).astype(np.float32)
        if i >= good:
            kp = kp[..., :1]  # [M, T, V, 1]: refused by the reader
        anns.append({"frame_dir": f"clip{i}", "label": 0, "img_shape": (480, 640), "total_frames": 10,
                     "keypoint": kp, "keypoint_score": np.ones(kp.shape[:3], np.float32)})  # fmt: skip
    path.write_bytes(pickle.dumps({"split": {"train": [a["frame_dir"] for a in anns]}, "annotations": anns}))
    return path


def test_extract_exit_status_says_some_or_all_failed(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["extract", "--parser", "keypoints", "--encoder", "pose", "--keypoints-fps", "30", "--quiet"]
    mixed = _pose_pickle(tmp_path / "mixed.pkl", good=3, bad=5)
    assert mar([*args, "--videos", str(mixed), "--out", str(tmp_path / "a")]) == 3
    out = capsys.readouterr().out
    assert "3 done" in out and "5 failed" in out and out.count("  failed clip") == 5
    assert FeatureStore.open(tmp_path / "a").keys() == ["clip0", "clip1", "clip2"]
    # resumed: the recorded failures still count (they were not retried)
    assert mar([*args, "--videos", str(mixed), "--out", str(tmp_path / "a")]) == 3
    assert "5 failed earlier" in capsys.readouterr().out
    assert mar([*args, "--videos", str(mixed), "--out", str(tmp_path / "a"), "--allow-failures"]) == 0
    bad = _pose_pickle(tmp_path / "bad.pkl", good=0, bad=2)
    assert mar([*args, "--videos", str(bad), "--out", str(tmp_path / "b")]) == 1
    good = _pose_pickle(tmp_path / "good.pkl", good=2, bad=0)
    assert mar([*args, "--videos", str(good), "--out", str(tmp_path / "c")]) == 0
    shown = _help("extract")
    assert "--allow-failures" in shown and "3 some videos failed, the others are done" in shown


def _help(command: str) -> str:
    from microaction.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return " ".join(sub.choices[command].format_help().split())  # type: ignore[attr-defined]


def test_predict_on_a_folder_keeps_the_good_clips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from microaction.models import create_model, model_entry

    data = tmp_path / "synth"
    assert mar(["synth", "--out", str(data), "--preset", "tiny", "--render", "--workers", "1"]) == 0
    videos = data / "videos"
    good, bad = ["test_00000.mp4", "test_00002.mp4", "test_00003.mp4"], "test_00001.mp4"
    for v in videos.iterdir():
        if v.name not in (*good, bad):
            v.unlink()
    sidecar = data / "keypoints" / "test_00001.npz"
    sidecar.write_bytes(sidecar.read_bytes()[:500])  # a bad clip: its keypoint file cut short
    store = tmp_path / "store"
    assert mar(["extract", "--videos", str(videos), "--out", str(store), "--parser", "groundtruth", "--encoder", "pose",
                "--quiet", "--allow-failures"]) == 0  # fmt: skip
    manifest = FeatureStore.open(store).manifest
    tax = load_taxonomy("ma52")
    kw = {"num_classes": tax.num_classes, "num_body": tax.num_body, "regions": list(manifest.regions),
          "region_dim": manifest.region_dim, "global_dim": manifest.global_dim}  # fmt: skip
    kw.update(model_entry("mean_mlp").presets["tiny"])
    run = tmp_path / "run"
    meta = {"model": "mean_mlp", "model_kwargs": kw, "taxonomy": tax.to_dict(), "store_manifest": manifest.to_dict(),
            "num_steps": 8, "primary_metric": "f1_mean"}  # fmt: skip
    save_weights(run / "best.safetensors", create_model("mean_mlp", **kw).state_dict(), meta)
    out = tmp_path / "preds.csv"
    capsys.readouterr()
    assert mar(["predict", str(run), str(videos), "--out", str(out), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert bad in err and "1 of 4 videos failed" in err
    with open(out, newline="") as f:
        assert [r["key"] for r in csv.DictReader(f)] == good
    with open(tmp_path / "preds.failed.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [Path(r["video"]).name for r in rows] == [bad] and rows[0]["error"]
    assert mar(["predict", str(run), str(videos), "--out", str(out), "--quiet", "--allow-failures"]) == 0
    (videos / bad).unlink()
    assert mar(["predict", str(run), str(videos), "--out", str(out), "--quiet"]) == 0
    assert not (tmp_path / "preds.failed.csv").exists()  # no failures: no stale list
    assert "3 a folder of videos in which some failed" in _help("predict")
