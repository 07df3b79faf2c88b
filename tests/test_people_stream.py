"""``--people all`` on a long recording: every person found first (frames not held), then each
streamed chunk by chunk as a recording of its own; the same landmarks and features as one pass,
and a killed run resumes without searching again."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from extract_helpers import write_video
from microaction.data.store import FeatureStore
from microaction.data.synth.scene import generate_scene
from microaction.extract.jobs import people_stream
from microaction.extract.jobs import stream_chunks as stream
from microaction.extract.jobs.job_list import Job
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.pipeline import ExtractParams
from test_people import _openpose_folder, _two_people_crossing

STREAMED = dict(stream_after=0.0, chunk_seconds=0.5)
ONE_PASS = dict(stream_after=1000.0)


def _run(video: Path, out: Path, boxes: tuple = (), **kw) -> FeatureStore:
    people = "main" if boxes else "all"
    s = run_extraction([Job("talk", str(video), boxes=boxes)], ExtractParams(people=people, feature_rate=6.0, **kw),
                       out, progress=False)  # fmt: skip
    assert s.failed == 0, s.errors
    return FeatureStore.open(out)


def _same_people(one: FeatureStore, got: FeatureStore, n: int, motion: bool) -> None:
    """Landmarks, validity and times equal; boxes close; the motion encoder's columns close (the
    pose encoder's are centred on each chunk's torso: not compared)."""
    keys = [f"talk#{i}" for i in range(n)]
    assert got.keys() == one.keys() == keys
    assert got.status("talk")["people"] == keys
    for key in keys:
        a, b = one.read(key), got.read(key)
        assert got.status(key)["chunks"] >= 3 and got.status(key)["feature_rate"] == 6.0  # streamed
        assert got.status(key)["person"] == one.status(key)["person"]
        assert np.array_equal(b.extras["keypoints"], a.extras["keypoints"]), key
        assert np.array_equal(b.timestamps, a.timestamps), key
        assert np.array_equal(b.extras["step_valid"], a.extras["step_valid"]), key
        # boxes: the torso scale is a chunk's median, not the clip's; the people here cross the frame
        e = np.abs(b.extras["step_boxes"] - a.extras["step_boxes"])
        assert np.nanmean(e) < 0.5 and np.nanmax(e) < 4.0, (key, np.nanmean(e), np.nanmax(e))
        if motion:
            d = np.abs(b.regions[..., :144].astype(np.float32) - a.regions[..., :144].astype(np.float32))
            assert d.mean() < 5e-3, (key, d.mean())
    assert not (got.root / "work").exists() or not any((got.root / "work").iterdir())  # nothing left over


def test_keypoint_stream_of_several_people(tmp_path: Path) -> None:
    """An OpenPose folder of two people (no video): each person a streamed recording."""
    a, b = _two_people_crossing(T=60)
    _openpose_folder(tmp_path, "talk", [a, b])
    video = tmp_path / "videos" / "talk.mp4"  # keypoints only: never opened
    video.parent.mkdir()
    video.write_bytes(b"")
    kw = dict(parser="keypoints", encoders=["pose"], fps=30.0)
    one = _run(video, tmp_path / "one", **kw, **ONE_PASS)
    got = _run(video, tmp_path / "str", **kw, **STREAMED)
    _same_people(one, got, 2, motion=False)


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory) -> Path:
    scene = generate_scene(0, people=2, crossing=True, seed=0)  # 35 frames, 15 frames/s
    path = tmp_path_factory.mktemp("scene") / "talk.mp4"
    write_video(path, scene["frames"], int(scene["fps"]))
    return path


def test_pixels_of_several_people_streamed_and_resumed(scene_video: Path, tmp_path: Path, monkeypatch) -> None:
    """MediaPipe on a rendered two-person scene: found once, each person streamed; killed while
    the second person is streamed, the run resumes from the saved people and the first's item."""
    kw = dict(encoders=["motion", "pose"], box_window=0.5, max_side=200)
    one = _run(scene_video, tmp_path / "one", **kw, **ONE_PASS)
    got = _run(scene_video, tmp_path / "str", **kw, **STREAMED)
    _same_people(one, got, 2, motion=True)

    real_write = stream.atomic_write_bytes

    def killed(path: Path, data: bytes) -> None:
        if path.parent.name == "talk#1" and path.name == "chunk_00002.npz":
            raise KeyboardInterrupt
        real_write(path, data)

    monkeypatch.setattr(stream, "atomic_write_bytes", killed)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _run(scene_video, out, **kw, **STREAMED)
    assert (out / "work" / "talk#people" / people_stream.CACHE).is_file()
    assert FeatureStore.open(out).status("talk#0")["status"] == "ok"
    monkeypatch.setattr(stream, "atomic_write_bytes", real_write)

    def no_search(*a, **k):
        raise AssertionError("the people were searched again")

    monkeypatch.setattr(people_stream, "find_people", no_search)
    streamed: list[str] = []
    real_stream = stream.stream_recording

    def counting(ex, store, key, *a, **k):
        streamed.append(key)
        return real_stream(ex, store, key, *a, **k)

    monkeypatch.setattr("microaction.extract.jobs.execute.stream_recording", counting)
    _same_people(one, _run(scene_video, out, **kw, **STREAMED), 2, motion=True)
    assert streamed == ["talk#1"]  # the first person's item was kept


def test_a_manifest_box_in_a_long_recording(scene_video: Path, tmp_path: Path) -> None:
    """An annotation's person box (frame 3, the second person): that person is found and
    streamed, under the job's key, as one pass extracts it."""
    scene = generate_scene(0, people=2, crossing=True, seed=0)
    boxes = ((3, *[float(v) for v in scene["people"][1]["box"][3]]),)
    kw = dict(encoders=["motion", "pose"], box_window=0.5, max_side=200)
    one = _run(scene_video, tmp_path / "one", boxes=boxes, **kw, **ONE_PASS).read("talk")
    store = _run(scene_video, tmp_path / "str", boxes=boxes, **kw, **STREAMED)
    got = store.read("talk")
    assert store.keys() == ["talk"] and store.status("talk")["chunks"] >= 3
    assert np.array_equal(got.extras["keypoints"], one.extras["keypoints"])
    nose = one.extras["keypoints"][3, 0, :2]  # the boxed person's, not the other's
    x1, y1, x2, y2 = boxes[0][1:]
    assert x1 <= nose[0] <= x2 and y1 <= nose[1] <= y2
    assert not any((tmp_path / "str" / "work").iterdir())
