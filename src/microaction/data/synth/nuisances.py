"""Nuisances: what makes the synthetic benchmark look like interview footage rather than a puppet.

- idle motion on the tracks: breathing (shoulders and spine, 0.2-0.4 Hz) and slow sway of trunk,
  head and hands (smoothed random walks);
- distractors: with probability ``p_distractor`` a weak (gain × 0.25-0.5) motion of a class of
  *another* body group somewhere in the clip;
- observation noise on the 2-D keypoints: per-landmark jitter (a fraction of the person's pixel
  height), confidences, dropped keypoints (confidence 0, x = y = 0) and, in some clips, legs
  occluded by a desk (low confidence, noisy positions; the renderer draws the desk);
- varying frame rate and clip length (``sample_timing``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from microaction.data.synth.skeleton3d import Tracks
from microaction.skeleton import REGION_LANDMARKS

__all__ = ["Nuisance", "add_idle", "observe", "sample_timing", "smooth_noise"]

FPS_CHOICES = (15.0, 20.0, 24.0, 25.0, 30.0)


@dataclass(frozen=True)
class Nuisance:
    """Strengths of the nuisances (the preset's difficulty knobs)."""

    idle: float = 1.0  # scale of breathing and sway
    p_distractor: float = 0.35
    jitter: tuple[float, float] = (0.002, 0.006)  # keypoint noise, fraction of person height
    p_drop: tuple[float, float] = (0.0, 0.03)  # share of dropped keypoints
    p_occlude_legs: float = 0.15
    fps: tuple[float, ...] = FPS_CHOICES
    pad: tuple[float, float] = (0.2, 1.0)  # seconds of clip before / after the action


def smooth_noise(
    rng: np.random.Generator, T: int, fps: float, shape: tuple[int, ...] = (), cutoff: float = 0.5
) -> np.ndarray:
    """Unit-variance low-pass noise ``[T, *shape]`` (cut-off about ``cutoff`` Hz)."""
    k = max(1, int(fps / max(cutoff, 1e-3) / 2))
    ker = np.hanning(2 * k + 3)[1:-1]
    ker /= ker.sum()
    n = rng.standard_normal((T + 2 * k, *shape))
    win = np.lib.stride_tricks.sliding_window_view(n, len(ker), axis=0)  # [T, *shape, K]
    out = win @ ker
    return out / max(float(out.std()), 1e-9)


def sample_timing(
    rng: np.random.Generator, nz: Nuisance, dur_range: tuple[float, float] = (1.0, 3.0)
) -> tuple[float, int, float, float]:
    """(fps, T, onset s, end s): an action of 1-3 s at a random onset inside a longer clip."""
    fps = float(rng.choice(nz.fps))
    dur = rng.uniform(*dur_range)
    pre, post = rng.uniform(*nz.pad), rng.uniform(*nz.pad)
    T = round((pre + dur + post) * fps)
    return fps, T, pre, pre + dur


def add_idle(rng: np.random.Generator, tr: Tracks, fps: float, scale: float = 1.0) -> None:
    """Breathing and slow sway, in place."""
    T = tr.length
    t = np.arange(T) / fps
    f, ph = rng.uniform(0.2, 0.4), rng.uniform(0, 2 * np.pi)
    breath = np.sin(2 * np.pi * f * t + ph) * scale
    tr.shrug += (breath * rng.uniform(0.002, 0.005))[:, None]
    tr.torso[:, 0] += breath * rng.uniform(0.003, 0.01)
    tr.torso += smooth_noise(rng, T, fps, (3,), 0.4) * (np.array([0.008, 0.01, 0.008]) * scale)
    tr.head += smooth_noise(rng, T, fps, (3,), 0.6) * (np.array([0.012, 0.015, 0.01]) * scale)
    tr.root[:, 0] += smooth_noise(rng, T, fps, (), 0.3) * 0.003 * scale
    tr.wrist += smooth_noise(rng, T, fps, (2, 3), 0.5) * 0.004 * scale
    tr.ankle[:, :, :1] += smooth_noise(rng, T, fps, (2, 1), 0.3) * 0.003 * scale
    tr.curl += smooth_noise(rng, T, fps, (2, 3), 0.5) * 0.04 * scale


LEG_LANDMARKS = tuple(i for i in REGION_LANDMARKS["lower_limbs"] if i not in REGION_LANDMARKS["body"])


def observe(
    rng: np.random.Generator,
    xy: np.ndarray,
    size: tuple[int, int],
    nz: Nuisance,
    *,
    occlude_legs: bool,
    jitter_scale: float = 1.0,
) -> np.ndarray:
    """Clean pixel positions ``[T,33,2]`` → what a parser would report: ``[T,33,3]`` x, y, conf."""
    T, K, _ = xy.shape
    H, W = size
    height = float(np.ptp(xy[..., 1])) or float(H)
    sigma = rng.uniform(*nz.jitter) * height * jitter_scale
    # jitter: white plus a little temporally correlated noise (trackers drift)
    noise = rng.standard_normal((T, K, 2)) * sigma + smooth_noise(rng, T, 25.0, (K, 2), 2.0) * sigma * 0.5
    conf = rng.uniform(0.8, 1.0, (T, K))
    if occlude_legs:
        legs = list(LEG_LANDMARKS)
        noise[:, legs] *= 4.0
        conf[:, legs] = rng.uniform(0.02, 0.3, (T, len(legs)))
    out = np.concatenate([xy + noise, conf[..., None]], -1)
    outside = (out[..., 0] < 0) | (out[..., 0] > W - 1) | (out[..., 1] < 0) | (out[..., 1] > H - 1)
    out[..., 2][outside] *= 0.2
    drop = rng.random((T, K)) < rng.uniform(*nz.p_drop)
    out[drop] = 0.0
    return out.astype(np.float32)
