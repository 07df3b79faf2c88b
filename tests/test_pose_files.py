"""Skeleton releases as input: keypoint layouts (tables and flips), pose pickles (MMAction2 /
PySKL, MMN's pair), normalised coordinates, frame rates, Kinect CSVs, and `mar train` right after
`mar extract --parser keypoints --videos POSES.pkl`."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from extract_helpers import skeleton_clip
from microaction.cli import main as mar
from microaction.data.annotations import AnnotationError, read_annotations
from microaction.data.poses import PoseClip, load_pose_set
from microaction.data.store import FeatureStore
from microaction.extract.parsers import ParseError
from microaction.extract.parsers.base import to_seen_scale
from microaction.extract.parsers.keypoints import kinect_to_pixels, load_keypoints, pose_ref, to_pixels
from microaction.layouts import LayoutError, detect_layout, flip_joints, get_layout, layout_names, to_mediapipe
from microaction.skeleton import FLIP_PERMUTATION, LANDMARKS, flip_keypoints
from microaction.taxonomy import load_taxonomy

IMIGUE = load_taxonomy("imigue")
MP = LANDMARKS.index
W = 80.0


def _layout_joints(name: str, T: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A skeleton in ``name``'s layout made from a MediaPipe one: (joints [T, V, 3], mp [T, 33, 3])."""
    lay = get_layout(name)
    mp = skeleton_clip(T, seed)
    rng = np.random.default_rng(seed)
    joints = np.concatenate([rng.uniform(5, 70, (T, lay.num_joints, 2)), np.full((T, lay.num_joints, 1), 0.9)], -1)
    for m, j in lay.mediapipe:
        joints[:, j] = mp[:, m]
    return joints.astype(np.float32), mp


@pytest.mark.parametrize("name", layout_names())
def test_layout_maps_onto_mediapipe_and_flips_consistently(name: str) -> None:
    lay = get_layout(name)
    joints, mp = _layout_joints(name)
    out = to_mediapipe(joints, lay)
    mapped = sorted(m for m, _ in lay.mediapipe)
    np.testing.assert_allclose(out[:, mapped], mp[:, mapped], rtol=1e-6)
    missing = [i for i in range(33) if i not in mapped]
    assert (out[:, missing, 2] == 0).all()  # what a layout lacks is unseen
    # the flip pairs agree with the mapping: mirroring in the layout then mapping equals mapping
    # then mirroring MediaPipe's landmarks
    a = to_mediapipe(flip_joints(joints, lay, W), lay)
    b = flip_keypoints(out, W)
    seen = (a[..., 2] > 0) & (b[..., 2] > 0)
    assert seen[:, mapped].all()
    np.testing.assert_allclose(a[seen], b[seen], rtol=1e-5)
    assert sorted(lay.flip) == list(range(lay.num_joints))  # a permutation
    assert all(lay.flip[lay.flip[i]] == i for i in range(lay.num_joints))  # an involution
    assert lay.flip_pairs  # every layout has left and right
    assert {FLIP_PERMUTATION[m] for m in mapped} == set(mapped)  # it gives both sides alike


@pytest.mark.parametrize(
    ("name", "joint", "landmark"),
    [
        ("coco17", 5, "left_shoulder"),
        ("coco17", 16, "right_ankle"),
        ("pcan28", 4, "right_wrist"),
        ("pcan28", 7, "left_wrist"),
        ("pcan28", 14, "right_eye"),
        ("pcan28", 18, "left_thumb"),  # five hand points on the left wrist (7) ...
        ("pcan28", 27, "right_pinky"),  # ... and five on the right wrist (4)
        ("mmn44", 9, "left_wrist"),
        ("mmn44", 20, "left_foot_index"),  # big toes, small toes, heels in Halpe order
        ("mmn44", 25, "right_heel"),
        ("mmn44", 33, "left_thumb"),  # 32 a wrist, 33-37 five hand points on joint 9
        ("mmn44", 43, "right_pinky"),
        ("halpe136", 21, "right_foot_index"),
        ("halpe136", 26 + 36, "right_eye_outer"),
        ("halpe136", 94 + 5, "left_index"),
        ("halpe136", 115 + 17, "right_pinky"),
        ("openpose137", 4, "right_wrist"),
        ("openpose137", 24, "right_heel"),
        ("openpose137", 25 + 54, "mouth_left"),
        ("openpose137", 95 + 4, "left_thumb"),
        ("openpose137", 116 + 5, "right_index"),
        ("kinect25", 4, "left_shoulder"),
        ("kinect25", 10, "right_wrist"),
        ("kinect25", 22, "left_thumb"),
        ("kinect25", 19, "right_foot_index"),
        ("coco_wholebody133", 19, "left_heel"),
    ],
)
def test_layout_indices_follow_the_releases(name: str, joint: int, landmark: str) -> None:
    assert (MP(landmark), joint) in get_layout(name).mediapipe


