"""iMiGUE scored the way its community does: ST-GCN (names, labels) label pickles and the MiGA
challenge's id,pred submissions, written by `mar submit` and scored by `mar score`."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from microaction.cli import main as mar
from microaction.data.annotations import AnnotationError, check_label_names, read_annotations
from microaction.metrics import MetricsError
from microaction.miga import read_miga_csv, score_miga_csv, write_miga_csv
from microaction.taxonomy import load_taxonomy

IMIGUE = load_taxonomy("imigue")


def _label_pickle(path: Path, n: int = 64, *, numpy_labels: bool = False) -> tuple[list[str], list[int]]:
    names = [f"{v:04d}_{i}" for v in (187, 4, 12) for i in range(n // 3 + 1)][:n]
    labels = [(7 * i) % 32 for i in range(n)]
    stored = np.asarray(labels, dtype=np.int64) if numpy_labels else labels
    path.write_bytes(pickle.dumps((names, stored), protocol=2))
    return names, labels


@pytest.mark.parametrize("numpy_labels", [False, True])
def test_stgcn_label_pickle_is_read(tmp_path: Path, numpy_labels: bool) -> None:
    names, labels = _label_pickle(tmp_path / "test_label.pkl", numpy_labels=numpy_labels)
    samples = read_annotations(tmp_path / "test_label.pkl", IMIGUE)
    assert [s.video for s in samples] == names and [s.label for s in samples] == labels
    assert {s.split for s in samples} == {"test"} and samples[0].key == "0187_0"


def test_bad_label_pickles(tmp_path: Path) -> None:
    p = tmp_path / "x_label.pkl"
    p.write_bytes(pickle.dumps((["a", "b"], [1])))
    with pytest.raises(AnnotationError, match="2 names and 1 labels"):
        read_annotations(p, IMIGUE)
    p.write_bytes(pickle.dumps((["a", "a"], [1, 2])))
    with pytest.raises(AnnotationError, match=r"'a'.*listed twice"):
        read_annotations(p, IMIGUE)
    p.write_bytes(pickle.dumps((["a"], [40])))
    with pytest.raises(AnnotationError, match=r"out of range 0\.\.31"):
        read_annotations(p, IMIGUE)


def test_miga_csv_forms(tmp_path: Path) -> None:
    plain = tmp_path / "a.csv"
    plain.write_text("0004_0,30\n0004_1,7\n")  # the challenge baseline's own file: no header
    t = read_miga_csv(plain, IMIGUE)
    assert t.ids == ("0004_0", "0004_1") and t.preds.tolist() == [[30], [7]]
    kaggle = tmp_path / "b.csv"
    kaggle.write_text("Id,Target\r\n0004_0,30\r\n0004_1,7\r\n")
    assert read_miga_csv(kaggle, IMIGUE).preds.tolist() == [[30], [7]]
    assert score_miga_csv(kaggle, ["0004_1", "0004_0"], [7, 1], IMIGUE) == {"action_top1": 0.5}
    ranked = tmp_path / "c.csv"
    ranked.write_text("0004_0,30,1,2,3,4\n0004_1,7,8,9,10,11\n")
    assert score_miga_csv(ranked, ["0004_0", "0004_1"], [4, 6], IMIGUE) == {"action_top1": 0.0, "action_top5": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0004_0,30\n0004_0,7\n", r"c\.csv:2: id '0004_0' repeats line 1"),
        ("0004_0,32\n", r"c\.csv:1: class 32 out of range 0..31"),
        ("0004_0,x7\n", r"c\.csv:1: prediction 1 'x7' is not a class id"),
        ("0004_0,3\n0004_1,3,4\n", r"c\.csv:2: 3 fields; expected 2"),
        ("", r"no prediction rows"),
    ],
)
def test_bad_miga_csv(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.csv").write_text(text)
    with pytest.raises(MetricsError, match=message):
        read_miga_csv(tmp_path / "c.csv", IMIGUE)


def test_scoring_needs_every_listed_sample_once(tmp_path: Path) -> None:
    p = tmp_path / "s.csv"
    p.write_text("a,1\nb,2\n")
    with pytest.raises(MetricsError, match=r"no prediction for 1 listed sample.*'c'"):
        score_miga_csv(p, ["a", "b", "c"], [1, 2, 3], IMIGUE)
    with pytest.raises(MetricsError, match=r"1 row\(s\) for samples not in the list.*'b'"):
        score_miga_csv(p, ["a"], [1], IMIGUE)
    with pytest.raises(MetricsError, match="unknown labels"):
        score_miga_csv(p, ["a", "b"], [1, -1], IMIGUE)


def test_submit_then_score_round_trip(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the real label names are the taxonomy's, id by id
    names32 = check_label_names(shared / "imigue" / "label_name.txt", IMIGUE)
    assert len(names32) == 32
    names, labels = _label_pickle(tmp_path / "test_label.pkl")
    rng = np.random.default_rng(0)
    scores = rng.random((len(names), 32)).astype(np.float32)
    y = np.asarray(labels)
    scores[np.arange(len(y))[: len(y) // 2], y[: len(y) // 2]] += 1.0  # the first half right at rank 1
    np.save(tmp_path / "scores.npy", scores)
    ann = str(tmp_path / "test_label.pkl")
    for k in (1, 5):
        out = tmp_path / f"sub{k}.csv"
        args = ["--taxonomy", "imigue", "--scores", str(tmp_path / "scores.npy"), "--ann", ann, "--out", str(out)]
        assert mar(["submit", *args, "--top", str(k)]) == 0
        lines = out.read_text().splitlines()
        assert len(lines) == len(names) and lines[0].split(",")[0] == "0187_0" and len(lines[0].split(",")) == k + 1
        assert mar(["score", "--taxonomy", "imigue", "--pred", str(out), "--ann", ann, "--json"]) == 0
        got = __import__("json").loads(capsys.readouterr().out.strip().splitlines()[-1])
        ranked = np.argsort(-scores, axis=1, kind="stable")
        assert got["action_top1"] == pytest.approx(float((ranked[:, 0] == y).mean()))
        if k == 5:
            assert got["action_top5"] == pytest.approx(float((ranked[:, :5] == y[:, None]).any(1).mean()))
        else:
            assert "action_top5" not in got
    write_miga_csv(tmp_path / "h.csv", names[:2], scores[:2], IMIGUE, header=True)
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == "Id,Target"


def test_partial_submission_scores_the_predicted_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # six listed samples; the submission predicts three of them: 0001_0 right, 0001_2 wrong
    # (30 for 31), 0001_4 right -> top-1 2/3 over the predicted ones, 3 left out
    ann = tmp_path / "val_label.pkl"
    ann.write_bytes(pickle.dumps(([f"0001_{i}" for i in range(6)], [3, 7, 31, 0, 19, 30])))
    sub = tmp_path / "Submission.csv"
    sub.write_text("0001_0,3\n0001_2,30\n0001_4,19\n")
    ids, labels = [f"0001_{i}" for i in range(6)], [3, 7, 31, 0, 19, 30]
    assert score_miga_csv(sub, ids, labels, IMIGUE, partial=True) == {
        "action_top1": 2 / 3,
        "scored": 3,
        "left_out": 3,
    }
    with pytest.raises(MetricsError, match=r"no prediction for 3 listed sample\(s\).*--partial"):
        score_miga_csv(sub, ids, labels, IMIGUE)
    args = ["score", "--taxonomy", "imigue", "--pred", str(sub), "--ann", str(ann)]
    assert mar(args) != 0  # refusing stays the default
    assert "no prediction for 3 listed sample(s)" in capsys.readouterr().err
    assert mar([*args, "--partial", "--json"]) == 0
    out = capsys.readouterr()
    assert __import__("json").loads(out.out) == {"action_top1": 2 / 3, "scored": 3, "left_out": 3}
    assert "3 of 6 listed samples have no prediction and were left out" in out.err
    assert mar([*args, "--partial"]) == 0
    assert "3 of 6 listed samples scored" in capsys.readouterr().out
    # a row for a sample not listed is still a mistake, partial or not
    sub.write_text("0001_0,3\n0002_0,3\n")
    with pytest.raises(MetricsError, match=r"1 row\(s\) for samples not in the list"):
        score_miga_csv(sub, ids, labels, IMIGUE, partial=True)
    sub.write_text("0002_0,3\n")
    with pytest.raises(MetricsError, match=r"no prediction for 6 listed"):
        score_miga_csv(sub, ids[:6], labels, IMIGUE, partial=True)
