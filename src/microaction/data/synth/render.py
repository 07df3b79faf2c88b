"""A shaded body-part mannequin: frames ``[T,H,W,3]`` RGB and region masks ``[T,H,W]``.

Limbs are filled capsules (a dark rim, the body colour, a highlight: a cheap cylinder shading),
the trunk a filled quadrilateral, the head an ellipse with eyes, nose, mouth and ears. Parts are
drawn far to near (painter's algorithm on camera depth), the mask with the same geometry and
order, so a hand in front of the face takes the face's pixels in the mask too. In clips with
occluded legs a desk is drawn in front of the legs and zeroes the mask there. A chair and a
shaded wall make the background. All drawing is OpenCV on small images (about 1 ms a frame).

Mask values: 0 background, ``1 + i`` for region ``i`` of :data:`MASK_REGIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from microaction.data.synth.camera import Camera
from microaction.data.synth.skeleton3d import Body, Pose
from microaction.skeleton import MASK_REGIONS, landmark_index

__all__ = ["MASK_REGIONS", "Style", "render_clip", "sample_style"]

_HEAD, _BODY, _ARMS, _LEGS = 1, 2, 3, 4
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Style:
    skin: tuple[int, int, int]
    shirt: tuple[int, int, int]
    sleeve: tuple[int, int, int]
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    wall: tuple[int, int, int]
    chair: tuple[int, int, int]
    desk: tuple[int, int, int]


def _col(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> tuple[int, int, int]:
    c = rng.integers(lo, hi, 3)
    return int(c[0]), int(c[1]), int(c[2])


def sample_style(rng: np.random.Generator) -> Style:
    skin_base = np.array([224, 172, 140]) * rng.uniform(0.45, 1.08)
    sk = np.clip(skin_base + rng.integers(-12, 12, 3), 0, 255).astype(int)
    skin = (int(sk[0]), int(sk[1]), int(sk[2]))
    shirt = _col(rng)
    sleeve = shirt if rng.random() < 0.6 else _col(rng)
    return Style(
        skin,
        shirt,
        sleeve,
        _col(rng, 20, 160),
        _col(rng, 10, 90),
        _col(rng, 120, 240),
        _col(rng, 30, 120),
        _col(rng, 60, 200),
    )


@lru_cache(maxsize=512)
def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return (min(255, max(0, int(c[0] * f))), min(255, max(0, int(c[1] * f))), min(255, max(0, int(c[2] * f))))


# Geometry below is in fixed point (pixels × 2**_SHIFT, Python ints): cv2 draws sub-pixel
# positions that way, and plain ints keep the per-frame drawing free of numpy scalar overhead.
Pt = tuple[int, int]


def _capsule(img, a: Pt, b: Pt, r: float, color, shaded: bool) -> None:
    r = max(r, 0.6)
    if shaded:
        cv2.line(img, a, b, _shade(color, 0.55), max(1, int(2 * r + 0.5)), cv2.LINE_AA, _SHIFT)
        cv2.line(img, a, b, color, max(1, int(1.5 * r + 0.5)), cv2.LINE_AA, _SHIFT)
        o = int(-0.25 * r * _ONE)
        cv2.line(
            img,
            (a[0] + o, a[1] + o),
            (b[0] + o, b[1] + o),
            _shade(color, 1.3),
            max(1, int(0.5 * r + 0.5)),
            cv2.LINE_AA,
            _SHIFT,
        )
    else:
        cv2.line(img, a, b, color, max(1, int(2 * r + 0.5)), cv2.LINE_8, _SHIFT)


def _poly(img, p: np.ndarray, color, shaded: bool) -> None:
    """``p``: [K, 2] int32 fixed-point vertices."""
    if shaded:
        cv2.fillConvexPoly(img, p, _shade(color, 0.6), cv2.LINE_AA, _SHIFT)
        c = p.mean(0)
        inner = (c + (p - c) * 0.86).astype(np.int32)
        cv2.fillConvexPoly(img, inner, color, cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillConvexPoly(img, p, color, cv2.LINE_8, _SHIFT)


def _fixed(xy: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(xy) * _ONE).astype(np.int32)


def _ellipse(img, center: Pt, axes: tuple[float, float], angle: float, color, shaded: bool) -> None:
    ax = (max(1, int(axes[0] * _ONE + 0.5)), max(1, int(axes[1] * _ONE + 0.5)))
    if shaded:
        cv2.ellipse(img, center, ax, angle, 0, 360, _shade(color, 0.6), -1, cv2.LINE_AA, _SHIFT)
        ax2 = (max(1, int(ax[0] * 0.88)), max(1, int(ax[1] * 0.9)))
        c2 = (center[0] - int(0.06 * ax[0]), center[1] - int(0.05 * ax[1]))
        cv2.ellipse(img, c2, ax2, angle, 0, 360, color, -1, cv2.LINE_AA, _SHIFT)
    else:
        cv2.ellipse(img, center, ax, angle, 0, 360, color, -1, cv2.LINE_8, _SHIFT)


class _Scene:
    """The per-clip geometry the renderer draws, projected once for all frames."""

    def __init__(self, body: Body, pose: Pose, cam: Camera, style: Style) -> None:
        self.body, self.cam, self.style = body, cam, style
        self.xy, self.depth = cam.project(pose.landmarks)
        self.head_xy, self.head_depth = cam.project(pose.head_center)
        self.neck_xy, self.neck_depth = cam.project(pose.neck_base)
        self.fx, self.head_fx = _fixed(self.xy), _fixed(self.head_xy)
        self.neck_fx = _fixed(self.neck_xy + (self.head_xy - self.neck_xy) * 0.6)
        # the head ellipsoid's outline: its 3-D covariance pushed through the projection's Jacobian
        axes3 = pose.head_rot * np.array([body.head_w, body.head_h, body.head_d])  # [T,3,3] columns
        cam_axes = np.einsum("ij,tjk->tik", cam.rot, axes3)
        pc = cam.to_camera(pose.head_center)
        z = np.maximum(pc[:, 2], 1e-3)[:, None]
        jac = np.zeros((len(z), 2, 3))
        jac[:, 0, 0] = jac[:, 1, 1] = (cam.focal / z)[:, 0]
        jac[:, 0, 2] = -cam.focal * pc[:, 0] / z[:, 0] ** 2
        jac[:, 1, 2] = -cam.focal * pc[:, 1] / z[:, 0] ** 2
        a2 = jac @ cam_axes  # [T,2,3]
        evals, evecs = np.linalg.eigh(a2 @ a2.transpose(0, 2, 1))
        self.head_axes = np.sqrt(np.maximum(evals, 1e-6))  # [T,2] minor, major
        self.head_angle = np.degrees(np.arctan2(evecs[:, 1, 0], evecs[:, 0, 0]))  # minor axis direction
        fwd_cam = np.einsum("ij,tj->ti", cam.rot, pose.head_rot[:, :, 2])
        self.facing = -fwd_cam[:, 2]  # > 0: the face looks towards the camera

    def parts(self, t: int) -> list[tuple[float, int, object]]:
        """(depth, region, draw(img, shaded, mask_value)) for frame ``t``."""
        dp, b, st = self.depth[t].tolist(), self.body, self.style
        fx = [tuple(p) for p in self.fx[t].tolist()]
        i = landmark_index
        f = self.cam.focal
        out: list[tuple[float, int, object]] = []

        def cap(n1: str, n2: str, r: float, color, region: int) -> None:
            a, c = fx[i(n1)], fx[i(n2)]
            d = (dp[i(n1)] + dp[i(n2)]) / 2
            rad = f * r / max(d, 1e-3)
            out.append((d, region, lambda img, sh, v: _capsule(img, a, c, rad, color if v is None else v, sh)))

        # trunk: shoulders → hips, widened at the hips
        q = self.fx[t][[i("left_shoulder"), i("right_shoulder"), i("right_hip"), i("left_hip")]].astype(np.int32)
        hr, hl = q[2].copy(), q[3].copy()
        q[2], q[3] = hr + (hr - hl) // 4, hl + (hl - hr) // 4
        d_trunk = (dp[i("left_shoulder")] + dp[i("right_shoulder")] + dp[i("left_hip")] + dp[i("right_hip")]) / 4 + 0.05
        out.append((d_trunk, _BODY, lambda img, sh, v: _poly(img, q, st.shirt if v is None else v, sh)))
        nd = float(self.neck_depth[t])
        neck_r = f * b.head_w * 0.45 / max(nd, 1e-3)
        nb, ntop = tuple(_fixed(self.neck_xy[t]).tolist()), tuple(self.neck_fx[t].tolist())
        out.append(
            (nd + 0.02, _BODY, lambda img, sh, v: _capsule(img, nb, ntop, neck_r, st.skin if v is None else v, sh))
        )
        sleeve2 = st.sleeve if st.sleeve != st.shirt else st.skin
        for s in ("left", "right"):
            cap(f"{s}_shoulder", f"{s}_elbow", b.limb_r * 1.05, st.sleeve, _ARMS)
            cap(f"{s}_elbow", f"{s}_wrist", b.limb_r * 0.85, sleeve2, _ARMS)
            ids = [i(f"{s}_wrist"), i(f"{s}_thumb"), i(f"{s}_index"), i(f"{s}_pinky")]
            d_hand = (dp[ids[0]] + dp[ids[2]]) / 2 - 0.01
            hr = f * b.limb_r * 0.35 / max(d_hand, 1e-3)
            out.append(
                (
                    d_hand,
                    _ARMS,
                    lambda img, sh, v, ids=ids, r=hr: _hand(img, fx, ids, r, st.skin if v is None else v, sh),
                )
            )
            cap(f"{s}_hip", f"{s}_knee", b.limb_r * 1.6, st.trousers, _LEGS)
            cap(f"{s}_knee", f"{s}_ankle", b.limb_r * 1.15, st.trousers, _LEGS)
            cap(f"{s}_heel", f"{s}_foot_index", b.limb_r * 0.8, st.shoes, _LEGS)
        # head: the ellipsoid's projected outline, face marks when it faces the camera
        axes = (float(self.head_axes[t, 0]), float(self.head_axes[t, 1]))
        ang = float(self.head_angle[t])
        face = float(self.facing[t])
        hc = tuple(self.head_fx[t].tolist())
        out.append(
            (float(self.head_depth[t]), _HEAD, lambda img, sh, v: _head(img, hc, axes, ang, fx, face, st.skin, v, sh))
        )
        return out


def _hand(img, fx: list, ids: list[int], r: float, color, shaded: bool) -> None:
    _poly(img, np.array([fx[k] for k in ids], np.int32), color, shaded)
    for tip in ids[1:]:
        _capsule(img, fx[ids[0]], fx[tip], r, color, shaded)


def _head(img, center: Pt, axes, angle: float, fx: list, facing: float, skin, value, shaded: bool) -> None:
    _ellipse(img, center, axes, angle, skin if value is None else value, shaded)
    if value is not None:
        return  # masks: the ellipse only
    r = max(1.0, axes[0] * 0.12) * _ONE
    for e in (7, 8):  # ears
        cv2.circle(img, fx[e], int(r * 1.3), _shade(skin, 0.8), -1, cv2.LINE_AA, _SHIFT)
    if facing <= 0.05:
        return
    for k in (2, 5):  # eyes
        cv2.circle(img, fx[k], int(r), (30, 30, 40), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, fx[0], int(r * 0.8), _shade(skin, 0.7), -1, cv2.LINE_AA, _SHIFT)
    cv2.line(img, fx[9], fx[10], _shade(skin, 0.35), max(1, int(r * 0.8 / _ONE)), cv2.LINE_AA, _SHIFT)


def _background(cam: Camera, body: Body, style: Style, rng: np.random.Generator) -> np.ndarray:
    H, W = cam.size
    grad = np.linspace(1.1, 0.8, H)[:, None, None] * np.linspace(0.95, 1.05, W)[None, :, None]
    img = np.clip(np.asarray(style.wall, np.float32) * grad + rng.normal(0, 4, (H, W, 3)), 0, 255).astype(np.uint8)
    floor_y = cam.project(np.array([[0.0, 0.0, -1.0], [0.0, 0.0, 3.0]]))[0][:, 1].min()
    if floor_y < H:
        img[max(0, int(floor_y)) :] = (img[max(0, int(floor_y)) :] * 0.8).astype(np.uint8)
    # chair: back rest behind the trunk and the seat
    s = body.seat
    back = np.array([[-0.24, s, -0.12], [0.24, s, -0.12], [0.24, s + 0.55, -0.18], [-0.24, s + 0.55, -0.18]])
    seat = np.array(
        [[-0.25, s - 0.04, -0.12], [0.25, s - 0.04, -0.12], [0.25, s - 0.04, 0.35], [-0.25, s - 0.04, 0.35]]
    )
    for quad, f in ((back, 1.0), (seat, 0.8)):
        _poly(img, _fixed(cam.project(quad)[0]), _shade(style.chair, f), True)
    return img


def _desk(cam: Camera, body: Body) -> np.ndarray:
    """Screen polygon of a desk front covering the legs below the lap."""
    s = body.seat
    front = np.array([[-0.7, s + 0.18, 0.55], [0.7, s + 0.18, 0.55], [0.7, 0.0, 0.55], [-0.7, 0.0, 0.55]])
    return _fixed(cam.project(front)[0])


def render_clip(
    body: Body, pose: Pose, cam: Camera, style: Style, rng: np.random.Generator, *, occlude_legs: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[T,H,W,3]`` uint8 RGB and masks ``[T,H,W]`` uint8."""
    scene = _Scene(body, pose, cam, style)
    H, W = cam.size
    T = pose.landmarks.shape[0]
    bg = _background(cam, body, style, rng)
    desk = _desk(cam, body) if occlude_legs else None
    frames = np.empty((T, H, W, 3), np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        img = bg.copy()
        mask = masks[t]
        for _, region, draw in sorted(scene.parts(t), key=lambda p: -p[0]):
            draw(img, True, None)  # type: ignore[operator]
            draw(mask, False, region)  # type: ignore[operator]
        if desk is not None:
            _poly(img, desk, style.desk, True)
            _poly(mask, desk, 0, False)
        frames[t] = img
    return frames, masks
