"""``pose``: per-region kinematics from keypoints, no pixels (the cheapest stream; sim-to-real
relies on it since rendered and real people share only their skeletons).

Per frame and landmark of a region (``REGION_LANDMARKS``): position relative to the clip's torso
centre in torso units, velocity (torso units/s), acceleration (× 0.1, torso units/s²), and
confidence; plus sine and cosine of the region's joint angles (``REGION_ANGLES``). Unseen
landmarks (and derivatives touching them) are zeros. Regions have different landmark counts:
each region's vector is zero-padded to the longest region of the run
(``dim = 7·max K + 2·max A``). The global stream holds all 33 landmarks and every angle
(``7·33 + 2·17 = 265``). Averaged over windows of ``window`` frames every ``stride`` frames.
"""

from __future__ import annotations

import numpy as np

from microaction.extract.encoders.base import Encoded, Encoder, EncoderInput, pool, window_times, windows
from microaction.extract.parsers.base import VISIBLE
from microaction.extract.regions import _torso_scale
from microaction.skeleton import ALL_ANGLES, LANDMARKS, NUM_LANDMARKS, REGION_ANGLES, REGION_LANDMARKS

__all__ = ["PoseEncoder", "kinematics"]

PER_LANDMARK = 7
_TORSO = [LANDMARKS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


def kinematics(kp: np.ndarray, timestamps: np.ndarray, thr: float = VISIBLE) -> tuple[np.ndarray, np.ndarray]:
    """``[T, 33, 3]`` pixels -> (per-landmark ``[T, 33, 7]``, seen ``[T, 33]`` bool)."""
    T = len(kp)
    seen = kp[..., 2] >= thr
    scale = _torso_scale(kp, thr) or 1.0
    tv = seen[:, _TORSO]
    if tv.any():
        centre = np.median(kp[:, _TORSO, :2][tv], axis=0)
    elif seen.any():
        centre = np.median(kp[..., :2][seen], axis=0)
    else:
        centre = np.zeros(2, np.float32)
    pos = (kp[..., :2] - centre) / scale
    pos[~seen] = 0.0
    ts = timestamps.astype(np.float64)
    if T >= 2 and np.all(np.diff(ts) > 0):
        vel = np.gradient(pos, ts, axis=0)
        acc = np.gradient(vel, ts, axis=0) * 0.1
    else:
        vel = np.zeros_like(pos)
        acc = np.zeros_like(pos)
    ok1 = seen.copy()
    ok1[1:] &= seen[:-1]
    ok1[:-1] &= seen[1:]
    ok2 = ok1.copy()
    ok2[1:] &= ok1[:-1]
    ok2[:-1] &= ok1[1:]
    vel[~ok1] = 0.0
    acc[~ok2] = 0.0
    feats = np.concatenate([pos, vel, acc, kp[..., 2:3] * seen[..., None]], -1).astype(np.float32)
    return feats, seen


def _angles(kp: np.ndarray, seen: np.ndarray, triples: tuple[tuple[int, int, int], ...]) -> np.ndarray:
    T = len(kp)
    out = np.zeros((T, 2 * len(triples)), np.float32)
    for k, (a, b, c) in enumerate(triples):
        u = kp[:, a, :2] - kp[:, b, :2]
        v = kp[:, c, :2] - kp[:, b, :2]
        ang = np.arctan2(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0], (u * v).sum(-1))
        ok = seen[:, a] & seen[:, b] & seen[:, c]
        out[:, 2 * k] = np.where(ok, np.sin(ang), 0.0)
        out[:, 2 * k + 1] = np.where(ok, np.cos(ang), 0.0)
    return out


class PoseEncoder(Encoder):
    name = "pose"
    input_size = None

    def __init__(self, window: int = 1, stride: int = 1) -> None:
        self.window = int(window)
        self.stride = int(stride)

    def dims(self, regions: tuple[str, ...]) -> tuple[int, int]:
        k = max(len(REGION_LANDMARKS[r]) for r in regions)
        a = max(len(REGION_ANGLES.get(r, ())) for r in regions)
        return PER_LANDMARK * k + 2 * a, PER_LANDMARK * NUM_LANDMARKS + 2 * len(ALL_ANGLES)

    def encode(self, inp: EncoderInput) -> Encoded:
        regions = inp.layout.regions
        kp = inp.parse.keypoints
        T = len(kp)
        D, _ = self.dims(regions)
        feats, seen = kinematics(kp, inp.timestamps)
        per_region = np.zeros((len(regions), T, D), np.float32)
        for i, r in enumerate(regions):
            ids = list(REGION_LANDMARKS[r])
            lm = feats[:, ids].reshape(T, -1)
            ang = _angles(kp, seen, REGION_ANGLES.get(r, ()))
            per_region[i, :, : lm.shape[1]] = lm
            per_region[i, :, lm.shape[1] : lm.shape[1] + ang.shape[1]] = ang
        glob = np.concatenate([feats.reshape(T, -1), _angles(kp, seen, ALL_ANGLES)], -1)
        grid = windows(T, self.window, self.stride)
        return Encoded(
            np.stack([pool(per_region[i], grid) for i in range(len(regions))])
            if regions
            else np.zeros((0, len(grid), D), np.float32),
            pool(glob, grid),
            window_times(inp.timestamps, grid),
        )
