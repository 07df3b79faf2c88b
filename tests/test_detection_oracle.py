"""Steps <-> seconds, end to end: an oracle detector that outputs the ground-truth steps of
recordings whose first feature step is not at 0 s scores mAP 1.0 through ``mar eval``, and
``mar timeline`` gives the ground truth's seconds within half a step.

The oracle sees only features: channel ``c`` of the global stream is 1 at the steps whose time
lies inside a ground-truth segment of class ``c`` (the store's timestamps are the steps' times).
It returns, per run of such steps ``a..b``, the segment ``[a - 0.5, b + 0.5]`` in steps (step
``i`` covers ``i ± 0.5``, as the detectors' ``detect``), so every conversion between steps and
seconds on the way (store timestamps -> recording grid, detections -> seconds, scoring, timeline
rows) is the toolkit's own."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from microaction.cli import main as mar

DT = 0.1  # seconds per feature step
# recording -> (time of step 0, steps, ground truth [(class, start s, end s)])
RECORDINGS: dict[str, tuple[float, int, list[tuple[int, float, float]]]] = {
    "late_start": (12.34, 320, [(0, 14.02, 18.47), (1, 16.51, 21.0), (2, 30.13, 34.96), (0, 36.2, 41.77)]),
    "window_centred": (0.0625, 260, [(2, 0.9, 4.33), (1, 10.05, 15.61), (0, 19.3, 23.0)]),
}


class OracleDetector(nn.Module):
    """Segments of the steps where a class's global channel is on (test model, registered below)."""

    def __init__(self, num_classes: int, num_body: int, regions: list[str], region_dim: int, global_dim: int) -> None:
        super().__init__()
        self.num_classes, self.regions = num_classes, tuple(regions)
        self.dummy = nn.Parameter(torch.zeros(1))  # a checkpoint holds at least one tensor

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"global": batch["global"], "mask": batch["mask"]}

    def detect(self, out: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        results = []
        for g, m in zip(out["global"], out["mask"]):
            segs, labels = [], []
            for c in range(self.num_classes):
                on = np.r_[False, ((g[:, c] > 0.5) & m).numpy(), False]
                edges = np.flatnonzero(np.diff(on.astype(np.int8)))
                for a, b in zip(edges[::2], edges[1::2]):  # steps a .. b-1 are on
                    segs.append([a - 0.5, b - 0.5])
                    labels.append(c)
            results.append({"segments": torch.tensor(segs, dtype=torch.float64).reshape(-1, 2),
                            "scores": torch.full((len(labels),), 0.9), "labels": torch.tensor(labels, dtype=torch.long)})  # fmt: skip
        return results


@pytest.fixture
def oracle_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """(run folder, store) of the oracle on the recordings above (all in the test split)."""
    from microaction.data.store import FeatureStore, StoreManifest
    from microaction.engine.checkpoint import save_weights
    from microaction.engine.config import DataConfig, ExperimentConfig, ModelConfig, config_to_yaml
    from microaction.engine.testing import write_tiny_taxonomy
    from microaction.models import registry
    from microaction.taxonomy import load_taxonomy

    monkeypatch.setitem(registry._REGISTRY, "oracle", registry.ModelEntry("oracle", OracleDetector))
    tax_path = write_tiny_taxonomy(tmp_path / "taxonomy.yaml", 3, 1, ("head",))
    tax = load_taxonomy(str(tax_path))
    manifest = StoreManifest(regions=["head"], region_dim=2, global_dim=3, parser="groundtruth",
                             encoders=[{"name": "pose", "dim": 3}], fps=24.0)  # fmt: skip
    store = FeatureStore.create(tmp_path / "store", manifest)
    doc = {}
    for video, (t0, steps, gt) in RECORDINGS.items():
        ts = t0 + DT * np.arange(steps)
        glob = np.zeros((steps, 3), np.float32)
        for c, a, b in gt:
            glob[(ts >= a) & (ts < b), c] = 1.0
        store.write(video, regions=np.zeros((1, steps, 2), np.float32), global_=glob,
                    region_valid=np.ones(1, bool), timestamps=ts)  # fmt: skip
        doc[video] = {"subset": "test", "duration": round(t0 + DT * steps, 3), "actions": [list(x) for x in gt]}
    ann = tmp_path / "annotations.json"
    ann.write_text(json.dumps(doc))
    run = tmp_path / "oracle"
    run.mkdir()
    cfg = ExperimentConfig(data=DataConfig(store=str(tmp_path / "store"), taxonomy=str(tax_path), manifest=str(ann)),
                           model=ModelConfig(name="oracle"), task="detection")  # fmt: skip
    (run / "config.yaml").write_text(config_to_yaml(cfg))
    kwargs = {"num_classes": 3, "num_body": 0, "regions": ["head"], "region_dim": 2, "global_dim": 3}
    meta = {"model": "oracle", "model_kwargs": kwargs, "taxonomy": tax.to_dict(), "store_manifest": manifest.to_dict(),
            "num_steps": 64, "primary_metric": "mAP", "task": "detection"}  # fmt: skip
    save_weights(run / "best.safetensors", OracleDetector(**kwargs).state_dict(), meta)  # type: ignore[arg-type]
    return run, tmp_path / "store"


def test_oracle_scores_map_one_through_mar_eval(oracle_run: tuple[Path, Path]) -> None:
    run, _ = oracle_run
    assert mar(["eval", str(run), "--split", "test"]) == 0
    report = json.loads((run / "eval_test.json").read_text())
    assert report["recordings"] == 2 and report["detections"] == report["ground_truth"] == 7
    assert report["metrics"]["classes_without_gt"] == 0
    for name, value in report["metrics"].items():
        if name.startswith("mAP"):
            assert value == pytest.approx(1.0), name  # every tIoU up to 0.9


@pytest.mark.parametrize("video", sorted(RECORDINGS))
def test_oracle_timeline_rows_are_the_ground_truth_seconds(oracle_run: tuple[Path, Path], tmp_path: Path,
                                                           video: str) -> None:  # fmt: skip
    run, store = oracle_run
    out = tmp_path / "tl"
    argv = ["timeline", str(run), "--store", str(store), "--key", video, "--out", str(out), "--min-score", "0"]
    assert mar([*argv, "--quiet"]) == 0
    with (out / "timeline.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    assert not [c for c in header if c.startswith("routing_")]  # a detector without routing: no routing columns
    got = sorted((int(r["class_id"]), float(r["start"]), float(r["end"])) for r in rows)
    want = sorted(RECORDINGS[video][2])
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose(np.array(got)[:, 1:], np.array(want)[:, 1:], atol=DT / 2 + 1e-3)
    t0, steps, _ = RECORDINGS[video]
    duration = json.loads((out / "timeline.json").read_text())["duration"]
    assert duration == pytest.approx(t0 + DT * (steps - 0.5), abs=1e-3)  # the end of the last step
