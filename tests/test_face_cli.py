"""``mar face synth / train / eval / compare`` end to end on a tiny generated set (a few steps)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

from microaction.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("face") / "synth"
    assert (
        main(["face", "synth", "--out", str(out), "--set", "n_train=48", "--set", "n_val=16", "--set", "n_test=16"])
        == 0
    )
    return out


def _train(tiny_set: Path, out: Path, config: str, seed: int) -> Path:
    args = [
        "face", "train", str(REPO / "configs" / config), "--quiet",
        "--set", f"data.root={tiny_set}", "--set", f"out_dir={out}", "--set", f"seed={seed}",
        "--set", "optim.epochs=2", "--set", "optim.batch_size=16", "--set", "optim.max_steps=4",
        "--set", "data.img_size=32",
    ]  # fmt: skip
    assert main(args) == 0
    name = config.removesuffix(".yaml")
    return out / f"{name}_seed{seed}"


def test_train_eval_compare(tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _train(tiny_set, tmp_path, "face_ldp_mae.yaml", 0)
    for name in ("config.yaml", "log.txt", "metrics.json", "best.safetensors", "last.safetensors", "eval_test.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and metrics["epochs"][-1]["steps"] == 4
    assert metrics["epochs"][0]["train_parts"]["texture"] > 0 and metrics["best"]["metric"] == "accuracy"
    with safe_open(str(run / "best.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["microaction"])
    assert meta["model"] == "lssat" and meta["model_kwargs"]["aux_target"] == "ldp"
    assert meta["class_names"][0] == "texture_0deg" and meta["group_names"] == ["A", "B"]

    assert main(["face", "eval", str(run), "--split", "val"]) == 0
    result = json.loads((run / "eval_val.json").read_text())
    assert 0.0 <= result["metrics"]["worst_group_accuracy"] <= result["metrics"]["accuracy"] + 1e-9
    assert set(result["per_group"]["per_group_accuracy"]) == {"A", "B"}
    assert "accuracy_gap" in capsys.readouterr().out

    other = _train(tiny_set, tmp_path, "face_primary.yaml", 0)
    table = tmp_path / "table.md"
    assert main(["face", "compare", str(run), str(other), "--out", str(table)]) == 0
    text = table.read_text()
    assert "face_ldp_mae" in text and "face_primary" in text and "±" in text
    numbers = json.loads(table.with_suffix(".json").read_text())["experiments"]
    assert numbers["face_primary"]["aux_target"] == "none"


def test_config_errors(tiny_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(REPO / "configs" / "face_primary.yaml")
    assert main(["face", "train", config, "--set", "aux.target=pixels", "--set", f"out_dir={tmp_path}"]) == 1
    assert "aux.target" in capsys.readouterr().err
    assert main(["face", "train", config, "--set", "optim.lrr=1"]) == 1
    assert "unknown key 'lrr'" in capsys.readouterr().err
    assert main(["face", "eval", str(tmp_path / "missing")]) == 1


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_interrupted_run_resumes_exactly(
    tiny_set: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import microaction.face.train as face_train

    args = [
        "face", "train", str(REPO / "configs" / "face_ldp_mae.yaml"), "--quiet",
        "--set", f"data.root={tiny_set}", "--set", "optim.epochs=3", "--set", "optim.batch_size=16",
        "--set", "data.img_size=32", "--set", "optim.warmup_epochs=1",
    ]  # fmt: skip
    whole = tmp_path / "whole"
    assert main([*args, "--set", f"run_dir={whole}"]) == 0

    # the same run, killed by an error in the validation of epoch 2
    broken = tmp_path / "broken"
    real = face_train.evaluate_split
    calls = {"n": 0}

    def failing(*a: Any, **k: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(face_train, "evaluate_split", failing)
    assert main([*args, "--set", f"run_dir={broken}"]) == 1
    monkeypatch.setattr(face_train, "evaluate_split", real)
    assert len(json.loads((broken / "metrics.json").read_text())["epochs"]) == 1

    # starting it again is refused (nothing is lost), resuming goes on
    assert main([*args, "--set", f"run_dir={broken}"]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["face", "train", "--resume", str(broken), "--quiet"]) == 0
    a, b = _weights(whole / "last.safetensors"), _weights(broken / "last.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (whole, broken))
    assert [e["train_loss"] for e in ma["epochs"]] == [e["train_loss"] for e in mb["epochs"]]
    assert ma["best"] == mb["best"] and (broken / "eval_test.json").is_file()
    assert "resuming after epoch 1" in (broken / "log.txt").read_text()
    assert main([*args, "--set", f"run_dir={broken}", "--overwrite"]) == 0  # starts again


def test_celeba_attributes_multilabel(tmp_path: Path) -> None:
    """A CelebA-format folder (attribute and partition lists written here): multi-label training
    selects on the macro AUC, and the evaluation reports per-attribute AUC and fairness."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "celeba"
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"{i:06d}.jpg" for i in range(1, 25)]
    rows = []
    for i, n in enumerate(names):
        Image.fromarray(rng.integers(0, 256, (20, 18), dtype=np.uint8)).save(root / "img_align_celeba" / n)
        smiling, male, young = (1 if i % 2 else -1), (1 if i % 3 else -1), (1 if i % 4 < 2 else -1)
        rows.append(f"{n} {smiling} {male} {young}")
    (root / "list_attr_celeba.txt").write_text(f"{len(names)}\nSmiling Male Young\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text(
        "".join(f"{n} {0 if i < 16 else (1 if i < 20 else 2)}\n" for i, n in enumerate(names))
    )
    args = [
        "face", "train", str(REPO / "configs" / "face_primary.yaml"), "--quiet",
        "--set", f"data.root={root}", "--set", "data.format=celeba", "--set", "data.task=multilabel",
        "--set", "data.synthesize_if_missing=false", "--set", "data.attributes=[Smiling, Young]",
        "--set", "data.group_attribute=Male", "--set", "select_metric=auc_macro",
        "--set", "optim.epochs=1", "--set", "optim.batch_size=8", "--set", "data.img_size=32",
        "--set", f"run_dir={tmp_path / 'run'}",
    ]  # fmt: skip
    assert main(args) == 0
    result = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert result["class_names"] == ["Smiling", "Young"] and result["group_names"] == ["Male", "not Male"]
    assert 0.0 <= result["metrics"]["auc_macro"] <= 1.0
    assert set(result["per_group"]["per_attribute"]) == {"Smiling", "Young"}
    assert "max_equalized_odds_difference" in result["metrics"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["best"]["metric"] == "auc_macro"
