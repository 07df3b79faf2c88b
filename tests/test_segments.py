"""Temporal annotation readers and writers, detection files (MAC submission CSV, JSON)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from microaction.data.annotations import AnnotationError
from microaction.data.segment_readers import (
    read_imigue_instances,
    read_mma52_csv,
    read_mma52_json,
    read_segment_csv,
    read_segments,
    read_smg_finelabels,
)
from microaction.data.segments import (
    Detection,
    Segment,
    is_detection_csv,
    read_detections,
    write_detections,
    write_mma52_json,
)
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")
IMIGUE = load_taxonomy("imigue")

# a slice of the MMA-52 layout (values as the official mmad.json writes them)
MMAD = {
    "train0000": {"subset": "train", "duration": 5.6, "actions": [[9, 0.7667, 2.3667], [21, 2.2667, 4.1667]]},
    "val0000": {"subset": "val", "duration": 11.4, "actions": [[0, 2.1, 11.2333], [8, 2.6667, 6.2333]]},
    "val0001": {"subset": "val", "duration": 6.9333, "actions": []},
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_mma52_json_reads_subsets_and_durations(tmp_path: Path) -> None:
    p = write(tmp_path / "mmad.json", json.dumps(MMAD))
    t = read_segments(p, MA52)
    assert len(t) == 4 and not t.issues
    assert t.durations == {"train0000": 5.6, "val0000": 11.4, "val0001": 6.9333}
    val = read_segments(p, MA52, split="val")
    assert [(s.video, s.label, s.start, s.end, s.split) for s in val] == [
        ("val0000", 0, 2.1, 11.2333, "val"),
        ("val0000", 8, 2.6667, 6.2333, "val"),
    ]
    assert val.videos() == ["val0000", "val0001"]  # a video without actions still counts
    assert val.splits == {"val0000": "val", "val0001": "val"}


def test_mma52_json_bad_entries_name_the_video(tmp_path: Path) -> None:
    bad = {"v": {"subset": "val", "duration": 3, "actions": [[0, "x", 1]]}}
    with pytest.raises(AnnotationError, match=r"'v': actions\[0\]: t_start 'x' is not a number"):
        read_mma52_json(write(tmp_path / "a.json", json.dumps(bad)), MA52)
    bad = {"v": {"subset": "val", "duration": 3, "actions": [[52, 0, 1]]}}
    with pytest.raises(AnnotationError, match="out of range"):
        read_mma52_json(write(tmp_path / "b.json", json.dumps(bad)), MA52)
    with pytest.raises(AnnotationError, match=r"c.json:1: not valid JSON"):
        read_mma52_json(write(tmp_path / "c.json", "{"), MA52)
    bad = {"v": {"subset": "val", "duration": 0, "actions": []}}
    with pytest.raises(AnnotationError, match="duration must be > 0"):
        read_mma52_json(write(tmp_path / "d.json", json.dumps(bad)), MA52)


def test_issues_are_reported_not_dropped_silently(tmp_path: Path) -> None:
    doc = {
        "v": {
            "subset": "val",
            "duration": 10.0,
            "actions": [[1, 2.0, 3.0], [2, 5.0, 4.0], [3, 6.0, 6.0], [4, 8.0, 12.0], [5, 11.0, 12.0], [6, -1.0, 1.0]],
        }
    }
    p = write(tmp_path / "m.json", json.dumps(doc))
    t = read_segments(p, MA52)
    kinds = [(i.kind, i.where.split(": ", 1)[1]) for i in t.issues]
    assert kinds == [
        ("reversed", "'v': actions[1]"),
        ("empty", "'v': actions[2]"),
        ("outside", "'v': actions[3]"),
        ("outside", "'v': actions[4]"),
        ("outside", "'v': actions[5]"),
    ]
    # clipped ones are kept, the one entirely past the end is dropped
    assert [(s.label, s.start, s.end) for s in t] == [(1, 2.0, 3.0), (4, 8.0, 10.0), (6, 0.0, 1.0)]
    assert t.issues[2].kept == Segment("v", 8.0, 10.0, 4, "val")
    assert t.issues[3].kept is None
    assert "5 rows reported" in t.summary() and "1 reversed (dropped)" in t.summary()
    with pytest.raises(AnnotationError, match=r"actions\[1\]: end 4 s before start 5 s"):
        read_segments(p, MA52, on_issue="raise")


def test_mma52_csv_matches_the_json(tmp_path: Path) -> None:
    # official rows: frames at 30 fps; 71/30 = 2.3667 as in mmad.json
    p = write(
        tmp_path / "val.csv",
        "id,video_id,start_frame,end_frame,class,total_frames,fps\n"
        "0,val0000,63,337,0,342,30.0\n1,val0000,80,187,8,342,30.0\n2,val0011,136,176,30,348,29.0\n",
    )
    t = read_segments(p, MA52)
    assert t.durations == {"val0000": pytest.approx(11.4), "val0011": pytest.approx(12.0)}
    assert [s.split for s in t] == ["val"] * 3
    assert t.segments[0].start == pytest.approx(2.1) and t.segments[0].end == pytest.approx(337 / 30)
    assert t.segments[2].end == pytest.approx(176 / 29)
    with pytest.raises(AnnotationError, match="holds the 'val' split, not 'test'"):
        read_segments(p, MA52, split="test")
    bad = write(tmp_path / "x.csv", "id,video_id,start_frame,end_frame,class,total_frames,fps\n0,v,a,3,0,9,30\n")
    with pytest.raises(AnnotationError, match=r"x.csv:2: start_frame 'a' is not a number"):
        read_mma52_csv(bad, MA52)
    bad = write(
        tmp_path / "y.csv",
        "id,video_id,start_frame,end_frame,class,total_frames,fps\n0,v,1,3,0,9,30\n1,v,1,3,0,10,30\n",
    )
    with pytest.raises(AnnotationError, match=r"y.csv:3: video v has duration"):
        read_mma52_csv(bad, MA52)


def test_imigue_instance_csv(tmp_path: Path) -> None:
    p = write(
        tmp_path / "imigue_labels.csv",
        "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id,emotion\n"
        "0001,1,00:00:01.500,37,00:00:03,74,5,17,win\n"
        "0001,2,12.0,300,13.5,337,99,17,win\n"
        "0002,1,,25,,49,16,4,loss\n",
    )
    # frames at iMiGUE's 25 fps, end frame inclusive; classes numbered from 1 (see test_imigue_release)
    t = read_segments(p, IMIGUE)
    assert [(s.video, s.label, s.start, s.end, s.person) for s in t] == [
        ("0001", 4, 1.48, 3.0, "17"),
        ("0001", 31, 12.0, 13.52, "17"),  # raw 99 -> 31 (illustrative)
        ("0002", 15, 1.0, 2.0, "4"),
    ]
    # splits come from iMiGUE's cross-subject split (videos 1 and 2 are train subjects)
    assert {s.split for s in t} == {"train"} and t.splits == {"0001": "train", "0002": "train"}
    assert len(read_segments(p, IMIGUE, split="test")) == 0
    bad = write(tmp_path / "b.csv", "video_id,start_time,end_time,class\nv,1,2,77\n")
    with pytest.raises(AnnotationError, match=r"b.csv:2: class 77 is not a class number"):
        read_imigue_instances(bad, IMIGUE)
    no_class = write(tmp_path / "n.csv", "video_id,label_id,start_time,end_time\nv,1,1,2\n")
    with pytest.raises(AnnotationError, match=r"n.csv:1: iMiGUE instance CSV header lacks 'class'"):
        read_imigue_instances(no_class, IMIGUE)


def test_smg_finelabels(tmp_path: Path) -> None:
    tax = load_taxonomy("socialgesture")
    folder = tmp_path / "smg"
    folder.mkdir()
    p = write(folder / "Sample0001_finelabels.csv", "label,start,end\n2,30,60\n3,90,75\n")
    with pytest.raises(AnnotationError, match="fps"):
        read_segments(p, tax)
    t = read_segments(p, tax, fps=30)
    # SMG numbers its classes from 1 (the authors' reader subtracts 1): label 2 is class id 1
    assert [(s.video, s.label, s.start, s.end) for s in t] == [("Sample0001", 1, 1.0, 2.0)]
    assert [i.kind for i in t.issues] == ["reversed"] and "Sample0001_finelabels.csv:3" in t.issues[0].where
    write(folder / "Sample0002_finelabels.csv", "3,0,15\n")  # no header
    both = read_segments(folder, tax, fps=30)
    assert [s.video for s in both] == ["Sample0001", "Sample0002"] and len(both.issues) == 1
    with pytest.raises(AnnotationError, match=r"Sample0003_finelabels.csv:1: expected 'label,start,end'"):
        read_smg_finelabels(write(folder / "Sample0003_finelabels.csv", "1,2\n"), tax, fps=30)


def test_generic_segment_csv(tmp_path: Path) -> None:
    p = write(
        tmp_path / "segs.csv",
        "video,start,end,label,split,duration\n"
        "a.mp4,0.5,2.0,nodding,train,60\n"
        "a.mp4,3,4.5,10,train,60\n"
        "b.mp4,1,2,shaking head,test,\n",
    )
    t = read_segments(p, MA52)
    assert [(s.video, s.label, s.split) for s in t] == [
        ("a.mp4", 9, "train"),
        ("a.mp4", 10, "train"),
        ("b.mp4", 10, "test"),
    ]
    assert t.durations == {"a.mp4": 60.0}
    assert [s.video for s in read_segments(p, MA52, split="test")] == ["b.mp4"]
    nosplit = write(tmp_path / "n.csv", "video,start,end,label\nv,0,1,0\n")
    assert len(read_segments(nosplit, MA52, split="test")) == 1  # no split column: every row
    with pytest.raises(AnnotationError, match=r"c.csv:2: 'juggling' is not a class"):
        read_segment_csv(write(tmp_path / "c.csv", "video,start,end,label\nv,0,1,juggling\n"), MA52)
    with pytest.raises(AnnotationError, match=r"d.csv:1: unknown columns \['colour'\]"):
        read_segment_csv(write(tmp_path / "d.csv", "video,start,end,label,colour\n"), MA52)
    with pytest.raises(AnnotationError, match=r"e.csv:3: end 'nan' is not|e.csv:3: end is not finite"):
        read_segment_csv(write(tmp_path / "e.csv", "video,start,end,label\nv,0,1,0\nv,0,nan,0\n"), MA52)
    with pytest.raises(AnnotationError, match="none of the segment formats"):
        read_segments(write(tmp_path / "f.csv", "foo,bar\n"), MA52)


def test_mma52_json_round_trip(tmp_path: Path) -> None:
    src = read_segments(write(tmp_path / "in.json", json.dumps(MMAD)), MA52)
    out = write_mma52_json(tmp_path / "out.json", src.segments, MA52, durations=src.durations, splits=src.splits)
    back = read_segments(out, MA52)
    assert sorted(back.segments, key=repr) == sorted(src.segments, key=repr)
    assert back.durations == src.durations and back.splits == src.splits
    with pytest.raises(ValueError, match="no duration"):
        write_mma52_json(tmp_path / "x.json", [Segment("z", 0, 1, 0)], MA52, durations={})
    with pytest.raises(ValueError, match="no split for video 'z'"):
        write_mma52_json(tmp_path / "x.json", [Segment("z", 0, 1, 0)], MA52, durations={"z": 2}, default_split=None)


# ---------------------------------------------------------------------------------------------
# detections


DETS = [
    Detection("val0000", 2.0, 11.0, 0, 0.91, (0.1, 0.6, 0.2, 0.1)),
    Detection("val0000", 2.5, 6.0, 8, 0.42, (0.7, 0.1, 0.1, 0.1)),
    Detection("val0001", 0.0, 1.25, 51, 0.05, None, "p1"),
]


def test_detection_json_round_trip(tmp_path: Path) -> None:
    regions = ("head", "upper_limbs", "body", "lower_limbs")
    p = write_detections(tmp_path / "d.json", DETS, regions=regions, taxonomy=MA52)
    back = read_detections(p, MA52)
    assert back.regions == regions and back.taxonomy == "ma52"
    assert sorted(back.detections, key=repr) == sorted(DETS, key=repr)


def test_mac_submission_csv(tmp_path: Path) -> None:
    p = write_detections(tmp_path / "prediction.csv", DETS)
    lines = p.read_text().splitlines()
    assert lines[0] == ",video_id,t_start,t_end,class,score"
    assert lines[1] == "0,val0000,2.0000,11.0000,0,0.91"
    assert is_detection_csv(lines[0].split(","))
    assert not is_detection_csv(["vid", "action_pred_1"])
    back = read_detections(p).detections
    assert [(d.video, d.start, d.end, d.label, d.score) for d in back] == [
        (d.video, d.start, d.end, d.label, d.score) for d in sorted(DETS, key=lambda d: (d.video, -d.score))
    ]
    z = write_detections(tmp_path / "submission.zip", DETS)
    assert zipfile.ZipFile(z).namelist() == ["prediction.csv"]
    assert read_detections(z).detections == back
    # the pandas form (to_csv of a frame) reads the same; class names need a taxonomy
    q = write(tmp_path / "q.csv", ",video_id,t_start,t_end,class,score\n0,v,1.0,2.0,nodding,0.5\n")
    with pytest.raises(AnnotationError, match=r"q.csv:2: class 'nodding' is not a class id"):
        read_detections(q)
    assert read_detections(q, MA52).detections == [Detection("v", 1.0, 2.0, 9, 0.5)]
    with pytest.raises(AnnotationError, match=r"r.csv:2: score 'high' is not a number"):
        read_detections(write(tmp_path / "r.csv", ",video_id,t_start,t_end,class,score\n0,v,1,2,3,high\n"))