def test_layout_flip_pairs_of_the_releases() -> None:
    assert (8, 11) in get_layout("pcan28").flip_pairs and (18, 23) in get_layout("pcan28").flip_pairs
    assert (32, 38) in get_layout("mmn44").flip_pairs and (20, 21) in get_layout("mmn44").flip_pairs
    assert get_layout("mmn44").flip[26] == 26  # the six unidentified face points stay
    assert (25 + 36, 25 + 45) in get_layout("openpose137").flip_pairs  # eye corners of face-70
    assert (25 + 68, 25 + 69) in get_layout("openpose137").flip_pairs  # pupils
    assert (95, 116) in get_layout("openpose137").flip_pairs  # the two hands' wrists
    assert (4, 8) in get_layout("kinect25").flip_pairs


def test_layout_detection() -> None:
    assert detect_layout(17).name == "coco17" and detect_layout(28).name == "pcan28"
    assert detect_layout(44).name == "mmn44" and detect_layout(137).name == "openpose137"
    assert detect_layout(25).name == "body25"  # Kinect's 25 is named with --layout
    with pytest.raises(LayoutError, match="no known keypoint layout has 19 joints"):
        detect_layout(19, "x.pkl")
    with pytest.raises(LayoutError, match="unknown keypoint layout 'nope'"):
        get_layout("nope")


# ---------------------------------------------------------------------------------------------
# pose pickles


def _ann(name: str, T: int, label: int, *, layout: str = "coco17", seed: int = 0, **extra) -> dict:
    joints, _ = _layout_joints(layout, T, seed)
    return {
        "frame_dir": name,
        "label": label,
        "img_shape": (96, 80),
        "total_frames": T,
        "keypoint": joints[None, ..., :2].astype(np.float16),
        "keypoint_score": joints[None, ..., 2],
        **extra,
    }


def _write(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=4))
    return path


def test_pose_pickle_to_store_then_train(tmp_path: Path) -> None:
    anns = [_ann(f"clip{i}", 12 + i, i % 3, seed=i) for i in range(6)]
    anns[5] = {**anns[5], "keypoint": np.zeros((1, 12, 17, 3, 2), np.float32)}  # a bad shape
    poses = _write(
        tmp_path / "poses.pkl",
        {"split": {"train": [f"clip{i}" for i in range(4)], "val": ["clip4"]}, "annotations": anns},
    )
    store = tmp_path / "store"
    args = ["extract", "--parser", "keypoints", "--videos", str(poses), "--out", str(store)]
    assert mar([*args, "--encoder", "pose", "--keypoints-fps", "30", "--quiet"]) == 3  # clip5 failed, the rest done
    st = FeatureStore.open(store)
    assert st.keys() == [f"clip{i}" for i in range(5)]
    bad = st.status("clip5")
    assert (
        bad is not None and bad["status"] == "failed" and "'clip5'" in bad["error"] and "[M, T, V, 2]" in bad["error"]
    )
    it = st.read("clip2")
    assert it.regions.shape[1] == 14 and it.region_valid.all()
    np.testing.assert_allclose(it.timestamps[1], 1 / 30, atol=1e-6)
    np.testing.assert_allclose(it.extras["keypoints"][:, MP("left_wrist"), :2], anns[2]["keypoint"][0, :, 9], atol=0.05)
    assert (it.extras["keypoints"][:, MP("left_thumb"), 2] == 0).all()  # COCO-17 has no hands
    # labels and splits come from the same pickle: `mar train` runs right after
    samples = read_annotations(poses, IMIGUE, split="train")
    assert [s.key for s in samples] == ["clip0", "clip1", "clip2", "clip3"] and samples[1].label == 1
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"data: {{store: {store}, taxonomy: imigue, manifest: {poses}, num_steps: 4}}\n"
        "model: {name: mean_mlp, preset: tiny}\nloss: {label_embeddings: none}\n"
        f"run: {{name: r, out_dir: {tmp_path / 'runs'}, device: cpu, precision: fp32, epochs: 1, batch_size: 2, "
        "workers: 0}\n"
    )
    assert mar(["train", str(cfg)]) == 0
    assert (tmp_path / "runs" / "r" / "best.safetensors").is_file()


