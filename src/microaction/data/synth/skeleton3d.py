"""A seated person as a 3-D kinematic skeleton in MediaPipe's 33-landmark layout.

World frame (metres): ``y`` up, ``z`` towards the camera's default position (the person faces
``+z``), ``x`` to the person's left (so a frontal camera sees the left side on the image's right,
as MediaPipe labels it). The person sits on a chair whose seat is at pelvis height.

A clip is described by *tracks* (:class:`Tracks`): per-frame joint parameters (pelvis offset,
torso and head rotations, shoulder elevation, wrist and ankle targets, finger curl, ...). Motion
primitives (``motions.py``) and nuisances (``nuisances.py``) edit the tracks; :func:`pose` turns
them into landmarks with forward kinematics for the spine and head and two-bone inverse
kinematics for arms (wrist target → elbow) and legs (ankle target → knee). Hands can *reach*
points attached to other body parts (the nose, the chest, the other forearm, a thigh), resolved
after those parts are posed, so a hand touching the nose follows the head.

Landmark names, bones and regions come from :mod:`microaction.skeleton`; nothing here
redefines them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from microaction.skeleton import NUM_LANDMARKS, landmark_index

__all__ = ["Body", "Pose", "Reach", "Tracks", "pose", "rotation", "sample_body", "sample_rest"]

L, R = 0, 1  # side index: person's left, person's right
SIDE_SIGN = (1.0, -1.0)  # x sign of a side
SIDE_NAME = ("left", "right")


def rotation(angles: np.ndarray) -> np.ndarray:
    """``[..., 3]`` (pitch, yaw, roll) radians → ``[..., 3, 3]`` rotation ``Ry(yaw) Rx(pitch) Rz(roll)``.

    Positive pitch leans forward / looks down, positive yaw turns to the person's left, positive
    roll tilts the top towards the person's right.
    """
    a = np.asarray(angles, dtype=np.float64)
    p, y, r = a[..., 0], a[..., 1], a[..., 2]
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    one, zero = np.ones_like(p), np.zeros_like(p)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*p.shape, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*p.shape, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(*p.shape, 3, 3)
    return ry @ rx @ rz


def _apply(rot: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate ``v`` ([3] or [T,3]) by ``rot`` [T,3,3] → [T,3]."""
    return np.einsum("tij,tj->ti", rot, np.broadcast_to(v, (rot.shape[0], 3)))


@dataclass(frozen=True)
class Body:
    """Body proportions (metres) of one synthetic person."""

    hip_half: float = 0.15
    torso: float = 0.50  # pelvis centre → shoulder midpoint
    shoulder_half: float = 0.19
    neck: float = 0.10
    head_h: float = 0.115  # head ellipsoid semi-axes
    head_w: float = 0.078
    head_d: float = 0.095
    upper_arm: float = 0.29
    forearm: float = 0.26
    hand: float = 0.085
    thigh: float = 0.44
    shin: float = 0.44
    foot: float = 0.18
    seat: float = 0.50  # pelvis height
    limb_r: float = 0.045  # capsule radii for the renderer
    torso_r: float = 0.11

    @property
    def face(self) -> dict[str, tuple[float, float, float]]:
        """Head-frame offsets (from the head centre) of the face landmarks."""
        w, h, d = self.head_w, self.head_h, self.head_d
        return {
            "nose": (0.0, -0.10 * h, 0.99 * d),
            "left_eye_inner": (0.20 * w, 0.22 * h, 0.93 * d),
            "left_eye": (0.42 * w, 0.24 * h, 0.88 * d),
            "left_eye_outer": (0.62 * w, 0.22 * h, 0.78 * d),
            "right_eye_inner": (-0.20 * w, 0.22 * h, 0.93 * d),
            "right_eye": (-0.42 * w, 0.24 * h, 0.88 * d),
            "right_eye_outer": (-0.62 * w, 0.22 * h, 0.78 * d),
            "left_ear": (0.98 * w, 0.05 * h, 0.0),
            "right_ear": (-0.98 * w, 0.05 * h, 0.0),
            "mouth_left": (0.32 * w, -0.45 * h, 0.86 * d),
            "mouth_right": (-0.32 * w, -0.45 * h, 0.86 * d),
        }


