"""Reports from run folders written to the documented contract (docs/architecture.md, "Run folder"):
files exist, figures are non-trivial at the expected size, seeds are aggregated, the page is
self-contained, and headless Chromium renders its images. Runs trained for real by ``mar train``
are covered in test_report_e2e.py."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from microaction.cli import main as mar
from microaction.metrics import classification_metrics, per_class_f1
from microaction.report import ReportError, build_report, load_run
from microaction.report.tables import metrics_table
from microaction.taxonomy import load_taxonomy

REGIONS = ["head", "body", "upper_limbs", "lower_limbs"]


def make_run(
    root: Path,
    name: str,
    *,
    seed: int = 0,
    model: str = "bmoe",
    skill: float = 0.6,
    epochs: int = 6,
    dualnet: bool = False,
    evals: tuple[str, ...] = ("val",),
) -> Path:
    """A run folder as `mar train` + `mar eval` write it, with metrics computed from simulated
    predictions by the project's own metrics module (so the numbers are consistent)."""
    tax = load_taxonomy("ma52")
    rng = np.random.default_rng(seed + 100 * len(name))
    d = root / name
    d.mkdir(parents=True)
    cfg = {"run": {"name": name, "seed": seed}, "model": {"name": model, "preset": "tiny"},
           "data": {"taxonomy": "ma52", "store": "stores/x"}, "train": {"epochs": epochs, "lr": 1e-3}}  # fmt: skip
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    y = np.repeat(np.arange(52), 8)
    scores = rng.normal(size=(len(y), 52))
    scores[np.arange(len(y)), y] += 3 * skill + 0.02 * np.log1p(np.asarray(tax.train_counts))[y]
    m = classification_metrics(y, scores, tax)
    eps = []
    for e in range(epochs):
        f = (e + 1) / epochs
        eps.append({"epoch": e + 1, "stage": "main", "lr": 1e-3, "train_loss": 3.9 * (1 - 0.6 * f) + 0.05 * rng.random(),
                    "val": {k: v * (0.5 + 0.5 * f) for k, v in m.items()}, "seconds": 1.0})  # fmt: skip
    (d / "metrics.json").write_text(json.dumps({"epochs": eps, "best": {"epoch": epochs, "stage": "main", "val": m}}))
    pred = scores.argmax(1)
    body = tax.body_map
    for split in evals:
        routing = rng.dirichlet(np.ones(4), size=52) * 0.5
        for c in range(52):  # routing that follows the body group's regions
            for reg in tax.regions_of_body(int(body[c])):
                routing[c, REGIONS.index(reg)] += 0.5 / len(tax.regions_of_body(int(body[c])))
        ev = {
            "split": split, "run": name, "metrics": m, "class_names": list(tax.names),
            "body_names": list(tax.body_names), "regions": REGIONS, "train_counts": list(tax.train_counts),
            "per_class_f1": per_class_f1(y, pred, 52).tolist(),
            "confusion_action": np.bincount(y * 52 + pred, minlength=52 * 52).reshape(52, 52).tolist(),
            "confusion_body": np.bincount(body[y] * 7 + body[pred], minlength=49).reshape(7, 7).tolist(),
            "routing_per_class": routing.tolist(),
            "path_weights_per_class": rng.dirichlet(np.ones(2), size=(52, 6)).tolist() if dualnet else None,
        }  # fmt: skip
        (d / f"eval_{split}.json").write_text(json.dumps(ev))
    return d


def _png_stats(path: Path) -> tuple[tuple[int, int], float, float]:
    """(size, std of grey levels, fraction of non-white pixels)."""
    im = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    grey = im.mean(axis=2)
    return (im.shape[1], im.shape[0]), float(grey.std()), float((grey < 240).mean())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("runs")
    runs = [make_run(root, f"bmoe_s{s}", seed=s, skill=0.55 + 0.05 * s) for s in range(2)]
    runs.append(make_run(root, "dualnet", model="micro_dualnet", dualnet=True, skill=0.8))
    out = root / "report"
    assert mar(["report", *map(str, runs), "--out", str(out)]) == 0
    return out, runs


