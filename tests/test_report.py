"""Reports from real tiny runs: a generated feature store labelled with MA-52's 52 classes,
``mar train`` (B-MoE tiny, two seeds; Micro-DualNet tiny), ``mar eval``, then ``mar report``.
Checks: files exist, figures are non-trivial at the expected size, the metrics table has MA-52's
layout with mean ± std over the seeds, the page is self-contained, clear errors for incomplete
run folders, and headless Chromium renders the page's images."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from microaction.cli import main as mar
from microaction.engine.testing import make_random_dataset
from microaction.report import ReportError, build_report, read_run_data
from microaction.report.tables import metrics_table


def _train_and_eval(root: Path, data: dict[str, Path], name: str, model: str, seed: int) -> Path:
    cfg = {
        "data": {"store": str(data["store"]), "taxonomy": "ma52", "manifest": str(data["manifest"]), "num_steps": 4},
        "model": {"name": model, "preset": "tiny"},
        "run": {"name": name, "out_dir": str(root / "runs"), "seed": seed, "epochs": 2, "batch_size": 32,
                "device": "cpu", "progress": False},
    }  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert mar(["train", str(path)]) == 0
    run = root / "runs" / name
    assert mar(["eval", str(run), "--quiet"]) == 0
    return run


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three runs trained for real: B-MoE tiny with seeds 0 and 1, Micro-DualNet tiny."""
    root = tmp_path_factory.mktemp("e2e")
    # 52 classes; 40 val clips, so 12 classes have none (their per-class means are null)
    data = make_random_dataset(root / "data", num_classes=52, num_body=7, splits={"train": 52, "val": 40},
                               lengths=(6, 10), seed=0)  # fmt: skip
    # the same clips under MA-52's label set: class ids kept, body groups from the taxonomy
    with open(data["manifest"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    with open(data["manifest"], "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["video", "label", "split"])
        w.writerows([r["video"], r["label"], r["split"]] for r in rows)
    return [
        _train_and_eval(root, data, "bmoe_s0", "bmoe", 0),
        _train_and_eval(root, data, "bmoe_s1", "bmoe", 1),
        _train_and_eval(root, data, "dualnet", "micro_dualnet", 0),
    ]


@pytest.fixture(scope="module")
def report(real_runs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report")
    assert mar(["report", *map(str, real_runs), "--out", str(out)]) == 0
    return out, real_runs


def _png_stats(path: Path) -> tuple[tuple[int, int], float, float]:
    """(size, std of grey levels, fraction of non-white pixels)."""
    im = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    grey = im.mean(axis=2)
    return (im.shape[1], im.shape[0]), float(grey.std()), float((grey < 240).mean())


def test_report_files_and_figures(report: tuple[Path, list[Path]]) -> None:
    out, runs = report
    page = out / "report.html"
    assert page.is_file()
    expected = {  # (min size, max size) in pixels; 52 classes with readable names make big matrices
        "curves": ((900, 300), (1300, 500)),
        "confusion_action": ((1100, 1100), (2200, 2200)),
        "confusion_body": ((400, 400), (1200, 1200)),
        "long_tail": ((1200, 500), (2400, 1200)),
        "routing_per_class": ((350, 1000), (1000, 1600)),
        "routing_per_body": ((300, 200), (1000, 800)),
        "path_preference": ((350, 1000), (1000, 1700)),
    }
    kinds = {
        "bmoe_s0": [
            "curves",
            "confusion_action",
            "confusion_body",
            "long_tail",
            "routing_per_class",
            "routing_per_body",
        ],
        "dualnet": ["curves", "confusion_action", "confusion_body", "long_tail", "path_preference"],
    }
    kinds["bmoe_s1"] = kinds["bmoe_s0"]
    for run in runs:
        assert sorted(p.stem for p in (out / run.name).glob("*.png")) == sorted(kinds[run.name])
        for kind in kinds[run.name]:
            (w0, h0), (w1, h1) = expected[kind]
            (w, h), std, ink = _png_stats(out / run.name / f"{kind}.png")
            assert w0 <= w <= w1 and h0 <= h <= h1, (run.name, kind, w, h)
            assert std > 20 and ink > 0.03, (run.name, kind, std, ink)  # not blank
    # self-contained: every figure embedded, nothing fetched from elsewhere
    text = page.read_text()
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', text)
    assert len(imgs) == 6 + 6 + 5
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    assert Image.open(io.BytesIO(base64.b64decode(imgs[0].split(",", 1)[1]))).size == (1100, 380)
    assert not re.search(r'(src|href)="(https?:)?//', text)
    # the 12 classes without val clips: null per-class means read as NaN rows
    ev = read_run_data(runs[0]).evals["val"]
    assert ev.routing_per_class is not None and np.isnan(ev.routing_per_class).all(axis=1).sum() == 12


def test_metrics_table_layout_and_seeds(report: tuple[Path, list[Path]]) -> None:
    out, runs = report
    table = metrics_table([read_run_data(r) for r in runs])
    assert [c[2] for c in table.columns] == [
        "body_top1", "body_f1_macro", "body_f1_micro", "action_top1", "action_top5",
        "action_f1_macro", "action_f1_micro", "f1_mean",
    ]  # fmt: skip
    assert "body_from_action_f1_macro" in table.extra_keys  # the models' body heads: derived choice apart
    assert len(table.seed_rows) == 1  # the two B-MoE seeds; Micro-DualNet is another model
    row = table.seed_rows[0]
    assert row.n == 2 and row.label == "bmoe (seeds 0, 1)"
    evals = [json.loads((r / "eval_val.json").read_text())["metrics"] for r in runs[:2]]
    text = (out / "report.html").read_text()
    for key in ("f1_mean", "action_top1", "body_f1_macro"):
        vals = [m[key] for m in evals]
        assert row.values[key] == pytest.approx(np.mean(vals))
        assert row.std[key] == pytest.approx(np.std(vals, ddof=1))
        assert f"{np.mean(vals) * 100:.2f} ± {np.std(vals, ddof=1) * 100:.2f}" in text
    assert "Body-level" in text and "Action-level" in text and "F1_mean" in text


def test_incomplete_run_folders(real_runs: list[Path], tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(real_runs[0], run)
    # another split, chosen with --split; the default prefers val over train
    assert mar(["eval", str(run), "--split", "train", "--quiet"]) == 0
    assert metrics_table([read_run_data(run)], "train").rows[0].source == "eval_train.json"
    assert metrics_table([read_run_data(run)]).rows[0].source == "eval_val.json"
    # no evaluation yet: curves and the best epoch's validation metrics, and a hint
    for p in run.glob("eval_*.json"):
        p.unlink()
    text = build_report([run], tmp_path / "rep").read_text()
    assert "mar eval" in text and "metrics.json best" in text
    assert sorted(p.name for p in (tmp_path / "rep" / "copy").iterdir()) == ["curves.png"]
    # a run still starting (no metrics.json yet), a wrong path, a malformed eval file
    (run / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"missing metrics\.json .*mar train"):
        read_run_data(run)
    assert mar(["report", str(run)]) == 1
    with pytest.raises(ReportError, match="not a directory"):
        read_run_data(tmp_path / "nope")
    bad = tmp_path / "bad"
    shutil.copytree(real_runs[0], bad)
    ev = json.loads((bad / "eval_val.json").read_text())
    ev["routing_per_class"] = ev["routing_per_class"][:10]
    (bad / "eval_val.json").write_text(json.dumps(ev))
    with pytest.raises(ReportError, match="'routing_per_class' has 10 rows for 52 class_names"):
        read_run_data(bad)


_PROBE = """<script>
window.addEventListener('load', () => {
  const r = [...document.querySelectorAll('img.fig')].map(i => {
    const b = i.getBoundingClientRect();
    return [i.naturalWidth, Math.round(b.left), Math.round(b.top + scrollY), Math.round(b.width), Math.round(b.height)];
  });
  const p = document.createElement('pre'); p.id = 'probe';
  p.textContent = JSON.stringify({imgs: r, height: document.documentElement.scrollHeight});
  document.body.appendChild(p);
});
</script>"""


def test_chromium_renders_report_images(chromium: str, report: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, _ = report
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    width = 1400
    # 1. layout probe: a copy of the page with a script that records where each image landed
    probe = tmp_path / "probe.html"
    probe.write_text((out / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    dom = subprocess.run([*flags, f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=60)  # fmt: skip
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert m, f"no layout probe in Chromium's DOM dump; stderr: {dom.stderr[-2000:]}"
    info = json.loads(m.group(1).replace("&quot;", '"'))
    imgs = info["imgs"]
    assert len(imgs) == 17 and all(nw > 0 for nw, *_ in imgs), imgs  # every image decoded
    # 2. screenshot of the first images (the run's curves, confusions, long tail, routing)
    height = min(int(info["height"]), 7000)
    shot = tmp_path / "shot.png"
    res = subprocess.run([*flags, f"--window-size={width},{height}", f"--screenshot={shot}", "--virtual-time-budget=5000",
                          (out / "report.html").as_uri()], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shot.is_file(), res.stderr[-2000:]
    px = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float64)
    checked, colourful = 0, 0.0
    for _, x, y, w, h in imgs:
        if w < 100 or h < 100 or y + h > px.shape[0] or x + w > px.shape[1]:
            continue
        area = px[y : y + h, x : x + w]
        grey = area.mean(axis=2)
        assert grey.std() > 15 and (grey < 235).mean() > 0.03, (x, y, w, h, grey.std())  # not blank
        colourful += (area.max(axis=2) - area.min(axis=2) > 60).mean()  # plot colours, not only text
        checked += 1
    assert checked >= 4, f"only {checked} images inside the {width}x{height} screenshot"
    assert colourful / checked > 0.05
    # outside the images the page is mostly white (text and tables only)
    mask = np.ones(px.shape[:2], bool)
    for _, x, y, w, h in imgs:
        mask[y : y + h, x : x + w] = False
    assert (px[mask].max(axis=1) - px[mask].min(axis=1) > 60).mean() < 0.05
