"""Store integrity and honest extraction outcomes: item checksums, ``mar extract --verify``
(and ``--repair``), clear errors for damaged items, ``no_person`` clips, file modes from the
process umask, the data source in the manifest, and the native libraries' log lines."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from microaction.cli import main as mar
from microaction.data.store import FeatureStore, StoreError, atomic_write_bytes
from microaction.engine.checkpoint import save_weights
from microaction.engine.testing import make_random_dataset
from microaction.extract.jobs.job_list import collect_jobs
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.native_logs import is_routine
from microaction.extract.pipeline import ExtractParams

PARAMS = {"num_frames": 8, "max_side": 256, "encoders": ["pose"]}


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture()
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _write_config(d: dict[str, Any], path: Path) -> None:
    """A one-epoch training config on ``make_random_dataset``'s files."""
    data = {"store": str(d["store"]), "taxonomy": str(d["taxonomy"]), "manifest": str(d["manifest"]), "num_steps": 4}
    run = {"name": "r", "out_dir": str(path.parent / "runs"), "epochs": 1, "batch_size": 8, "progress": False,
           "threads": 1}  # fmt: skip
    path.write_text(yaml.safe_dump({"data": data, "model": {"name": "mean_mlp", "preset": "tiny"}, "run": run}))


def test_files_get_the_umask_mode(tmp_path: Path, umask_022: None) -> None:
    d = make_random_dataset(tmp_path, splits={"train": 3})
    store = FeatureStore.open(d["store"])
    key = store.keys()[0]
    for p in (store.root / "manifest.json", store.root / "items" / f"{key}.npz", store.root / "status" / f"{key}.json"):
        assert _mode(p) == 0o644, p
    ckpt = tmp_path / "run" / "best.safetensors"
    save_weights(ckpt, {}, {"a": 1})
    assert _mode(ckpt) == 0o644
    os.umask(0o077)  # a private umask is honoured too
    atomic_write_bytes(tmp_path / "private.json", b"{}")
    assert _mode(tmp_path / "private.json") == 0o600


