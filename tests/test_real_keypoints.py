"""Keypoint releases read as their authors meant them, built from facts measured on real files.

The fixtures follow iMiGUE's OpenPose-137 press-conference stream (a seated speaker, head, torso
and arms in a 1280 x 720 frame, hips out of it): shoulders given in 99 % of frames with median
confidence 0.36-0.39, elbows 0.37-0.59, wrists 0.51-0.56, hips and legs at confidence 0, and
OpenPose's short spurious "people" (a coat, a reflection) a few frames each. PySKL pose pickles
carry no frame rate; PCAN's MA-52 release is COCO-18 + five points a hand from OpenPose.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from microaction.cli import main as mar
from microaction.data.store import FeatureStore
from microaction.extract.parsers.base import from_seen_scale, to_seen_scale
from microaction.layouts import get_layout

W, H = 1280, 720
FPS = 25  # iMiGUE: its instance CSV gives frame 171 at 6.855 s


def _person(rng: np.random.Generator, t: int, dx: float = 0.0) -> dict[str, list[float]]:
    """One seated speaker in OpenPose-137 (BODY_25, face-70, two hands-21): x, y pixels, confidence."""
    body = np.zeros((25, 3))
    sway = 6 * np.sin(t / 20)

    def put(j: int, x: float, y: float, lo: float, hi: float, given: float = 0.99) -> None:
        if rng.random() < given:
            body[j] = [x + sway + dx + rng.normal(0, 1), y + rng.normal(0, 1), rng.uniform(lo, hi)]

    put(0, 640, 260, 0.75, 0.92)  # nose
    put(1, 640, 400, 0.45, 0.65)  # neck
    put(2, 540, 410, 0.25, 0.50)  # right shoulder: median about 0.37
    put(5, 740, 410, 0.25, 0.50)  # left shoulder
    put(3, 470, 600, 0.30, 0.65)  # elbows: 0.37-0.59
    put(6, 810, 600, 0.30, 0.65)
    put(4, 560, 660, 0.45, 0.62)  # wrists: 0.51-0.56
    put(7, 720, 660, 0.45, 0.62)
    put(15, 620, 240, 0.80, 0.92)  # eyes
    put(16, 660, 240, 0.80, 0.92)
    put(17, 590, 250, 0.50, 0.85)  # ears
    put(18, 690, 250, 0.50, 0.85)
    # 8-14 (hips, knees, ankles) and 19-24 (feet): out of frame, 0
    face = np.zeros((70, 3))
    ang = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    face[:, 0] = 640 + sway + dx + 45 * np.cos(ang)
    face[:, 1] = 270 + 55 * np.sin(ang)
    face[:, 2] = rng.uniform(0.5, 0.9, 70)
    hands = []
    for x0 in (580, 700):
        h = np.zeros((21, 3))
        h[:, 0] = x0 + sway + dx + rng.normal(0, 8, 21)
        h[:, 1] = 680 + rng.normal(0, 8, 21)
        h[:, 2] = rng.uniform(0.2, 0.8, 21)
        hands.append(h)
    return {"pose_keypoints_2d": body.ravel().tolist(), "face_keypoints_2d": face.ravel().tolist(),
            "hand_left_keypoints_2d": hands[0].ravel().tolist(), "hand_right_keypoints_2d": hands[1].ravel().tolist()}  # fmt: skip


def _spurious(rng: np.random.Generator) -> dict[str, list[float]]:
    """A short-lived false "person": a few body parts at low confidence somewhere in the background."""
    body = np.zeros((25, 3))
    x, y = rng.uniform(60, 300) if rng.random() < 0.5 else rng.uniform(1000, 1220), rng.uniform(120, 500)
    for j, (ox, oy) in zip((0, 1, 2, 5, 15, 16), ((0, 0), (0, 60), (-40, 65), (40, 65), (-10, -8), (10, -8))):
        body[j] = [x + ox, y + oy, rng.uniform(0.55, 0.8)]
    return {"pose_keypoints_2d": body.ravel().tolist()}


def _stream(root: Path, frames: int = 500, seed: int = 0) -> Path:
    """``root/talk/*_keypoints.json``: the speaker (gone for 20 frames twice: longer than the
    tracker waits) and 24 spurious people of 3-10 frames."""
    rng = np.random.default_rng(seed)
    gone = {t for a, b in GONE for t in range(a, b)}
    ghosts: dict[int, list[dict[str, list[float]]]] = {}
    for _ in range(24):
        start, n = int(rng.integers(0, frames - 10)), int(rng.integers(3, 11))
        ghost = _spurious(rng)
        for t in range(start, start + n):
            ghosts.setdefault(t, []).append(ghost)
    d = root / "talk"
    d.mkdir(parents=True)
    for t in range(frames):
        people = ([] if t in gone else [_person(rng, t)]) + ghosts.get(t, [])
        (d / f"talk_{t:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return d


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("openpose")
    _stream(root / "kp")
    return root


def _extract(root: Path, out: Path, *extra: str) -> int:
    return mar(["extract", "--parser", "keypoints", "--keypoints", str(root / "kp"), "--videos",
                str(root / "talk.mp4"), "--out", str(out), "--encoder", "pose", "--quiet", *extra])  # fmt: skip


GONE = ((150, 170), (330, 350))  # frames the speaker is out of the stream (longer than the tracker waits)


def _step_share(store: FeatureStore, key: str) -> dict[str, float]:
    """Share of the feature steps each region is valid at, over the steps the speaker is there."""
    item = store.read(key)
    t = item.timestamps
    there = np.ones(len(t), bool)
    for a, b in GONE:
        there &= (t < a / FPS - 0.5) | (t > b / FPS + 0.5)
    return {r: float(v[there].mean()) for r, v in zip(store.manifest.regions, item.extras["step_valid"])}


def test_seen_scale_keeps_order_and_maps_the_threshold_to_visible() -> None:
    c = np.array([0.0, 0.05, 0.1, 0.37, 0.9, 1.0], np.float32)
    s = to_seen_scale(c, 0.1)
    assert s[2] == pytest.approx(0.5) and s[0] == 0 and s[-1] == pytest.approx(1.0)
    assert np.all(np.diff(s) > 0)
    np.testing.assert_allclose(from_seen_scale(s, 0.1), c, atol=1e-6)
    np.testing.assert_array_equal(to_seen_scale(np.array([0.0, 0.01, 1.0]), 0.0), [0, 1, 1])  # no scores: given = seen
    lay = get_layout("openpose137")
    assert lay.thresholds[0] == pytest.approx(0.1)  # nose: body
    assert lay.thresholds[9] == pytest.approx(0.4)  # mouth corner: face-70
    assert lay.thresholds[19] == pytest.approx(0.2)  # index knuckle: hand-21


def test_openpose_upper_body_stream_regions(stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "st"
    assert _extract(stream, out, "--keypoints-fps", "imigue", "--frame-size", f"{W}x{H}") == 0
    shown = capsys.readouterr().out
    st = FeatureStore.open(out)
    share = _step_share(st, "talk")
    assert share["head"] >= 0.95 and share["body"] >= 0.95 and share["upper_limbs"] >= 0.95, share
    assert share["lower_limbs"] <= 0.05, share
    # the release's rate and the given frame size, recorded
    opts = st.manifest.params["extract"]["parser_options"]
    assert opts["fps"] == 25.0 and opts["frame_size"] == "1280x720"
    status = st.status("talk")
    assert status["size"] == [H, W] and status["size_from"] == "--frame-size"
    assert st.read("talk").timestamps[-1] == pytest.approx(499 / FPS, abs=0.5)
    # the summary says which region is invalid in every item, and why
    assert "region lower_limbs invalid in 1 of 1 items" in shown and "left_hip given in 0% of frames" in shown
    assert "region body invalid" not in shown

    # read at MediaPipe's cut, the same stream loses its torso: the old, silent failure
    low = tmp_path / "st05"
    assert _extract(stream, low, "--keypoints-fps", "25", "--min-confidence", "0.5") == 0
    assert _step_share(FeatureStore.open(low), "talk")["body"] <= 0.05
    assert "region body invalid in 1 of 1 items" in capsys.readouterr().out
    # a store made at one threshold is not resumed at another
    assert _extract(stream, low, "--keypoints-fps", "25", "--min-confidence", "0.2") != 0
    assert "'min_confidence': 0.5}, this run" in capsys.readouterr().err


def test_guessed_frame_size_is_said(stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "st"
    assert _extract(stream, out, "--keypoints-fps", "25") == 0
    st = FeatureStore.open(out)
    assert st.status("talk")["size_from"] == "guessed"
    assert "frame size guessed from the keypoints' extent for 1 item(s)" in capsys.readouterr().out


def test_people_all_keeps_one_speaker(stream: Path, tmp_path: Path) -> None:
    out = tmp_path / "st"
    assert _extract(stream, out, "--keypoints-fps", "25", "--frame-size", f"{W}x{H}", "--people", "all") == 0
    st = FeatureStore.open(out)
    assert st.status("talk")["people"] == ["talk#0"]
    kp = st.read("talk#0").extras["keypoints"]
    there = np.ones(len(kp), bool)
    for a, b in GONE:
        there[a:b] = False
    assert (kp[there, :, 2] >= 0.5).any(axis=1).mean() >= 0.95  # one track over the speaker's frames
    # without a floor, the spurious people stay (the flag sets it)
    few = tmp_path / "few"
    assert _extract(stream, few, "--keypoints-fps", "25", "--people", "all", "--min-person-seconds", "0") == 0
    assert len(FeatureStore.open(few).status("talk")["people"]) > 5


def _pcan_pickle(path: Path, n: int = 20, frames: int = 40, *, img_shape: bool = True) -> Path:
    """A PySKL pose pickle in PCAN's 28-point layout (COCO-18 + five points a hand), no fps."""
    rng = np.random.default_rng(1)
    lay = get_layout("pcan28")
    anns = []
    for i in range(n):
        kp = np.zeros((1, frames, 28, 2), np.float32)
        sc = np.zeros((1, frames, 28), np.float32)
        for t in range(frames):
            op = np.asarray(_person(rng, t, dx=rng.normal(0, 20))["pose_keypoints_2d"], np.float32).reshape(25, 3)
            body25 = get_layout("body25")
            for j, name in enumerate(lay.joints[:18]):
                k = body25.joints.index(name)
                kp[0, t, j], sc[0, t, j] = op[k, :2], op[k, 2]
            for j in range(18, 28):  # finger points near the wrists
                w = op[7] if j < 23 else op[4]
                kp[0, t, j] = w[:2] + rng.normal(0, 10, 2)
                sc[0, t, j] = rng.uniform(0.25, 0.6) if w[2] > 0 else 0
        ann = {"frame_dir": f"clip{i:02d}", "label": i % 5, "total_frames": frames, "keypoint": kp,
               "keypoint_score": sc}  # fmt: skip
        if img_shape:
            ann["img_shape"] = (H, W)
        anns.append(ann)
    path.write_bytes(pickle.dumps({"split": {"train": [a["frame_dir"] for a in anns]}, "annotations": anns}))
    return path


def _extract_pickle(pkl: Path, out: Path, *extra: str) -> int:
    return mar(["extract", "--parser", "keypoints", "--videos", str(pkl), "--out", str(out), "--encoder", "pose",
                "--quiet", *extra])  # fmt: skip


def test_pcan_pickle_without_fps_names_the_flag(tmp_path: Path) -> None:
    pkl = _pcan_pickle(tmp_path / "ma52_pcan.pkl", n=2, frames=10)
    out = tmp_path / "st"
    _extract_pickle(pkl, out)
    errors = [s["error"] for s in FeatureStore.open(out).statuses().values()]
    assert len(errors) == 2 and all("--keypoints-fps" in e and "frame rate unknown" in e for e in errors)


def test_pcan_pickle_body_and_arms(tmp_path: Path) -> None:
    pkl = _pcan_pickle(tmp_path / "ma52_pcan.pkl")
    out = tmp_path / "st"
    assert _extract_pickle(pkl, out, "--keypoints-fps", "ma52") == 0
    st = FeatureStore.open(out)
    regions = st.manifest.regions
    valid = np.stack([item.region_valid for item in st])
    assert len(valid) == 20
    share = dict(zip(regions, valid.mean(0)))
    assert share["body"] >= 0.95 and share["upper_limbs"] >= 0.95, share
    # img_shape is the frame the points are in
    status = st.status("clip00")
    assert status["size"] == [H, W] and status["size_from"] == "file"
    assert st.manifest.params["extract"]["parser_options"]["fps"] == 30.0


def test_frame_size_for_normalised_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # points in [0, 1] of the frame, no size in the file: --frame-size places them
    kp = np.zeros((8, 33, 3), np.float32)
    kp[:, :, :2] = np.random.default_rng(0).uniform(0.3, 0.7, (8, 33, 2))
    kp[:, :, 2] = 0.9
    (tmp_path / "kp").mkdir()
    np.savez(tmp_path / "kp" / "v.npz", keypoints=kp, fps=np.float32(25))
    out = tmp_path / "st"
    assert mar(["extract", "--parser", "keypoints", "--keypoints", str(tmp_path / "kp"), "--videos",
                str(tmp_path / "v.mp4"), "--out", str(out), "--encoder", "pose", "--quiet", "--coords", "unit",
                "--frame-size", "640x480"]) == 0  # fmt: skip
    st = FeatureStore.open(out)
    assert st.status("v")["size"] == [480, 640]
    x = st.read("v").extras["keypoints"][..., 0]
    assert 0.25 * 639 < x.min() and x.max() < 0.75 * 639
    assert mar(["extract", "--parser", "keypoints", "--videos", str(tmp_path / "v.mp4"), "--out", str(out),
                "--frame-size", "640*480"]) != 0  # fmt: skip
    assert "expected WxH" in capsys.readouterr().err


def test_streamed_stream_keeps_the_source_thresholds(stream: Path, tmp_path: Path) -> None:
    # a long recording is extracted chunk by chunk: every chunk reads confidence as the source does
    out = tmp_path / "st"
    assert _extract(stream, out, "--keypoints-fps", "25", "--frame-size", f"{W}x{H}", "--stream-after", "5",
                    "--chunk-seconds", "4", "--feature-rate", "6") == 0  # fmt: skip
    st = FeatureStore.open(out)
    status = st.status("talk")
    assert status["chunks"] > 1
    share = _step_share(st, "talk")
    assert share["head"] >= 0.95 and share["body"] >= 0.95 and share["upper_limbs"] >= 0.95, share
    hip = status["regions"]["unseen"]["lower_limbs"]["left_hip"]
    assert hip[:2] == [0.0, 0.0] and hip[3] == pytest.approx(0.1)  # never given; OpenPose's body threshold
    assert status["regions"]["seen"]["body"] >= 0.9


def test_store_made_at_the_old_single_threshold_is_told_apart(
    stream: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "st"
    assert _extract(stream, out, "--keypoints-fps", "25") == 0
    assert FeatureStore.open(out).manifest.params["extract"]["parser_options"]["confidence"] == "source"
    # a store from before: its parser options say nothing of confidence (every source read at 0.5)
    m = json.loads((out / "manifest.json").read_text())
    del m["params"]["extract"]["parser_options"]["confidence"]
    (out / "manifest.json").write_text(json.dumps(m))
    capsys.readouterr()
    assert _extract(stream, out, "--keypoints-fps", "25") != 0
    assert "continue it with --min-confidence 0.5" in capsys.readouterr().err
    assert _extract(stream, out, "--keypoints-fps", "25", "--min-confidence", "0.5") == 0
    assert "1 skipped" in capsys.readouterr().out
