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

import cv2
import numpy as np

from microaction.data.synth.camera import Camera
from microaction.data.synth.skeleton3d import Body, Pose
from microaction.extract.skeleton import MASK_REGIONS, landmark_index

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


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, v * f))) for v in c)  # type: ignore[return-value]


def _p(xy: np.ndarray) -> tuple[int, int]:
    return round(xy[0] * _ONE), round(xy[1] * _ONE)


def _capsule(img, a, b, r, color, shaded: bool) -> None:
    r = max(r, 0.6)
    if shaded:
        cv2.line(img, _p(a), _p(b), _shade(color, 0.55), max(1, round(2 * r)), cv2.LINE_AA, _SHIFT)
        cv2.line(img, _p(a), _p(b), color, max(1, round(1.5 * r)), cv2.LINE_AA, _SHIFT)
        off = np.array([-0.25 * r, -0.25 * r])
        cv2.line(img, _p(a + off), _p(b + off), _shade(color, 1.3), max(1, round(0.5 * r)), cv2.LINE_AA, _SHIFT)
    else:
        cv2.line(img, _p(a), _p(b), color, max(1, round(2 * r)), cv2.LINE_8, _SHIFT)


def _poly(img, pts, color, shaded: bool) -> None:
    p = np.round(np.asarray(pts) * _ONE).astype(np.int32)
    if shaded:
        cv2.fillConvexPoly(img, p, _shade(color, 0.6), cv2.LINE_AA, _SHIFT)
        c = p.mean(0)
        inner = np.round(c + (p - c) * 0.86).astype(np.int32)
        cv2.fillConvexPoly(img, inner, color, cv2.LINE_AA, _SHIFT)
    else:
        cv2.fillConvexPoly(img, p, color, cv2.LINE_8, _SHIFT)


def _ellipse(img, center, axes, angle, color, shaded: bool) -> None:
    ax = (max(1, round(axes[0] * _ONE)), max(1, round(axes[1] * _ONE)))
    if shaded:
        cv2.ellipse(img, _p(center), ax, angle, 0, 360, _shade(color, 0.6), -1, cv2.LINE_AA, _SHIFT)
        ax2 = (max(1, int(ax[0] * 0.88)), max(1, int(ax[1] * 0.9)))
        cv2.ellipse(
            img,
            _p(center - np.array([0.06 * axes[0], 0.05 * axes[1]])),
            ax2,
            angle,
            0,
            360,
            color,
            -1,
            cv2.LINE_AA,
            _SHIFT,
        )
    else:
        cv2.ellipse(img, _p(center), ax, angle, 0, 360, color, -1, cv2.LINE_8, _SHIFT)


