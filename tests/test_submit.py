"""`mar submit` and `mar score` through the CLI, against the benchmark's real files."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from microaction.cli import main
from microaction.data.readers.annotations import read_annotations
from microaction.metrics import SCORE_KEYS, classification_metrics
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_submit_reproduces_the_official_manet_submission(ma52_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "submission.zip"
    rc = main(
        [
            "submit",
            "--scores",
            str(ma52_dir / "manet_test_scores_5586x52.npy"),
            "--ann",
            str(ma52_dir / "annotations" / "test_list_videos.txt"),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["prediction.csv"]  # no enclosing folder
        ours = zf.read("prediction.csv").decode()
    official = (ma52_dir / "manet_test_prediction.csv").read_text()
    ours_rows, official_rows = _rows(ours), _rows(official)
    assert len(ours_rows) == 5587
    for i, (a, b) in enumerate(zip(ours_rows, official_rows)):
        assert a == b, f"row {i}: {a} != {b}"
    assert len(ours_rows) == len(official_rows)


def test_submit_with_body_head_scores(ma52_dir: Path, tmp_path: Path) -> None:
    ann = tmp_path / "test_list_videos.txt"
    ann.write_text("\r\n".join(f"test{i:04d}.mp4 0" for i in range(6)))
    rng = np.random.default_rng(0)
    scores, body = rng.random((6, 52)), rng.random((6, 7))
    np.save(tmp_path / "s.npy", scores)
    np.save(tmp_path / "b.npy", body)
    out = tmp_path / "sub.zip"
    args = ["submit", "--scores", str(tmp_path / "s.npy"), "--ann", str(ann), "--out", str(out)]
    assert main([*args, "--body-scores", str(tmp_path / "b.npy")]) == 0
    with zipfile.ZipFile(out) as zf:
        rows = _rows(zf.read("prediction.csv").decode())[1:]
    for row, s, b in zip(rows, scores, body, strict=True):
        assert [int(x) for x in row[1:6]] == list(np.argsort(-s)[:5])
        assert [int(x) for x in row[6:11]] == list(np.argsort(-b)[:5])


def test_submit_refuses_scores_of_the_wrong_shape(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = tmp_path / "test_list_videos.txt"
    ann.write_text("test0000.mp4 0\ntest0001.mp4 0\n")
    np.save(tmp_path / "s.npy", np.zeros((3, 52), np.float32))
    rc = main(["submit", "--scores", str(tmp_path / "s.npy"), "--ann", str(ann), "--out", str(tmp_path / "x.zip")])
    assert rc == 1
    assert "shape (3, 52), expected (2, 52)" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_score_json_prints_the_issue_keys(ma52_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ann = ma52_dir / "annotations" / "val_list_videos.txt"
    samples = read_annotations(ann, MA52)
    y = np.array([s.label for s in samples])
    rng = np.random.default_rng(1)
    scores = rng.random((len(y), 52))
    scores[np.arange(len(y)), y] += rng.random(len(y)) * 1.5  # better than chance, not perfect
    np.save(tmp_path / "val.npy", scores)
    # `mar submit` writes any list's predictions; the val list has known labels to score against
    assert (
        main(["submit", "--scores", str(tmp_path / "val.npy"), "--ann", str(ann), "--out", str(tmp_path / "v.zip")])
        == 0
    )
    capsys.readouterr()
    assert main(["score", "--pred", str(tmp_path / "v.zip"), "--ann", str(ann), "--json"]) == 0
    printed = capsys.readouterr().out.strip()
    got = json.loads(printed)
    assert list(got) == list(SCORE_KEYS)
    ref = classification_metrics(y, scores, MA52)
    for k in SCORE_KEYS:
        assert got[k] == pytest.approx(ref[k]) and 0.0 <= got[k] <= 1.0
    assert main(["score", "--pred", str(tmp_path / "v.zip"), "--ann", str(ann)]) == 0
    assert "f1_mean" in capsys.readouterr().out


def test_score_refuses_hidden_test_labels(ma52_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "score",
            "--pred",
            str(ma52_dir / "manet_test_prediction.csv"),
            "--ann",
            str(ma52_dir / "annotations" / "test_list_videos.txt"),
        ]
    )
    assert rc == 1
    assert "labels are unknown" in capsys.readouterr().err
