"""Messages name the file and the line and print no binary; names from files are shown as written
(no mathtext in plots) and cannot run as spreadsheet formulas in the CSVs written for people."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from microaction.cli import main as mar
from microaction.data.csv_cells import neutralise
from microaction.data.errors import readable_text
from microaction.data.readers.segments import Detection
from microaction.data.store import FeatureStore
from microaction.engine.predict import Prediction
from microaction.engine.testing import make_random_dataset
from microaction.extract.jobs.job_list import collect_jobs
from microaction.report import plots
from microaction.report.timeline import write_timeline
from microaction.taxonomy import load_taxonomy

HOSTILE = ['=HYPERLINK("http://x")', "+1+cmd", "-cmd", "@SUM(A1)", "\tx", "\rx", "$x^$", "plain", "-0.25"]


def test_a_manifest_byte_that_is_not_utf8_is_named_by_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = tmp_path / "videos.csv"
    m.write_bytes(b"video,start,end\na.mp4,0,10\nb\xff.mp4,0,5\n")
    assert mar(["extract", "--videos", str(m), "--out", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert f"{m}:3: not UTF-8 text (byte 0xff at column 2)" in err and "codec" not in err


def test_a_manifest_row_with_start_but_no_end_is_refused(tmp_path: Path) -> None:
    m = tmp_path / "videos.csv"
    m.write_text('video,start,end\na.mp4,0,10\n"b\nc.mp4",3,\n')  # a quoted newline: line numbers still right
    with pytest.raises(ValueError, match=r"videos\.csv:4: 'start' without 'end' \(or 'end' without 'start'\)"):
        collect_jobs(m)
    m.write_text("video,start,end\na.mp4,,10\n")
    with pytest.raises(ValueError, match=r"videos\.csv:2: 'start' without 'end'"):
        collect_jobs(m)
    m.write_text("video,start,end\na.mp4,10,10\n")
    with pytest.raises(ValueError, match=r"videos\.csv:2: end 10 must be greater than start 10"):
        collect_jobs(m)
    m.write_text("video,start,end\na.mp4,3,10\nb.mp4,,\n")
    assert [(j.start, j.end) for j in collect_jobs(m)] == [(3, 10), (None, None)]


def test_a_damaged_item_header_gives_a_short_message_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A zip header whose name length is corrupt makes zipfile quote everything after it
    (`mar train` printed 146 kB of it): the message stays short, printable, and names the item."""
    d = make_random_dataset(tmp_path, splits={"train": 4, "val": 2})
    store = FeatureStore.open(d["store"])
    item = store.root / "items" / f"{store.keys()[0]}.npz"
    raw = bytearray(item.read_bytes())
    raw[26:28] = (0xFFFF).to_bytes(2, "little")  # the first member's file-name length
    item.write_bytes(bytes(raw) + bytes(range(256)) * 200)  # 51 kB of binary after it
    data = {"store": str(d["store"]), "taxonomy": str(d["taxonomy"]), "manifest": str(d["manifest"]), "num_steps": 4}
    run = {"name": "r", "out_dir": str(tmp_path / "runs"), "epochs": 1, "batch_size": 8, "progress": False,
           "threads": 1, "workers": 0}  # fmt: skip
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": data, "model": {"name": "mean_mlp", "preset": "tiny"}, "run": run}))
    assert mar(["train", str(cfg)]) != 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "error" in x)
    assert str(item) in line and "damaged item" in line and "mar extract --verify" in line
    assert len(line) < 1000 and line.isprintable()


def test_readable_text_escapes_and_shortens() -> None:
    assert readable_text("a\x00b\x1b[31mc\nd") == "a\\x00b\\x1b[31mc\nd"
    long = readable_text("x" * 10_000 + "END", 100)
    assert len(long) < 160 and long.endswith("END") and "characters left out" in long