def test_pose_pickle_forms(tmp_path: Path) -> None:
    # a bare list, `filename` as the id, no keypoint_score (-> 1), two people (the main one is
    # the larger and more confident), per-clip fps
    big = _ann("a", 8, 0)
    small = _ann("a", 8, 0, seed=3)
    kp = np.concatenate([small["keypoint"] * 0.3, big["keypoint"]])  # person 1 is the main one
    entry = {"filename": "videos/a.mp4", "label": 2, "keypoint": kp, "fps": 25.0, "img_shape": (96, 80)}
    p = _write(tmp_path / "list.pkl", [entry])
    clip = load_pose_set(p).clip("videos/a.mp4")
    assert clip.num_persons == 2 and clip.main_person() == 1 and (clip.score == 1).all()
    kp33, fps, size = load_keypoints(pose_ref(p, "videos/a.mp4"))
    assert fps == 25.0 and size == (96, 80)
    np.testing.assert_allclose(kp33[:, MP("nose"), :2], big["keypoint"][0, :, 0], atol=0.05)
    samples = read_annotations(p, IMIGUE, split="val")  # one file, one split: the one asked for
    assert [(s.video, s.key, s.label, s.split) for s in samples] == [("videos/a.mp4", "videos__a", 2, "val")]
    # a confidence-led choice: equal sizes, the more confident person wins
    c = PoseClip(
        "x",
        np.stack([big["keypoint"][0]] * 2).astype(np.float32),
        np.stack([np.full((8, 17), 0.3), np.full((8, 17), 0.9)]).astype(np.float32),
        None,
        None,
    )
    assert c.main_person() == 1


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"frame_dir": "x", "keypoint": np.zeros((1, 4, 17), np.float32)}, r"'x'.*keypoint has shape \(1, 4, 17\)"),
        (
            {"frame_dir": "x", "keypoint": np.zeros((1, 4, 17, 2), np.float32), "keypoint_score": np.ones((1, 4, 5))},
            r"'x'.*keypoint_score \(1, 4, 5\) does not match",
        ),
        (
            {"frame_dir": "x", "keypoint": np.zeros((1, 4, 17, 2), np.float32), "total_frames": 9},
            r"'x'.*total_frames 9 but keypoint has 4 frames",
        ),
        ({"frame_dir": "x", "keypoint": np.ones((1, 4, 19, 2), np.float32)}, r"'x'.*no known keypoint layout has 19"),
    ],
)
def test_bad_pose_samples_are_named(tmp_path: Path, entry: dict, message: str) -> None:
    p = _write(tmp_path / "bad.pkl", [entry])
    with pytest.raises(ParseError, match=message):
        load_keypoints(pose_ref(p, "x"))


