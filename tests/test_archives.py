"""Zip bombs and lying archives: every zip and .npz read from outside is bounded (member count,
declared size, a hard stop while inflating, .npy headers against their bytes)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from microaction.cli import main as mar
from microaction.data.annotations import read_annotations
from microaction.data.archives import ArchiveError, load_npz, read_member
from microaction.data.errors import AnnotationError
from microaction.data.segments import read_detections
from microaction.extract.parsers.base import ParseError
from microaction.extract.parsers.keypoints import read_keypoints_npz
from microaction.metrics import write_submission
from microaction.taxonomy import load_taxonomy
from zip_bombs import crc32_zeros, deflate_zeros, write_zip, zip_bomb

MA52 = load_taxonomy("ma52")
SRC = Path(__file__).resolve().parents[1] / "src"
TWO_GB = 2 << 30
LIMIT_TEXT = "over the 256 MB limit for one archive member"


def test_the_bombs_are_real(tmp_path: Path) -> None:
    """The fixture inflates to what it declares, CRC included (checked on a 3 MiB one), and the
    2 GiB one is as small as the reported 1.9 MB submission."""
    for n in (0, 1, 1000, (3 << 20) + 7):
        assert crc32_zeros(n, 99) == zlib.crc32(bytes(n), 99)
    small = zip_bomb(tmp_path / "small.zip", size=(3 << 20) + 5, prefix=b"vid,")
    with zipfile.ZipFile(small) as zf:
        assert zf.testzip() is None and zf.read("prediction.csv") == b"vid," + bytes(3 << 20 | 1)
    big = zip_bomb(tmp_path / "big.zip")
    assert big.stat().st_size < 2_500_000
    with zipfile.ZipFile(big) as zf:
        assert zf.getinfo("prediction.csv").file_size == TWO_GB


def test_mar_score_refuses_a_zip_bomb_before_inflating(tmp_path: Path) -> None:
    """The reported case: `mar score` on a ~2 MB zip whose prediction.csv inflates to 2 GiB took
    12 GB of memory. Refused, in a process whose address space is capped at 2 GB, under 500 MB."""
    bomb = zip_bomb(tmp_path / "submission.zip")
    driver = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from microaction.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        # VmHWM: this process's peak (ru_maxrss would carry the forking parent's over exec)
        "print('maxrss_kb', open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("MAR_MAX_UNZIPPED_MB", None)
    res = subprocess.run(
        [sys.executable, "-c", driver, "score", "--pred", str(bomb), "--ann", str(tmp_path / "val.txt")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 1, res.stderr
    assert f"{bomb}!prediction.csv: inflates to {TWO_GB} bytes, {LIMIT_TEXT}" in res.stderr
    assert "--max-unzipped-mb" in res.stderr
    maxrss_mb = int(res.stdout.split("maxrss_kb")[-1]) / 1024
    assert maxrss_mb < 500


def _peak(fn: object) -> tuple[BaseException, int]:
    """The error ``fn()`` raises and the peak of traced Python memory meanwhile."""
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
    except Exception as e:
        err: BaseException = e
    else:
        raise AssertionError("nothing was refused")
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return err, peak


def test_detection_zip_and_keypoint_npz_bombs(tmp_path: Path) -> None:
    bomb = zip_bomb(tmp_path / "dets.zip")
    err, peak = _peak(lambda: read_detections(bomb, MA52))
    assert isinstance(err, AnnotationError) and f"{bomb}!prediction.csv: inflates to {TWO_GB} bytes" in str(err)
    assert peak < 64 << 20
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (TWO_GB // 4,)})
    npz = zip_bomb(tmp_path / "kp.npz", "keypoints.npy", TWO_GB + len(header.getvalue()), prefix=header.getvalue())
    err, peak = _peak(lambda: read_keypoints_npz(npz))
    assert isinstance(err, ParseError) and f"{npz}!keypoints.npy: inflates to" in str(err) and LIMIT_TEXT in str(err)
    assert peak < 64 << 20


def test_a_lying_header_stops_at_what_it_declared(tmp_path: Path) -> None:
    # the central directory says 1000 bytes; the stream holds 2 GiB: nothing past 1000 is inflated
    bomb = zip_bomb(tmp_path / "liar.zip", declared=1000)
    err, peak = _peak(lambda: read_member(bomb, "prediction.csv"))
    assert isinstance(err, ArchiveError) and f"{bomb}!prediction.csv: cannot read (BadZipFile: Bad CRC-32" in str(err)
    assert peak < 16 << 20
    # declared over the cap, honestly or not: refused before inflating
    with pytest.raises(ArchiveError, match=r"inflates to 300000000 bytes, over the 1 MB limit"):
        read_member(zip_bomb(tmp_path / "l2.zip", size=2000, declared=300_000_000), "prediction.csv", limit=1 << 20)


def test_npy_headers_must_match_their_bytes(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    kp = np.arange(2 * 33 * 3, dtype=np.float32).reshape(2, 33, 3)
    np.savez_compressed(good, keypoints=kp, fps=np.float64(25), size=np.array([480, 640]))
    got = load_npz(good)
    assert set(got) == {"keypoints", "fps", "size"} and np.array_equal(got["keypoints"], kp) and got["fps"] == 25
    kp_f = np.asfortranarray(kp)
    np.savez(tmp_path / "f.npz", keypoints=kp_f)
    assert np.array_equal(load_npz(tmp_path / "f.npz")["keypoints"], kp)
    # a header asking for 10**9 frames over 8 bytes of data
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 33, 3)})
    data = header.getvalue() + bytes(8)
    write_zip(tmp_path / "h.npz", [("keypoints.npy", deflate_zeros(0, data), zlib.crc32(data), len(data))])
    with pytest.raises(ArchiveError, match=r"h\.npz!keypoints\.npy: the header says \(1000000000, 33, 3\) float32"):
        load_npz(tmp_path / "h.npz")
    np.savez(tmp_path / "o.npz", keypoints=np.array([None, 1], dtype=object))
    with pytest.raises(ArchiveError, match=r"o\.npz!keypoints\.npy: an object array"):
        load_npz(tmp_path / "o.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ArchiveError, match=r"junk\.npz: not"):
        load_npz(tmp_path / "junk.npz")


def test_too_many_members(tmp_path: Path) -> None:
    empty = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    many = write_zip(tmp_path / "many.zip", [(f"m{i}.csv", empty, 0, 0) for i in range(1001)])
    with pytest.raises(ArchiveError, match=r"many\.zip: 1001 members, more than the 1000"):
        read_member(many, "m0.csv")
    assert read_member(write_zip(tmp_path / "ok.zip", [("m.csv", empty, 0, 0)] * 3), "m.csv") == b""


def test_max_unzipped_mb_raises_or_lowers_the_cap(
    ma52_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ann = ma52_dir / "annotations" / "val_list_videos.txt"
    samples = read_annotations(ann, MA52)
    scores = np.random.default_rng(0).random((len(samples), 52))
    sub = write_submission(tmp_path / "sub.zip", [s.video for s in samples], scores, MA52)
    size = zipfile.ZipFile(sub).getinfo("prediction.csv").file_size
    assert 100_000 < size < 1 << 20
    args = ["score", "--pred", str(sub), "--ann", str(ann), "--json"]
    assert mar([*args, "--max-unzipped-mb", "0.1"]) == 1
    assert f"inflates to {size} bytes, over the 0.1 MB limit" in capsys.readouterr().err
    assert mar(args) == 0  # the default again on the next call
    assert 0 <= json.loads(capsys.readouterr().out)["f1_mean"] <= 1
    monkeypatch.setenv("MAR_MAX_UNZIPPED_MB", "0.05")
    assert mar(args) == 1
    assert "over the 0.05 MB limit" in capsys.readouterr().err
    assert mar([*args, "--max-unzipped-mb", "2"]) == 0  # the flag wins over the environment