def sample_body(rng: np.random.Generator) -> Body:
    """Random proportions: overall scale ±10 %, each segment ±7 % on top."""
    s = rng.uniform(0.9, 1.1)
    base = Body()

    def j(v: float) -> float:
        return float(v * s * rng.uniform(0.93, 1.07))

    return Body(
        hip_half=j(base.hip_half), torso=j(base.torso), shoulder_half=j(base.shoulder_half),
        neck=j(base.neck), head_h=j(base.head_h), head_w=j(base.head_w), head_d=j(base.head_d),
        upper_arm=j(base.upper_arm), forearm=j(base.forearm), hand=j(base.hand), thigh=j(base.thigh),
        shin=j(base.shin), foot=j(base.foot), seat=j(base.seat), limb_r=j(base.limb_r), torso_r=j(base.torso_r),
    )  # fmt: skip


@dataclass
class Reach:
    """A hand moving to a point attached to a body part, blended in by ``weight`` [T] in [0, 1].

    ``anchor``: ``"head"`` (offset in the head frame, from the head centre), ``"torso"`` (torso
    frame, from the shoulder midpoint), ``"pelvis"`` (torso-yaw frame, from the pelvis centre),
    ``"thigh:<side>"`` / ``"shin:<side>"`` (point ``frac`` along the segment plus a world offset)
    or ``"forearm:<side>"`` (point along the other arm's forearm plus a world offset).
    ``offset`` is [3] or [T,3].
    """

    side: int
    anchor: str
    offset: np.ndarray
    weight: np.ndarray
    frac: float = 0.5


@dataclass
class Tracks:
    """Per-frame joint parameters of one clip (all arrays have T rows)."""

    root: np.ndarray  # [T,3] pelvis centre, world
    torso: np.ndarray  # [T,3] pitch, yaw, roll of the spine
    shrug: np.ndarray  # [T,2] shoulder elevation (m), left/right
    protract: np.ndarray  # [T,2] shoulder forward offset (m)
    head: np.ndarray  # [T,3] pitch, yaw, roll relative to the torso
    wrist: np.ndarray  # [T,2,3] wrist targets (world, before reaches)
    elbow_out: np.ndarray  # [T,2] extra outward swing of the elbow pole (rad)
    curl: np.ndarray  # [T,2,3] finger curl 0 (open) .. 1 (fist): index, pinky, thumb
    hand_roll: np.ndarray  # [T,2] rotation of the hand about the forearm (rad)
    ankle: np.ndarray  # [T,2,3] ankle targets (world)
    foot_pitch: np.ndarray  # [T,2] toe-down rotation of the foot (rad)
    knee_out: np.ndarray  # [T,2] outward swing of the knee pole (rad)
    reaches: list[Reach] = field(default_factory=list)

    @property
    def length(self) -> int:
        return int(self.root.shape[0])


