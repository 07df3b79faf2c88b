"""`mar score` / `mar submit` with detections: the MAC detection submission end to end."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest

from microaction.cli import main
from microaction.data.readers.segment_readers import read_segments
from microaction.data.readers.segments import Detection, write_detections
from microaction.metrics.detection import detection_map, is_detection_file, map_keys
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")


@pytest.fixture()
def mmad(tmp_path: Path) -> Path:
    rng = random.Random(0)
    doc = {}
    for split, n in (("train", 3), ("val", 4)):
        for i in range(n):
            acts = []
            for _ in range(rng.randint(1, 4)):
                a = round(rng.uniform(0, 8), 4)
                acts.append([rng.randrange(52), a, round(a + rng.uniform(0.5, 3), 4)])
            doc[f"{split}{i:04d}"] = {"subset": split, "duration": 12.0, "actions": acts}
    p = tmp_path / "mmad.json"
    p.write_text(json.dumps(doc))
    return p


def _noisy(mmad: Path, subset: str, seed: int) -> list[Detection]:
    rng = random.Random(seed)
    out = []
    for s in read_segments(mmad, MA52, split=subset):
        out.append(
            Detection(s.video, s.start + rng.uniform(-0.5, 0.5), s.end + rng.uniform(-0.5, 0.5), s.label, rng.random())
        )
        out.append(Detection(s.video, s.start, s.end, rng.randrange(52), rng.random() * 0.5))
    return out


def test_score_detection_csv_json_output(mmad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dets = _noisy(mmad, "val", 1)
    pred = write_detections(tmp_path / "prediction.csv", dets)
    assert is_detection_file(pred)
    assert main(["score", "--pred", str(pred), "--ann", str(mmad), "--subset", "val", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert list(got) == map_keys()
    # the CSV rounds times to 4 decimals: score the rounded detections directly
    rounded = [Detection(d.video, round(d.start, 4), round(d.end, 4), d.label, float(f"{d.score:.6g}")) for d in dets]
    ref = detection_map(read_segments(mmad, MA52, split="val").segments, rounded, 52)
    assert got == pytest.approx({k: ref[k] for k in map_keys()})
    assert 0 < got["mAP"] < 1
    # the table form, and SocialGesture's thresholds
    assert main(["score", "--pred", str(pred), "--ann", str(mmad), "--subset", "val", "--tiou", "socialgesture"]) == 0
    out = capsys.readouterr()
    assert "mAP@0.3" in out.out and "mAP@0.1 " not in out.out
    assert "classes have no ground truth here and count as AP 0" in out.err


def test_perfect_detections_score_one(mmad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = read_segments(mmad, MA52, split="val")
    dets = [Detection(s.video, s.start, s.end, s.label, 0.9) for s in gt]
    pred = write_detections(tmp_path / "d.json", dets, taxonomy=MA52)
    args = ["score", "--pred", str(pred), "--ann", str(mmad), "--subset", "val", "--json", "--classes", "present"]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)
    assert all(v == pytest.approx(1.0) for v in got.values())


def test_score_refuses_detections_of_another_subset(
    mmad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred = write_detections(tmp_path / "p.csv", _noisy(mmad, None, 2))  # train and val videos
    assert main(["score", "--pred", str(pred), "--ann", str(mmad), "--subset", "val"]) == 1
    assert "detections for 3 video(s) not in subset 'val'" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text(",video_id,t_start,t_end,class,score\n0,val0000,1,2,3\n")
    assert main(["score", "--pred", str(bad), "--ann", str(mmad), "--subset", "val"]) == 1
    assert "bad.csv:2: 5 fields, header has 6" in capsys.readouterr().err


def test_submit_detections_zip_then_score(mmad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dets = _noisy(mmad, "val", 3)
    src = write_detections(tmp_path / "dets.json", dets, regions=("head",), taxonomy=MA52)
    out = tmp_path / "submission.zip"
    rc = main(["submit", "--detections", str(src), "--ann", str(mmad), "--subset", "val", "--out", str(out)])
    assert rc == 0
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["prediction.csv"]
        assert zf.read("prediction.csv").decode().startswith(",video_id,t_start,t_end,class,score\n")
    capsys.readouterr()
    assert main(["score", "--pred", str(out), "--ann", str(mmad), "--subset", "val", "--json"]) == 0
    from_zip = json.loads(capsys.readouterr().out)
    assert main(["score", "--pred", str(src), "--ann", str(mmad), "--subset", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pytest.approx(from_zip, abs=1e-3)
    # the check against the subset
    rc = main(["submit", "--detections", str(src), "--ann", str(mmad), "--subset", "train", "--out", str(out)])
    assert rc == 1 and "video(s) not in" in capsys.readouterr().err
    assert main(["submit", "--scores", "x.npy", "--out", str(out)]) == 1  # clips still need --ann


def test_score_online_f1(mmad: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = read_segments(mmad, MA52, split="val").segments
    # every ground truth found once (shifted by 10 % of its length), plus one wrong-label prediction
    dets = [Detection(s.video, s.start + 0.1 * s.duration, s.end, s.label, 0.9) for s in gt]
    dets.append(Detection(gt[0].video, gt[0].start, gt[0].end, (gt[0].label + 1) % 52, 0.5))
    pred = write_detections(tmp_path / "d.json", dets)
    assert (
        main(["score", "--pred", str(pred), "--ann", str(mmad), "--subset", "val", "--metric", "online-f1", "--json"])
        == 0
    )
    got = json.loads(capsys.readouterr().out)
    p, r = len(gt) / (len(gt) + 1), 1.0
    assert got == pytest.approx({"precision": p, "recall": r, "f1": 2 * p * r / (p + r)})
