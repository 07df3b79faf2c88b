"""Keypoint layouts of other pose tools and releases, mapped onto the MediaPipe 33 landmarks.

The tables are data (``layouts.yaml`` beside this module): per layout the joint names in order;
a name that is a MediaPipe landmark (or an alias of one) gives that landmark, every other joint is
kept for the layout's own flips only. Flip pairs come from the names (``left_*`` <-> ``right_*``)
plus a block's explicit pairs (the 68-point face). ``to_mediapipe`` turns ``[..., V, 3]`` joints
of a layout into ``[..., 33, 3]`` MediaPipe landmarks, confidence 0 where the layout has none.
Each layout declares how its confidence reads (``confidence``: the score at which a joint of
each block counts as seen, or ``given`` for sources without scores); ``Layout.thresholds`` holds
it per MediaPipe landmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from microaction.skeleton import LANDMARKS, NUM_LANDMARKS

__all__ = [
    "Layout",
    "LayoutError",
    "detect_layout",
    "flip_joints",
    "get_layout",
    "layout_names",
    "to_mediapipe",
]

GIVEN = 0.0  # the threshold of a source without scores: any joint it gives at all is seen

_FILE = Path(__file__).resolve().parent / "layouts.yaml"
_MP = {n: i for i, n in enumerate(LANDMARKS)}


class LayoutError(ValueError):
    """An unknown layout name, or joints that fit no known layout."""


@dataclass(frozen=True)
class Layout:
    name: str
    joints: tuple[str, ...]  # joint names in the layout's order
    mediapipe: tuple[tuple[int, int], ...]  # (MediaPipe landmark index, joint index)
    flip: tuple[int, ...]  # joint i of a mirrored skeleton is joint flip[i] of the original
    auto: bool  # found by its joint count
    about: str
    confidence: tuple[float, ...] = ()  # per joint: the score at which it counts as seen (GIVEN: no scores)
    block_of: tuple[str, ...] = ()  # per joint: the block it belongs to

    @property
    def thresholds(self) -> np.ndarray:
        """``[33]`` float32: the seen-threshold of each MediaPipe landmark (0.5 where the layout
        has none of it: such landmarks are never given)."""
        out = np.full(NUM_LANDMARKS, 0.5, np.float32)
        for m, j in self.mediapipe:
            out[m] = self.confidence[j] if self.confidence else 0.5
        return out

    @property
    def provided(self) -> np.ndarray:
        """``[33]`` bool: the MediaPipe landmarks this layout has."""
        out = np.zeros(NUM_LANDMARKS, bool)
        out[[m for m, _ in self.mediapipe]] = True
        return out

    def provided_by(self, given: np.ndarray) -> np.ndarray:
        """``[33]`` bool: the landmarks of the blocks a file gives (``given`` ``[33]``: landmarks
        seen at all). A file written without the face or the hands gives none of that block; a
        landmark out of frame throughout (the hips of a seated speaker) is still one the source
        has, as MediaPipe's 33 always are."""
        blocks = {self.block_of[j] for m, j in self.mediapipe if given[m]} if self.block_of else set()
        out = np.zeros(NUM_LANDMARKS, bool)
        for m, j in self.mediapipe:
            out[m] = (self.block_of[j] in blocks) if self.block_of else bool(given[m])
        return out

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def flip_pairs(self) -> list[tuple[int, int]]:
        return [(i, j) for i, j in enumerate(self.flip) if i < j]


def _swap_side(name: str) -> str:
    for a, b in (("left", "right"), ("right", "left")):
        if name.startswith(a + "_"):
            return b + name[len(a) :]
        if name.endswith("_" + a):
            return name[: -len(a)] + b
    return name


def _confidence(name: str, spec: dict[str, Any], block: str) -> float:
    """The seen-threshold a layout declares for one of its blocks."""
    c = spec.get("confidence", 0.5)
    if isinstance(c, dict):
        if block not in c:
            raise LayoutError(f"{_FILE}: layout {name} gives no confidence for its block {block}")
        c = c[block]
    if c == "given":
        return GIVEN
    if isinstance(c, bool) or not isinstance(c, int | float) or not 0 < float(c) < 1:
        raise LayoutError(f"{_FILE}: layout {name}: confidence {c!r} is neither a threshold in (0, 1) nor 'given'")
    return float(c)


