"""The diagnostic preset: groups of classes with the same time-averaged statistics and different
time courses (order, rhythm, hold durations), deterministic per seed."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from microaction.data.synth import PRESETS, generate_clip
from microaction.data.synth.diagnostic import GROUPS, group_of
from microaction.data.synth.generate import ClipSpec, Preset
from microaction.data.synth.nuisances import Nuisance
from microaction.skeleton import REGION_LANDMARKS
from microaction.taxonomy import load_taxonomy

TAX = load_taxonomy("synth_diagnostic")
PRESET = PRESETS["diagnostic"]
QUIET = Nuisance(idle=0.0, p_distractor=0.0, jitter=(0.0, 0.0), p_drop=(0.0, 0.0), p_occlude_legs=0.0, fps=(20.0,))
REGION = {"body": "body", "head": "head", "upper_limb": "upper_limbs", "lower_limb": "lower_limbs"}


def _clip(name: str, index: int, seed: int = 0, preset: Preset = PRESET) -> dict:
    return generate_clip(ClipSpec("x", TAX.index(name), "test", index), preset, TAX, seed)


def _stats(kp: np.ndarray, region: str) -> np.ndarray:
    """Time-averaged statistics of a region's keypoints (/ person height): mean, std, mean |Δ|."""
    xy = kp[:, list(REGION_LANDMARKS[region]), :2] / float(np.ptp(kp[0, :, 1]))
    return np.concatenate([xy.mean(0), xy.std(0), np.abs(np.diff(xy, axis=0)).mean(0)]).ravel()


def _time_course(kp: np.ndarray, region: str) -> np.ndarray:
    xy = kp[:, list(REGION_LANDMARKS[region]), :2] / float(np.ptp(kp[0, :, 1]))
    return (xy - xy.mean(0)).reshape(len(xy), -1)


def test_groups_cover_the_label_set_one_body_part_each() -> None:
    names = [n for g in GROUPS.values() for n in g.classes]
    assert sorted(names) == sorted(TAX.names)
    for g, grp in GROUPS.items():
        bodies = {int(TAX.body_of(TAX.index(n))) for n in grp.classes}
        assert len(bodies) == 1, g
        assert len(grp.classes) == len(grp.variants) >= 2
        assert group_of(grp.classes[-1]) == (g, len(grp.classes) - 1)
    with pytest.raises(KeyError, match="not a class of the diagnostic preset"):
        group_of("nodding")


def _group_clips(group: str, index: int, preset: Preset) -> tuple[str, list[np.ndarray], np.ndarray]:
    """The group's region, the same clip (body, camera, noise, program parameters: a program draws
    the same random numbers whatever the class) in every class of the group, and that clip with
    the action scaled to nothing (the idle person)."""
    grp = GROUPS[group]
    region = REGION[TAX.body_names[int(TAX.body_of(TAX.index(grp.classes[0])))]]
    kps = [_clip(n, index, preset=preset)["keypoints_clean"] for n in grp.classes]
    still = _clip(grp.classes[0], index, preset=replace(preset, gain=1e-9))["keypoints_clean"]
    return region, kps, still


@pytest.mark.parametrize("group", list(GROUPS))
def test_group_is_a_rearrangement_in_time(group: str) -> None:
    """Without idle motion and noise, a clip of any class of a group is its frames rearranged: the
    time-averaged statistics agree up to the frame grid, the time courses differ by most of the motion."""
    quiet = replace(PRESET, nuisance=QUIET)
    for index in range(3):
        region, kps, still = _group_clips(group, index, quiet)
        assert len({k.shape for k in kps}) == 1
        s = [_stats(k, region) for k in kps]
        moved = np.abs(s[0] - _stats(still, region)).sum()
        assert max(np.abs(a - b).sum() for a in s for b in s) < 0.01 * moved
        tc = [_time_course(k, region) for k in kps]
        action = np.abs(tc[0] - _time_course(still, region)).mean()  # what the action adds to the course
        assert min(np.abs(a - b).mean() for i, a in enumerate(tc) for b in tc[i + 1 :]) > 0.5 * action


@pytest.mark.parametrize("group", list(GROUPS))
def test_group_shares_time_averaged_statistics(group: str) -> None:
    """With the preset's nuisances (idle sway and breathing interact with the action, distractors,
    jitter), per clip the statistics differ a little, but not on average over clips: the classes'
    time-averaged statistics have the same distribution."""
    diffs, moved = [], []
    for index in range(10):
        region, kps, still = _group_clips(group, index, PRESET)
        s = [_stats(k, region) for k in kps]
        diffs.append([a - s[0] for a in s[1:]])
        moved.append(np.abs(s[0] - _stats(still, region)))
    bias = np.abs(np.mean(diffs, axis=0)).sum(-1)  # [classes - 1]: the mean difference per statistic
    assert bias.max() < 0.08 * np.mean(moved, axis=0).sum(), (bias, np.mean(moved, axis=0).sum())


def test_programs_differ_as_designed() -> None:
    def segs(name: str, index: int = 2) -> list[dict]:
        return sorted(_clip(name, index)["meta"]["program"]["segments"], key=lambda s: s["start"])

    for grp in (g for g in GROUPS.values() if g.factor == "order"):
        a, b = segs(grp.classes[0]), segs(grp.classes[1])
        assert [s["move"] for s in a] == list(grp.moves) and [s["move"] for s in b] == list(grp.moves[::-1])
        assert a[0]["end"] < a[1]["start"]  # one after the other
        assert sorted(s["hold"] for s in a) == sorted(s["hold"] for s in b)  # each move keeps its duration
    for grp in (g for g in GROUPS.values() if g.factor == "rhythm"):
        for name, bursts in zip(grp.classes, grp.variants):
            s = segs(name)
            assert tuple(round((x["end"] - x["start"]) / x["period"]) for x in s) == bursts
    for grp in (g for g in GROUPS.values() if g.factor == "duration"):
        long, short = segs(grp.classes[0]), segs(grp.classes[1])
        assert sorted(s["hold"] for s in long)[0] == 0.0 and sorted(s["hold"] for s in long)[1] > 0.8
        assert short[0]["hold"] == pytest.approx(short[1]["hold"]) and short[0]["hold"] > 0.4
        assert sum(s["hold"] for s in long) == pytest.approx(sum(s["hold"] for s in short), abs=1e-3)


def test_clip_is_deterministic_per_seed() -> None:
    name = GROUPS["head_rhythm"].classes[1]
    a, b, c = _clip(name, 5), _clip(name, 5), _clip(name, 5, seed=1)
    np.testing.assert_array_equal(a["keypoints"], b["keypoints"])
    assert a["meta"] == b["meta"]
    assert a["meta"]["program"] != c["meta"]["program"]