def sample_rest(rng: np.random.Generator, body: Body, T: int) -> Tracks:
    """A random resting seated posture, constant over ``T`` frames."""
    b = body
    root = np.array([0.0, b.seat, 0.0])
    torso = np.array([rng.uniform(-0.05, 0.18), rng.uniform(-0.08, 0.08), rng.uniform(-0.05, 0.05)])
    head = np.array([rng.uniform(-0.05, 0.15), rng.uniform(-0.1, 0.1), rng.uniform(-0.06, 0.06)])
    # hands resting on the lap / thighs, or one on an armrest
    wrist = np.zeros((2, 3))
    for s in (L, R):
        sx = SIDE_SIGN[s]
        if rng.random() < 0.2:  # armrest
            wrist[s] = [sx * (b.hip_half + 0.14), b.seat + 0.18, rng.uniform(0.05, 0.2)]
        else:
            wrist[s] = [sx * rng.uniform(0.04, b.hip_half + 0.03), b.seat + 0.10, rng.uniform(0.18, 0.32)]
    ankle = np.zeros((2, 3))
    spread = rng.uniform(-0.03, 0.08)
    fwd = rng.uniform(0.30, 0.52)
    for s in (L, R):
        ankle[s] = [SIDE_SIGN[s] * (b.hip_half + spread), 0.085, fwd + rng.uniform(-0.05, 0.05)]
    return Tracks(
        root=np.tile(root, (T, 1)),
        torso=np.tile(torso, (T, 1)),
        shrug=np.zeros((T, 2)),
        protract=np.zeros((T, 2)),
        head=np.tile(head, (T, 1)),
        wrist=np.tile(wrist, (T, 1, 1)),
        elbow_out=np.zeros((T, 2)),
        curl=np.tile(rng.uniform(0.1, 0.4, (2, 3)), (T, 1, 1)),
        hand_roll=np.tile(rng.uniform(-0.3, 0.3, 2), (T, 1)),
        ankle=np.tile(ankle, (T, 1, 1)),
        foot_pitch=np.zeros((T, 2)),
        knee_out=np.zeros((T, 2)),
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def two_bone_ik(root: np.ndarray, target: np.ndarray, l1: float, l2: float, pole: np.ndarray) -> np.ndarray:
    """Middle joint (elbow / knee) of a two-bone chain from ``root`` towards ``target`` ([T,3]).

    The chain bends towards ``pole`` (a direction, [T,3]); an unreachable target is clamped to the
    chain's reach (the end then stops short of it, as a real arm would).
    """
    d_vec = target - root
    d = np.clip(np.linalg.norm(d_vec, axis=-1, keepdims=True), abs(l1 - l2) + 1e-3, l1 + l2 - 1e-4)
    u = _unit(d_vec)
    a = (l1**2 - l2**2 + d**2) / (2 * d)
    h = np.sqrt(np.maximum(l1**2 - a**2, 0.0))
    n = pole - np.sum(pole * u, axis=-1, keepdims=True) * u
    n = _unit(n)
    return root + a * u + h * n


def _end(mid: np.ndarray, target: np.ndarray, l2: float) -> np.ndarray:
    return mid + _unit(target - mid) * l2


@dataclass
class Pose:
    """Posed landmarks and the extra points the renderer needs (all world coordinates)."""

    landmarks: np.ndarray  # [T,33,3]
    head_center: np.ndarray  # [T,3]
    head_rot: np.ndarray  # [T,3,3]
    neck_base: np.ndarray  # [T,3]


def _idx(name: str) -> int:
    return landmark_index(name)


def pose(body: Body, tr: Tracks) -> Pose:
    """Forward / inverse kinematics of ``tr`` → :class:`Pose`."""
    b, T = body, tr.length
    out = np.zeros((T, NUM_LANDMARKS, 3))
    rt = rotation(tr.torso)
    yaw_only = rotation(np.stack([np.zeros(T), tr.torso[:, 1] * 0.25, np.zeros(T)], -1))
    pelvis = tr.root
    for s in (L, R):
        out[:, _idx(f"{SIDE_NAME[s]}_hip")] = pelvis + _apply(yaw_only, np.array([SIDE_SIGN[s] * b.hip_half, 0, 0]))
    smid = pelvis + _apply(rt, np.array([0.0, b.torso, 0.0]))
    for s in (L, R):
        local = np.stack([np.full(T, SIDE_SIGN[s] * b.shoulder_half), tr.shrug[:, s], tr.protract[:, s]], -1)
        out[:, _idx(f"{SIDE_NAME[s]}_shoulder")] = smid + np.einsum("tij,tj->ti", rt, local)
    # shrugging lifts the neck base a little too
    neck_base = (
        smid
        + _apply(rt, np.array([0.0, 0.02, 0.0]))
        + 0.35 * np.stack([np.zeros(T), tr.shrug.mean(1), np.zeros(T)], -1)
    )
    rh = rt @ rotation(tr.head)
    head_center = neck_base + _apply(rh, np.array([0.0, b.neck + b.head_h * 0.8, 0.01]))
    for name, off in b.face.items():
        out[:, _idx(name)] = head_center + _apply(rh, np.array(off))

    # legs: ankle targets, knees by IK bending forward (and outward by knee_out)
    for s in (L, R):
        n = SIDE_NAME[s]
        hip = out[:, _idx(f"{n}_hip")]
        ang = tr.knee_out[:, s] * SIDE_SIGN[s]
        pole = np.stack([np.sin(ang), 0.35 * np.ones(T), np.cos(ang)], -1)
        knee = two_bone_ik(hip, tr.ankle[:, s], b.thigh, b.shin, pole)
        ankle = _end(knee, tr.ankle[:, s], b.shin)
        out[:, _idx(f"{n}_knee")], out[:, _idx(f"{n}_ankle")] = knee, ankle
        fp = tr.foot_pitch[:, s]
        yaw = np.arctan2(ankle[:, 0] - hip[:, 0], np.maximum(ankle[:, 2] - hip[:, 2], 1e-3)) * 0.5
        frot = rotation(np.stack([fp, yaw, np.zeros(T)], -1))
        out[:, _idx(f"{n}_heel")] = ankle + _apply(frot, np.array([0.0, -0.06, -0.05]))
        out[:, _idx(f"{n}_foot_index")] = ankle + _apply(frot, np.array([0.0, -0.07, b.foot]))

    anchors = {"head": (head_center, rh), "torso": (smid, rt), "pelvis": (pelvis, yaw_only)}
    # arms that reach the other forearm are posed after the other arm
    order = sorted((L, R), key=lambda s: any(r.side == s and r.anchor.startswith("forearm") for r in tr.reaches))
    for s in order:
        _pose_arm(b, tr, s, out, anchors, rt)
    return Pose(out, head_center, rh, neck_base)


def _anchor_point(r: Reach, out: np.ndarray, anchors: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    T = out.shape[0]
    off = np.broadcast_to(np.asarray(r.offset, dtype=np.float64), (T, 3))
    kind, _, side = r.anchor.partition(":")
    if kind in anchors:
        origin, rot = anchors[kind]
        return origin + np.einsum("tij,tj->ti", rot, off)
    seg = {"thigh": ("hip", "knee"), "shin": ("knee", "ankle"), "forearm": ("elbow", "wrist")}[kind]
    a, c = out[:, _idx(f"{side}_{seg[0]}")], out[:, _idx(f"{side}_{seg[1]}")]
    return a + r.frac * (c - a) + off


def _pose_arm(b: Body, tr: Tracks, s: int, out: np.ndarray, anchors: dict, rt: np.ndarray) -> None:
    n, sx = SIDE_NAME[s], SIDE_SIGN[s]
    T = tr.length
    target = tr.wrist[:, s].copy()
    for r in tr.reaches:
        if r.side == s:
            w = np.asarray(r.weight)[:, None]
            target = (1 - w) * target + w * _anchor_point(r, out, anchors)
    shoulder = out[:, _idx(f"{n}_shoulder")]
    ang = tr.elbow_out[:, s]
    pole_local = np.stack([sx * (0.35 + np.sin(ang)), -np.cos(ang), -0.35 * np.ones(T)], -1)
    pole = np.einsum("tij,tj->ti", rt, pole_local)
    elbow = two_bone_ik(shoulder, target, b.upper_arm, b.forearm, pole)
    wrist = _end(elbow, target, b.forearm)
    out[:, _idx(f"{n}_elbow")], out[:, _idx(f"{n}_wrist")] = elbow, wrist
    # the hand: fingers continue the forearm, spread across the palm
    fwd = _unit(wrist - elbow)
    up = np.einsum("tij,j->ti", rt, np.array([0.0, 1.0, 0.0]))
    front = np.einsum("tij,j->ti", rt, np.array([0.0, 0.0, 1.0]))
    # a reference across the palm, continuous whether the forearm points forward or up
    mostly_fwd = np.abs(np.sum(fwd * up, -1, keepdims=True)) < 0.7
    across = _unit(np.where(mostly_fwd, np.cross(up, fwd), np.cross(fwd, front)))
    roll = tr.hand_roll[:, s][:, None]
    across = _unit(np.cos(roll) * across + np.sin(roll) * _unit(np.cross(fwd, across)))
    across = across * -sx  # thumb and index on the inner side
    curl = tr.curl[:, s]  # [T,3]
    for k, (name, along, side_off) in enumerate((("index", 1.0, 0.25), ("pinky", 0.8, -0.35), ("thumb", 0.5, 0.55))):
        reach = b.hand * along * (1.0 - 0.6 * curl[:, k : k + 1])
        out[:, _idx(f"{n}_{name}")] = wrist + fwd * reach + across * (b.hand * side_off)