class _Scene:
    """The per-clip geometry the renderer draws, projected once for all frames."""

    def __init__(self, body: Body, pose: Pose, cam: Camera, style: Style) -> None:
        self.body, self.cam, self.style = body, cam, style
        self.xy, self.depth = cam.project(pose.landmarks)
        self.head_xy, self.head_depth = cam.project(pose.head_center)
        self.neck_xy, self.neck_depth = cam.project(pose.neck_base)
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

    def radius(self, r: float, depth: np.ndarray) -> np.ndarray:
        return self.cam.focal * r / np.maximum(depth, 1e-3)

    def parts(self, t: int) -> list[tuple[float, int, object]]:
        """(depth, region, draw(img, shaded, mask_value)) for frame ``t``."""
        xy, dp, b, st = self.xy[t], self.depth[t], self.body, self.style
        i = landmark_index
        out: list[tuple[float, int, object]] = []

        def cap(n1: str, n2: str, r: float, color, region: int) -> None:
            a, c = xy[i(n1)], xy[i(n2)]
            d = float((dp[i(n1)] + dp[i(n2)]) / 2)
            rad = float(self.radius(r, np.array(d)))
            out.append((d, region, lambda img, sh, v: _capsule(img, a, c, rad, v if v is not None else color, sh)))

        # trunk: shoulders → hips, widened by the torso radius at the hips
        sh_l, sh_r, hp_l, hp_r = xy[i("left_shoulder")], xy[i("right_shoulder")], xy[i("left_hip")], xy[i("right_hip")]
        quad = np.array([sh_l, sh_r, hp_r + (hp_r - hp_l) * 0.25, hp_l + (hp_l - hp_r) * 0.25])
        d_trunk = float(dp[[i("left_shoulder"), i("right_shoulder"), i("left_hip"), i("right_hip")]].mean()) + 0.05
        out.append((d_trunk, _BODY, lambda img, sh, v: _poly(img, quad, v if v is not None else st.shirt, sh)))
        neck_r = float(self.radius(b.head_w * 0.45, self.neck_depth[t]))
        nb, hc = self.neck_xy[t], self.head_xy[t]
        out.append((float(self.neck_depth[t]) + 0.02, _BODY,
                    lambda img, sh, v: _capsule(img, nb, nb + (hc - nb) * 0.6, neck_r, v if v is not None else st.skin, sh)))  # fmt: skip
        for s in ("left", "right"):
            cap(f"{s}_shoulder", f"{s}_elbow", b.limb_r * 1.05, st.sleeve, _ARMS)
            cap(f"{s}_elbow", f"{s}_wrist", b.limb_r * 0.85, st.sleeve if st.sleeve != st.shirt else st.skin, _ARMS)
            hand = xy[[i(f"{s}_wrist"), i(f"{s}_thumb"), i(f"{s}_index"), i(f"{s}_pinky")]]
            d_hand = float(dp[[i(f"{s}_wrist"), i(f"{s}_index")]].mean()) - 0.01
            hr = float(self.radius(b.limb_r * 0.35, np.array(d_hand)))
            out.append(
                (d_hand, _ARMS, lambda img, sh, v, h=hand, r=hr: _hand(img, h, r, v if v is not None else st.skin, sh))
            )
            cap(f"{s}_hip", f"{s}_knee", b.limb_r * 1.6, st.trousers, _LEGS)
            cap(f"{s}_knee", f"{s}_ankle", b.limb_r * 1.15, st.trousers, _LEGS)
            cap(f"{s}_heel", f"{s}_foot_index", b.limb_r * 0.8, st.shoes, _LEGS)
        # head: an ellipse oriented by the head's up axis, face marks when it faces the camera
        rad_w, rad_h = (float(v) for v in self.head_axes[t])
        ang = float(self.head_angle[t])
        face = self.facing[t]
        pts = xy[:11].copy()
        out.append((float(self.head_depth[t]), _HEAD,
                    lambda img, sh, v: _head(img, hc, (rad_w, rad_h), ang, pts, face, st.skin, v, sh)))  # fmt: skip
        return out


def _hand(img, h: np.ndarray, r: float, color, shaded: bool) -> None:
    wrist, thumb, index, pinky = h
    _poly(img, h, color, shaded)
    for tip in (thumb, index, pinky):
        _capsule(img, wrist, tip, r, color, shaded)


def _head(img, center, axes, angle, pts, facing: float, skin, value, shaded: bool) -> None:
    _ellipse(img, center, axes, angle, value if value is not None else skin, shaded)
    if value is not None:
        return  # masks: the ellipse only
    dark = _shade(skin, 0.35)
    r = max(1.0, axes[0] * 0.12)
    ears = pts[7:9]
    for e in ears:
        cv2.circle(img, _p(e), max(1, int(r * 1.3 * _ONE)), _shade(skin, 0.8), -1, cv2.LINE_AA, _SHIFT)
    if facing <= 0.05:
        return
    for k in (2, 5):  # eyes
        cv2.circle(img, _p(pts[k]), max(1, int(r * _ONE)), (30, 30, 40), -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(img, _p(pts[0]), max(1, int(r * 0.8 * _ONE)), _shade(skin, 0.7), -1, cv2.LINE_AA, _SHIFT)
    cv2.line(img, _p(pts[9]), _p(pts[10]), dark, max(1, round(r * 0.8)), cv2.LINE_AA, _SHIFT)


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
        _poly(img, cam.project(quad)[0], _shade(style.chair, f), True)
    return img


def _desk(cam: Camera, body: Body) -> np.ndarray:
    """Screen polygon of a desk front covering the legs below the lap."""
    s = body.seat
    front = np.array([[-0.7, s + 0.18, 0.55], [0.7, s + 0.18, 0.55], [0.7, 0.0, 0.55], [-0.7, 0.0, 0.55]])
    return cam.project(front)[0]


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