def test_status_records_the_checksum_and_damage_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = make_random_dataset(tmp_path, splits={"train": 16, "val": 8})
    store = FeatureStore.open(d["store"])
    key = store.keys()[0]
    item = store.root / "items" / f"{key}.npz"
    st = store.status(key)
    assert st is not None and st["bytes"] == item.stat().st_size and len(st["sha256"]) == 64
    assert store.verify() == {}

    cut = item.stat().st_size // 2
    item.write_bytes(item.read_bytes()[:cut])  # what a full disk or a bad copy leaves
    with pytest.raises(StoreError) as e:
        store.read(key)
    msg = str(e.value)
    assert key in msg and f"mar extract --verify {store.root}" in msg and "BadZipFile" in msg
    assert list(store.verify()) == [key] and f"{cut} bytes" in store.verify()[key]

    # training meets it in its first epoch: one clear line, not a zipfile traceback
    _write_config(d, tmp_path / "c.yaml")
    capsys.readouterr()
    assert mar(["train", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert f"damaged item {key!r}" in err and "mar extract --verify" in err

    assert mar(["extract", "--verify", str(store.root)]) == 1
    out = capsys.readouterr().out
    assert f"damaged {key}: {cut} bytes" in out and "--repair" in out
    # a changed byte with the size kept is caught by the checksum
    item2 = store.root / "items" / f"{store.keys()[1]}.npz"
    raw = bytearray(item2.read_bytes())
    raw[-40] ^= 0xFF
    item2.write_bytes(bytes(raw))
    assert "checksum" in store.verify()[store.keys()[1]]


def test_verify_repair_re_extracts_from_the_video(tmp_path: Path, ma52_dir: Path, capsys) -> None:
    clip = ma52_dir / "demo_clips" / "B1_nodding.mp4"
    store_dir = tmp_path / "store"
    s = run_extraction(collect_jobs(clip), ExtractParams(**PARAMS), store_dir, progress=False)
    assert s.done == 1 and s.failed == 0
    store = FeatureStore.open(store_dir)
    assert store.manifest.params["data_source"] == "real"
    key = store.keys()[0]
    item = store_dir / "items" / f"{key}.npz"
    good = store.read(key).regions.copy()
    item.write_bytes(item.read_bytes()[:3000])
    capsys.readouterr()
    assert mar(["extract", "--verify", str(store_dir), "--repair", "--quiet", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert list(rep["damaged"]) == [key] and rep["repaired"] == {key: "ok"} and rep["still_damaged"] == []
    assert FeatureStore.open(store_dir).verify() == {}
    np.testing.assert_array_equal(FeatureStore.open(store_dir).read(key).regions, good)  # extraction is deterministic

    # the video gone: the item is listed and left as it is
    item.write_bytes(item.read_bytes()[:3000])
    st = json.loads((store_dir / "status" / f"{key}.json").read_text())
    st["video"] = str(tmp_path / "moved.mp4")
    (store_dir / "status" / f"{key}.json").write_text(json.dumps(st))
    assert mar(["extract", "--verify", str(store_dir), "--repair", "--quiet"]) == 1
    assert "not repaired: video" in capsys.readouterr().out
    assert mar(["extract", "--verify", str(store_dir), "--repair", "--quiet", "--videos", str(clip)]) == 0


def _grey_clip(path: Path, seconds: float = 2.0, fps: int = 15, size: tuple[int, int] = (240, 320)) -> Path:
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps))
        st.height, st.width, st.pix_fmt = size[0], size[1], "yuv420p"
        for _ in range(int(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(np.full((*size, 3), 128, np.uint8), format="rgb24")
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return path


def test_a_video_without_anyone_is_no_person(tmp_path: Path, ma52_dir: Path, capsys) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    _grey_clip(videos / "grey.mp4")
    os.symlink(ma52_dir / "demo_clips" / "B1_nodding.mp4", videos / "nodding.mp4")
    store_dir = tmp_path / "store"
    capsys.readouterr()
    args = ["extract", "--videos", str(videos), "--out", str(store_dir), "--encoder", "pose", "--num-frames", "8"]
    assert mar([*args, "--max-side", "256", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 videos: 1 done, 1 no person, 0 skipped, 0 failed" in out
    assert "no person found in 1 video(s)" in out and "grey" in out
    store = FeatureStore.open(store_dir)
    st = store.status("grey")
    assert st is not None and st["status"] == "no_person" and st["person_share"] == 0.0
    assert store.status("nodding")["person_share"] > 0.5  # type: ignore[index]
    assert store.keys() == ["nodding"] and store.no_person() == ["grey"]
    assert not store.read("grey").region_valid.any()  # readable, all regions invalid
    # a re-run skips it like any finished video
    assert mar([*args, "--max-side", "256", "--quiet"]) == 0
    assert "0 done, 0 no person, 2 skipped" in capsys.readouterr().out

    # training refuses it, unless the config keeps it
    from microaction.data.loader import select_samples
    from microaction.data.readers.annotations import Sample

    samples = [Sample("grey.mp4", 0), Sample("nodding.mp4", 1)]
    with pytest.raises(StoreError, match=r"no person found .*grey.*data.keep_no_person: true"):
        select_samples(store, samples, source="train")
    kept, missing = select_samples(store, samples, source="train", keep_no_person=True)
    assert [s.key for s in kept] == ["grey", "nodding"] and missing == []


def test_data_source_and_the_sim_to_real_note(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from microaction.commands.predict import sim_to_real_note, trained_on
    from microaction.extract.jobs.job_list import Job, data_source

    synth = tmp_path / "synth"
    (synth / "videos").mkdir(parents=True)
    (synth / "dataset.json").write_text(json.dumps({"generator": "microaction.data.synth"}))
    sv = str(synth / "videos" / "train_0000.mp4")
    real = str(tmp_path / "clip.mp4")
    assert data_source([Job("a", sv)], "mediapipe") == "synthetic"
    assert data_source([Job("a", real)], "mediapipe") == "real"
    assert data_source([Job("a", sv), Job("b", real)], "mediapipe") == "mixed"
    assert data_source([Job("a", real)], "groundtruth") == "synthetic"

    syn = SimpleNamespace(params={"data_source": "synthetic"}, parser="mediapipe")
    old_syn = SimpleNamespace(params={}, parser="groundtruth")  # a store from before data_source
    rl = SimpleNamespace(params={"data_source": "real"}, parser="mediapipe")
    assert trained_on(syn) == trained_on(old_syn) == "synthetic" and trained_on(rl) == "real"
    assert "trained on synthetic data" in sim_to_real_note(syn, real, [real])
    assert "trained on synthetic data" in sim_to_real_note(old_syn, real, [real])
    assert sim_to_real_note(syn, sv, [sv]) == ""  # synthetic video: no note
    assert sim_to_real_note(rl, real, [real]) == ""


ROUTINE = [
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"W0000 00:00:1796022455.906191   16264 inference_feedback_manager.cc:114] Feedback manager requires a model "
    b"with a single signature inference. Disabling support for feedback tensors.",
    b"W0000 00:00:1796022456.364518   16264 landmark_projection_calculator.cc:186] Using NORM_RECT without "
    b"IMAGE_DIMENSIONS is only supported for the square ROI.",
]


def test_routine_native_lines_are_recognised() -> None:
    for line in ROUTINE:
        assert is_routine(line), line
    for line in (b"E0000 00:00:1.2   16264 calculator.cc:1] a real error", b"mar extract: error: x", b"  3%|#  |"):
        assert not is_routine(line), line


_CHILD = """
import sys, numpy as np
from microaction.extract.parsers.mediapipe import MediaPipeParser
print("before", file=sys.stderr, flush=True)
s = MediaPipeParser().session()
import av
with av.open(sys.argv[1]) as c:
    for i, f in enumerate(c.decode(video=0)):
        s.add(f.to_ndarray(format="rgb24"))
        if i == 20:
            break
s.result()
print("after", file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_mediapipe_logs_are_quiet_unless_verbose(ma52_dir: Path, verbose: bool) -> None:
    env: dict[str, Any] = {k: v for k, v in os.environ.items() if k != "MAR_VERBOSE"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    if verbose:
        env["MAR_VERBOSE"] = "1"
    clip = ma52_dir / "demo_clips" / "B1_nodding.mp4"
    r = subprocess.run([sys.executable, "-c", _CHILD, str(clip)], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    err = r.stderr.decode()
    if verbose:
        assert "XNNPACK" in err and "Feedback manager" in err
    else:
        assert err.split() == ["before", "after"], err


_FILTER_CHILD = """
import os, sys
from microaction.extract.native_logs import quiet_native_logs
with quiet_native_logs():
    os.write(2, b"W0000 00:00:1796022455.906191   16264 x.cc:114] routine\\n")
    os.write(2, b"\\r 50%|#####     | 1/2")  # a progress bar redraw: no newline, passed on at once
    os.write(2, b"E0000 00:00:1796022455.906191   16264 x.cc:1] a native error\\n")
    print("python says", file=sys.stderr)
print("after", file=sys.stderr)
"""


def test_the_filter_passes_everything_but_routine_lines() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("MAR_VERBOSE", None)
    r = subprocess.run([sys.executable, "-c", _FILTER_CHILD], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stderr.decode() == (
        "\r 50%|#####     | 1/2E0000 00:00:1796022455.906191   16264 x.cc:1] a native error\npython says\nafter\n"
    )


def test_training_refuses_no_person_clips_unless_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    d = make_random_dataset(tmp_path, splits={"train": 16, "val": 8})
    status = Path(d["store"]) / "status" / "videos__train_0003.json"
    st = json.loads(status.read_text())
    status.write_text(json.dumps({**st, "status": "no_person"}))
    _write_config(d, tmp_path / "c.yaml")
    capsys.readouterr()
    assert mar(["train", str(tmp_path / "c.yaml")]) == 1
    err = capsys.readouterr().err
    assert "1 of 16 clips of train were extracted with no person found" in err and "videos__train_0003" in err
    assert mar(["train", str(tmp_path / "c.yaml"), "--overwrite", "--set", "data.keep_no_person=true"]) == 0
