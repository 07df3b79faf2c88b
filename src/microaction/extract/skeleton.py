"""The body model everything shares: MediaPipe's 33 pose landmarks, and which landmarks make up
each feature-store region and each Micro-DualNet entity.

The synthetic generator, the parsers, the region cropper, the pose encoder and the entity builder
all read these tables; none keeps its own copy.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BONES",
    "ENTITY_SETS",
    "FLIP_PERMUTATION",
    "LANDMARKS",
    "NUM_LANDMARKS",
    "REGION_LANDMARKS",
    "REGION_SETS",
    "flip_names",
    "landmark_index",
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
