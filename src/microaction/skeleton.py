"""The body model everything shares: MediaPipe's 33 pose landmarks, and which landmarks make up
each feature-store region and each Micro-DualNet entity.

The synthetic generator, the parsers, the region cropper, the pose encoder and the entity builder
all read these tables; none keeps its own copy.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ALL_ANGLES",
    "BONES",
    "ENTITY_SETS",
    "FLIP_PERMUTATION",
    "LANDMARKS",
    "MASK_PARENT",
    "MASK_REGIONS",
    "NUM_LANDMARKS",
    "REGION_ANGLES",
    "REGION_LANDMARKS",
    "REGION_MARGIN",
    "REGION_SEGMENTS",
    "REGION_SETS",
    "flip_keypoints",
    "flip_names",
    "landmark_index",
    "resolve_regions",
]

# MediaPipe Pose landmark order (pose_landmarks of mp.solutions.pose).
LANDMARKS: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_pinky", "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)  # fmt: skip
NUM_LANDMARKS = len(LANDMARKS)
_IDX = {n: i for i, n in enumerate(LANDMARKS)}


def landmark_index(name: str) -> int:
    return _IDX[name]


def _ids(*names: str) -> tuple[int, ...]:
    return tuple(_IDX[n] for n in names)


def _swap_side(name: str) -> str:
    if name.startswith("left_"):
        return "right_" + name[5:]
    if name.startswith("right_"):
        return "left_" + name[6:]
    if name.endswith("_left"):
        return name[:-5] + "_right"
    if name.endswith("_right"):
        return name[:-6] + "_left"
    return name


# index i of a horizontally flipped skeleton takes landmark FLIP_PERMUTATION[i] of the original
FLIP_PERMUTATION: tuple[int, ...] = tuple(_IDX[_swap_side(n)] for n in LANDMARKS)

# limb segments for drawing and for the mannequin renderer
BONES: tuple[tuple[int, int], ...] = tuple(
    (_IDX[a], _IDX[b])
    for a, b in [
        ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
        ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
        ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
        ("left_wrist", "left_index"), ("left_wrist", "left_pinky"), ("left_wrist", "left_thumb"),
        ("right_wrist", "right_index"), ("right_wrist", "right_pinky"), ("right_wrist", "right_thumb"),
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("left_ankle", "left_heel"),
        ("left_heel", "left_foot_index"), ("left_ankle", "left_foot_index"),
        ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("right_ankle", "right_heel"),
        ("right_heel", "right_foot_index"), ("right_ankle", "right_foot_index"),
    ]
)  # fmt: skip

_HEAD = _ids("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
             "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right")  # fmt: skip
_TORSO = _ids("left_shoulder", "right_shoulder", "left_hip", "right_hip")
_LEFT_HAND = _ids("left_wrist", "left_pinky", "left_index", "left_thumb")
_RIGHT_HAND = _ids("right_wrist", "right_pinky", "right_index", "right_thumb")
_ARMS = _ids("left_shoulder", "right_shoulder", "left_elbow", "right_elbow") + _LEFT_HAND + _RIGHT_HAND
_LEGS = _ids("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
             "left_heel", "right_heel", "left_foot_index", "right_foot_index")  # fmt: skip
_FACE = _ids("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
             "right_eye_outer", "mouth_left", "mouth_right")  # fmt: skip

# Landmarks that define each region/entity (its box is built around them).
REGION_LANDMARKS: dict[str, tuple[int, ...]] = {
    # the B-MoE paper's four regions
    "head": _HEAD,
    "body": _TORSO,
    "upper_limbs": _ARMS,
    "lower_limbs": _LEGS,
    # Micro-DualNet's entities (face and the two hands kept apart)
    "face": _FACE,
    "left_hand": _LEFT_HAND,
    "right_hand": _RIGHT_HAND,
    "torso": _TORSO,
    "lower_body": _LEGS,
}

# Named region sets a store can be extracted with.
REGION_SETS: dict[str, tuple[str, ...]] = {
    "bmoe4": ("head", "body", "upper_limbs", "lower_limbs"),
}
# Micro-DualNet entity sets per dataset (the paper drops the lower body on iMiGUE).
ENTITY_SETS: dict[str, tuple[str, ...]] = {
    "ma52": ("head", "face", "left_hand", "right_hand", "torso", "lower_body"),
    "imigue": ("head", "face", "left_hand", "right_hand", "torso"),
}


def flip_names(regions: tuple[str, ...] | list[str]) -> list[int]:
    """Permutation of a region list under a horizontal flip (left_hand ↔ right_hand)."""
    names = list(regions)
    return [names.index(_swap_side(n)) if _swap_side(n) in names else i for i, n in enumerate(names)]


def flip_keypoints(kp: np.ndarray, width: float) -> np.ndarray:
    """Mirror ``[..., 33, 3]`` pixel keypoints horizontally, swapping left and right landmarks."""
    out = kp[..., list(FLIP_PERMUTATION), :].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


def _segs(*pairs: tuple[str, str]) -> tuple[tuple[int, int], ...]:
    return tuple((_IDX[a], _IDX[b]) for a, b in pairs)


# Skeleton segments of the four mask regions. A person-mask pixel belongs to the region of the
# nearest segment whose two landmarks are visible (how region masks are made from landmarks).
MASK_REGIONS: tuple[str, ...] = ("head", "body", "upper_limbs", "lower_limbs")
REGION_SEGMENTS: dict[str, tuple[tuple[int, int], ...]] = {
    "head": _segs(
        ("left_ear", "right_ear"), ("left_eye", "right_eye"), ("nose", "mouth_left"), ("nose", "mouth_right"),
        ("mouth_left", "mouth_right"), ("left_eye_outer", "left_ear"), ("right_eye_outer", "right_ear"),
    ),
    "body": _segs(
        ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_shoulder", "right_hip"), ("right_shoulder", "left_hip"),
    ),
    "upper_limbs": _segs(
        ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"), ("right_shoulder", "right_elbow"),
        ("right_elbow", "right_wrist"), ("left_wrist", "left_index"), ("left_wrist", "left_pinky"),
        ("left_wrist", "left_thumb"), ("right_wrist", "right_index"), ("right_wrist", "right_pinky"),
        ("right_wrist", "right_thumb"),
    ),
    "lower_limbs": _segs(
        ("left_hip", "left_knee"), ("left_knee", "left_ankle"), ("right_hip", "right_knee"),
        ("right_knee", "right_ankle"), ("left_ankle", "left_heel"), ("left_heel", "left_foot_index"),
        ("left_ankle", "left_foot_index"), ("right_ankle", "right_heel"), ("right_heel", "right_foot_index"),
        ("right_ankle", "right_foot_index"),
    ),
}  # fmt: skip

# The mask region whose pixels a region's crop keeps (entities live inside a mask region).
MASK_PARENT: dict[str, str] = {
    "head": "head", "body": "body", "upper_limbs": "upper_limbs", "lower_limbs": "lower_limbs",
    "face": "head", "left_hand": "upper_limbs", "right_hand": "upper_limbs", "torso": "body",
    "lower_body": "lower_limbs",
}  # fmt: skip

# Box margin around a region's landmarks, as a fraction of the box's longer side (the head's
# landmarks stop at the brows and mouth: its margin takes in hair and chin).
REGION_MARGIN: dict[str, float] = {
    "head": 0.6, "face": 0.25, "body": 0.15, "torso": 0.15, "upper_limbs": 0.15,
    "left_hand": 0.5, "right_hand": 0.5, "lower_limbs": 0.15, "lower_body": 0.15,
}  # fmt: skip

# Joint angles per region (angle at the middle landmark), for the pose encoder.
_TRIPLES = {
    "l_elbow": ("left_shoulder", "left_elbow", "left_wrist"),
    "r_elbow": ("right_shoulder", "right_elbow", "right_wrist"),
    "l_shoulder": ("left_hip", "left_shoulder", "left_elbow"),
    "r_shoulder": ("right_hip", "right_shoulder", "right_elbow"),
    "l_wrist": ("left_elbow", "left_wrist", "left_index"),
    "r_wrist": ("right_elbow", "right_wrist", "right_index"),
    "l_hip": ("left_shoulder", "left_hip", "left_knee"),
    "r_hip": ("right_shoulder", "right_hip", "right_knee"),
    "l_knee": ("left_hip", "left_knee", "left_ankle"),
    "r_knee": ("right_hip", "right_knee", "right_ankle"),
    "l_ankle": ("left_knee", "left_ankle", "left_foot_index"),
    "r_ankle": ("right_knee", "right_ankle", "right_foot_index"),
    "neck_l": ("nose", "left_shoulder", "right_shoulder"),
    "neck_r": ("nose", "right_shoulder", "left_shoulder"),
    "l_head": ("left_ear", "nose", "right_ear"),
    "l_torso": ("left_shoulder", "left_hip", "right_hip"),
    "r_torso": ("right_shoulder", "right_hip", "left_hip"),
}
_ANGLE_NAMES: dict[str, tuple[str, ...]] = {
    "head": ("neck_l", "neck_r", "l_head"),
    "face": ("l_head",),
    "body": ("l_torso", "r_torso", "neck_l", "neck_r"),
    "torso": ("l_torso", "r_torso", "neck_l", "neck_r"),
    "upper_limbs": ("l_elbow", "r_elbow", "l_shoulder", "r_shoulder", "l_wrist", "r_wrist"),
    "left_hand": ("l_wrist", "l_elbow"),
    "right_hand": ("r_wrist", "r_elbow"),
    "lower_limbs": ("l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"),
    "lower_body": ("l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"),
}
REGION_ANGLES: dict[str, tuple[tuple[int, int, int], ...]] = {
    r: tuple((_IDX[_TRIPLES[n][0]], _IDX[_TRIPLES[n][1]], _IDX[_TRIPLES[n][2]]) for n in names)
    for r, names in _ANGLE_NAMES.items()
}
ALL_ANGLES: tuple[tuple[int, int, int], ...] = tuple((_IDX[a], _IDX[b], _IDX[c]) for a, b, c in _TRIPLES.values())


def resolve_regions(spec: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Region list from a set name (``bmoe4``, an entity set such as ``ma52``) or a comma list."""
    if isinstance(spec, (list, tuple)):
        names = tuple(spec)
    elif spec in REGION_SETS:
        names = REGION_SETS[spec]
    elif spec in ENTITY_SETS:
        names = ENTITY_SETS[spec]
    else:
        names = tuple(s.strip() for s in spec.split(",") if s.strip())
    bad = [n for n in names if n not in REGION_LANDMARKS]
    if bad or not names:
        raise ValueError(
            f"unknown regions {bad or spec!r}; use a set ({', '.join([*REGION_SETS, *ENTITY_SETS])}) "
            f"or names from {sorted(REGION_LANDMARKS)}"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"regions listed twice in {spec!r}")
    return names
