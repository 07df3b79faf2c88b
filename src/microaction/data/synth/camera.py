"""A random pinhole camera looking at the seated person, and projection to pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Camera", "sample_camera"]


@dataclass(frozen=True)
class Camera:
    """World → camera rotation ``rot`` (rows: image right, image down, viewing direction),
    centre ``center`` (world), focal length ``focal`` and principal point ``pp`` (pixels)."""

    rot: np.ndarray  # [3,3]
    center: np.ndarray  # [3]
    focal: float
    pp: tuple[float, float]
    size: tuple[int, int]  # H, W

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """``[..., 3]`` world → camera coordinates (``z`` = depth in metres)."""
        return (np.asarray(points) - self.center) @ self.rot.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[..., 3]`` world points → (``[..., 2]`` pixel x, y; ``[...]`` depth)."""
        c = self.to_camera(points)
        z = np.maximum(c[..., 2], 1e-3)
        xy = np.stack([self.focal * c[..., 0] / z + self.pp[0], self.focal * c[..., 1] / z + self.pp[1]], -1)
        return xy, c[..., 2]

    def describe(self) -> dict[str, float]:
        return {"focal": float(self.focal), "cx": float(self.pp[0]), "cy": float(self.pp[1]),
                "x": float(self.center[0]), "y": float(self.center[1]), "z": float(self.center[2])}  # fmt: skip


def _look_at(center: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    f = target - center
    f = f / np.linalg.norm(f)
    right = np.cross(f, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(f, right)
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return np.stack([right, down, f])


def sample_camera(
    rng: np.random.Generator,
    points: np.ndarray,
    size: tuple[int, int],
    *,
    yaw_deg: float = 30.0,
    fill: tuple[float, float] = (0.78, 0.92),
) -> Camera:
    """A camera at 2-3.5 m, yaw within ±``yaw_deg``, slightly above or below chest height, small
    roll, framed so that ``points`` (all landmarks of the clip, world) fill ``fill`` of the
    image height (and fit its width), with a small random offset."""
    H, W = size
    yaw = np.deg2rad(rng.uniform(-yaw_deg, yaw_deg))
    dist = rng.uniform(2.0, 3.5)
    height = rng.uniform(0.6, 1.2)
    target = np.array([0.0, rng.uniform(0.55, 0.75), 0.15])
    center = np.array([dist * np.sin(yaw), height, 0.15 + dist * np.cos(yaw)])
    rot = _look_at(center, target, np.deg2rad(rng.uniform(-4, 4)))
    cam = Camera(rot, center, 1.0, (0.0, 0.0), (H, W))
    xy, _ = cam.project(points.reshape(-1, 3))
    lo, hi = xy.min(0), xy.max(0)
    ext = np.maximum(hi - lo, 1e-6)
    focal = min(rng.uniform(*fill) * H / ext[1], 0.92 * W / ext[0])
    mid = (lo + hi) / 2 * focal
    slack = np.array([W, H]) - ext * focal
    shift = rng.uniform(-0.35, 0.35, 2) * np.maximum(slack, 0)
    pp = (W / 2 - mid[0] + shift[0], H / 2 - mid[1] + shift[1])
    return Camera(rot, center, float(focal), (float(pp[0]), float(pp[1])), (H, W))
