"""Long recordings streamed chunk by chunk: same features as one pass, resumable per chunk,
keypoint streams without a video, upper-body framing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import skeleton_clip, write_recording
from microaction.data.store import FeatureStore
from microaction.extract.encoders.base import pool_to_steps, rate_steps
from microaction.extract.jobs import stream_chunks as stream
from microaction.extract.jobs.execute import extract_video
from microaction.extract.jobs.job_list import Job, collect_jobs
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.pipeline import Extractor, ExtractParams
from microaction.skeleton import LANDMARKS

FPS = 15
T = 180  # 12 s


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A 12-second rendered recording with ground-truth keypoints and region masks."""
    return write_recording(tmp_path_factory.mktemp("rec"), T, FPS)


BASE = dict(parser="groundtruth", encoders=["motion", "pose"], box_window=3.0, feature_rate=6.0)


def _extract(video: Path, out: Path, **kw) -> FeatureStore:
    s = run_extraction([Job("rec", str(video))], ExtractParams(**BASE, **kw), out, progress=False)
    assert s.failed == 0, s.errors
    return FeatureStore.open(out)


def test_rate_grid_partitions_into_chunks() -> None:
    whole = rate_steps(0.0, 12.3, 6.0)
    assert len(whole) == 74 and np.allclose(np.diff(whole), 1 / 6)
    parts = [rate_steps(0.0, 12.3, 6.0, lo, lo + 4.0) for lo in (0.0, 4.0, 8.0, 12.0)]
    assert np.array_equal(np.concatenate(parts), whole)
    # a bin's value is the mean of the values inside it; an empty bin interpolates
    x = np.arange(10, dtype=np.float32)[:, None]
    out = pool_to_steps(x, np.arange(10) * 0.1, np.array([0.05, 0.25, 2.0]), 0.1)
    assert np.allclose(out[:, 0], [0.5, 2.5, 9.0])


def test_streamed_equals_one_pass(recording: Path, tmp_path: Path) -> None:
    one = _extract(recording, tmp_path / "one", stream_after=1000.0).read("rec")
    st = _extract(recording, tmp_path / "str", stream_after=0.0, chunk_seconds=4.0)
    got = st.read("rec")
    assert st.status("rec")["chunks"] == 3 and st.status("rec")["feature_rate"] == 6.0
    assert not (tmp_path / "str" / "work" / "rec").exists()  # chunks removed once committed
    assert got.regions.shape == one.regions.shape and len(got.timestamps) == 72
    assert np.allclose(got.timestamps, one.timestamps)
    # the motion encoder's columns: the same crops and windows, but a box a thousandth of a pixel
    # off (the torso scale is a chunk's median) may round a crop's edge to the next pixel
    d = np.abs(got.regions[..., :144].astype(np.float32) - one.regions[..., :144].astype(np.float32))
    assert d.mean() < 2e-3 and (d > 0.01).mean() < 0.01
    # the pose stream is centred on each chunk's torso (not the recording's): close, not equal
    assert np.abs(got.regions.astype(np.float32) - one.regions.astype(np.float32)).mean() < 0.01
    assert np.corrcoef(got.global_.ravel(), one.global_.ravel())[0, 1] > 0.999
    assert np.allclose(got.extras["step_boxes"], one.extras["step_boxes"], atol=0.01)
    assert np.array_equal(got.extras["step_valid"], one.extras["step_valid"])
    assert np.array_equal(got.extras["keypoints"], one.extras["keypoints"])
    assert np.array_equal(got.extras["frame_indices"], np.arange(T))
    assert np.array_equal(got.region_valid, one.region_valid)
    # the library entry point (mar predict, timelines) streams a long video the same way
    lib = extract_video(recording, ExtractParams(**BASE, stream_after=0.0, chunk_seconds=4.0))
    assert np.array_equal(lib.regions.astype(np.float16), got.regions) and lib.info["chunks"] == 3


