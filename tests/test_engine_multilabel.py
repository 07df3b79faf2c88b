"""Multi-label training (MPII-GI style): BCE loss, mean average precision as the primary metric."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from microaction.engine import evaluate_run, train
from microaction.engine.testing import make_random_dataset


def test_multilabel_train_and_eval(tmp_path: Path) -> None:
    ds = make_random_dataset(tmp_path / "ds", num_classes=6, num_body=3, splits={"train": 48, "val": 24})
    tax = tmp_path / "ml.yaml"
    tax.write_text(
        yaml.safe_dump({"name": "ml", "multi_label": True, "classes": [{"id": i, "name": f"c{i}"} for i in range(6)]})
    )
    rows = list(csv.DictReader(Path(ds["manifest"]).read_text(encoding="utf-8").splitlines()))
    man = tmp_path / "ml.csv"
    with open(man, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "split"])
        for r in rows:  # the clip's own class plus the next one
            c = int(r["label"])
            w.writerow([r["video"], f"{c};{(c + 1) % 6}", r["split"]])
    cfg = {
        "data": {"store": str(ds["store"]), "taxonomy": str(tax), "manifest": str(man), "num_steps": 8},
        "model": {"name": "mean_mlp", "preset": "tiny"},
        "optim": {"lr": 3e-3},
        "loss": {"emb_weight": 0.0},
        "run": {"name": "ml", "out_dir": str(tmp_path / "runs"), "epochs": 3, "batch_size": 16, "progress": False},
    }
    path = tmp_path / "ml_cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = train(path, [])
    report = evaluate_run(run_dir, "val")
    assert 0.0 <= report["metrics"]["map"] <= 1.0
    # learnable signal: well above the positive rate (2 of 6 labels per clip)
    assert report["metrics"]["map"] > 0.5, report["metrics"]