def _build(name: str, spec: dict[str, Any], blocks: dict[str, Any], aliases: dict[str, str]) -> Layout:
    joints: list[str] = []
    conf: list[float] = []
    block_of: list[str] = []
    extra_pairs: list[tuple[int, int]] = []
    for b in spec["blocks"]:
        block = blocks[b]
        off = len(joints)
        if block.get("mediapipe"):
            names = list(LANDMARKS)
        elif "joints" in block:
            names = [str(n) for n in block["joints"]]
        else:
            names = [f"{block['prefix']}{i}" for i in range(int(block["count"]))]
        extra_pairs += [(off + int(i), off + int(j)) for i, j in block.get("flip", [])]
        joints += names
        conf += [_confidence(name, spec, b)] * len(names)
        block_of += [str(b)] * len(names)
    if len(set(joints)) != len(joints):
        dup = sorted({j for j in joints if joints.count(j) > 1})
        raise LayoutError(f"{_FILE}: layout {name} names joints twice: {dup}")
    pos = {j: i for i, j in enumerate(joints)}
    flip = list(range(len(joints)))
    for i, joint in enumerate(joints):
        other = pos.get(_swap_side(joint))
        if other is not None:
            flip[i] = other
    for a, b in extra_pairs:
        flip[a], flip[b] = b, a
    mp: list[tuple[int, int]] = []
    for i, j in enumerate(joints):
        target = j if j in _MP else aliases.get(j)
        if target is not None:
            mp.append((_MP[target], i))
    if len({m for m, _ in mp}) != len(mp):
        raise LayoutError(f"{_FILE}: layout {name} gives a MediaPipe landmark twice")
    return Layout(
        name, tuple(joints), tuple(mp), tuple(flip), bool(spec.get("auto", True)), str(spec.get("about", "")),
        tuple(conf), tuple(block_of),
    )  # fmt: skip


@lru_cache(maxsize=1)
def _layouts() -> dict[str, Layout]:
    doc = yaml.safe_load(_FILE.read_text(encoding="utf-8"))
    aliases = {str(k): str(v) for k, v in doc["aliases"].items()}
    bad = sorted(v for v in aliases.values() if v not in _MP)
    if bad:
        raise LayoutError(f"{_FILE}: aliases onto names that are not MediaPipe landmarks: {bad}")
    return {str(n): _build(str(n), s, doc["blocks"], aliases) for n, s in doc["layouts"].items()}


def layout_names() -> list[str]:
    return list(_layouts())


def get_layout(name: str) -> Layout:
    try:
        return _layouts()[name]
    except KeyError:
        raise LayoutError(f"unknown keypoint layout {name!r}; known: {', '.join(_layouts())}") from None


def detect_layout(num_joints: int, source: str = "keypoints") -> Layout:
    """The layout with ``num_joints`` joints, when exactly one auto-detected layout has that many."""
    found = [lay for lay in _layouts().values() if lay.auto and lay.num_joints == num_joints]
    if len(found) == 1:
        return found[0]
    named = [lay.name for lay in _layouts().values() if lay.num_joints == num_joints]
    if named:
        raise LayoutError(f"{source}: {num_joints} joints fit the layouts {named}; name one with --layout")
    counts = sorted({lay.num_joints for lay in _layouts().values()})
    raise LayoutError(f"{source}: no known keypoint layout has {num_joints} joints (known counts: {counts})")


def to_mediapipe(joints: np.ndarray, layout: Layout, *, zero_is_missing: bool = True) -> np.ndarray:
    """``[..., V, C>=3]`` joints of ``layout`` (x, y, confidence) -> ``[..., 33, 3]`` float32.

    With ``zero_is_missing`` a joint at exactly (0, 0) is unseen (OpenPose and most exporters
    write zeros for a joint they did not find)."""
    j = np.asarray(joints)
    if j.shape[-2] != layout.num_joints or j.shape[-1] < 3:
        raise LayoutError(f"layout {layout.name} has {layout.num_joints} joints x 3; got shape {j.shape}")
    out = np.zeros((*j.shape[:-2], NUM_LANDMARKS, 3), dtype=np.float32)
    if layout.mediapipe:
        dst, src = (list(x) for x in zip(*layout.mediapipe))
        out[..., dst, :] = j[..., src, :3]
    if zero_is_missing:
        out[..., 2][(out[..., 0] == 0) & (out[..., 1] == 0)] = 0.0
    return out


def flip_joints(joints: np.ndarray, layout: Layout, width: float) -> np.ndarray:
    """Mirror ``[..., V, C]`` pixel joints of ``layout`` horizontally (left and right swapped)."""
    out = np.asarray(joints)[..., list(layout.flip), :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out