@pytest.mark.parametrize("kind", ["confusion", "f1_vs_frequency", "routing_heatmap"])
def test_plot_labels_are_shown_as_written(tmp_path: Path, kind: str) -> None:
    names = ["$x^$", "a_b$c", "$\\frac{$", *HOSTILE[:3]]
    n = len(names)
    rng = np.random.default_rng(0)
    if kind == "confusion":
        fig = plots.confusion(rng.integers(0, 5, (n, n)), names, "run $1$")
    elif kind == "f1_vs_frequency":
        fig = plots.f1_vs_frequency(rng.random(n), rng.integers(1, 50, n), names, 0.25, "$run")
    else:
        fig = plots.routing_heatmap(
            rng.random((n, 3)), names, ["$r$", "b", "c"], body_of_class=[0, 1, 2, 0, 1, 2], body_names=["$g$", "h", "i"]
        )
    plots.save(fig, tmp_path / f"{kind}.png")  # drawing raised a mathtext error before
    shown = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels() + ax.get_xticklabels()]
    assert any("$x^$" in t for t in shown)


def test_neutralise_defuses_formulas_not_numbers() -> None:
    assert [neutralise(v) for v in HOSTILE] == [
        "'=HYPERLINK(\"http://x\")", "'+1+cmd", "'-cmd", "'@SUM(A1)", "'\tx", "'\rx", "$x^$", "plain", "-0.25"
    ]  # fmt: skip
    assert neutralise(3) == 3 and neutralise("+3") == "+3" and neutralise("-1e5") == "-1e5"


NAMES = [h for h in HOSTILE if h[0] not in "\t\r"]  # class names are stripped when read


def _taxonomy(tmp_path: Path) -> Path:
    classes = [{"id": i, "name": n, "body": 0, "train_count": 1} for i, n in enumerate(NAMES)]
    doc = {"name": "hostile", "body_names": ["=g"], "body_regions": {"=g": ["head"]}, "classes": classes}
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_predict_and_timeline_csvs_carry_no_formulas(tmp_path: Path) -> None:
    from microaction.commands.predict import _write

    preds = [Prediction("=clip", [(i, n, 0.1) for i, n in enumerate(HOSTILE)], [(0, "=g", 1.0)], {"head": -0.5})]
    _write(str(tmp_path / "p.csv"), preds)
    rows = list(csv.reader((tmp_path / "p.csv").open(newline="")))
    assert rows[1][: 1 + len(HOSTILE)] == ["'=clip", *(neutralise(n) for n in HOSTILE)]
    assert rows[1][-1] == "-0.500000" and "'=g" in rows[1]
    tax = load_taxonomy(_taxonomy(tmp_path))
    assert list(tax.names) == NAMES
    dets = [Detection("=v.mp4", float(i), i + 0.5, i, 0.5, None) for i in range(len(NAMES))]
    paths = write_timeline(dets, tmp_path / "tl", tax, (), duration=20.0)
    got = list(csv.DictReader(paths["csv"].open(newline="")))
    assert [r["class"] for r in got] == [neutralise(n) for n in NAMES]
    assert {r["video"] for r in got} == {"'=v.mp4"} and {r["body"] for r in got} == {"'=g"}
    for r in got:
        assert not r["class"].startswith(("=", "+", "@", "\t", "\r")) and r["class"] != "-cmd"


def test_yaml_payloads_are_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Configs and label sets are read with yaml.safe_load: a python/object tag is an error naming
    the file, and its command never runs."""
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    evil.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\nclasses: []\n')
    assert mar(["train", str(evil)]) == 1
    assert f"{evil}:1: invalid YAML (could not determine a constructor for the tag" in capsys.readouterr().err
    (tmp_path / "p.csv").write_text("vid\n")
    assert mar(["score", "--taxonomy", str(evil), "--pred", str(tmp_path / "p.csv"), "--ann", str(evil)]) == 1
    assert f"{evil}: not a readable YAML label set" in capsys.readouterr().err
    assert not marker.exists()
