"""Hostile pose pickles: crafted numpy dtype states, memo bombs and a seeded fuzz over both, each
loaded in a worker process so that a crash fails the test instead of killing the suite. Real
files (protocols 2-5, numpy 1 and numpy 2 module names) still load, value for value."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from microaction.data.errors import AnnotationError
from microaction.data.pickles import ForbiddenPickle, load_pose_pickle, safe_loads
from pickle_cases import annotation, crafted, dumps, run_isolated, scalar

SRC = Path(__file__).resolve().parents[1] / "src"


def test_the_reported_pickle_is_what_numpy_writes() -> None:
    """The recipe of the report, run through numpy itself, gives the bytes the fixtures are built
    from (so the stand-in pickler writes what an attacker's numpy would)."""
    from numpy.core import multiarray

    dt = np.dtype("V1048576")
    try:
        dt.__setstate__((3, "|", None, None, None, 1048576, 1, 4))  # item-is-pointer flags
    except (ValueError, TypeError):
        pytest.skip("this numpy refuses the crafted dtype state itself (the fixtures are built without numpy)")

    class Crafted:
        def __reduce__(self) -> tuple[object, ...]:
            return (multiarray.scalar, (dt, b"A" * 8))

    assert pickle.dumps(annotation(Crafted()), protocol=2) == crafted()["void1048576_scalar"]


def test_crafted_dtype_states_are_refused_without_a_crash(tmp_path: Path) -> None:
    cases = crafted()
    run = run_isolated(0, len(cases), which="crafted")
    assert run.crashed == [] and run.errors == [] and run.counts == {"refused": len(cases)}
    # the control: plain pickle.loads on the same files crashes (counted, not fatal)
    control = run_isolated(0, len(cases), which="crafted", loader="plain")
    assert control.counts["crash"] >= 1 and control.crashed[0] == (0, -11)
    for name, data in cases.items():  # in this process too, now that it is known not to crash
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(data)
        with pytest.raises(AnnotationError, match=rf"{name}\.pkl: refused to load: "):
            load_pose_pickle(path)


def _mar(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "microaction.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_mar_refuses_the_crafted_pickle_with_an_error_not_a_signal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from microaction.cli import main as mar

    bad = tmp_path / "poses.pkl"
    bad.write_bytes(crafted()["void1048576_scalar"])
    # `mar extract` in its own process: an exit status, not a signal
    res = _mar(
        "extract", "--parser", "keypoints", "--encoder", "pose", "--videos", str(bad), "--out", str(tmp_path / "s")
    )
    assert res.returncode == 1, res.stderr
    assert f"{bad}: refused to load: the dtype 'V1048576' is not a plain numeric one" in res.stderr
    # `mar score --ann` reads it through the same loader (in this process: the runs above show it cannot crash)
    pred = tmp_path / "pred.csv"
    pred.write_text("a,0\n")
    assert mar(["score", "--taxonomy", "imigue", "--pred", str(pred), "--ann", str(bad)]) == 1
    assert f"{bad}: refused to load: the dtype 'V1048576'" in capsys.readouterr().err


def test_seeded_fuzz_of_dtype_states_flags_and_mutated_pickles() -> None:
    """1500 cases (drawn dtype descriptors, states, flags, shapes and byte counts as scalars,
    arrays and protocol-5 buffers; byte-mutated real pickles): every one loads plain numeric
    arrays or is refused naming the file; none crashes, hangs or raises anything else."""
    run = run_isolated(seed=1, count=1500)
    assert run.crashed == [] and run.errors == []
    assert set(run.counts) == {"loaded", "refused"} and sum(run.counts.values()) == 1500
    assert run.counts["loaded"] >= 20 and run.counts["refused"] >= 500  # both sides are drawn


def _real(protocol: int) -> tuple[dict[str, object], bytes]:
    ann = {
        "frame_dir": "clip",
        "label": np.int64(3),
        "total_frames": 4,
        "img_shape": (1080, 1920),
        "keypoint": np.arange(4 * 17 * 2, dtype=np.float16).reshape(1, 4, 17, 2),
        "keypoint_score": np.asfortranarray(np.linspace(0, 1, 4 * 17, dtype=np.float32).reshape(4, 17)),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "mask": np.array([True, False]),
        "scalar": np.float32(0.25),
        "zero_d": np.array(7, np.uint8),
        "empty": np.zeros((0, 17), np.float64),
    }
    data = {"split": {"train": ["clip"]}, "annotations": [ann]}
    return data, pickle.dumps(data, protocol=protocol)


# numpy 2 writes numpy._core names: checked where globals are text lines (protocols 2-3)
@pytest.mark.parametrize(
    ("protocol", "names"),
    [
        (2, "numpy.core"),
        (3, "numpy.core"),
        (4, "numpy.core"),
        (5, "numpy.core"),
        (2, "numpy._core"),
        (3, "numpy._core"),
    ],
)
def test_real_pickles_load_value_for_value(protocol: int, names: str) -> None:
    data, raw = _real(protocol)
    if names == "numpy._core":
        raw = raw.replace(b"numpy.core.", b"numpy._core.")
        assert b"numpy._core.multiarray" in raw
    got = safe_loads(raw)["annotations"][0]
    want = data["annotations"][0]  # type: ignore[index]
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, np.ndarray | np.generic):
            assert got[key].dtype == value.dtype.newbyteorder("="), key
            assert got[key].dtype.isnative and np.array_equal(got[key], value), key
            assert isinstance(got[key], np.ndarray) == isinstance(value, np.ndarray), key
        else:
            assert got[key] == value, key
    assert got["keypoint"].flags.writeable and got["keypoint_score"].flags.f_contiguous


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (np.array(["a"]), "U1"),
        (np.array([b"ab"]), "S2"),
        (np.zeros(2, dtype=[("x", "f4")]), "V4"),
        (np.array([1 + 2j]), "c16"),
        (np.array(["2020-01-01"], dtype="M8[D]"), "M8"),
        (np.array([None, 1], dtype=object), "O8"),
        (np.float64(1.0).astype(np.longdouble), "f16"),
        (np.str_("x"), "U1"),
    ],
)
def test_other_dtypes_are_refused_by_name(value: object, code: str) -> None:
    for protocol in (2, 5):
        with pytest.raises(AnnotationError, match=rf"x\.pkl: refused to load: the dtype '{code}' is not a plain"):
            safe_loads(pickle.dumps(annotation(value), protocol=protocol), source="x.pkl")


