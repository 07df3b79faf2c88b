"""iMiGUE's release read as its authors meant: class numbers, frames and seconds, checked with
facts of the real files.

Facts used (from the release and the MiGA challenge's ST-GCN pipeline):
- the instance CSV (18,498 instances) and the per-video ``<VID>_label.csv`` number classes 1..31,
  with 99 for "illustrative"; the class ids of ``label_name.txt`` are raw - 1, 99 -> 31;
- raw class frequencies of the instance CSV (raw 31: 2,880, 29: 1,547, 20: 1,217, 8: 1,134,
  99: 5,715) match, share for share, those of the ST-GCN training label pickle (13,670 samples:
  label 30: 2,272, 28: 1,237, 19: 942, 7: 858, 31: 4,023);
- one video holds nine classes: touch face, touch other face part, touch chin, touch neck, move
  torso, scratch arm, bit lip, shake shoulder, illustrative;
- iMiGUE runs at 25 fps: the instance CSV puts frame 171 at 6.855 s.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import pytest

from microaction.data.annotations import AnnotationError, read_annotations, read_imigue_labels, read_label_names
from microaction.data.segment_readers import IMIGUE_FPS, read_imigue_instances, read_segments
from microaction.taxonomy import load_taxonomy

IMIGUE = load_taxonomy("imigue")
HEADER = "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id\n"

CSV_INSTANCES = 18_498
RAW_COUNTS = {31: 2_880, 29: 1_547, 20: 1_217, 8: 1_134, 99: 5_715}  # instance CSV, raw class numbers
PICKLE_SAMPLES = 13_670
PICKLE_COUNTS = {30: 2_272, 28: 1_237, 19: 942, 7: 858, 31: 4_023}  # ST-GCN train_label.pkl, class ids
# the nine classes of one video, by name; their raw numbers come from label_name.txt below
NINE = (
    "touch face",
    "touch other face part",
    "touch chin",
    "touch neck",
    "move torso",
    "scratch arm",
    "bit lip",
    "shake shoulder",
    "illustrative",
)


def _raw_numbers(names_file: Path) -> list[int]:
    """The release's class numbers of NINE: label_name.txt's id + 1, "illustrative" is 99."""
    names = read_label_names(names_file)
    return [99 if n == "illustrative" else names.index(n) + 1 for n in NINE]


def _raw_rows() -> list[int]:
    """Raw class numbers of 18,498 instances with the real counts of the five classes above; the
    rest fills in with other classes (their counts are not part of the fact)."""
    rows = [c for c, n in RAW_COUNTS.items() for _ in range(n)]
    others = [c for c in range(1, 32) if c not in RAW_COUNTS]
    rows += [others[i % len(others)] for i in range(CSV_INSTANCES - len(rows))]
    return rows


def _shares(labels: list[int], total: int) -> dict[int, float]:
    counts = collections.Counter(labels)
    return {c: counts[c] / total for c in PICKLE_COUNTS}


def _assert_pickle_shares(labels: list[int]) -> None:
    """Each of the five classes is as frequent in what was read as in the ST-GCN pickle."""
    assert len(labels) == CSV_INSTANCES
    got = _shares(labels, CSV_INSTANCES)
    want = {c: n / PICKLE_SAMPLES for c, n in PICKLE_COUNTS.items()}
    for c in PICKLE_COUNTS:
        assert got[c] == pytest.approx(want[c], abs=0.02), (c, IMIGUE.names[c])
    # and in the same order: most frequent first
    assert sorted(PICKLE_COUNTS, key=lambda c: -got[c]) == sorted(PICKLE_COUNTS, key=lambda c: -PICKLE_COUNTS[c])


def test_instance_csv_class_frequencies_match_the_stgcn_pickle(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    lines = [f"0001,{i + 1},,{10 * i},,{10 * i + 5},{c},17" for i, c in enumerate(_raw_rows())]
    p.write_text(HEADER + "\n".join(lines) + "\n")
    _assert_pickle_shares([s.label for s in read_imigue_instances(p, IMIGUE)])


def test_label_csv_class_frequencies_match_the_stgcn_pickle(tmp_path: Path) -> None:
    p = tmp_path / "0001_label.csv"
    p.write_text("\n".join(f"{c},{10 * i},{10 * i + 5}" for i, c in enumerate(_raw_rows())) + "\n")
    _assert_pickle_shares([s.label for s in read_imigue_labels(p, IMIGUE)])


def test_stgcn_label_pickle_is_read_as_is(tmp_path: Path) -> None:
    # the pickle the frequencies above are compared with is 0-based already: nothing shifts
    labels = [c for c, n in PICKLE_COUNTS.items() for _ in range(n)]
    p = tmp_path / "train_label.pkl"
    p.write_bytes(pickle.dumps(([f"{i // 20:04d}_{i % 20}" for i in range(len(labels))], labels)))
    got = collections.Counter(s.label for s in read_annotations(p, IMIGUE))
    assert got == collections.Counter(PICKLE_COUNTS)


def test_nine_classes_of_one_video(tmp_path: Path, shared: Path) -> None:
    names_file = shared / "imigue" / "label_name.txt"
    names = read_label_names(names_file)
    raw = _raw_numbers(names_file)
    assert raw == [4, 8, 11, 12, 20, 22, 29, 31, 99]
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(HEADER + "".join(f"0054,{i + 1},,{30 * i},,{30 * i + 20},{c},9\n" for i, c in enumerate(raw)))
    label_file = tmp_path / "0054_label.csv"
    label_file.write_text("".join(f"{c},{30 * i},{30 * i + 20}\n" for i, c in enumerate(raw)))
    from_csv = [names[s.label] for s in read_imigue_instances(csv_file, IMIGUE)]
    from_list = [names[s.label] for s in read_imigue_labels(label_file, IMIGUE)]
    assert from_csv == from_list == list(NINE)


@pytest.mark.parametrize("raw", [0, 32, 98])
def test_numbers_the_release_does_not_use_are_refused(tmp_path: Path, raw: int) -> None:
    # 0 is no class of a list numbered from 1 (a 0-based file given here), 32 is spelled 99
    label_file = tmp_path / "0054_label.csv"
    label_file.write_text(f"4,1,2\n{raw},3,9\n")
    with pytest.raises(AnnotationError, match=rf"0054_label.csv:2: class {raw} is not a class number .*1\.\.31, 99"):
        read_imigue_labels(label_file, IMIGUE)
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(HEADER + f"0054,1,,3,,9,{raw},9\n")
    with pytest.raises(AnnotationError, match=rf"labels.csv:2: class {raw} is not a class number"):
        read_imigue_instances(csv_file, IMIGUE)


def test_csv_row_and_label_line_give_the_same_segment(tmp_path: Path) -> None:
    # one instance: touch neck (raw 12) from frame 171 (6.855 s in the release's CSV) to frame
    # 224 inclusive; the per-video list says it as "12,171,224"
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(HEADER + "0054,3,6.855,171,8.975,224,12,9\n")
    label_file = tmp_path / "0054_label.csv"
    label_file.write_text("12,171,224\n")
    (seg,) = read_segments(csv_file, IMIGUE).segments
    (sample,) = read_imigue_labels(label_file, IMIGUE)
    assert IMIGUE_FPS == 25
    assert (seg.video, seg.label) == (sample.video, sample.label) == ("0054", IMIGUE.index("touch neck"))
    assert (sample.start, sample.end) == (171, 225)  # end frame inclusive: frames 171..224
    assert seg.start == pytest.approx(sample.start / IMIGUE_FPS) == pytest.approx(6.84)
    assert seg.end == pytest.approx(sample.end / IMIGUE_FPS) == pytest.approx(9.0)
    # without frames, the row's own seconds are the segment
    times_only = tmp_path / "times.csv"
    times_only.write_text("video_id,start_time,end_time,class\n0054,00:00:06.855,00:00:08.975,12\n")
    (seg,) = read_imigue_instances(times_only, IMIGUE).segments
    assert (seg.start, seg.end) == (6.855, 8.975)


def test_times_check_the_frame_rate(tmp_path: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(HEADER + "0054,3,6.855,171,8.975,224,12,9\n")
    assert len(read_imigue_instances(csv_file, IMIGUE, fps=25)) == 1
    # 6.855 s is frame 205.7 at 30 fps: a wrong rate is named, not turned into wrong seconds
    with pytest.raises(AnnotationError, match=r"labels.csv:2: start_time 6.855 s is frame 205.7 at 30 fps.*25"):
        read_imigue_instances(csv_file, IMIGUE, fps=30)
