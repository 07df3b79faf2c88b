"""Keypoint parsers (npz, OpenPose JSON, skeleton CSV, synthetic ground truth), the
keypoints-only path (no decoding), flips, person-less clips, sharding, workers and Ray."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import make_dataset, skeleton_clip
from microaction.data.store import FeatureStore, StoreMismatch
from microaction.extract.jobs.execute import extract_video
from microaction.extract.jobs.job_list import Job, collect_jobs, parse_shard, shard_jobs
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.parsers import interpolate_gaps, make_parser
from microaction.extract.parsers.base import to_seen_scale
from microaction.extract.parsers.keypoints import load_keypoints
from microaction.extract.pipeline import Extractor, ExtractParams
from microaction.skeleton import LANDMARKS, REGION_LANDMARKS

POSE_ONLY = dict(parser="groundtruth", encoders=["pose"])


def _items(store: Path) -> dict[str, tuple]:
    s = FeatureStore.open(store)
    keys = s.keys()
    return {k: (s.read(k).regions, s.read(k).global_, s.read(k).region_valid, s.read(k).timestamps) for k in keys}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        for x, y in zip(a[k], b[k], strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth"), n=8, T=30)


@pytest.fixture(scope="module")
def pose_store(dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stores") / "pose"
    s = run_extraction(collect_jobs(dataset), ExtractParams(**POSE_ONLY), out, progress=False)
    assert (s.done, s.failed) == (8, 0)
    return out


def test_keypoints_only_path_needs_no_video(dataset: Path, pose_store: Path) -> None:
    assert not (dataset.parent / "videos").exists()  # nothing to decode: the sidecars are enough
    store = FeatureStore.open(pose_store)
    assert store.keys() == [f"videos__clip{i:03d}" for i in range(8)]
    it = store.read("videos__clip000")
    assert it.regions.shape[:2] == (4, 30) and it.region_valid.all()
    np.testing.assert_allclose(it.timestamps[:3], [0, 1 / 30, 2 / 30], atol=1e-6)
    assert store.manifest.encoders[0]["name"] == "pose" and store.manifest.parser == "groundtruth"
    np.testing.assert_allclose(it.extras["keypoints"], skeleton_clip(30, 0))


def test_ground_truth_masks_and_motion_on_rendered_videos(tmp_path: Path) -> None:
    manifest = make_dataset(tmp_path / "d", n=2, T=16, render_videos=True)
    ex = Extractor(ExtractParams(parser="groundtruth", encoders=["motion", "pose"], num_frames=8))
    res = ex.encode(ex.parse(tmp_path / "d" / "videos" / "clip001.mp4"), keep=True)
    assert res.region_valid.all() and res.frames is not None and res.parse is not None
    assert res.parse.region_masks is not None and res.frames.shape[0] == 8
    assert np.abs(res.regions[:, :, :144]).sum() > 0  # motion part
    s = run_extraction(collect_jobs(manifest), ex.params, tmp_path / "st", progress=False)
    assert (s.done, s.failed) == (2, 0)


def test_keypoint_file_formats(tmp_path: Path) -> None:
    # OpenPose JSON per frame (BODY_25 + face + hands), first person used
    d = tmp_path / "kp" / "vid"
    d.mkdir(parents=True)
    for t in range(3):
        body = np.zeros((25, 3))
        body[0] = [100 + t, 50, 0.9]  # nose
        body[5] = [130, 90, 0.8]  # LShoulder
        body[21] = [120, 300, 0.7]  # LHeel
        face = np.zeros((70, 3))
        face[54] = [110, 70, 0.6]  # the subject's left mouth corner
        lh = np.zeros((21, 3))
        lh[5] = [150, 160, 0.5]  # left index knuckle
        doc = {"people": [{"pose_keypoints_2d": body.ravel().tolist(), "face_keypoints_2d": face.ravel().tolist(),
                           "hand_left_keypoints_2d": lh.ravel().tolist(), "hand_right_keypoints_2d": [0.0] * 63}]}  # fmt: skip
        (d / f"vid_{t:012d}_keypoints.json").write_text(json.dumps(doc))
    (d / "vid_000000000003_keypoints.json").write_text(json.dumps({"people": []}))
    kp, fps, size = load_keypoints(d)
    idx = LANDMARKS.index
    assert kp.shape == (4, 33, 3) and fps is None and size is None
    # confidences as OpenPose means them (body 0.1, face 0.4, hands 0.2), on the toolkit's scale
    np.testing.assert_allclose(kp[1, idx("nose")], [101, 50, to_seen_scale(0.9, 0.1)], rtol=1e-6)
    np.testing.assert_allclose(kp[0, idx("left_shoulder")], [130, 90, to_seen_scale(0.8, 0.1)], rtol=1e-6)
    np.testing.assert_allclose(kp[0, idx("left_heel")], [120, 300, to_seen_scale(0.7, 0.1)], rtol=1e-6)
    np.testing.assert_allclose(kp[0, idx("mouth_left")], [110, 70, to_seen_scale(0.6, 0.4)], rtol=1e-6)
    np.testing.assert_allclose(kp[0, idx("left_index")], [150, 160, to_seen_scale(0.5, 0.2)], rtol=1e-6)
    assert kp[0, idx("right_index"), 2] == 0 and kp[3, :, 2].max() == 0  # absent -> unseen
    # MiGA/iMiGUE-style skeleton CSV: frame number + 137 joints x (x, y, c)
    rows = []
    for t in range(5):
        j = np.zeros((137, 3))
        j[4] = [200, 210 + t, 0.9]  # RWrist
        rows.append(",".join(str(v) for v in [t, *j.ravel()]))
    (tmp_path / "kp" / "vid.csv").write_text("\n".join(rows))
    kp2, _, _ = load_keypoints(tmp_path / "kp" / "vid.csv")
    np.testing.assert_allclose(kp2[4, idx("right_wrist")], [200, 214, to_seen_scale(0.9, 0.1)], rtol=1e-6)
    # the keypoints parser finds files by the video's stem (npz first)
    np.savez(tmp_path / "kp" / "vid.npz", keypoints=skeleton_clip(6, 1), fps=np.float32(25))
    res = make_parser("keypoints", root=tmp_path / "kp").parse(None, tmp_path / "videos" / "vid.mp4")
    assert res.num_frames == 6 and res.fps == 25


def test_gap_interpolation() -> None:
    kp = skeleton_clip(10, 0)
    truth = kp.copy()
    kp[3:6, 0, 2] = 0.0  # short gap
    kp[:, 5, 2] = 0.0  # never seen
    kp[0:2, 7, 2] = 0.0  # leading gap stays
    out = interpolate_gaps(kp, max_gap=4)
    assert (out[3:6, 0, 2] > 0.5).all()
    np.testing.assert_allclose(out[4, 0, :2], (truth[2, 0, :2] * 2 + truth[6, 0, :2] * 2) / 4, atol=1e-4)
    assert (out[:, 5, 2] == 0).all() and (out[0:2, 7, 2] == 0).all()
    assert (interpolate_gaps(kp, max_gap=2)[3:6, 0, 2] == 0).all()


def test_person_less_clip_never_crashes(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "keypoints").mkdir(parents=True)
    np.savez(
        root / "keypoints" / "empty.npz",
        keypoints=skeleton_clip(12, 0, visible=False),
        fps=np.float32(30),
        size=np.array([96, 80]),
    )
    res = extract_video(root / "videos" / "empty.mp4", ExtractParams(**POSE_ONLY))
    assert not res.region_valid.any() and np.isfinite(res.global_).all() and not res.regions.any()
    # mediapipe on frames with nobody in them
    mp = make_parser("mediapipe").parse(np.full((4, 64, 48, 3), 90, np.uint8), "blank.mp4")
    assert mp.keypoints[..., 2].max() == 0 and mp.region_masks is not None and not mp.region_masks.any()


def test_flip_swaps_left_and_right(dataset: Path) -> None:
    video = dataset.parent / "videos" / "clip002.mp4"
    base = dict(parser="groundtruth", encoders=["pose"], regions="ma52")
    a = extract_video(video, ExtractParams(**base))
    b = extract_video(video, ExtractParams(**base, flip=True))
    regions = ExtractParams(**base).regions
    L, R = regions.index("left_hand"), regions.index("right_hand")
    k = len(REGION_LANDMARKS["left_hand"])
    x = np.arange(k) * 7  # x position of each landmark in the pose layout
    np.testing.assert_allclose(b.regions[L][:, x], -a.regions[R][:, x], atol=1e-3)
    np.testing.assert_allclose(b.regions[L][:, x + 1], a.regions[R][:, x + 1], atol=1e-3)


def test_sharding_partitions(dataset: Path, pose_store: Path, tmp_path: Path) -> None:
    jobs = [Job(f"k{i}", f"v{i}") for i in range(10)]
    parts = [shard_jobs(jobs, i, 3) for i in range(3)]
    assert sorted(j.key for p in parts for j in p) == sorted(j.key for j in jobs)
    assert sum(len(p) for p in parts) == 10 and shard_jobs(jobs[::-1], 1, 3) == parts[1]
    assert parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    out = tmp_path / "sharded"
    for i in range(2):
        s = run_extraction(collect_jobs(dataset), ExtractParams(**POSE_ONLY), out, shard=(i, 2), progress=False)
        assert s.total == 4 and s.done == 4
    _same(_items(out), _items(pose_store))
    with pytest.raises(StoreMismatch, match="stride"):
        run_extraction(collect_jobs(dataset), ExtractParams(**POSE_ONLY, stride=2), out, progress=False)


def test_worker_processes_give_the_same_store(dataset: Path, pose_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "workers"
    s = run_extraction(collect_jobs(dataset), ExtractParams(**POSE_ONLY), out, workers=2, progress=False)
    assert (s.done, s.failed) == (8, 0)
    _same(_items(out), _items(pose_store))


def test_ray_two_workers(dataset: Path, pose_store: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="ray is an optional extra (pip install 'microaction[ray]')")
    out = tmp_path / "ray"
    try:
        s = run_extraction(collect_jobs(dataset), ExtractParams(**POSE_ONLY), out, ray=True, workers=2, progress=False)
    finally:
        ray.shutdown()
    assert (s.done, s.failed) == (8, 0)
    _same(_items(out), _items(pose_store))


def test_cli_extract_and_pack(dataset: Path, tmp_path: Path) -> None:
    from microaction.cli import main

    out = tmp_path / "cli"
    assert main(["extract", "--videos", str(dataset), "--out", str(out), "--parser", "groundtruth", "--encoder", "pose",
                 "--regions", "head,left_hand,right_hand", "--quiet"]) == 0  # fmt: skip
    assert main(["pack", str(out)]) == 0
    store = FeatureStore.open(out)
    assert store.manifest.regions == ["head", "left_hand", "right_hand"]
    it = store.read("videos__clip003")  # now from the packed arrays, extras still there
    assert it.regions.shape[0] == 3 and it.extras["keypoints"].shape == (30, 33, 3)


def test_a_single_step_is_judged_on_its_own_bin(tmp_path: Path) -> None:
    """A region's validity at a step is over the frames of that step's bin, whether the step is
    encoded alone (live, step by step) or with others (a streamed chunk)."""
    from dataclasses import replace

    make_dataset(tmp_path / "d", n=1, T=90, render_videos=True)
    ex = Extractor(ExtractParams(parser="groundtruth", encoders=["pose"]))
    parsed = ex.parse(tmp_path / "d" / "videos" / "clip000.mp4")
    kp = parsed.parse.keypoints.copy()
    kp[45:, :, 2] = 0.0  # nobody seen from 1.5 s on
    parsed = replace(parsed, parse=replace(parsed.parse, keypoints=kp))
    grid = np.arange(18) / 6.0 + 1 / 12.0  # 6 steps/s over the 3 s
    many = ex.encode(parsed, rate=6.0, steps=grid).extras["step_valid"]
    assert many[:, :9].all() and not many[:, 9:].any()
    for j in (3, 12):  # one step alone: the same verdict as among the others
        alone = ex.encode(parsed, rate=6.0, steps=grid[j : j + 1]).extras["step_valid"]
        np.testing.assert_array_equal(alone[:, 0], many[:, j])
