"""``pose``: per-region kinematics from keypoints, no pixels (the cheapest stream; sim-to-real
relies on it since rendered and real people share only their skeletons).

Per frame and landmark of a region (``REGION_LANDMARKS``): position relative to the clip's torso
centre in torso units (a streamed recording or a live stream: each frame's, the medians of the
last ``centre_seconds``, ``trailing_reference``, the same whatever the chunks), velocity (torso
units/s), acceleration (× 0.1, torso units/s²), and confidence; plus sine and cosine of the region's joint angles (``REGION_ANGLES``). Unseen
landmarks (and derivatives touching them) are zeros. Regions have different landmark counts:
each region's vector is zero-padded to the longest region of the run
(``dim = 7·max K + 2·max A``). The global stream holds all 33 landmarks and every angle
(``7·33 + 2·17 = 265``). Averaged over windows of ``window`` frames every ``stride`` frames.
"""

from __future__ import annotations

import numpy as np

from microaction.extract.encoders.base import Encoded, Encoder, EncoderInput, pool, window_times, windows
from microaction.extract.parsers.base import VISIBLE
from microaction.extract.regions import _torso_scale, torso_lengths
from microaction.skeleton import ALL_ANGLES, LANDMARKS, NUM_LANDMARKS, REGION_ANGLES, REGION_LANDMARKS

__all__ = ["PoseEncoder", "kinematics", "trailing_reference"]

PER_LANDMARK = 7
_TORSO = [LANDMARKS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]


def _median_centre(kp: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """The median of the seen torso landmarks (else of every seen landmark; else 0) -> ``[2]``."""
    tv = seen[:, _TORSO]
    if tv.any():
        return np.median(kp[:, _TORSO, :2][tv], axis=0)
    if seen.any():
        return np.median(kp[..., :2][seen], axis=0)
    return np.zeros(2, np.float32)


def _nan_median(x: np.ndarray) -> np.ndarray:
    """Median over axis 1 of the finite values (each row has one), as ``np.median`` of them; a
    sort is several times faster than ``np.nanmedian`` here."""
    s = np.sort(x, axis=1)  # NaN last
    n = np.isfinite(x).sum(axis=1, keepdims=True)
    lo = np.take_along_axis(s, (n - 1) // 2, axis=1)
    hi = np.take_along_axis(s, n // 2, axis=1)
    return ((lo + hi) / 2).squeeze(1)


def trailing_reference(
    kp: np.ndarray, timestamps: np.ndarray, rows: np.ndarray, seconds: float, thr: float = VISIBLE
) -> np.ndarray:
    """Per frame of ``rows`` (indices into ``kp [T, 33, 3]``), the torso centre and scale of the
    frames of the last ``seconds`` up to it (``(t - seconds, t]``: ``_median_centre``,
    ``_torso_scale``) -> ``[len(rows), 3]`` (x, y, scale). It depends only on the frames before
    each one, so a chunk with that much context before it, or a live stream holding that much,
    gets what one pass over the whole recording would."""
    rows = np.asarray(rows, np.int64)
    if not len(rows):
        return np.zeros((0, 3), np.float32)
    ts = np.asarray(timestamps, np.float64)
    first = np.searchsorted(ts, ts[rows] - seconds, side="right")
    width = int((rows - first).max()) + 1
    idx = first[:, None] + np.arange(width)  # [n, W] the frames of each row's window
    inside = idx <= rows[:, None]
    idx = np.minimum(idx, len(kp) - 1)
    seen = kp[..., 2] >= thr
    torso = np.where(seen[:, _TORSO, None], kp[:, _TORSO, :2], np.nan)[idx]  # [n, W, 4, 2]
    torso[~inside] = np.nan
    out = np.zeros((len(rows), 3), np.float32)
    some = np.isfinite(torso[..., 0]).any(axis=(1, 2))
    out[some, :2] = _nan_median(torso[some].reshape(int(some.sum()), -1, 2))
    for n in np.flatnonzero(~some):  # no torso in the window: every landmark seen, as _median_centre
        out[n, :2] = _median_centre(kp[first[n] : rows[n] + 1], seen[first[n] : rows[n] + 1])
    lengths = torso_lengths(kp, thr)[idx]
    lengths[~inside] = np.nan
    told = np.isfinite(lengths).any(axis=1)
    out[:, 2] = 1.0
    out[told, 2] = _nan_median(lengths[told])
    out[out[:, 2] == 0, 2] = 1.0
    return out


def kinematics(
    kp: np.ndarray, timestamps: np.ndarray, thr: float = VISIBLE, reference: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``[T, 33, 3]`` pixels -> (per-landmark ``[T, 33, 7]``, seen ``[T, 33]`` bool). ``reference``
    ``[T, 3]``: each frame's own torso centre and scale (``trailing_reference``); without it the
    clip's median ones."""
    T = len(kp)
    seen = kp[..., 2] >= thr
    if reference is None:
        scale: float | np.ndarray = _torso_scale(kp, thr) or 1.0
        pos = (kp[..., :2] - _median_centre(kp, seen)) / scale
        pos[~seen] = 0.0
        moving, unit = pos, None
    else:
        scale = reference[:, 2, None, None]
        pos = (kp[..., :2] - reference[:, None, :2]) / scale
        pos[~seen] = 0.0
        # the landmarks' own motion (pixels) in each frame's torso units, not the moving reference's
        moving, unit = np.where(seen[..., None], kp[..., :2], 0.0), scale
    ts = timestamps.astype(np.float64)
    if T >= 2 and np.all(np.diff(ts) > 0):
        vel = np.gradient(moving, ts, axis=0)
        acc = np.gradient(vel, ts, axis=0) * 0.1
        if unit is not None:
            vel, acc = vel / unit, acc / unit
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
    frames_ahead = 2  # velocity and acceleration are central differences (kinematics)

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
        feats, seen = kinematics(kp, inp.timestamps, reference=inp.reference)
        per_region = np.zeros((len(regions), T, D), np.float32)
        for i, r in enumerate(regions):
            ids = list(REGION_LANDMARKS[r])
            lm = feats[:, ids].reshape(T, -1)
            ang = _angles(kp, seen, REGION_ANGLES.get(r, ()))
            per_region[i, :, : lm.shape[1]] = lm
            per_region[i, :, lm.shape[1] : lm.shape[1] + ang.shape[1]] = ang
        glob = np.concatenate([feats.reshape(T, -1), _angles(kp, seen, ALL_ANGLES)], -1)
        grid = windows(T, self.window, self.stride, tail=not inp.partial)
        return Encoded(
            np.stack([pool(per_region[i], grid) for i in range(len(regions))])
            if regions
            else np.zeros((0, len(grid), D), np.float32),
            pool(glob, grid),
            window_times(inp.timestamps, grid),
        )