def test_killed_recording_resumes_from_its_last_chunk(recording: Path, tmp_path: Path, monkeypatch) -> None:
    whole = _extract(recording, tmp_path / "whole", stream_after=0.0, chunk_seconds=2.0).read("rec")
    real_write = stream.atomic_write_bytes
    written: list[str] = []

    def killed_after_two(path: Path, data: bytes) -> None:
        if path.name.startswith("chunk_") and len(written) == 2:
            raise KeyboardInterrupt  # the process dies while writing its third chunk
        real_write(path, data)
        if path.name.startswith("chunk_"):
            written.append(path.name)

    monkeypatch.setattr(stream, "atomic_write_bytes", killed_after_two)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _extract(recording, out, stream_after=0.0, chunk_seconds=2.0)
    assert written == ["chunk_00000.npz", "chunk_00001.npz"]
    assert sorted(p.name for p in (out / "work" / "rec").glob("chunk_*")) == written
    assert FeatureStore.open(out).status("rec") is None  # nothing committed
    monkeypatch.setattr(stream, "atomic_write_bytes", real_write)

    spans: list[tuple[float, float]] = []
    real_encode = Extractor.encode

    def counting(self, parsed, **kw):
        if kw.get("span") is not None:
            spans.append(kw["span"])
        return real_encode(self, parsed, **kw)

    monkeypatch.setattr(Extractor, "encode", counting)
    got = _extract(recording, out, stream_after=0.0, chunk_seconds=2.0).read("rec")
    assert len(spans) == 4 and min(a for a, _ in spans) > 3.0  # chunks 2..5 only (4 s on)
    for name in ("regions", "global_", "timestamps", "region_valid"):
        assert np.array_equal(getattr(got, name), getattr(whole, name)), name
    for name, arr in whole.extras.items():
        assert np.array_equal(got.extras[name], arr), name


def test_plan_change_restarts_the_chunks(recording: Path, tmp_path: Path) -> None:
    work = tmp_path / "s" / "work" / "rec"
    work.mkdir(parents=True)
    (work / "plan.json").write_text(json.dumps({"source": {"path": "other"}}))
    (work / "chunk_00000.npz").write_bytes(b"stale")
    got = _extract(recording, tmp_path / "s", stream_after=0.0, chunk_seconds=4.0).read("rec")
    assert len(got.timestamps) == 72


def _openpose_json(folder: Path, n: int, upper_body: bool) -> None:
    """Per-frame OpenPose BODY_25 files of a seated person (hips out of frame when ``upper_body``)."""
    folder.mkdir(parents=True)
    base = skeleton_clip(n, 5)
    b25 = {"nose": 0, "right_shoulder": 2, "right_elbow": 3, "right_wrist": 4, "left_shoulder": 5,
           "left_elbow": 6, "left_wrist": 7, "right_hip": 9, "left_hip": 12, "right_eye": 15, "left_eye": 16,
           "right_ear": 17, "left_ear": 18}  # fmt: skip
    for t in range(n):
        joints = np.zeros((25, 3), np.float32)
        for name, j in b25.items():
            joints[j] = base[t, LANDMARKS.index(name)]
            joints[j, 2] = 0.7
            if upper_body and "hip" in name:
                joints[j] = 0.0
        doc = {"version": 1.3, "people": [{"pose_keypoints_2d": joints.ravel().tolist()}]}
        (folder / f"rec_{t:012d}_keypoints.json").write_text(json.dumps(doc))


def test_keypoint_stream_without_video(tmp_path: Path) -> None:
    """A folder of per-frame OpenPose JSON files of a 70-second recording: streamed, no video."""
    _openpose_json(tmp_path / "kp" / "talk", 700, upper_body=True)
    params = dict(parser="keypoints", encoders=["pose"], parser_options={"root": str(tmp_path / "kp")})
    jobs = collect_jobs(tmp_path / "talk.mp4")  # the video need not exist: only its keypoints are read
    assert [(j.key, j.path) for j in jobs] == [("talk", str(tmp_path / "talk.mp4"))]
    s = run_extraction(
        jobs,
        ExtractParams(**params, fps=10.0, stream_after=60.0, chunk_seconds=20.0),  # type: ignore[arg-type]
        tmp_path / "store",
        progress=False,
    )
    assert s.done == 1, s.errors
    store = FeatureStore.open(tmp_path / "store")
    item = store.read("talk")
    assert store.status("talk")["chunks"] == 4
    assert len(item.timestamps) == 420 and np.allclose(np.diff(item.timestamps), 1 / 6, atol=1e-4)
    valid = dict(zip(store.manifest.regions, item.region_valid))
    assert valid["body"] and not valid["lower_limbs"]  # upper-body framing: body from the shoulders
    body = store.manifest.regions.index("body")
    assert item.extras["step_valid"][body].all()
    # the body box reaches below the shoulders (not a band along them)
    sh = item.extras["keypoints"][:, LANDMARKS.index("left_shoulder"), 1].mean()
    assert item.extras["step_boxes"][body, :, 3].mean() > sh + 8


