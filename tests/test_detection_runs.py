"""Detection runs on data as users have it: no validation split (best = the last epoch, said in
the log, config.yaml and the checkpoints; ``mar eval`` scores the split there is), recordings the
store lacks (``data.allow_missing``); and the clip trainer without validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors.torch import load_file

from microaction.cli import main as mar
from microaction.engine.checkpoint import read_meta

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(annotations without a val split, store): the tiny synthetic recordings, val renamed test."""
    from microaction.data.synth.recording import generate_recordings
    from microaction.extract.jobs.job_list import collect_jobs
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import ExtractParams

    root = tmp_path_factory.mktemp("noval")
    data = root / "synth"
    generate_recordings(data, "recordings_tiny", seed=0, workers=1, progress=False)
    params = ExtractParams(
        parser="groundtruth", encoders=["pose"], fps=24.0, encoder_options={"pose": {"window": 4, "stride": 4}}
    )
    run_extraction(collect_jobs(data / "manifest.csv"), params, root / "store", progress=False)
    doc = json.loads((data / "annotations.json").read_text())
    for v in doc.values():
        v["subset"] = "test" if v["subset"] == "val" else v["subset"]
    (root / "noval.json").write_text(json.dumps(doc))
    return root / "noval.json", root / "store"


def _train(ann: Path, store: Path, out: Path, *extra: str, model: str = "tridet") -> Path:
    from microaction.engine.trainer import train

    sets = [f"data.store={store}", f"data.manifest={ann}", f"run.out_dir={out}", "run.epochs=3",
            "detection.window=64", "detection.windows_per_epoch=4", "run.batch_size=4", *extra]  # fmt: skip
    return train(CONFIGS / f"demo_{model}.yaml", sets)


def test_without_validation_best_is_the_last_epoch(
    recordings: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ann, store = recordings
    run = _train(ann, store, tmp_path)
    best, last = read_meta(run / "best.safetensors"), read_meta(run / "last.safetensors")
    assert best["epoch"] == last["epoch"] == 3 and best["best_by"] == "last"
    wb, wl = load_file(run / "best.safetensors"), load_file(run / "last.safetensors")
    assert wb.keys() == wl.keys() and all(torch.equal(wb[k], wl[k]) for k in wb) and best == last
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["best_by"] == "last"
    assert "best.safetensors is the last epoch" in (run / "log.txt").read_text()
    doc = json.loads((run / "metrics.json").read_text())  # strict JSON: no NaN for the missing metric
    assert doc["best"]["epoch"] == 3 and doc["best"]["value"] is None and doc["best"]["by"] == "last"

    # mar eval without --split: the run has no val split, so it says so and scores test
    capsys.readouterr()
    assert mar(["eval", str(run)]) == 0
    out = capsys.readouterr().out
    assert "no 'val' split" in out and "evaluating 'test'" in out
    assert json.loads((run / "eval_test.json").read_text())["recordings"] == 2
    # asked for val explicitly: refused, naming the splits there are
    assert mar(["eval", str(run), "--split", "val"]) == 1
    assert "it has 'train', 'test'" in capsys.readouterr().err


def test_an_older_run_whose_best_stayed_at_epoch_one_is_named(
    recordings: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run trained without validation before this fix: its best.safetensors is epoch 1 (no
    ``best_by``); whatever loads it says so and names --checkpoint last."""

    from microaction.engine.checkpoint import save_weights

    ann, store = recordings
    run = _train(ann, store, tmp_path, "run.epochs=2")
    meta = {k: v for k, v in read_meta(run / "last.safetensors").items() if k != "best_by"}
    save_weights(run / "best.safetensors", load_file(run / "best.safetensors"), {**meta, "epoch": 1})
    capsys.readouterr()
    assert mar(["eval", str(run), "--split", "test"]) == 0
    err = capsys.readouterr().err
    assert "is epoch 1 of a run trained without validation" in err and "--checkpoint last" in err
    assert mar(["eval", str(run), "--split", "test", "--checkpoint", "last"]) == 0
    assert "--checkpoint last" not in capsys.readouterr().err
    save_weights(run / "best.safetensors", load_file(run / "best.safetensors"), {**meta, "best_by": "last"})
    assert mar(["eval", str(run), "--split", "test"]) == 0  # a run of this version: nothing to say
    assert "--checkpoint last" not in capsys.readouterr().err


def test_with_validation_best_follows_the_val_map(tmp_path: Path, recordings: tuple[Path, Path]) -> None:
    ann, store = recordings
    doc = json.loads(ann.read_text())
    doc["rec_val_000"]["subset"] = "val"
    with_val = tmp_path / "val.json"
    with_val.write_text(json.dumps(doc))
    run = _train(with_val, store, tmp_path, "run.epochs=2")
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["best_by"] == "val"
    metrics = json.loads((run / "metrics.json").read_text())
    maps = [e["val"]["mAP"] for e in metrics["epochs"]]
    assert metrics["best"]["epoch"] == 1 + maps.index(max(maps)) and metrics["best"]["by"] == "val"
    assert read_meta(run / "best.safetensors")["epoch"] == metrics["best"]["epoch"]


def test_allow_missing_skips_recordings_the_store_lacks(recordings: tuple[Path, Path], tmp_path: Path) -> None:
    from microaction.engine.detection import evaluate_detection_run

    ann, store = recordings
    doc = json.loads(ann.read_text())
    doc["rec_ghost"] = {**doc["rec_train_000"], "subset": "train"}  # never extracted
    doc["rec_ghost_test"] = {**doc["rec_test_000"], "subset": "test"}
    ghost = tmp_path / "ghost.json"
    ghost.write_text(json.dumps(doc))
    with pytest.raises(FileNotFoundError, match="allow_missing"):
        _train(ghost, store, tmp_path / "a")
    run = _train(ghost, store, tmp_path / "b", "data.allow_missing=true", "run.epochs=1")
    log = (run / "log.txt").read_text()
    assert "1 train and 0 val recordings are not in the store; skipped" in log and "rec_ghost" in log
    assert "2 training recordings" in log
    report = evaluate_detection_run(run, "test")  # eval honours it too: the recordings there are scored
    assert report["recordings"] == 2


def test_clip_training_without_validation_says_best_is_last(tmp_path: Path) -> None:
    from microaction.engine.testing import make_random_dataset
    from microaction.engine.trainer import train

    d = make_random_dataset(tmp_path / "data", num_classes=4, num_body=2, splits={"train": 24, "test": 8})
    cfg: dict[str, Any] = {
        "data": {"store": str(d["store"]), "taxonomy": str(d["taxonomy"]), "manifest": str(d["manifest"]),
                 "num_steps": 4},
        "model": {"name": "mean_mlp", "preset": "tiny"},
        "run": {"name": "r", "out_dir": str(tmp_path), "epochs": 2, "batch_size": 8, "progress": False},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = train(tmp_path / "c.yaml")
    best = read_meta(run / "best.safetensors")
    assert best["epoch"] == 2 and best["best_by"] == "last"
    assert yaml.safe_load((run / "config.yaml").read_text())["run"]["best_by"] == "last"
    assert "best.safetensors is the last epoch" in (run / "log.txt").read_text()
    assert mar(["eval", str(run), "--quiet"]) == 0  # no val split: evaluates test
    assert (run / "eval_test.json").is_file()