def test_mmn_two_pickles_join_on_file_name(tmp_path: Path) -> None:
    data = {"annotations": [_ann(f"v{i}", 10, 0, layout="mmn44", seed=i) for i in range(3)]}
    for a in data["annotations"]:
        del a["label"]
    _write(tmp_path / "train_data.pkl", data)
    labels = _write(
        tmp_path / "train_label.pkl",
        [{"file_name": "v2", "length": 10, "label": 7}, {"file_name": "v0", "length": 10, "label": 4}],
    )
    # labels from the label file (either file names the pair); keypoints from the data file
    for p in (labels, tmp_path / "train_data.pkl"):
        assert [(s.video, s.label, s.split) for s in read_annotations(p, IMIGUE)] == [
            ("v2", 7, "train"),
            ("v0", 4, "train"),
        ]
    ps = load_pose_set(labels)
    assert ps.order == ["v2", "v0"] and ps.clip("v0").keypoint.shape == (1, 10, 44, 2)
    kp, _, _ = load_keypoints(pose_ref(labels, "v2"))
    joints, _ = _layout_joints("mmn44", 10, 2)
    np.testing.assert_allclose(kp[:, MP("left_thumb"), :2], joints[:, 33, :2], atol=0.05)
    _write(tmp_path / "val_label.pkl", [{"file_name": "zz", "label": 1}])
    _write(tmp_path / "val_data.pkl", data)
    with pytest.raises(AnnotationError, match=r"1 samples have no keypoints .*'zz'"):
        load_pose_set(tmp_path / "val_label.pkl")


def test_normalised_coordinates(tmp_path: Path) -> None:
    joints, _ = _layout_joints("coco17", 5)
    xy = joints[..., :2]
    centred = (xy - xy.min((0, 1))) / (xy.max((0, 1)) - xy.min((0, 1))) * 2 - 1  # MMN's [-1, 1]
    entry = {"frame_dir": "n", "keypoint": centred[None].astype(np.float32)}
    p = _write(tmp_path / "n.pkl", [entry])
    kp, _, size = load_keypoints(pose_ref(p, "n"))  # recognised: drawn on a 1000 x 1000 canvas
    assert size == (1000, 1000)
    nose = kp[:, MP("nose"), :2]
    np.testing.assert_allclose(nose, (centred[:, 0] + 1) / 2 * 999, atol=1e-3)
    assert kp[..., :2][kp[..., 2] > 0].min() >= 0
    declared, _, _ = load_keypoints(pose_ref(p, "n"), coords="pixels")  # declared: taken as they are
    np.testing.assert_allclose(declared[:, MP("nose"), :2], centred[:, 0], atol=1e-6)
    unit, s2 = to_pixels(np.array([[[0.5, 0.25, 1.0]]], np.float32), "auto", (100, 200))
    np.testing.assert_allclose(unit[0, 0], [0.5 * 199, 0.25 * 99, 1.0]) and s2 == (100, 200)
    # pose-only encoders need no pixels: a store from normalised skeletons
    out = tmp_path / "st"
    assert mar(["extract", "--parser", "keypoints", "--videos", str(p), "--out", str(out), "--encoder", "pose",
                "--keypoints-fps", "15", "--coords", "centred", "--quiet"]) == 0  # fmt: skip
    item = FeatureStore.open(out).read("n")
    assert item.region_valid.any() and np.isfinite(item.regions).all()
    np.testing.assert_allclose(item.timestamps[1], 1 / 15, atol=1e-6)


def test_frame_rate_is_required_or_carried(tmp_path: Path) -> None:
    p = _write(tmp_path / "f.pkl", [_ann("a", 6, 0), _ann("b", 6, 0, fps=10.0)])
    out = tmp_path / "st"
    assert (
        mar(["extract", "--parser", "keypoints", "--videos", str(p), "--out", str(out), "--encoder", "pose", "--quiet"])
        == 3  # "a" failed, "b" done
    )
    st = FeatureStore.open(out)
    assert "frame rate unknown" in st.status("a")["error"]  # nothing says how fast "a" runs
    np.testing.assert_allclose(st.read("b").timestamps[1], 0.1, atol=1e-6)  # the file's own fps


def test_a_pose_pickle_needs_the_keypoints_parser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path / "f.pkl", [_ann("a", 6, 0)])
    assert mar(["extract", "--videos", str(p), "--out", str(tmp_path / "s")]) != 0
    assert "add --parser keypoints" in capsys.readouterr().err
    assert mar(["extract", "--parser", "keypoints", "--videos", str(p), "--out", str(tmp_path / "s")]) != 0
    assert "no pixels for ['motion']: use --encoder pose" in capsys.readouterr().err  # the default is motion,pose
    assert not (tmp_path / "s").exists()


