"""Temporal annotation and detection readers, fuzzed: each input parses or raises the package's
clear error (AnnotationError, a ValueError naming the file) -- never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microaction.data.readers.annotations import AnnotationError
from microaction.data.readers.segment_readers import read_segments
from microaction.data.readers.segments import read_detections
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")
IMIGUE = load_taxonomy("imigue")
FUZZ = settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    derandomize=True,
)

_HEADERS = [
    "id,video_id,start_frame,end_frame,class,total_frames,fps",
    "video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id",
    "video,start,end,label,split,duration",
    "label,start,end",
    ",video_id,t_start,t_end,class,score",
]
_CELL = st.one_of(
    st.integers(-5, 120).map(str),
    st.sampled_from(["9" * 40, "9" * 5000, "1e999", "nan", "-inf", "", "0:01.5", "99:99", "nodding", "val"]),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(str),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=8),
)
_ROW = st.lists(_CELL, max_size=10).map(",".join)
_CSV = st.builds(lambda h, rows: "\n".join([h, *rows]), st.sampled_from(_HEADERS), st.lists(_ROW, max_size=8))
_JSONISH = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-10, 60),
        st.sampled_from([10**400, -(10**30)]),
        st.floats(allow_nan=True),
        st.text(max_size=6),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20,
)
_MMAD = st.dictionaries(
    st.text(max_size=8),
    st.fixed_dictionaries(
        {"subset": st.sampled_from(["train", "val", "test", 3]), "duration": _JSONISH, "actions": _JSONISH}
    ),
    max_size=4,
)


def _check(name: str, text: str, reader) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(text, encoding="utf-8")
        try:
            reader(p)
        except AnnotationError as e:
            assert str(p) in str(e)


@FUZZ
@given(_CSV, st.sampled_from(["a.csv", "val.csv", "S1_finelabels.csv"]))
def test_segment_csv_readers(text: str, name: str) -> None:
    _check(name, text, lambda p: read_segments(p, MA52, fps=30))
    _check(name, text, lambda p: read_segments(p, IMIGUE, fps=30, split="train"))


@FUZZ
@given(st.one_of(_MMAD, _JSONISH))
def test_mma52_json_reader(doc: object) -> None:
    _check("m.json", json.dumps(doc), lambda p: read_segments(p, MA52))


@FUZZ
@given(_CSV, st.one_of(st.fixed_dictionaries({"detections": _JSONISH, "regions": _JSONISH}), _JSONISH))
def test_detection_readers(text: str, doc: object) -> None:
    _check("p.csv", text, read_detections)
    _check("d.json", json.dumps(doc), lambda p: read_detections(p, MA52))