def test_scalars_need_exact_bytes_and_arrays_exact_sizes() -> None:
    from pickle_cases import array, dtype, frombuffer, plain_state

    f4 = dtype("f4", plain_state("<"))
    assert safe_loads(dumps(annotation(scalar(f4, b"\0\0\x80?")), 2))["annotations"][0]["keypoint"] == 1.0
    for bad in (b"\0\0\x80", b"\0\0\x80?\0", b""):
        with pytest.raises(AnnotationError, match="scalar needs exactly 4 bytes"):
            safe_loads(dumps(annotation(scalar(f4, bad)), 2))
    with pytest.raises(AnnotationError, match=r"shape \(3,\) \(float32\) cannot come from 8 bytes"):
        safe_loads(dumps(annotation(array(f4, (3,), b"\0" * 8)), 2))
    with pytest.raises(AnnotationError, match=r"shape \(1, 4611686018427387904\) .* cannot come from 8 bytes"):
        safe_loads(dumps(annotation(frombuffer(f4, (1, 1 << 62), b"\0" * 8)), 5))
    # numpy 2's module names under the STACK_GLOBAL of protocols 4-5
    for protocol in (4, 5):
        got = safe_loads(dumps(annotation(array(f4, (2,), b"\0\0\x80?" * 2, pkg="numpy._core")), protocol))
        assert got["annotations"][0]["keypoint"].tolist() == [1.0, 1.0]
    with pytest.raises(AnnotationError, match="dtype 'f4' is not a plain numeric dtype's"):
        safe_loads(dumps(annotation(scalar(dtype("f4", (3, "<", None, None, None, 4, 4, 0)), b"\0" * 4)), 2))


def test_memo_bomb_is_refused_before_the_memo_grows() -> None:
    """``LONG_BINPUT 2**24`` in a 20-byte pickle: C's unpickler would zero-fill a 256 MB memo."""
    raw = b"\x80\x04]r" + (1 << 24).to_bytes(4, "little") + b"."
    tracemalloc.start()
    try:
        with pytest.raises(AnnotationError, match=r"bomb\.pkl: refused to load: a memo index \(16777216\)"):
            safe_loads(raw, source="bomb.pkl")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    assert safe_loads(pickle.dumps([[1], [1]] * 3, protocol=2)) == [[1], [1]] * 3  # real memo use


def test_globals_cannot_be_rebuilt_or_called_otherwise() -> None:
    # BUILD on an admitted global: the next file would meet a changed reader
    for state in (b"}X\x01\x00\x00\x00xK\x01s", b"N}X\x03\x00\x00\x00_fnK\x01s\x86"):
        raw = b"\x80\x02cnumpy.core.multiarray\nscalar\n" + state + b"b."
        with pytest.raises(AnnotationError, match=r"g\.pkl: "):
            safe_loads(raw, source="g.pkl")
    assert safe_loads(pickle.dumps(np.float32(2), protocol=2)) == 2.0
    with pytest.raises(ForbiddenPickle, match=r"the global builtins\.bytearray"):
        safe_loads(pickle.dumps(bytearray(b"x"), protocol=2))
    with pytest.raises(AnnotationError, match=r"_codecs\.encode is admitted only as latin-1"):
        safe_loads(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00zlib\x86R.")


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    with pytest.raises(AnnotationError, match=r"deep\.pkl: not a readable pickle \(nested too deeply\)"):
        safe_loads(deep, source="deep.pkl")