def test_kinect_skeleton_csv(tmp_path: Path) -> None:
    # SMG's <Sample>_skeleton.csv: 25 joints x 11 values (x, y, z metres, orientation, image coordinates)
    T = 4
    xyz = np.zeros((T, 25, 3))
    xyz[:, 4] = [-0.2, 0.3, 2.0]  # ShoulderLeft
    xyz[:, 8] = [0.2, 0.3, 2.0]
    xyz[:, 3] = [0.0, 0.5, 2.0]
    xyz[:, 19, 2] = 0  # not tracked
    xyz[:, 19, :2] = 1
    rows = np.zeros((T, 25, 11))
    rows[..., :3] = xyz
    rows[..., 3] = 1.0
    f = tmp_path / "Sample0001_skeleton.csv"
    f.write_text("\n".join(",".join(f"{v:.4f}" for v in r.ravel()) for r in rows))
    kp, fps, size = load_keypoints(f)
    assert size == (1080, 1920) and fps is None
    px = kinect_to_pixels(xyz.astype(np.float32))
    np.testing.assert_allclose(kp[:, MP("left_shoulder")], px[:, 4], rtol=1e-5)
    np.testing.assert_allclose(kp[0, MP("nose"), :2], [959.5, 539.5 - 1081.37 * 0.25], rtol=1e-5)
    assert kp[:, MP("right_foot_index"), 2].max() == 0  # untracked joint
    xy, _, _ = load_keypoints(f, kinect="xy")
    np.testing.assert_allclose(xy[0, MP("right_shoulder"), :2], [959.5 + 200, 539.5 - 300], rtol=1e-5)
    # x, y, z triplets (75 values a line) only when named
    f3 = tmp_path / "k.csv"
    f3.write_text("\n".join(",".join(f"{v:.4f}" for v in r.ravel()) for r in xyz))
    named, _, _ = load_keypoints(f3, layout="kinect25")
    np.testing.assert_allclose(named[:, MP("left_shoulder")], px[:, 4], rtol=1e-5)


def test_keypoints_npz_in_another_layout(tmp_path: Path) -> None:
    joints, mp = _layout_joints("halpe136", 5)
    np.savez(tmp_path / "v.npz", keypoints=joints, fps=np.float32(30))
    kp, fps, _ = load_keypoints(tmp_path / "v.npz")
    assert fps == 30
    np.testing.assert_allclose(kp[:, MP("left_index"), :2], mp[:, MP("left_index"), :2], rtol=1e-6)
    # Halpe-136's hands are regressed: AlphaPose counts them seen from 0.05
    np.testing.assert_allclose(kp[:, MP("left_index"), 2], to_seen_scale(mp[:, MP("left_index"), 2], 0.05), rtol=1e-6)
    with pytest.raises(ParseError, match="unknown keypoint layout"):
        load_keypoints(tmp_path / "v.npz", layout="halpe999")


def test_imigue_skeleton_csvs_by_label_window(tmp_path: Path) -> None:
    # MiGA / iMiGUE: <root>/<VID>/<VID>_skeleton.csv (frame index + 137 joints x 3), label windows
    joints, mp = _layout_joints("openpose137", 20)
    d = tmp_path / "skel" / "0001"
    d.mkdir(parents=True)
    (d / "0001_skeleton.csv").write_text("\n".join(",".join(map(str, [t, *joints[t].ravel()])) for t in range(20)))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "0001_label.csv").write_text("5,2,7\n16,10,15\n")
    samples = read_annotations(tmp_path / "labels", IMIGUE)
    manifest = tmp_path / "clips.csv"
    manifest.write_text("video,start,end\n" + "\n".join(f"{s.video},{s.start},{s.end}" for s in samples))
    out = tmp_path / "st"
    assert mar(["extract", "--parser", "keypoints", "--keypoints", str(tmp_path / "skel"), "--videos", str(manifest),
                "--out", str(out), "--encoder", "pose", "--keypoints-fps", "30", "--quiet"]) == 0  # fmt: skip
    st = FeatureStore.open(out)
    assert st.keys() == sorted(s.key for s in samples) == ["0001@10-16", "0001@2-8"]
    item = st.read("0001@2-8")
    assert len(item.timestamps) == 6
    np.testing.assert_allclose(item.extras["keypoints"][:, MP("left_thumb")], mp[2:8, MP("left_thumb")], atol=0.05)
