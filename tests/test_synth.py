"""The synthetic micro-action generator: classes, determinism, locality of motion, file format."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from microaction.data.readers.annotations import read_manifest_csv
from microaction.data.synth import MOTIONS, PRESETS, generate_clip, generate_dataset, plan, read_clip, split_counts
from microaction.data.synth.generate import ClipSpec, Preset
from microaction.data.synth.nuisances import Nuisance
from microaction.skeleton import REGION_LANDMARKS, landmark_index
from microaction.taxonomy import load_taxonomy

TAX = load_taxonomy("ma52")
QUIET = Nuisance(idle=0.0, p_distractor=0.0, jitter=(0.0, 0.0), p_drop=(0.0, 0.0), p_occlude_legs=0.0)
# a few clips per split: enough to exercise every file, fast
MICRO = Preset("micro", {"train": 6, "val": 3, "test": 3}, {"train": 0, "val": 0, "test": 0},
               heights=(96, 128), dur=(1.0, 1.2), nuisance=Nuisance(pad=(0.1, 0.2), fps=(15.0,), p_occlude_legs=0.3))  # fmt: skip


def test_every_class_has_a_motion() -> None:
    assert set(MOTIONS) == set(TAX.names)
    assert all(f.__doc__ for f in MOTIONS.values())


def test_split_counts_follow_ma52_long_tail() -> None:
    counts = np.asarray(TAX.train_counts)
    c = split_counts(counts, 780, 3)
    assert c.sum() == 780 and c.min() >= 3
    assert int(np.argmax(c)) == int(np.argmax(counts))  # nodding is the head of the tail
    assert np.corrcoef(c, counts)[0, 1] > 0.99
    specs = plan(PRESETS["demo"], TAX)
    for split in ("train", "val", "test"):
        labels = {s.label for s in specs if s.split == split}
        assert labels == set(range(52)), split  # every class in every split of the demo
    ma52 = plan(PRESETS["ma52"], TAX)
    train = np.bincount([s.label for s in ma52 if s.split == "train"], minlength=52)
    assert train.tolist() == list(TAX.train_counts)
    assert sum(s.split == "val" for s in ma52) == 5586
    # names carry no label: stems are split + a number
    assert all(s.stem.startswith(s.split + "_") for s in specs[:50])


def test_clip_is_deterministic_and_render_independent() -> None:
    spec = ClipSpec("x", 9, "train", 3)
    a = generate_clip(spec, PRESETS["tiny"], TAX, 5)
    b = generate_clip(spec, PRESETS["tiny"], TAX, 5, render=True)
    c = generate_clip(spec, PRESETS["tiny"], TAX, 6)
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    assert a["meta"] == b["meta"]
    assert a["keypoints"].shape != c["keypoints"].shape or not np.array_equal(a["keypoints"], c["keypoints"])


def _local_motion(kp: np.ndarray) -> dict[str, float]:
    """Per region: mean over its landmarks of the largest displacement from frame 0, relative to
    the parent joint (head: shoulder midpoint, arm: its shoulder, leg: its hip), / person height."""
    li = landmark_index
    xy = kp[..., :2]
    h = float(np.ptp(xy[0, :, 1]))
    smid = xy[:, [li("left_shoulder"), li("right_shoulder")]].mean(1, keepdims=True)

    def m(ids: list[int], ref: np.ndarray | float) -> float:
        d = xy[:, ids] - ref
        return float(np.abs(d - d[:1]).max(0).mean() / h)

    arm = ("elbow", "wrist", "index", "pinky", "thumb")
    leg = ("knee", "ankle", "heel", "foot_index")
    return {
        "head": m(list(REGION_LANDMARKS["head"]), smid),
        "body": m(list(REGION_LANDMARKS["body"]), 0.0),
        "upper_limbs": max(m([li(f"{s}_{n}") for n in arm], xy[:, [li(f"{s}_shoulder")]]) for s in ("left", "right")),
        "lower_limbs": max(m([li(f"{s}_{n}") for n in leg], xy[:, [li(f"{s}_hip")]]) for s in ("left", "right")),
    }


@pytest.mark.parametrize("label", range(52))
def test_motion_is_in_the_ground_truth_region(label: int) -> None:
    preset = replace(PRESETS["tiny"], nuisance=QUIET)
    ms = [
        _local_motion(generate_clip(ClipSpec("x", label, "train", 50 * label + k), preset, TAX, 0)["keypoints_clean"])
        for k in range(3)
    ]
    motion = {r: float(np.mean([m[r] for m in ms])) for r in ms[0]}
    gt = TAX.regions_of_body(int(TAX.body_of(label)))
    moving = max(motion[r] for r in gt)
    factor = 3.0
    if gt == ("body",):
        # a moving trunk carries the head and arms and bends the knees; the feet stay put
        feet = [landmark_index(f"{s}_{n}") for s in ("left", "right") for n in ("ankle", "heel", "foot_index")]
        kp = generate_clip(ClipSpec("x", label, "train", 50 * label), preset, TAX, 0)["keypoints_clean"]
        h = float(np.ptp(kp[0, :, 1]))
        foot_motion = float(np.abs(kp[:, feet, :2] - kp[:1, feet, :2]).max(0).mean() / h)
        assert motion["body"] > 0.005 and motion["body"] > 3 * foot_motion, (TAX.names[label], motion, foot_motion)
        return
    unrelated = [r for r in motion if r not in gt]
    assert max(motion, key=motion.__getitem__) in gt, (TAX.names[label], motion)
    if TAX.names[label] == "scratching feet":
        factor = 2.0  # the trunk leans forward (carrying the head) for the hand to reach the foot
    assert moving > factor * max(motion[r] for r in unrelated), (TAX.names[label], motion)


def test_nodding_moves_the_head_not_the_legs() -> None:
    preset = replace(PRESETS["tiny"], nuisance=QUIET)
    clip = generate_clip(ClipSpec("x", TAX.index("nodding"), "train", 1), preset, TAX, 0)
    kp = clip["keypoints_clean"]
    head = np.ptp(kp[:, list(REGION_LANDMARKS["head"]), :2], axis=0).mean()
    legs = np.ptp(
        kp[:, [landmark_index(n) for n in ("left_knee", "right_ankle", "left_foot_index")], :2], axis=0
    ).mean()
    assert head > 20 * max(legs, 1e-3)
    a, b = clip["meta"]["action_window"]
    assert 0 <= a < b <= len(kp)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, MICRO, seed=3, render=True, workers=2, progress=False)
    return out


def test_format_round_trip(rendered: Path) -> None:
    rec = json.loads((rendered / "dataset.json").read_text())
    assert rec["preset"] == "micro" and rec["seed"] == 3 and rec["rendered"]
    samples = read_manifest_csv(rendered / "manifest.csv", TAX)
    assert len(samples) == sum(rec["clips"].values()) == 12
    for split in ("train", "val", "test"):
        assert sum(s.split == split for s in samples) == rec["clips"][split]
    for s in samples:
        stem = Path(s.video).stem
        assert s.video == f"videos/{stem}.mp4"
        z = read_clip(rendered, stem)
        T = z["keypoints"].shape[0]
        assert z["keypoints"].dtype == np.float32 and z["keypoints"].shape == (T, 33, 3)
        assert z["keypoints_clean"].shape == (T, 33, 3)
        H, W = (int(v) for v in z["size"])
        assert H % 2 == 0 and W % 2 == 0
        assert float(z["fps"]) == 15.0
        assert int(z["label"]) == s.label and int(z["body"]) == s.body == int(TAX.body_of(s.label))
        assert tuple(z["moving_regions"]) == TAX.regions_of_body(s.body)
        assert z["meta"]["class_name"] == TAX.names[s.label]
        conf = z["keypoints"][..., 2]
        assert ((conf >= 0) & (conf <= 1)).all()
        assert "README" not in stem and TAX.names[s.label] not in stem


def test_dataset_is_deterministic_across_workers(rendered: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, MICRO, seed=3, render=False, workers=1, progress=False)
    assert (tmp_path / "manifest.csv").read_text() == (rendered / "manifest.csv").read_text()
    for f in sorted((tmp_path / "keypoints").glob("*.npz")):
        a, b = read_clip(tmp_path, f.stem), read_clip(rendered, f.stem)
        for k in ("keypoints", "keypoints_clean", "size", "fps"):
            np.testing.assert_array_equal(a[k], b[k])


def test_rendered_video_decodes_and_masks_align(rendered: Path) -> None:
    import av

    for f in sorted((rendered / "videos").glob("*.mp4")):
        z = read_clip(rendered, f.stem)
        with av.open(str(f)) as c:
            frames = [fr.to_ndarray(format="rgb24") for fr in c.decode(video=0)]
        T, (H, W) = z["keypoints"].shape[0], (int(v) for v in z["size"])
        assert len(frames) == T and frames[0].shape == (H, W, 3)
        with np.load(rendered / "masks" / f"{f.stem}.npz") as m:
            masks, regions = m["masks"], tuple(m["regions"])
        assert regions == ("head", "body", "upper_limbs", "lower_limbs")
        assert masks.shape == (T, H, W) and masks.dtype == np.uint8 and masks.max() <= 4
        # landmarks fall on their own region's pixels (a hand may cover the face: most, not all)
        kp = z["keypoints_clean"]
        checks = [("nose", 1), ("right_elbow", 3)]
        if not z["meta"]["occluded_legs"]:
            checks.append(("left_knee", 4))
        trunk = (kp[:, landmark_index("left_shoulder")] + kp[:, landmark_index("right_hip")]) / 2
        for name, value in [*checks, ("trunk", 2)]:
            p = trunk if name == "trunk" else kp[:, landmark_index(name)]
            x = np.clip(np.round(p[:, 0]).astype(int), 0, W - 1)
            y = np.clip(np.round(p[:, 1]).astype(int), 0, H - 1)
            hit = masks[np.arange(T), y, x]
            assert np.mean(hit == value) > 0.6, (f.stem, name, np.bincount(hit, minlength=5))
        # the person is on screen and the video shows the mannequin where the mask says so
        person = masks > 0
        assert 0.05 < person.mean() < 0.8
        frame = np.asarray(frames[T // 2], np.float32)
        assert frame[person[T // 2]].std() > 5  # shaded parts, not a flat fill
