"""Group datasets: MPII-GI sample CSVs (multi-label, one sample per seat and snippet), read as
annotations and as the extraction's job list."""

from __future__ import annotations

from pathlib import Path

import pytest

from microaction.data.readers.annotations import AnnotationError, read_annotations
from microaction.data.readers.mpiigi import read_mpiigi_csv
from microaction.extract.jobs.job_list import collect_jobs
from microaction.taxonomy import load_taxonomy

MPIIGI = load_taxonomy("mpiigi")
SG = load_taxonomy("socialgesture")
HEAD = "sample_id,rec_no,subject_pos,start_time,end_time," + ",".join(c.replace(" ", "_") for c in MPIIGI.names)


def _row(sid: str, rec: str, pos: str, start: int, on: tuple[int, ...] = ()) -> str:
    bits = ["1" if c in on else "0" for c in range(14)]
    return ",".join([sid, rec, pos, str(start), str(start + 64), *bits])


def test_mpiigi_samples(tmp_path: Path) -> None:
    f = tmp_path / "train.csv"
    f.write_text(
        "\n".join(
            [HEAD, _row("s0", "012", "1", 0, (0, 7)), _row("s1", "012", "3", 64), _row("s2", "013", "2", 128, (13,))]
        )
    )
    samples = read_annotations(f, MPIIGI, split="train")
    assert [(s.video, s.start, s.end, s.labels, s.split) for s in samples] == [
        ("012/1", 0, 64, (0, 7), "train"),
        ("012/3", 64, 128, (), "train"),
        ("013/2", 128, 192, (13,), "train"),
    ]
    assert samples[0].key == "012__1@0-64"
    # the same file is the extraction's job list: <rec_no>/<subject_pos>.<ext> under the video root
    videos = tmp_path / "videos"
    (videos / "012").mkdir(parents=True)
    (videos / "012" / "1.mp4").write_bytes(b"")
    jobs = collect_jobs(f, videos)
    assert [j.key for j in jobs] == [s.key for s in samples]
    assert jobs[0].path == str(videos / "012" / "1.mp4") and (jobs[0].start, jobs[0].end) == (0, 64)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_row("s0", "1", "1", 0), _row("s0", "1", "2", 0)], r"train\.csv:3: sample_id 's0' repeats line 2"),
        (["s0,1,1,64,64," + ",".join(["0"] * 14)], r"train\.csv:2: end_time 64 must be greater"),
        (["s0,1,1,0,64," + ",".join(["2"] * 14)], r"train\.csv:2: settle = '2'; expected 0 or 1"),
        (["s0,1,1,0,64,1"], r"train\.csv:2: 6 fields, header has 19"),
        (["s0,../x,1,0,64," + ",".join(["0"] * 14)], "must be plain names"),
    ],
)
def test_bad_mpiigi_rows(tmp_path: Path, rows: list[str], message: str) -> None:
    f = tmp_path / "train.csv"
    f.write_text("\n".join([HEAD, *rows]))
    with pytest.raises(AnnotationError, match=message):
        read_mpiigi_csv(f, MPIIGI)


def test_mpiigi_needs_its_taxonomy(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("\n".join([HEAD, _row("s0", "1", "1", 0)]))
    with pytest.raises(AnnotationError, match="multi-label"):
        read_mpiigi_csv(f, SG)
    f.write_text("sample_id,rec_no,subject_pos,start_time,end_time,a,b\ns0,1,1,0,64,0,1\n")
    with pytest.raises(AnnotationError, match="2 behaviour columns, the mpiigi taxonomy has 14"):
        read_mpiigi_csv(f, MPIIGI)
