"""``mar timeline``: a detection run over one rendered synthetic recording, end to end (video in,
timeline.csv / .json / .eaf / .html and the overlay out), the same from a store item, and bad
input refused."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import train_tiny_detector
from microaction.cli import main

VIDEO = "rec_test_000"
KEY = f"videos__{VIDEO}"  # its key in the store extracted from the manifest


# tiny convolutions on a loaded 2-core machine run far faster on one thread (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(run folder, store, video): a tridet trained briefly on tiny recordings, one test recording rendered."""
    return train_tiny_detector(
        tmp_path_factory.mktemp("timeline"),
        VIDEO,
        ["run.epochs=1", "detection.windows_per_epoch=4", "run.batch_size=4"],
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_timeline_of_a_rendered_recording(detector: tuple[Path, Path, Path], tmp_path: Path) -> None:
    import av
    import pympi

    from microaction.data.standardize import FeatureStats
    from microaction.data.store import FeatureStore
    from microaction.engine.detection import detect_recording, load_detector, recording_from_item

    run_dir, store, video = detector
    out = tmp_path / "tl"
    argv = ["timeline", str(run_dir), str(video), "--out", str(out), "--overlay", str(out / "overlay.mp4"),
            "--min-score", "0", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    for name in ("timeline.csv", "timeline.json", "timeline.eaf", "timeline.html", f"{VIDEO}.mp4", "overlay.mp4"):
        assert (out / name).is_file(), name
    # the video sits beside the page, which plays it
    assert (out / f"{VIDEO}.mp4").read_bytes() == video.read_bytes()
    assert f'src="{VIDEO}.mp4"' in (out / "timeline.html").read_text()
    # the rows are the detector's detections on the recording's features (the store's item: the
    # video was extracted with the run's parameters, so its features are the store's)
    ref = FeatureStore.open(store).read(KEY)
    got = FeatureStore.open(out / "features").read(VIDEO)
    np.testing.assert_array_equal(got.global_, ref.global_)
    loaded = load_detector(run_dir)
    stats = FeatureStats.from_meta(loaded.meta)  # the run standardises (data.standardize), so does mar timeline
    assert stats is not None
    dets = detect_recording(loaded.model, recording_from_item(VIDEO, ref, where="test", stats=stats))
    rows = _rows(out / "timeline.csv")
    assert dets and len(rows) == len(dets)
    want = sorted((round(d.start, 3), round(d.end, 3), d.label, round(d.score, 4)) for d in dets)
    have = sorted((float(r["start"]), float(r["end"]), int(r["class_id"]), float(r["score"])) for r in rows)
    np.testing.assert_allclose(np.array(have), np.array(want), atol=1.5e-3)
    assert all(r["video"] == VIDEO for r in rows)
    routing = np.array([[float(r[f"routing_{g}"]) for g in loaded.regions] for r in rows])
    np.testing.assert_allclose(routing.sum(1), 1.0, atol=2e-3)  # bmoe_tridet: routing per segment
    doc = json.loads((out / "timeline.json").read_text())
    assert len(doc["segments"]) == len(rows) and doc["regions"] == loaded.regions
    # the ELAN file reads back: one annotation per segment, linked to the video
    eaf = pympi.Elan.Eaf(str(out / "timeline.eaf"))
    notes = [a for tier in eaf.get_tier_names() for a in eaf.get_annotation_data_for_tier(tier)]
    assert len(notes) == len(rows)
    assert any(VIDEO in d["MEDIA_URL"] for d in eaf.media_descriptors)

    # the overlay: every frame of the video, drawn
    def frames(p: Path) -> int:
        with av.open(str(p)) as c:
            return sum(1 for _ in c.decode(video=0))

    assert frames(out / "overlay.mp4") == frames(video)


def test_timeline_from_a_store_item_matches_the_video_path(detector: tuple[Path, Path, Path], tmp_path: Path) -> None:
    run_dir, store, video = detector
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert main(["timeline", str(run_dir), str(video), "--out", str(a), "--quiet", "--min-score", "0"]) == 0
    item = ["--store", str(store), "--key", KEY]
    assert main(["timeline", str(run_dir), *item, "--out", str(b), "--quiet", "--min-score", "0"]) == 0
    rows = _rows(b / "timeline.csv")
    assert rows and _rows(a / "timeline.csv") == rows
    assert not (b / f"{VIDEO}.mp4").exists()  # no video given: the page has no player
    assert main(["timeline", str(run_dir), *item, "--out", str(c), "--quiet"]) == 0  # the default --min-score 0.1
    assert _rows(c / "timeline.csv") == [r for r in rows if float(r["score"]) >= 0.1]


def test_timeline_from_a_keypoint_file(detector: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A keypoint stream (a file ``mar extract --parser keypoints`` reads) instead of a video: parsed
    by the keypoints parser with the run's other extraction parameters; ``--video-file`` adds the video."""
    from microaction.data.standardize import FeatureStats
    from microaction.data.store import FeatureStore
    from microaction.engine.detection import detect_recording, load_detector, recording_from_item
    from microaction.extract.jobs.job_list import Job
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import params_from_manifest

    run_dir, _, video = detector
    kp = video.parent.parent / "keypoints" / f"{VIDEO}.npz"  # the recording's keypoints, [T, 33, 3] + fps
    out = tmp_path / "kp"
    assert main(["timeline", str(run_dir), str(kp), "--out", str(out), "--quiet", "--min-score", "0"]) == 0
    # the features are the extraction's of that file with the keypoints parser
    loaded = load_detector(run_dir)
    params = params_from_manifest(loaded.manifest)
    params = replace(params, parser="keypoints", parser_options={"root": str(kp.parent)})
    run_extraction([Job(VIDEO, str(tmp_path / f"{VIDEO}.mp4"))], params, tmp_path / "ref", progress=False)
    ref = FeatureStore.open(tmp_path / "ref").read(VIDEO)
    np.testing.assert_array_equal(FeatureStore.open(out / "features").read(VIDEO).global_, ref.global_)
    stats = FeatureStats.from_meta(loaded.meta)
    dets = detect_recording(loaded.model, recording_from_item(VIDEO, ref, where="test", stats=stats))
    rows = _rows(out / "timeline.csv")
    assert rows and len(rows) == len(dets) and {r["video"] for r in rows} == {VIDEO}
    assert not (out / f"{VIDEO}.mp4").exists()  # no video: a page without a player
    with_video = tmp_path / "kpv"
    argv = ["timeline", str(run_dir), str(kp), "--video-file", str(video), "--out", str(with_video), "--quiet"]
    assert main(argv) == 0 and (with_video / f"{VIDEO}.mp4").is_file()

    # the same keypoints as a folder of OpenPose BODY_25 JSON (one file per frame, no frame rate)
    from microaction.layouts import get_layout

    body25 = get_layout("body25")
    frames = np.load(kp)["keypoints"]
    folder = tmp_path / "openpose" / VIDEO
    folder.mkdir(parents=True)
    for t, pts in enumerate(frames):
        joints = np.zeros((body25.num_joints, 3))
        for m, j in body25.mediapipe:
            joints[j] = pts[m]
        doc = {"people": [{"pose_keypoints_2d": joints.ravel().tolist()}]}
        (folder / f"{VIDEO}_{t:012d}_keypoints.json").write_text(json.dumps(doc))
    argv = ["timeline", str(run_dir), str(folder), "--keypoints-fps", "24", "--out", str(tmp_path / "op"), "--quiet"]
    assert main(argv) == 0
    item = FeatureStore.open(tmp_path / "op" / "features").read(VIDEO)
    np.testing.assert_allclose(item.timestamps, ref.timestamps, atol=1e-5)  # 24 fps, as the npz says
    # keypoint options with a video are a mistake worth naming
    argv = ["timeline", str(run_dir), str(video), "--keypoints-fps", "24", "--out", str(tmp_path / "no"), "--quiet"]
    assert main(argv) == 1


def test_keypoint_sources_are_told_from_videos(tmp_path: Path) -> None:
    from microaction.extract.parsers.keypoints import is_keypoint_source

    (tmp_path / "openpose").mkdir()
    (tmp_path / "openpose" / "x_000000000000_keypoints.json").write_text("{}")
    (tmp_path / "empty").mkdir()
    for name in ("a.npz", "a_skeleton.csv", "a.mp4"):
        (tmp_path / name).write_bytes(b"")
    assert is_keypoint_source(tmp_path / "openpose") and is_keypoint_source(tmp_path / "a.npz")
    assert is_keypoint_source(tmp_path / "a_skeleton.csv")
    assert not is_keypoint_source(tmp_path / "a.mp4") and not is_keypoint_source(tmp_path / "empty")


def test_timeline_of_several_people(detector: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A recording extracted person by person (``--people all``: status ``people``, items KEY#id):
    each person's detections in lanes and tiers of their own; person 0's are the one-person ones."""
    import pympi

    from microaction.data.store import FeatureStore

    run_dir, store, _video = detector
    src = FeatureStore.open(store)
    item = src.read(KEY)
    people = FeatureStore.create(tmp_path / "people", src.manifest)
    for pid, shift in ((0, 0), (1, 40)):  # person 1 does the same, 40 steps later
        people.write(f"{KEY}#{pid}", regions=np.roll(item.regions, shift, 1), global_=np.roll(item.global_, shift, 0),
                     region_valid=item.region_valid, timestamps=item.timestamps, extras=item.extras,
                     info={"person": pid})  # fmt: skip
    people.write_people(KEY, [f"{KEY}#0", f"{KEY}#1"])
    one, both = tmp_path / "one", tmp_path / "both"
    common = ["--key", KEY, "--quiet", "--min-score", "0"]
    assert main(["timeline", str(run_dir), "--store", str(store), *common, "--out", str(one)]) == 0
    assert main(["timeline", str(run_dir), "--store", str(tmp_path / "people"), *common, "--out", str(both)]) == 0
    rows = _rows(both / "timeline.csv")
    assert {r["person"] for r in rows} == {"person 0", "person 1"}
    assert [{k: v for k, v in r.items() if k != "person"} for r in rows if r["person"] == "person 0"] == _rows(
        one / "timeline.csv"
    )
    assert json.loads((both / "timeline.json").read_text())["people"] == ["person 0", "person 1"]
    tiers = pympi.Elan.Eaf(str(both / "timeline.eaf")).get_tier_names()
    assert "person 0: head" in tiers and "person 1: lower_limb" in tiers
    # one overlay per person: that person's region boxes and segments
    argv = ["timeline", str(run_dir), "--store", str(tmp_path / "people"), *common, "--video-file", str(_video),
            "--out", str(both), "--overlay", str(both / "o.mp4")]  # fmt: skip
    assert main(argv) == 0
    assert sorted(p.name for p in both.glob("o*.mp4")) == ["o_person0.mp4", "o_person1.mp4"]


def test_timeline_refuses_bad_input(
    detector: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from microaction.engine.checkpoint import load_weights, save_weights
    from microaction.models import create_model, model_entry

    run_dir, store, video = detector
    # a clip classifier's run is not a detector
    _, meta = load_weights(run_dir / "best.safetensors")
    kw = {k: meta["model_kwargs"][k] for k in ("num_classes", "regions", "region_dim", "global_dim")}
    kw = {**kw, "num_body": 7, **model_entry("m3e_global").presets["tiny"]}
    clip_meta = {k: v for k, v in meta.items() if k != "task"} | {"model": "m3e_global", "model_kwargs": kw}
    clip = tmp_path / "clip_run"
    clip.mkdir()
    save_weights(clip / "best.safetensors", create_model("m3e_global", **kw).state_dict(), clip_meta)
    out = tmp_path / "out"
    assert main(["timeline", str(clip), str(video), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not a detection run" in err and "m3e_global" in err
    assert not (out / "timeline.csv").exists()
    # neither a video nor a store item; both; a missing key; an overlay without a video
    assert main(["timeline", str(run_dir), "--out", str(out)]) == 1
    assert "give the recording" in capsys.readouterr().err
    assert main(["timeline", str(run_dir), str(video), "--store", str(store), "--key", KEY, "--out", str(out)]) == 1
    assert main(["timeline", str(run_dir), "--store", str(store), "--key", "nope", "--out", str(out)]) == 1
    assert "no item 'nope'" in capsys.readouterr().err
    argv = ["timeline", str(run_dir), "--store", str(store), "--key", KEY, "--out", str(out), "--overlay", "o.mp4"]
    assert main(argv) == 1
    assert "--overlay needs" in capsys.readouterr().err


def test_submit_from_a_detection_run(detector: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """``mar submit --run RUN --split test``: the run's detections on the split, as a MAC CSV."""
    from microaction.engine.detection import detect_split, load_detector
    from microaction.metrics.detection import read_detection_submission

    run_dir, _, _ = detector
    out = tmp_path / "prediction.csv"
    assert main(["submit", "--run", str(run_dir), "--split", "test", "--out", str(out)]) == 0
    assert out.read_text().splitlines()[0] == ",video_id,t_start,t_end,class,score"
    loaded = load_detector(run_dir)
    back = read_detection_submission(out, loaded.taxonomy)
    _, _, dets = detect_split(loaded, "test")
    assert len(back) == len(dets) > 0 and {d.video for d in back} == {VIDEO}
    assert main(["submit", "--run", str(run_dir), "--split", "nope", "--out", str(out)]) == 1


def test_overlay_boxes_follow_the_person_where_the_extraction_has_them() -> None:
    """Streamed recordings store per-step boxes ``step_boxes`` [R+1, T, 4]; the overlay gets them per step."""
    from microaction.commands.timeline import overlay_boxes
    from microaction.data.store import Item

    T, R = 7, 4
    step = np.random.default_rng(0).random((R + 1, T, 4)).astype(np.float32)
    clip = np.ones((R + 1, 4), np.float32)
    item = Item("k", np.zeros((R, T, 3)), np.zeros((T, 2)), np.ones(R, bool), np.arange(T) / 6.0,
                {"boxes": clip, "step_boxes": step})  # fmt: skip
    got = overlay_boxes(item)
    assert got.shape == (T, R + 1, 4) and np.array_equal(got[3], step[:, 3])
    item.extras = {"boxes": clip}
    assert np.array_equal(overlay_boxes(item), clip)
    item.extras = {}
    with pytest.raises(ValueError, match="no region boxes"):
        overlay_boxes(item)