def test_report_files_and_figures(report: tuple[Path, list[Path]]) -> None:
    out, runs = report
    page = out / "report.html"
    assert page.is_file()
    expected = {
        "curves": ((900, 300), (1300, 500)),
        "confusion_action": ((1100, 1100), (2200, 2200)),  # 52 classes, readable labels
        "confusion_body": ((400, 400), (1200, 1200)),
        "long_tail": ((1200, 500), (2400, 1200)),
        "routing_per_class": ((350, 1000), (1000, 1600)),
        "routing_per_body": ((300, 200), (1000, 800)),
    }
    for run in runs:
        for kind, ((w0, h0), (w1, h1)) in expected.items():
            png = out / run.name / f"{kind}.png"
            assert png.is_file(), png
            (w, h), std, ink = _png_stats(png)
            assert w0 <= w <= w1 and h0 <= h <= h1, (png, w, h)
            assert std > 20 and ink > 0.03, (png, std, ink)  # not blank
    dual = out / "dualnet" / "path_preference.png"
    assert dual.is_file() and _png_stats(dual)[1] > 20
    assert not (out / "bmoe_s0" / "path_preference.png").exists()
    # self-contained: every figure embedded, nothing fetched from elsewhere
    text = page.read_text()
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', text)
    assert len(imgs) == 6 * 3 + 1
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    assert Image.open(__import__("io").BytesIO(base64.b64decode(imgs[0].split(",", 1)[1]))).size[0] > 500
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_metrics_table_layout_and_seeds(report: tuple[Path, list[Path]]) -> None:
    out, runs = report
    loaded = [load_run(r) for r in runs]
    table = metrics_table(loaded)
    assert [c[2] for c in table.columns] == [
        "body_top1", "body_f1_macro", "body_f1_micro", "action_top1", "action_top5",
        "action_f1_macro", "action_f1_micro", "f1_mean",
    ]  # fmt: skip
    assert len(table.seed_rows) == 1  # the two bmoe seeds; dualnet differs in model
    row = table.seed_rows[0]
    assert row.n == 2 and "0, 1" in row.label
    vals = [json.loads((r / "eval_val.json").read_text())["metrics"]["f1_mean"] for r in runs[:2]]
    assert row.values["f1_mean"] == pytest.approx(np.mean(vals))
    assert row.std["f1_mean"] == pytest.approx(np.std(vals, ddof=1))
    text = (out / "report.html").read_text()
    assert f"{np.mean(vals) * 100:.2f} ± {np.std(vals, ddof=1) * 100:.2f}" in text
    assert "Body-level" in text and "Action-level" in text and "F1_mean" in text


def test_run_without_eval_and_missing_files(tmp_path: Path) -> None:
    run = make_run(tmp_path, "noeval", evals=())
    page = build_report([run], tmp_path / "rep")
    text = page.read_text()
    assert "mar eval" in text and (tmp_path / "rep" / "noeval" / "curves.png").is_file()
    assert "metrics.json best" in text  # the table falls back to the best epoch's val metrics
    (run / "metrics.json").unlink()
    with pytest.raises(ReportError, match=r"missing metrics\.json"):
        load_run(run)
    assert mar(["report", str(run)]) == 1
    with pytest.raises(ReportError, match="not a directory"):
        load_run(tmp_path / "nope")
    bad = make_run(tmp_path, "bad")
    ev = json.loads((bad / "eval_val.json").read_text())
    ev["routing_per_class"] = ev["routing_per_class"][:10]
    (bad / "eval_val.json").write_text(json.dumps(ev))
    with pytest.raises(ReportError, match="routing_per_class"):
        load_run(bad)


def _chromium() -> str | None:
    for name in (os.environ.get("MAR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


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


def test_chromium_renders_report_images(report: tuple[Path, list[Path]], tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Chromium is not installed (`make chromium` installs it with apt-get; it needs root)")
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
    assert len(imgs) == 19 and all(nw > 0 for nw, *_ in imgs), imgs  # every image decoded
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