def test_upper_body_gif_has_a_body(shared: Path) -> None:
    """A real iMiGUE clip (upper body only, hips out of frame): the body region is valid."""
    gif = shared / "imigue" / "demo_clips" / "folding-arms.gif"
    ex = extract_video(gif, ExtractParams(encoders=["pose"]))
    valid = dict(zip(ExtractParams().regions, ex.region_valid))
    assert valid["body"] and valid["head"] and not valid["lower_limbs"]
    assert ex.extras["step_valid"][1].mean() > 0.9


def test_mediapipe_streamed_equals_one_pass(ma52_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """The default parser across chunks and tracker segments: one pass, streamed, and streamed
    after a kill give the same landmarks (trackers restart on the same grid in every path,
    ``extract.jobs.segment_parsing``; a resumed run parses from its segment's warm-up), and the region masks
    made from the person masks are the same."""
    from microaction.extract.jobs import segment_parsing as tracking

    monkeypatch.setattr(tracking, "WARMUP", 0.2)  # a short warm-up: the resumed run skips frames
    clip = ma52_dir / "demo_clips" / "A1_shaking_body.mp4"  # 75 frames, 2.5 s: 5 tracker segments
    # (a pose centre over 0.3 s keeps the chunks' context at the box window's 1.375 s)
    params = dict(encoders=["motion", "pose"], box_window=0.5, feature_rate=6.0, max_side=256, track_seconds=0.5,
                  centre_seconds=0.3)  # fmt: skip
    streamed = dict(stream_after=0.0, chunk_seconds=0.5)
    runs = {}
    skipped: list[int] = []
    real_iter = stream.iter_frames

    def counted(*a, **kw):
        for i, t, f in real_iter(*a, **kw):
            skipped.extend([i] if f is None else [])
            yield i, t, f

    monkeypatch.setattr(stream, "iter_frames", counted)

    def run(name: str, **extra) -> FeatureStore:
        skipped.clear()
        s = run_extraction([Job("clip", str(clip))], ExtractParams(**params, **extra), tmp_path / name, progress=False)  # type: ignore[arg-type]
        assert s.failed == 0, s.errors
        return FeatureStore.open(tmp_path / name)

    runs["one"], runs["str"] = run("one", stream_after=1000.0), run("str", **streamed)
    assert not skipped
    real_write = stream.atomic_write_bytes

    def killed_after_two(path: Path, data: bytes) -> None:
        if path.name == "chunk_00004.npz":
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(stream, "atomic_write_bytes", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run("resumed", **streamed)
    monkeypatch.setattr(stream, "atomic_write_bytes", real_write)
    runs["resumed"] = run("resumed", **streamed)
    # chunk 4 (2.0 s on) needs landmarks from 2.0 - 1.375 s (its context): from segment 1's warm-up, 0.3 s on
    assert skipped == list(range(9))  # decoded, not parsed: before 0.3 s
    one = runs["one"].read("clip")
    assert runs["str"].status("clip")["chunks"] == 5
    for name in ("str", "resumed"):
        got = runs[name].read("clip")
        assert np.array_equal(got.extras["keypoints"], one.extras["keypoints"]), name
        assert np.array_equal(got.extras["step_valid"], one.extras["step_valid"]), name
        # boxes: sums over a chunk's frames, not the clip's (under a native pixel: 0.2 at 256 px)
        assert np.allclose(got.extras["step_boxes"], one.extras["step_boxes"], atol=1.0), name
        d = np.abs(got.regions[..., :144].astype(np.float32) - one.regions[..., :144].astype(np.float32))
        assert d.mean() < 5e-3, name


def test_write_pieces_checks_what_it_writes(recording: Path, tmp_path: Path) -> None:
    store = FeatureStore.create(tmp_path / "s", Extractor(ExtractParams(**BASE)).manifest())
    R, D, Dg = len(store.manifest.regions), store.manifest.region_dim, store.manifest.global_dim
    ok = {
        "regions": ((R, 3, D), np.float16, lambda: iter([np.ones((R, 3, D))])),
        "global": ((3, Dg), np.float16, lambda: (np.ones((1, Dg)) for _ in range(3))),
        "region_valid": ((R,), bool, lambda: iter([np.ones(R, bool)])),
        "timestamps": ((3,), np.float32, lambda: iter([np.arange(3.0)])),
    }
    short = {**ok, "global": ((3, Dg), np.float16, lambda: iter([np.ones((2, Dg))]))}
    with pytest.raises(Exception, match="global has"):
        store.write_pieces("a", short)
    assert store.status("a") is None and not list((tmp_path / "s" / "items").iterdir())
    store.write_pieces("a", ok, {"video": "a.mp4"})
    item = store.read("a")
    assert item.regions.shape == (R, 3, D) and item.global_.dtype == np.float16 and item.length == 3


def _pose_columns(st: FeatureStore, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(regions, global) columns of the pose encoder of item ``key``."""
    item = st.read(key)
    enc = next(e for e in st.manifest.encoders if e["name"] == "pose")
    (a, b), (ga, gb) = enc["slice"], enc["global_slice"]
    return item.regions[..., a:b].astype(np.float32), item.global_[:, ga:gb].astype(np.float32)


def test_streamed_pose_is_the_same_whatever_the_chunks(recording: Path, tmp_path: Path) -> None:
    """Each frame is centred and scaled on the frames of the ``centre_seconds`` before it, so the
    pose columns do not depend on where the chunks fall (each chunk's own medians, the stores made
    before ``centre_seconds``, jump at every chunk) and a live stream can have them."""
    got = {}
    for name, chunk, centre in (("c4", 4.0, 2.0), ("c3", 3.0, 2.0), ("old4", 4.0, 0.0), ("old3", 3.0, 0.0)):
        st = _extract(recording, tmp_path / name, stream_after=0.0, chunk_seconds=chunk, centre_seconds=centre)
        got[name] = _pose_columns(st, "rec")
    for new, old in zip(got["c4"], got["c3"]):
        assert np.array_equal(new, old)
    # the chunk medians (centre_seconds 0) differ where the chunks differ
    assert max(np.abs(a - b).max() for a, b in zip(got["old4"], got["old3"])) > 2e-3


def test_trailing_reference_looks_only_back() -> None:
    from microaction.extract.encoders.pose import kinematics, trailing_reference

    kp = skeleton_clip(60, 2)
    ts = np.arange(60) / 10.0
    ref = trailing_reference(kp, ts, np.arange(60), 1.0)
    later = kp.copy()
    later[40:, :, :2] += 50.0  # the person moves at 4 s
    moved = trailing_reference(later, ts, np.arange(60), 1.0)
    assert np.array_equal(moved[:40], ref[:40])  # nothing before 4 s changes
    assert np.allclose(moved[50:, :2], ref[50:, :2] + 50.0, atol=1e-3)  # a second later the centre has followed
    # a still person: the trailing reference is the clip's, and so are the features
    still = np.repeat(kp[:1], 60, axis=0)
    f_clip, _ = kinematics(still, ts)
    f_trail, _ = kinematics(still, ts, reference=trailing_reference(still, ts, np.arange(60), 1.0))
    assert np.allclose(f_clip, f_trail, atol=1e-5)


def test_a_store_made_before_centre_seconds_is_continued_as_it_was(recording: Path, tmp_path: Path) -> None:
    from microaction.data.store import StoreMismatch
    from microaction.extract.pipeline import params_from_manifest

    out = tmp_path / "s"
    _extract(recording, out, stream_after=0.0, chunk_seconds=4.0, centre_seconds=0.0)
    m = json.loads((out / "manifest.json").read_text())
    del m["params"]["extract"]["centre_seconds"]  # as a store made before the parameter
    (out / "manifest.json").write_text(json.dumps(m))
    assert params_from_manifest(FeatureStore.open(out).manifest).centre_seconds == 0.0  # live / predict extract so
    with pytest.raises(StoreMismatch, match="continue it with --centre-seconds 0"):
        run_extraction(
            [Job("rec2", str(recording))],
            ExtractParams(**BASE, stream_after=0.0, chunk_seconds=4.0),
            out,
            progress=False,
        )
    s = run_extraction(
        [Job("rec", str(recording))],
        ExtractParams(**BASE, stream_after=0.0, chunk_seconds=4.0, centre_seconds=0.0),
        out,
        progress=False,
    )
    assert s.failed == 0
