"""``mar demo --quick``: the whole chain (synth → extract → train → eval → report) end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microaction.cli import main


def test_demo_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "model" in printed and "F1_mean" in printed
    summary = json.loads((out / "demo.json").read_text())
    assert [r["model"] for r in summary["results"]] == ["bmoe", "m3e_global"]
    # --quick learns nothing by design (one training clip per class, 4 epochs: F1_mean sits at the
    # majority-body baseline, and the test recording's classes are not in the training recordings),
    # so it checks the chain, not quality: test_engine_train and test_recordings_detection assert
    # above-chance quality on the same training and evaluation code. Here: the numbers shown are
    # the ones `mar eval` computed on the test split, and training moved the models.
    for r in summary["results"]:
        m = r["metrics"]
        ev = json.loads((Path(r["run"]) / "eval_test.json").read_text())
        assert ev["split"] == "test" and len(ev["class_names"]) == 52
        assert m == ev["metrics"]
        row = next(line.split() for line in printed.splitlines() if line.startswith(f"{r['model']} "))
        assert row[1:3] == [f"{100 * m['action_top1']:.1f}%", f"{100 * m['f1_mean']:.1f}%"], row
        history = json.loads((Path(r["run"]) / "metrics.json").read_text())["epochs"]
        main_losses = [e["train_loss"] for e in history if e["stage"] == "main"]
        assert len(main_losses) >= 2 and main_losses[-1] < main_losses[0], main_losses
    # the rendered videos went through the store: one item per clip of the manifest
    n_clips = sum(json.loads((out / "synth" / "dataset.json").read_text())["clips"].values())
    assert len(list((out / "synth" / "videos").glob("*.mp4"))) == n_clips
    assert len(list((out / "store" / "items").glob("*.npz"))) == n_clips
    assert (out / "store" / "packed" / "keys.json").is_file()  # packed before training
    assert (out / "report" / "report.html").is_file()
    # the first model trained in a background process, its log in the runs folder
    assert "finished" in (out / "runs" / "bmoe.log").read_text()
    # B-MoE's routing over the four regions is in its evaluation (the faithfulness benchmark reads it)
    ev = json.loads((out / "runs" / "bmoe" / "eval_test.json").read_text())
    rows = [r for r in ev["routing_per_class"] if r is not None]  # None: no test clip of the class
    assert rows and all(len(r) == 4 and abs(sum(r) - 1) < 1e-3 for r in rows)
    # the detection run: test mAP in the summary, the table and the report; the timeline of the
    # rendered test recording beside its video, and the overlay
    det = summary["detection"]
    assert det["model"] == "bmoe_tridet" and "detector" in printed and "mAP@0.5" in printed
    ev = json.loads((Path(det["run"]) / "eval_test.json").read_text())
    assert ev["task"] == "detection" and ev["recordings"] == 1 and det["metrics"] == ev["metrics"]
    losses = [e["train_loss"] for e in json.loads((Path(det["run"]) / "metrics.json").read_text())["epochs"]]
    assert len(losses) >= 2 and losses[-1] < 0.8 * losses[0], losses  # observed 7.4 -> 3.5
    tl = Path(det["timeline"])
    for name in ("timeline.csv", "timeline.json", "timeline.eaf", "timeline.html", "rec_test_000.mp4", "timeline.mp4"):
        assert (tl / name).is_file(), name
    page = (out / "report" / "report.html").read_text()
    assert "mAP@0.1:0.9" in page and 'id="run-bmoe_tridet"' in page


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "precious.txt").read_text() == "keep me"
