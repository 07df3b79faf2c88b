"""Every reader, fuzzed: random bytes, wrong encodings, missing columns, huge numbers. Each input
must parse or raise the package's clear error (AnnotationError / MetricsError, both ValueError
subclasses) -- never another exception, never a hang (hypothesis deadlines)."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microaction.data.annotations import (
    AnnotationError,
    load_split,
    read_annotations,
    read_imigue_labels,
    read_label_names,
    read_ma52_list,
    read_manifest_csv,
    read_skeleton_csv,
)
from microaction.data.pickles import load_pose_pickle
from microaction.metrics import MetricsError, read_prediction_csv
from microaction.taxonomy import load_taxonomy

MA52 = load_taxonomy("ma52")
IMIGUE = load_taxonomy("imigue")
FUZZ = settings(
    max_examples=40,
    deadline=1000,  # ms per example: a hang fails
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
    derandomize=True,  # the same examples on every run
)

# fields that readers meet: ids, huge and negative numbers, names, junk
_TOKENS = st.one_of(
    st.integers(-5, 120).map(str),
    st.sampled_from(["9" * 40, "9" * 5000, "-0", "1e999", "nan", "inf", "0x10", " 7 ", "", "99"]),
    st.sampled_from(["video", "label", "body", "split", "start", "end", "vid", "classID", "nodding"]),
    st.sampled_from([f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)]),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)
_SEPS = st.sampled_from([",", " ", "\t", ";", ",,", '"'])
_LINE = st.builds(lambda toks, sep: sep.join(toks), st.lists(_TOKENS, max_size=12), _SEPS)
_TEXT = st.builds(
    lambda lines, end: end.join(lines),
    st.lists(_LINE, max_size=12),
    st.sampled_from(["\n", "\r\n", "\r", "\n\n"]),
)
_ENCODINGS = st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252", "utf-8-sig"])


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    """Random bytes, or structured text in a random (often wrong) encoding."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=600))
    return draw(_TEXT).encode(draw(_ENCODINGS), errors="replace")


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _check(reader: Callable[[Path], Any], path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        reader(path)
    except (AnnotationError, MetricsError) as e:
        assert str(path.name) in str(e) or str(path) in str(e), f"error does not name the file: {e}"


_READERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "manifest": ("m.csv", lambda p: read_manifest_csv(p, MA52)),
    "ma52_list": ("train_list_videos.txt", lambda p: read_ma52_list(p, MA52)),
    "label_names": ("label_name.txt", read_label_names),
    "imigue_labels": ("0001_label.csv", lambda p: read_imigue_labels(p, IMIGUE)),
    "skeleton": ("0001_skeleton.csv", lambda p: read_skeleton_csv(p, joints=2)),
    "split": ("split.yaml", load_split),
    "prediction": ("prediction.csv", lambda p: read_prediction_csv(p, MA52)),
    "dispatch_txt": ("list.txt", lambda p: read_annotations(p, MA52)),
    "pickle": ("poses.pkl", lambda p: read_annotations(p, IMIGUE)),
}


@pytest.mark.parametrize("name", list(_READERS))
@FUZZ
@given(data=_payloads())
def test_reader_parses_or_raises_clearly(scratch: Path, name: str, data: bytes) -> None:
    filename, reader = _READERS[name]
    _check(reader, scratch / filename, data)


def _valid_pose_pickle() -> bytes:
    ann = [{"frame_dir": "a", "label": 2, "keypoint": np.zeros((1, 4, 17, 2), np.float32)}]
    return pickle.dumps({"split": {"train": ["a"]}, "annotations": ann}, protocol=2)


@FUZZ
@given(
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.integers(1, 10_000),
)
def test_mutated_pose_pickles(scratch: Path, flips: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(_valid_pose_pickle())
    for pos, value in flips:
        raw[pos % len(raw)] = value
    data = bytes(raw[: max(1, cut % (len(raw) + 1))])
    path = scratch / "mutated.pkl"
    path.write_bytes(data)
    try:
        load_pose_pickle(path)
        read_annotations(path, IMIGUE)
    except AnnotationError as e:
        assert "mutated.pkl" in str(e)


@FUZZ
@given(
    rows=st.lists(
        st.lists(st.one_of(st.integers(-(10**30), 10**30), st.floats(allow_nan=True)).map(str), min_size=0, max_size=5),
        max_size=8,
    ),
    drop=st.sampled_from(["", "video", "label", "vid", "start"]),
)
def test_structured_csvs_with_missing_columns_and_huge_numbers(scratch: Path, rows: list[list[str]], drop: str) -> None:
    header = [c for c in ("video", "label", "start", "end") if c != drop]
    text = "\n".join([",".join(header), *(",".join(r) for r in rows)])
    _check(lambda p: read_manifest_csv(p, MA52), scratch / "m.csv", text.encode())
    pred_header = [
        c
        for c in ["vid"] + [f"action_pred_{i}" for i in range(1, 6)] + [f"body_pred_{i}" for i in range(1, 6)]
        if c != drop
    ]
    _check(
        lambda p: read_prediction_csv(p, MA52),
        scratch / "p.csv",
        "\n".join([",".join(pred_header), *(",".join(r) for r in rows)]).encode(),
    )
    _check(
        lambda p: read_imigue_labels(p, IMIGUE),
        scratch / "9_label.csv",
        "\n".join(",".join(r[:3]) for r in rows).encode(),
    )


def test_corrupt_array_headers_are_refused_before_allocating(scratch: Path) -> None:
    """A byte flip can turn numpy's empty-array prelude into a request for billions of elements
    (an object array would even be filled): refused, naming the file, without allocating."""
    import pickletools

    base = np.zeros((1, 4, 17, 2), np.float32)
    raw = pickle.dumps({"annotations": [{"frame_dir": "a", "label": 2, "keypoint": base}]}, protocol=2)
    ops = list(pickletools.genops(raw))
    # numpy's prelude: _reconstruct(ndarray, (0,), b'b'); put a huge length in place of the 0
    pos = next(p for op, arg, p in ops if op.name == "BININT1" and arg == 0)
    huge = raw[:pos] + b"J" + (2**31 - 1).to_bytes(4, "little") + raw[pos + 2 :]
    path = scratch / "huge.pkl"
    path.write_bytes(huge)
    with pytest.raises(AnnotationError, match=r"huge\.pkl: refused to load: an array prelude numpy does not write"):
        load_pose_pickle(path)
    objects = pickle.dumps({"annotations": [{"keypoint": np.array([None, 1], dtype=object)}]}, protocol=2)
    path.write_bytes(objects)
    with pytest.raises(AnnotationError, match=r"huge\.pkl: refused to load: the dtype 'O8' is not a plain numeric one"):
        load_pose_pickle(path)
