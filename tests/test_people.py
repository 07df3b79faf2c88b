"""Several people: the tracker, keypoint files with several people, manifest person boxes,
``--people all`` into a store, boxes that follow the person, and rendered scenes (pixels)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import skeleton_clip
from microaction.data.readers.annotations import AnnotationError, read_manifest_csv
from microaction.data.store import FeatureStore, video_key
from microaction.data.synth.scene import generate_scene
from microaction.extract.jobs.job_list import collect_jobs
from microaction.extract.jobs.person_tracking import (
    PersonBox,
    box_iou,
    keypoint_box,
    pick_target,
    score_tracking,
    track_people,
)
from microaction.extract.jobs.runner import run_extraction
from microaction.extract.parsers.base import ParseResult
from microaction.extract.parsers.keypoints import TO_MEDIAPIPE
from microaction.extract.pipeline import ExtractParams
from microaction.extract.regions import region_layout, step_validity
from microaction.skeleton import LANDMARKS
from microaction.taxonomy import load_taxonomy

IMG_H, IMG_W = 96, 240


def _two_people_crossing(T: int = 40, hide: tuple[int, int] = (18, 23)) -> tuple[np.ndarray, np.ndarray]:
    """Two skeletons ``[2, T, 33, 3]`` sliding past each other (A left→right, B right→left); B is
    hidden (not detected) for the frames ``hide`` while A is in front of it."""
    a, b = skeleton_clip(T, 0), skeleton_clip(T, 1)
    s = np.linspace(0, 1, T, dtype=np.float32)[:, None]
    a[..., 0] += s * 150
    b[..., 0] += (1 - s) * 150
    b[hide[0] : hide[1], :, 2] = 0.0
    return a, b


def _dets(people: list[np.ndarray], t: int, rng: np.random.Generator) -> list[PersonBox]:
    out = []
    for kp in people:
        box = keypoint_box(kp[t])
        if box is not None:
            out.append(PersonBox(kp[t], box))
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


def test_tracker_keeps_identity_through_crossing_and_occlusion() -> None:
    a, b = _two_people_crossing()
    rng = np.random.default_rng(0)
    tracks = track_people([_dets([a, b], t, rng) for t in range(len(a))])
    assert len(tracks) == 2
    # numbered left to right at the first frame: track 0 is A
    for tr, truth in zip(tracks, (a, b)):
        seen = tr.seen
        np.testing.assert_allclose(tr.keypoints[seen, :, :2], truth[seen, :, :2])
    assert not tracks[1].seen[18:23].any() and tracks[1].seen[23:].all()
    truth_boxes = np.stack(
        [[keypoint_box(k) if keypoint_box(k) is not None else [np.nan] * 4 for k in p] for p in (a, b)]
    )
    s = score_tracking(
        truth_boxes.astype(np.float32), np.stack([t.boxes for t in tracks]), np.array([[0, 40], [0, 40]])
    )
    assert s["id_switches"] == 0 and s["attributed"] == 2


def test_score_tracking_counts_a_swap() -> None:
    a, b = _two_people_crossing(hide=(0, 0))
    box = np.stack([[keypoint_box(k) for k in p] for p in (a, b)]).astype(np.float32)
    swapped = box.copy()
    swapped[0, 20:], swapped[1, 20:] = box[1, 20:], box[0, 20:]
    s = score_tracking(box, swapped, np.array([[25, 35], [25, 35]]))
    assert s["id_switches"] == 2 and s["attributed"] == 0
    assert score_tracking(box, box, np.array([[25, 35], [25, 35]]))["attributed"] == 2


def test_pick_target_and_box_iou() -> None:
    a, b = _two_people_crossing(hide=(0, 0))
    rng = np.random.default_rng(1)
    tracks = track_people([_dets([a, b], t, rng) for t in range(len(a))])
    right = keypoint_box(b[0])
    assert right is not None
    assert pick_target(tracks, {0: right}) == 1
    assert pick_target(tracks, {39: right}) == 0  # at the last frame that place is A's
    with pytest.raises(ValueError, match="no person found"):
        pick_target(tracks, {0: np.array([0, 0, 5, 5], np.float32)})
    assert box_iou(np.array([0, 0, 2, 2]), np.array([1, 1, 3, 3]))[0, 0] == pytest.approx(1 / 7)


def _body25(kp: np.ndarray) -> list[float]:
    body = np.zeros((25, 3), np.float32)
    for name, j in TO_MEDIAPIPE[25].items():
        body[j] = kp[LANDMARKS.index(name)]
    return [float(v) for v in body.reshape(-1)]


def _openpose_folder(root: Path, stem: str, people: list[np.ndarray], seed: int = 0) -> None:
    d = root / "keypoints" / stem
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for t in range(len(people[0])):
        ps = [{"person_id": [-1], "pose_keypoints_2d": _body25(p[t])} for p in people if p[t, :, 2].max() > 0]
        rng.shuffle(ps)  # type: ignore[arg-type]
        (d / f"{stem}_{t:06d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": ps}))


@pytest.fixture(scope="module")
def openpose_data(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("people")
    a, b = _two_people_crossing()
    _openpose_folder(root, "talk", [a, b])
    (root / "videos").mkdir()
    (root / "videos" / "talk.mp4").write_bytes(b"")  # keypoints-only path: never opened
    return root, a, b


def _params(**kw) -> ExtractParams:
    return ExtractParams(parser="keypoints", encoders=["pose"], fps=30.0, **kw)


def test_people_all_from_openpose_json(openpose_data, tmp_path: Path) -> None:
    root, a, b = openpose_data
    jobs = collect_jobs(root / "videos")
    out = tmp_path / "store"
    s = run_extraction(jobs, _params(people="all"), out, progress=False)
    assert s.failed == 0, s.errors
    store = FeatureStore.open(out)
    assert store.keys() == ["talk#0", "talk#1"]
    assert store.status("talk") == {"status": "people", "people": ["talk#0", "talk#1"], "video": jobs[0].path}
    for key, truth in (("talk#0", a), ("talk#1", b)):
        kp = store.read_extras(key, ("keypoints",))["keypoints"]
        seen = kp[..., 2] > 0.5
        body = [LANDMARKS.index(n) for n in ("left_shoulder", "right_hip", "nose")]
        # the person's own landmarks (OpenPose lacks some; gaps are interpolated)
        assert np.abs(kp[:, body, 0] - truth[:, body, 0])[seen[:, body]].max() < 3.0
        item = store.read(key)
        assert item.extras["step_valid"].shape == (4, item.length)
        assert item.extras["step_boxes"].shape == (5, item.length, 4)
    again = run_extraction(jobs, _params(people="all"), out, progress=False)
    assert again.skipped == 1 and again.done == 0


def test_manifest_box_picks_its_person(openpose_data, tmp_path: Path) -> None:
    root, _a, b = openpose_data
    box = keypoint_box(b[0])
    assert box is not None
    (root / "boxed.csv").write_text(
        "video,label,person,x1,y1,x2,y2\n" + f"talk.mp4,3,initiator,{','.join(f'{v:.1f}' for v in box)}\n"
    )
    jobs = collect_jobs(root / "boxed.csv", root / "videos")
    assert [j.key for j in jobs] == ["talk#initiator"] and jobs[0].boxes[0][0] == 0
    s = run_extraction(jobs, _params(), tmp_path / "store", progress=False)
    assert s.failed == 0, s.errors
    store = FeatureStore.open(tmp_path / "store")
    kp = store.read_extras("talk#initiator", ("keypoints",))["keypoints"]
    nose = LANDMARKS.index("nose")
    assert abs(kp[0, nose, 0] - b[0, nose, 0]) < 2 and abs(kp[-1, nose, 0] - b[-1, nose, 0]) < 2
    samples = read_manifest_csv(root / "boxed.csv", load_taxonomy("ma52"))
    assert samples[0].key == "talk#initiator"
    # a box where nobody is: a clear failure naming the video
    (root / "empty.csv").write_text("video,x1,y1,x2,y2\ntalk.mp4,0,0,4,4\n")
    s = run_extraction(
        collect_jobs(root / "empty.csv", root / "videos"), _params(), tmp_path / "store2", progress=False
    )
    assert s.failed == 1 and "no person found" in next(iter(s.errors.values()))


def test_manifest_person_columns(tmp_path: Path) -> None:
    tax = load_taxonomy("ma52")
    p = tmp_path / "m.csv"
    p.write_text(
        "video,label,start,end,person,x1,y1,x2,y2,frame\n"
        "a.mp4,3,10,50,kid,1,2,30,40,10\n"
        "a.mp4,3,10,50,kid,2,2,31,40,20\n"
        "a.mp4,5,10,50,mum,50,2,80,40,\n"
        "b.mp4,5,,,,,,,,\n"
    )
    s = read_manifest_csv(p, tax)
    assert [x.key for x in s] == ["a@10-50#kid", "a@10-50#mum", "b"]
    assert s[0].boxes == ((10, 1.0, 2.0, 30.0, 40.0), (20, 2.0, 2.0, 31.0, 40.0))
    assert s[1].boxes == ((10, 50.0, 2.0, 80.0, 40.0),)  # no frame: the clip's first frame
    assert s[2].person is None and s[2].boxes == ()
    assert video_key("x/a#b.mp4", 1, 2, "p#1") == "x__a_b@1-2#p_1"
    for body, msg in (
        ("video,label,x1,y1\na.mp4,1,1,2\n", "go together"),
        ("video,label,x1,y1,x2,y2\na.mp4,1,5,2,3,4\n", r"m\.csv:2: .*x1 < x2"),
        ("video,label,x1,y1,x2,y2\na.mp4,1,1,2,,4\n", "incomplete"),
        ("video,label,person,x1,y1,x2,y2,frame\na.mp4,1,k,1,2,3,4,0\na.mp4,2,k,1,2,3,4,1\n", r"m\.csv:3: .*disagree"),
        ("video,label,frame\na.mp4,1,3\n", "needs the box columns"),
    ):
        p.write_text(body)
        with pytest.raises(AnnotationError, match=msg):
            read_manifest_csv(p, tax)


def test_region_boxes_follow_a_person_over_time() -> None:
    T = 120
    kp = skeleton_clip(T, 0)
    kp[..., 0] += np.linspace(0, 120, T, dtype=np.float32)[:, None]  # drifts right over the clip
    parse = ParseResult(kp, (IMG_H, IMG_W))
    regions = ("head", "body", "upper_limbs", "lower_limbs")
    fixed = region_layout(parse, regions)
    assert fixed.track is None  # no window: today's clip boxes
    moving = region_layout(parse, regions, window=20)
    assert moving.track is not None and moving.track.shape == (5, T, 4)
    head = moving.track[0]
    assert head[-1, 0] - head[0, 0] > 90  # the head box moved with the person
    assert (head[:, 2] - head[:, 0]).max() < 0.6 * (fixed.boxes[0, 2] - fixed.boxes[0, 0])  # and stays tight
    nose = LANDMARKS.index("nose")
    inside = (moving.track[0, :, 0] <= kp[:, nose, 0]) & (kp[:, nose, 0] <= moving.track[0, :, 2])
    assert inside.all()
    np.testing.assert_array_equal(region_layout(parse, regions, window=T + 1).boxes, fixed.boxes)
    times = np.arange(T) / 30.0
    kp[60:, :, 2] = 0.0  # nobody seen in the second half
    v = step_validity(region_layout(ParseResult(kp, (IMG_H, IMG_W)), regions), times, times[::10], 0.2)
    assert v.shape == (4, 12) and v[:, :7].all() and not v[:, 7:].any()  # step 6 straddles frame 60


@pytest.mark.timeout(300)
def test_rendered_crossing_scene_from_pixels() -> None:
    """MediaPipe's pose model on person crops + the tracker, on two rendered people sliding past
    each other (one hides the other): both found, no identity switch, both actions attributed."""
    from microaction.extract.jobs.people_clip import find_people
    from microaction.extract.jobs.person_finding import PersonFinder

    scene = generate_scene(0, people=2, crossing=True, seed=0)
    finder = PersonFinder()
    try:
        tracks = find_people(scene["frames"], finder)
    finally:
        finder.close()
    assert len(tracks) == 2
    truth = np.stack([p["box"] for p in scene["people"]])
    windows = np.array([p["action_window"] for p in scene["people"]])
    s = score_tracking(truth, np.stack([t.boxes for t in tracks]), windows)
    assert s["id_switches"] == 0 and s["attributed"] == 2
    assert s["matched_frames"] >= 0.8 * s["truth_frames"]
    assert tracks[0].masks is not None and tracks[0].masks.any()


def test_synth_scenes_and_manifest_boxes_through_the_cli(tmp_path: Path) -> None:
    """`mar synth --scenes` writes scenes whose manifest boxes, extracted from the shuffled
    OpenPose JSON (`--parser keypoints`), give each annotated person their own landmarks."""
    from microaction.cli import main
    from microaction.data.synth.scene import read_scene_truth

    data = tmp_path / "scenes"
    assert main(["synth", "--out", str(data), "--scenes", "2", "--seed", "3"]) == 0
    store = tmp_path / "store"
    argv = ["extract", "--videos", str(data / "manifest.csv"), "--out", str(store), "--parser", "keypoints"]
    assert main([*argv, "--encoder", "pose", "--quiet"]) == 0
    s = FeatureStore.open(store)
    keys = s.keys()
    assert keys == ["videos__scene0000_2p_cross#p0", "videos__scene0000_2p_cross#p1",
                        "videos__scene0001_4p#p0", "videos__scene0001_4p#p1",
                        "videos__scene0001_4p#p2", "videos__scene0001_4p#p3"]  # fmt: skip
    for key in keys:
        stem, person = key.removeprefix("videos__").split("#")
        truth = read_scene_truth(data, stem)["keypoints_clean"][int(person[1:])]
        kp = s.read_extras(key, ("keypoints",))["keypoints"]
        sh = LANDMARKS.index("left_shoulder")
        ok = (truth[:, sh, 2] > 0) & (kp[:, sh, 2] > 0.5)
        assert ok.mean() > 0.7 and np.median(np.abs(kp[ok, sh, 0] - truth[ok, sh, 0])) < 4.0, key


def test_store_made_before_the_people_parameters_resumes(openpose_data, tmp_path: Path) -> None:
    """A store whose manifest predates ``people`` / ``box_window`` resumes at their defaults and
    refuses another value."""
    from microaction.data.store import StoreMismatch

    root, _a, _b = openpose_data
    out = tmp_path / "store"
    jobs = collect_jobs(root / "videos")
    run_extraction(jobs, _params(), out, progress=False)
    doc = json.loads((out / "manifest.json").read_text())
    for k in ("people", "box_window"):
        del doc["params"]["extract"][k]
    (out / "manifest.json").write_text(json.dumps(doc))
    assert run_extraction(jobs, _params(), out, progress=False).skipped == 1
    with pytest.raises(StoreMismatch, match="people"):
        run_extraction(jobs, _params(people="all"), out, progress=False)


def test_npz_with_person_slots_is_tracked(tmp_path: Path) -> None:
    """Slots of an ``[M, T, 33, 3]`` npz are not identities: two people whose slots swap halfway
    come out as two tracks, each one person throughout."""
    from microaction.extract.jobs.person_finding import load_people

    a, b = _two_people_crossing(hide=(0, 0))
    slots = np.stack([a, b])
    slots[:, 20:] = slots[::-1, 20:]  # the file swaps the slots at frame 20
    np.savez(tmp_path / "v.npz", keypoints=slots, fps=30.0, size=np.array([IMG_H, IMG_W]))
    frames, fps, size = load_people(tmp_path / "v.npz")
    assert fps == 30.0 and size == (IMG_H, IMG_W) and [len(f) for f in frames] == [2] * len(a)
    tracks = track_people(frames)
    assert len(tracks) == 2
    np.testing.assert_allclose(tracks[0].keypoints[:, :, :2], a[:, :, :2])
    np.testing.assert_allclose(tracks[1].keypoints[:, :, :2], b[:, :, :2])


def test_manifest_naming_tracks_without_boxes(openpose_data, tmp_path: Path) -> None:
    """Rows naming people by track number (no box) are one job per video: with --people all
    their keys are the tracks' items; without it the job fails with a clear error."""
    root, _a, _b = openpose_data
    (root / "tracks.csv").write_text("video,label,person\ntalk.mp4,1,0\ntalk.mp4,2,1\n")
    jobs = collect_jobs(root / "tracks.csv", root / "videos")
    assert len(jobs) == 1 and jobs[0].key == "talk" and jobs[0].tracks
    s = run_extraction(jobs, _params(people="all"), tmp_path / "all", progress=False)
    assert s.failed == 0 and FeatureStore.open(tmp_path / "all").keys() == ["talk#0", "talk#1"]
    tax = load_taxonomy("ma52")
    assert [x.key for x in read_manifest_csv(root / "tracks.csv", tax)] == ["talk#0", "talk#1"]
    s = run_extraction(jobs, _params(), tmp_path / "main", progress=False)
    assert s.failed == 1 and "--people all" in s.errors["talk"]
