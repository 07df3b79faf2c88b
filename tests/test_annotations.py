"""Dataset readers: the real MA-52 lists, iMiGUE formats, video layouts, splits, pose pickles."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from microaction.data.readers.annotations import (
    UNKNOWN,
    AnnotationError,
    Sample,
    load_split,
    read_annotations,
    read_imigue_dir,
    read_imigue_labels,
    read_ma52_list,
    read_manifest_csv,
    read_skeleton_csv,
    resolve_video,
    resolve_videos,
    split_from_list_name,
)
from microaction.data.readers.pickles import ForbiddenPickle, load_pose_pickle
from microaction.data.readers.poses import read_pose_pickle
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")
IMIGUE = load_taxonomy("imigue")


@pytest.fixture(scope="module")
def official(ma52_dir: Path) -> dict[str, list[Sample]]:
    ann = ma52_dir / "annotations"
    return {s: read_annotations(ann / f"{s}_list_videos.txt", MA52) for s in ("train", "val", "test")}


# ---------------------------------------------------------------------------------------------
# MA-52


def test_official_lists_row_counts(official: dict[str, list[Sample]]) -> None:
    assert {k: len(v) for k, v in official.items()} == {"train": 11250, "val": 5586, "test": 5586}
    assert {s.split for s in official["val"]} == {"val"}
    assert not {s.video for s in official["train"]} & {s.video for s in official["val"]}


def test_train_counts_per_class(official: dict[str, list[Sample]]) -> None:
    counts = collections.Counter(s.label for s in official["train"])
    assert counts[MA52.index("nodding")] == 1283
    assert counts[MA52.index("covering face")] == 6
    assert [counts[i] for i in range(52)] == list(MA52.train_counts)


def test_test_list_labels_are_unknown(official: dict[str, list[Sample]]) -> None:
    assert all(s.label == UNKNOWN for s in official["test"])
    assert official["test"][0].video == "test0000.mp4"
    assert all(s.label >= 0 for s in official["val"])


def test_hidden_decided_by_split_or_test_names(tmp_path: Path) -> None:
    f = tmp_path / "mine.txt"
    f.write_text("test0001.mp4 0\ntest0002.mp4 0\n")
    assert [s.label for s in read_ma52_list(f, MA52)] == [UNKNOWN, UNKNOWN]  # by names
    assert [s.label for s in read_ma52_list(f, MA52, hidden=False)] == [0, 0]
    g = tmp_path / "other.txt"
    g.write_text("0001_01_0001.mp4 9\n")
    assert read_ma52_list(g, MA52)[0].label == 9
    assert read_ma52_list(g, MA52, split="test")[0].label == UNKNOWN  # by split
    assert split_from_list_name("val_list_videos.txt") == "val" and split_from_list_name("x.txt") is None


def test_line_endings_and_final_newline_do_not_matter(tmp_path: Path) -> None:
    rows = ["0003_01_0001.mp4 9", "0003_01_0002.mp4 8", "a name with spaces.mp4 7"]
    variants = {"crlf": "\r\n".join(rows), "crlf_final": "\r\n".join(rows) + "\r\n", "lf": "\n".join(rows) + "\n"}
    got = []
    for name, text in variants.items():
        p = tmp_path / f"{name}.txt"
        p.write_bytes(text.encode())
        got.append(read_ma52_list(p, MA52, split="train"))
    assert got[0] == got[1] == got[2]
    assert got[0][2].video == "a name with spaces.mp4" and got[0][2].label == 7


def test_file_names_are_never_read_for_labels(tmp_path: Path) -> None:
    # the name says body group 03; the label field (9, a head action) is what counts, and nothing
    # derives a body from the name
    p = tmp_path / "train_list_videos.txt"
    p.write_text("0003_03_0001.mp4 9\n")
    (s,) = read_ma52_list(p, MA52)
    assert s.label == 9 and s.body == UNKNOWN and int(MA52.body_of(s.label)) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.mp4 1\nb.mp4\n", r"bad.txt:2: expected '<file> <label>'"),
        ("a.mp4 1\r\nb.mp4 x\r\n", r"bad.txt:2: label 'x' is not an integer"),
        ("a.mp4 52\n", r"bad.txt:1: label 52 out of range 0..51"),
        ("a.mp4 1\n\nA.mp4 2\na.mp4 3\n", r"bad.txt:4: video 'a.mp4' already listed on line 1"),
        ("\n\n", r"bad.txt: no entries"),
        ("a\x00.mp4 1\n", r"bad.txt:1: video name .* control characters"),
    ],
)
def test_ma52_list_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_ma52_list(p, MA52)


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    p.write_bytes(b"a.mp4 1\nb\xff.mp4 2\n")
    with pytest.raises(AnnotationError, match=r"x.txt:2: not UTF-8"):
        read_ma52_list(p, MA52)


def test_video_layouts(tmp_path: Path) -> None:
    split_root = tmp_path / "split"
    (split_root / "videos_val").mkdir(parents=True)
    (split_root / "videos_val" / "a.mp4").write_bytes(b"")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.mp4").write_bytes(b"")
    sample = Sample("a.mp4", 1, split="val")
    assert resolve_video(split_root, "a.mp4", "val") == split_root / "videos_val" / "a.mp4"
    assert resolve_video(split_root, "a.mp4") == split_root / "videos_val" / "a.mp4"  # searched
    assert resolve_videos(flat, [sample]) == [flat / "a.mp4"]
    with pytest.raises(FileNotFoundError, match=r"'b.mp4' not found .*videos_val"):
        resolve_video(split_root, "b.mp4", "val")
    with pytest.raises(FileNotFoundError, match="1 of 2 videos not found"):
        resolve_videos(flat, [sample, Sample("b.mp4", 1)])
    with pytest.raises(AnnotationError, match="relative to the video root"):
        resolve_video(flat, "../flat/a.mp4")


# ---------------------------------------------------------------------------------------------
# generic manifest (the users' format)


def test_manifest_reader(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_text("video,label,split,start,end\nv1.mp4,nodding,train,0,30\nv2.mp4,3,val,,\nv3.mp4,-1,val,,\n")
    rows = read_annotations(p, MA52)
    assert rows[0] == Sample("v1.mp4", 9, split="train", start=0, end=30)
    assert rows[1].label == 3 and rows[2].label == UNKNOWN
    assert [s.video for s in read_manifest_csv(p, MA52, split="val")] == ["v2.mp4", "v3.mp4"]
    p.write_text("video,label\nv1.mp4,not-a-class\n")
    with pytest.raises(AnnotationError, match=r"m.csv:2: 'not-a-class' is not a class"):
        read_annotations(p, MA52)


# ---------------------------------------------------------------------------------------------
# iMiGUE / MiGA


def test_imigue_label_csv(tmp_path: Path) -> None:
    p = tmp_path / "0054_label.csv"
    p.write_text("5,10,40\r\n99,41,60\r\n16,100,100")
    rows = read_imigue_labels(p, IMIGUE)
    assert [(s.video, s.label, s.start, s.end) for s in rows] == [
        ("0054", 4, 10, 41),  # the release numbers classes from 1: raw 5 is id 4
        ("0054", 31, 41, 61),  # raw 99 -> 31; endFrame inclusive
        ("0054", 15, 100, 101),
    ]
    assert rows[0].key != rows[1].key
    h = tmp_path / "0001_label.csv"
    h.write_text("classID,startFrame,endFrame\n3,1,2\n")
    assert read_annotations(h, IMIGUE)[0].label == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5,10\n", r":1: expected 'classID,startFrame,endFrame', got 2 fields"),
        ("5,10,40\n40,1,2\n", r":2: class 40 is not a class number of this file \(imigue numbered from 1: 1..31, 99\)"),
        ("5,10,4\n", r":1: endFrame 4 before startFrame 10"),
        ("5,-1,4\n", r":1: startFrame -1 must be >= 0"),
        ("5,1," + "9" * 40 + "\n", r":1: endFrame .* out of range"),
    ],
)
def test_imigue_label_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "0002_label.csv"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_imigue_labels(p, IMIGUE)


def test_imigue_dir_with_cross_subject_split(tmp_path: Path) -> None:
    for vid, text in (("0001", "5,1,10\n"), ("0054", "6,1,10\n7,20,30\n")):
        (tmp_path / vid).mkdir()
        (tmp_path / vid / f"{vid}_label.csv").write_text(text)
    every = read_annotations(tmp_path, IMIGUE)
    assert [s.video for s in every] == ["0001", "0054", "0054"]
    assert [s.video for s in read_imigue_dir(tmp_path, IMIGUE, split="test")] == ["0054", "0054"]
    assert [s.split for s in read_imigue_dir(tmp_path, IMIGUE, split="train")] == ["train"]


def test_builtin_imigue_split_is_data() -> None:
    plan = load_split("imigue")
    assert {k: len(v) for k, v in plan.members.items()} == {"train": 251, "test": 104}
    assert not plan.members["train"] & plan.members["test"]
    assert plan.split_of("0054") == "test" and plan.split_of("1") == "train" and plan.split_of("0218") is None
    assert plan.excluded == frozenset({"218", "319", "347", "348"})


def test_user_split_file_and_subject_check(tmp_path: Path) -> None:
    p = tmp_path / "split.yaml"
    p.write_text("splits:\n  train: ['0001', 2]\n  test: [3]\nsubject_of: {1: ann, 2: bob, 3: cid}\n")
    plan = load_split(p)
    assert [s.split for s in plan.apply([Sample("0002", 1), Sample("0003", 1), Sample("9", 1)])] == [
        "train",
        "test",
        None,
    ]
    p.write_text("splits:\n  train: [1, 2]\n  test: [3]\nsubject_of: {1: ann, 2: bob, 3: ann}\n")
    with pytest.raises(AnnotationError, match="subject 'ann' appears in 'train' and 'test'"):
        load_split(p)
    p.write_text("splits:\n  train: [1]\n  test: [1]\n")
    with pytest.raises(AnnotationError, match="video 1 is in both 'train' and 'test'"):
        load_split(p)


def test_skeleton_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.random((4, 35, 3)).astype(np.float32)
    p = tmp_path / "0001_skeleton.csv"
    p.write_text("\n".join(",".join(f"{v:.6f}" for v in frame.ravel()) for frame in data))
    got = read_skeleton_csv(p)
    assert got.shape == (4, 35, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, data, atol=1e-6)
    header = ",".join(f"j{i}_{c}" for i in range(35) for c in "xyc")
    p.write_text("frame," + header + "\n" + "\n".join(f"{t}," + ",".join(["1"] * 105) for t in range(3)))
    assert read_skeleton_csv(p).shape == (3, 35, 3)
    p.write_text(",".join(["1"] * 104))
    with pytest.raises(AnnotationError, match=r"0001_skeleton.csv:1: 104 values, expected 105"):
        read_skeleton_csv(p, joints=35)
    with pytest.raises(AnnotationError, match=r"0001_skeleton.csv:1: 104 values is not joints"):
        read_skeleton_csv(p)  # the joint count is taken from the first frame
    p.write_text(",".join(["1"] * 412) + "\n" + ",".join(["1"] * 411))
    assert read_skeleton_csv(p).shape == (2, 137, 3)  # OpenPose's 137 joints; 3J + 1 = frame index first
    p.write_text(",".join(["1"] * 411) + "\n" + ",".join(["1"] * 410))
    with pytest.raises(AnnotationError, match=r":2: 410 values, expected 411"):
        read_skeleton_csv(p)
    p.write_text("1,2,3\n1,nan,3\n")
    with pytest.raises(AnnotationError, match=r":2: non-finite"):
        read_skeleton_csv(p, joints=1)


# ---------------------------------------------------------------------------------------------
# pose pickles


def _pose_pickle(path: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
    annotations = [
        {
            "frame_dir": f"clip{i}",
            "label": i,
            "keypoint": np.zeros((1, 8, 17, 2), np.float16),
            "keypoint_score": np.ones((1, 8, 17), np.float32),
            "img_shape": (1080, 1920),
            "total_frames": 8,
        }
        for i in range(3)
    ]
    data = {"split": {"train": ["clip0", "clip1"], "val": ["clip2"]}, "annotations": annotations}
    path.write_bytes(pickle.dumps(data, protocol=protocol))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pose_pickle_is_read(tmp_path: Path, protocol: int) -> None:
    p = tmp_path / "poses.pkl"
    _pose_pickle(p, protocol)
    assert load_pose_pickle(p)["annotations"][0]["keypoint"].shape == (1, 8, 17, 2)
    rows = read_annotations(p, IMIGUE)
    assert [(s.video, s.label, s.split) for s in rows] == [
        ("clip0", 0, "train"),
        ("clip1", 1, "train"),
        ("clip2", 2, "val"),
    ]
    assert [s.video for s in read_pose_pickle(p, IMIGUE, split="val")] == ["clip2"]
    with pytest.raises(AnnotationError, match="no split 'test'"):
        read_pose_pickle(p, IMIGUE, split="test")


class _Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo should-never-run",))


def test_pickle_with_forbidden_global_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"annotations": [{"frame_dir": "x", "label": _Exploit()}]}))
    with pytest.raises(
        ForbiddenPickle, match=r"evil.pkl: refused to load: the pickle names the global (posix|nt)\.system"
    ):
        read_annotations(p, IMIGUE)
    p.write_bytes(pickle.dumps([collections.Counter("ab")]))
    with pytest.raises(ForbiddenPickle, match=r"collections\.Counter"):
        load_pose_pickle(p)


def test_broken_pickles_give_annotation_errors(tmp_path: Path) -> None:
    p = tmp_path / "cut.pkl"
    _pose_pickle(p)
    p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(AnnotationError, match=r"cut\.pkl: not a readable pickle"):
        read_annotations(p, IMIGUE)
    p.write_bytes(pickle.dumps(42))
    with pytest.raises(AnnotationError, match="holds a dict or a list"):
        load_pose_pickle(p)
    p.write_bytes(pickle.dumps({"split": {}}))
    with pytest.raises(AnnotationError, match="lacks 'annotations'"):
        read_annotations(p, IMIGUE)


def test_dispatcher_refuses_unknown_formats(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(AnnotationError, match=r"unknown annotation format '\.json'"):
        read_annotations(p, MA52)
    with pytest.raises(AnnotationError, match="cannot read"):
        read_annotations(tmp_path / "missing.txt", MA52)


@pytest.mark.parametrize("where", ["header", "row"])
@pytest.mark.parametrize("reader", ["manifest", "segments", "detections"])
def test_unparsable_csv_names_file_and_line(tmp_path: Path, reader: str, where: str) -> None:
    """A cell over the csv module's field limit is a csv.Error: every reader built on
    ``samples.csv_rows`` turns it into an AnnotationError naming the file and the line."""
    import csv

    from microaction.data.errors import AnnotationError
    from microaction.data.readers.segment_readers import read_segment_csv
    from microaction.data.readers.segments import parse_detection_csv

    huge = "x" * (csv.field_size_limit() + 1)
    header = {
        "manifest": "video,label",
        "segments": "video,start,end,label",
        "detections": ",video_id,t_start,t_end,class,score",
    }[reader]
    good = {"manifest": "a.mp4,0", "segments": "a.mp4,0.0,1.0,0", "detections": "0,a,0.0,1.0,0,0.5"}[reader]
    lines = [huge, good] if where == "header" else [header, good, f"{good},{huge}"]
    path = tmp_path / "f.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    line = 1 if where == "header" else 3
    tax = load_taxonomy("ma52")
    with pytest.raises(AnnotationError, match=rf"f\.csv:{line}: .*field larger than field limit"):
        if reader == "manifest":
            read_manifest_csv(path, tax)
        elif reader == "segments":
            read_segment_csv(path, tax)
        else:
            parse_detection_csv(path.read_text(), str(path), tax)
