"""One procedural motion primitive per MA-52 class, each on the body part MA-52 puts it on.

A primitive edits a clip's :class:`~microaction.data.synth.skeleton3d.Tracks` inside the action
window ``[a, b]`` (seconds). Amplitudes are small and scaled by ``gain`` (the generator's
difficulty knob times a per-clip random factor), so motions are *subtle*; several classes are
*ambiguous* by construction, as in MA-52: touching nose / rubbing eyes / covering mouth /
scratching face reach points a few centimetres apart on the face; nodding (a few pitch
oscillations) / bowing head (one pitch down, held); curling legs / retracting feet (both pull the
feet back); shaking head / turning head (yaw); scratching vs touching (the same reach, with or
without a fast small oscillation).

``MOTIONS`` maps each class name of ``load_taxonomy("ma52")`` to its primitive; ``DESCRIPTIONS``
(the primitives' docstrings) is what ``docs/synthetic.md`` lists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from microaction.data.synth.skeleton3d import SIDE_SIGN, Body, Reach, Tracks

__all__ = ["DESCRIPTIONS", "MOTIONS", "Ctx", "apply_motion"]


@dataclass
class Ctx:
    """What a primitive works with: the tracks to edit, the window, the gain and the active hand."""

    tr: Tracks
    body: Body
    rng: np.random.Generator
    t: np.ndarray  # [T] seconds
    a: float  # action onset (s)
    b: float  # action end (s)
    gain: float
    side: int  # the hand / leg that acts (0 left, 1 right)

    @property
    def sx(self) -> float:
        return SIDE_SIGN[self.side]

    @property
    def dur(self) -> float:
        return self.b - self.a

    def amp(self, lo: float, hi: float) -> float:
        """A random amplitude in [lo, hi] scaled by the clip's gain."""
        return float(self.rng.uniform(lo, hi) * self.gain)

    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def bump(self, ramp: float = 0.35) -> np.ndarray:
        """0 → 1 → 0 over the window, raised-cosine ramps of ``ramp`` s at both ends."""
        r = min(ramp, self.dur / 2.5)
        up = np.clip((self.t - self.a) / r, 0, 1)
        down = np.clip((self.b - self.t) / r, 0, 1)
        return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))

    def step(self, ramp: float = 0.6) -> np.ndarray:
        """0 → 1 from the onset over ``ramp`` s, then held (a change of state)."""
        r = min(ramp, self.dur * 0.8)
        x = np.clip((self.t - self.a) / r, 0, 1)
        return 0.5 - 0.5 * np.cos(np.pi * x)

    def osc(self, freq: float, phase: float = 0.0) -> np.ndarray:
        """``sin`` at ``freq`` Hz from the onset, windowed by :meth:`bump`."""
        return np.sin(2 * np.pi * freq * (self.t - self.a) + phase) * self.bump(0.2)

    def reach(
        self, anchor: str, offset, *, side: int | None = None, wiggle=None, ramp: float = 0.4, frac=0.5
    ) -> np.ndarray:
        """Move a hand to ``anchor`` + ``offset`` (+ ``wiggle`` [T,3]) and back; returns the weight."""
        s = self.side if side is None else side
        w = self.bump(ramp)
        off = np.broadcast_to(np.asarray(offset, dtype=np.float64), (len(self.t), 3)).copy()
        if wiggle is not None:
            off += wiggle
        self.tr.reaches.append(Reach(s, anchor, off, w, frac))
        return w


def _vec(x=0.0, y=0.0, z=0.0) -> np.ndarray:
    """Stack per-frame components (scalars or [T]) into [T,3]."""
    parts = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float), np.asarray(z, float))
    return np.stack(parts, -1)


def _scratch(c: Ctx, axis=(1.0, 0.0, 0.0), lo=0.008, hi=0.018) -> np.ndarray:
    """A fast small back-and-forth (scratching / rubbing), [T,3]."""
    f = c.u(3.5, 6.0)
    return c.osc(f)[:, None] * np.asarray(axis) * c.amp(lo, hi)


# ---------------------------------------------------------------- body (0-4)
def shaking_body(c: Ctx) -> None:
    """Torso rocks side to side (roll oscillation, 1-2 Hz, 2-4°) with a small lateral sway."""
    o = c.osc(c.u(1.0, 2.0))
    c.tr.torso[:, 2] += o * c.amp(0.035, 0.07)
    c.tr.root[:, 0] += o * c.amp(0.006, 0.015)


def sitting_straightly(c: Ctx) -> None:
    """From a slouch (spine pitched forward, shoulders rounded) to upright, held."""
    s = 1 - c.step(c.u(0.5, 1.0))
    c.tr.torso[:, 0] += s * c.amp(0.10, 0.2)
    c.tr.protract += s[:, None] * c.amp(0.02, 0.04)
    c.tr.head[:, 0] += s * c.amp(0.03, 0.08)


def shrugging(c: Ctx) -> None:
    """Both shoulders up and down (3-6 cm), once or twice."""
    reps = int(c.rng.integers(1, 3))
    env = np.sin(np.pi * reps * np.clip((c.t - c.a) / c.dur, 0, 1)) ** 2
    c.tr.shrug += env[:, None] * c.amp(0.03, 0.06)


def turning_around(c: Ctx) -> None:
    """The trunk turns to one side (20-45°, the head following further) and back."""
    w = c.bump(c.u(0.4, 0.7))
    c.tr.torso[:, 1] += w * c.sx * c.amp(0.35, 0.75)
    c.tr.head[:, 1] += w * c.sx * c.amp(0.1, 0.35)


def rising_up(c: Ctx) -> None:
    """Lifts off the seat a little: pelvis up 4-10 cm and forward, trunk leaning forward, hands pushing."""
    w = c.bump(c.u(0.4, 0.7))
    lift = _vec(0.0, c.amp(0.04, 0.10), c.amp(0.02, 0.05)) * w[:, None]
    c.tr.root += lift
    c.tr.wrist += lift[:, None] * 0.7
    c.tr.torso[:, 0] += w * c.amp(0.12, 0.3)


# ---------------------------------------------------------------- head (5-10)
def bowing_head(c: Ctx) -> None:
    """Head pitches down once (9-20°) and stays down."""
    c.tr.head[:, 0] += c.step(c.u(0.4, 0.9)) * c.amp(0.16, 0.35)


def head_up(c: Ctx) -> None:
    """Head pitches up (chin raised, 8-18°), held."""
    c.tr.head[:, 0] -= c.step(c.u(0.4, 0.9)) * c.amp(0.14, 0.32)


def tilting_head(c: Ctx) -> None:
    """Head rolls to one side (7-15°) and back."""
    c.tr.head[:, 2] += c.bump(c.u(0.3, 0.6)) * c.sx * c.amp(0.12, 0.26)


def turning_head(c: Ctx) -> None:
    """One yaw turn of the head to a side (15-35°), held or coming back."""
    w = c.bump(c.u(0.3, 0.5)) if c.rng.random() < 0.5 else c.step(c.u(0.3, 0.6))
    c.tr.head[:, 1] += w * c.sx * c.amp(0.26, 0.6)


def nodding(c: Ctx) -> None:
    """Head pitch oscillation downwards, 1.5-3 nods at 1.5-2.5 Hz, 4-9°."""
    f = c.u(1.5, 2.5)
    nods = replace(c, b=min(c.b, c.a + c.u(1.5, 3.0) / f + 0.1))  # whole nods only
    c.tr.head[:, 0] += (0.5 - 0.5 * np.cos(2 * np.pi * f * (c.t - c.a))) * nods.bump(0.15) * c.amp(0.07, 0.16)


def shaking_head(c: Ctx) -> None:
    """Head yaw oscillation, 1.5-3 Hz, 5-12°."""
    c.tr.head[:, 1] += c.osc(c.u(1.5, 3.0)) * c.amp(0.09, 0.2)


# ---------------------------------------------------------------- upper limbs (11-23)
def scratching_arms(c: Ctx) -> None:
    """One hand to the other forearm, then a fast short scratch along it."""
    other = 1 - c.side
    c.reach(f"forearm:{('left', 'right')[other]}", (0.0, 0.05, 0.02), wiggle=_scratch(c, (0, 0, 1)), frac=c.u(0.3, 0.7))


def playing_objects(c: Ctx) -> None:
    """Both hands come together over the lap and fiddle irregularly (wrists and fingers)."""
    w = c.bump(0.4)
    f1, f2 = c.u(1.0, 2.5), c.u(2.5, 4.0)
    for s in (0, 1):
        goal = np.array([SIDE_SIGN[s] * 0.06, c.body.seat + 0.14, 0.30])
        jig = _vec(np.sin(2 * np.pi * f1 * c.t + s), np.sin(2 * np.pi * f2 * c.t), 0) * c.amp(0.008, 0.02)
        c.tr.wrist[:, s] += w[:, None] * (goal - c.tr.wrist[:, s] + jig)
        c.tr.curl[:, s, :2] += (w * 0.3 * np.sin(2 * np.pi * f2 * c.t + s))[:, None]


def putting_hands_together(c: Ctx) -> None:
    """Both wrists move to meet in front of the belly, held."""
    w = c.step(c.u(0.5, 0.9))
    y, z = c.body.seat + c.u(0.12, 0.25), c.u(0.25, 0.35)
    for s in (0, 1):
        c.tr.wrist[:, s] += w[:, None] * (np.array([SIDE_SIGN[s] * 0.035, y, z]) - c.tr.wrist[:, s])


def rubbing_hands(c: Ctx) -> None:
    """Hands together in front, rubbing against each other (opposite-phase oscillation, 3-5 Hz)."""
    w = c.bump(0.4)
    o = c.osc(c.u(3.0, 5.0)) * c.amp(0.012, 0.03)
    y, z = c.body.seat + c.u(0.14, 0.25), c.u(0.25, 0.35)
    for s in (0, 1):
        goal = np.array([SIDE_SIGN[s] * 0.035, y, z])
        c.tr.wrist[:, s] += w[:, None] * (goal - c.tr.wrist[:, s]) + _vec(0, o * SIDE_SIGN[s], o * SIDE_SIGN[s] * 0.5)


def pointing_oneself(c: Ctx) -> None:
    """One hand points its index finger at the chest, briefly."""
    w = c.reach("torso", (c.sx * 0.02, -0.14, 0.2), ramp=0.3)
    c.tr.curl[:, c.side, 0] *= 1 - w
    c.tr.curl[:, c.side, 1:] += w[:, None] * (0.9 - c.tr.curl[:, c.side, 1:])


def clenching_fist(c: Ctx) -> None:
    """The fingers of one hand (sometimes both) close into a fist, held; the wrist barely moves."""
    w = c.step(c.u(0.3, 0.6))
    sides = (0, 1) if c.rng.random() < 0.3 else (c.side,)
    for s in sides:
        c.tr.curl[:, s] += w[:, None] * (1.0 - c.tr.curl[:, s])
        c.tr.wrist[:, s, 1] += w * c.amp(0.005, 0.015)


def stretching_arms(c: Ctx) -> None:
    """Both arms extend forwards and up, then come back."""
    w = c.bump(c.u(0.4, 0.7))
    up, fwd = c.amp(0.1, 0.25), c.amp(0.1, 0.22)
    for s in (0, 1):
        c.tr.wrist[:, s] += w[:, None] * _vec(SIDE_SIGN[s] * 0.03, up, fwd)
        c.tr.curl[:, s] *= (1 - 0.7 * w)[:, None]


def retracting_arms(c: Ctx) -> None:
    """Forearms resting forward (as on a desk) are pulled back towards the body, held."""
    s = 1 - c.step(c.u(0.5, 0.9))
    d = _vec(0, c.amp(0.05, 0.12), c.amp(0.1, 0.18))
    for k in (0, 1):
        c.tr.wrist[:, k] += s[:, None] * d


def waving(c: Ctx) -> None:
    """One hand raised beside the shoulder, waving side to side (2-3 Hz)."""
    o = c.osc(c.u(2.0, 3.0))
    wig = _vec(o * c.amp(0.03, 0.06), 0, 0)
    w = c.reach("torso", (c.sx * 0.24, c.amp(0.0, 0.12), 0.12), wiggle=wig)
    c.tr.hand_roll[:, c.side] += w * 1.2 + o * 0.3
    c.tr.curl[:, c.side] *= (1 - w)[:, None]


def spreading_hands(c: Ctx) -> None:
    """Both hands open outwards, palms turning up, then back."""
    w = c.bump(c.u(0.3, 0.6))
    out, up = c.amp(0.08, 0.18), c.amp(0.03, 0.1)
    for s in (0, 1):
        c.tr.wrist[:, s] += w[:, None] * _vec(SIDE_SIGN[s] * out, up, 0.04)
        c.tr.hand_roll[:, s] += w * 1.2
        c.tr.curl[:, s] *= (1 - w)[:, None]


def hands_touching_fingers(c: Ctx) -> None:
    """Fingertips of both hands touch in front of the belly (a steeple), tapping lightly."""
    w = c.bump(0.5)
    tap = c.osc(c.u(1.5, 3.0)) * 0.3
    y, z = c.body.seat + c.u(0.15, 0.28), c.u(0.22, 0.32)
    for s in (0, 1):
        c.tr.wrist[:, s] += w[:, None] * (np.array([SIDE_SIGN[s] * 0.09, y, z]) - c.tr.wrist[:, s])
        c.tr.curl[:, s] = c.tr.curl[:, s] * (1 - w)[:, None] + (w * (0.15 + tap))[:, None]


def other_finger_movements(c: Ctx) -> None:
    """Only the fingers of one hand move (index / thumb flexing, 2-4 Hz); the arm stays still."""
    f = c.u(2.0, 4.0)
    for k, ph in ((0, 0.0), (2, np.pi / 2)):
        c.tr.curl[:, c.side, k] = np.clip(c.tr.curl[:, c.side, k] + c.osc(f, ph) * c.amp(0.4, 0.8), 0, 1)


def illustrative_gestures(c: Ctx) -> None:
    """The dominant hand (sometimes both) rises in front of the chest and beats 2-4 irregular strokes."""
    sides = (0, 1) if c.rng.random() < 0.35 else (c.side,)
    w = c.bump(0.35)
    f = c.u(1.2, 2.5)
    beat = np.sin(2 * np.pi * f * (c.t - c.a)) + 0.5 * np.sin(2 * np.pi * 1.7 * f * (c.t - c.a))
    for s in sides:
        lift = _vec(SIDE_SIGN[s] * c.amp(0.0, 0.06), c.amp(0.1, 0.2) + beat * c.amp(0.015, 0.03), c.amp(0.05, 0.12))
        c.tr.wrist[:, s] += w[:, None] * lift
        c.tr.hand_roll[:, s] += w * beat * 0.3


# ---------------------------------------------------------------- lower limbs (24-31)
def shaking_legs(c: Ctx) -> None:
    """Rhythmic knee bounce of one leg (sometimes both): the heel taps at 3-6 Hz."""
    o = np.abs(c.osc(c.u(2.0, 3.0)))  # |sin| at 2-3 Hz → 4-6 bounces a second
    legs = (0, 1) if c.rng.random() < 0.3 else (c.side,)
    h = c.amp(0.012, 0.03)
    for s in legs:
        c.tr.ankle[:, s, 1] += o * h
        c.tr.foot_pitch[:, s] += o * h * 6


def curling_legs(c: Ctx) -> None:
    """Both feet pulled back under the chair and lifted (knees flex more), held."""
    w = c.step(c.u(0.5, 0.9))
    back, up = c.amp(0.1, 0.2), c.amp(0.03, 0.07)
    c.tr.ankle[:, :, 2] -= (w * back)[:, None]
    c.tr.ankle[:, :, 1] += (w * up)[:, None]
    c.tr.foot_pitch += (w * 0.3)[:, None]


def spread_legs(c: Ctx) -> None:
    """Knees move apart (hips abduct), feet slide outwards a little."""
    w = c.bump(0.5) if c.rng.random() < 0.5 else c.step(0.7)
    ang, out = c.amp(0.15, 0.35), c.amp(0.02, 0.06)
    for s in (0, 1):
        c.tr.knee_out[:, s] += w * ang
        c.tr.ankle[:, s, 0] += w * SIDE_SIGN[s] * out


def closing_legs(c: Ctx) -> None:
    """Knees (spread at first) come together, feet slide inwards, held."""
    w = 1 - c.step(c.u(0.5, 0.9))
    ang, out = c.amp(0.15, 0.35), c.amp(0.02, 0.06)
    for s in (0, 1):
        c.tr.knee_out[:, s] += w * ang - 0.05
        c.tr.ankle[:, s, 0] += w * SIDE_SIGN[s] * out


def crossing_legs(c: Ctx) -> None:
    """One leg lifts and crosses over the other knee, held."""
    w = c.step(c.u(0.8, 1.3))
    s, o = c.side, 1 - c.side
    goal = np.array([SIDE_SIGN[o] * 0.05, c.body.seat - 0.05, c.body.thigh * 0.95])
    c.tr.ankle[:, s] += w[:, None] * (goal - c.tr.ankle[:, s]) * c.u(0.7, 1.0)
    c.tr.knee_out[:, s] += w * 0.5
    c.tr.foot_pitch[:, s] += w * 0.4


def stretching_feet(c: Ctx) -> None:
    """Feet slide forward (knees extend), toes up, then back."""
    w = c.bump(c.u(0.4, 0.7)) if c.rng.random() < 0.6 else c.step(0.7)
    c.tr.ankle[:, :, 2] += (w * c.amp(0.1, 0.22))[:, None]
    c.tr.ankle[:, :, 1] += (w * c.amp(0.0, 0.05))[:, None]
    c.tr.foot_pitch -= (w * c.amp(0.1, 0.3))[:, None]


def retracting_feet(c: Ctx) -> None:
    """Feet slide back towards the chair (knees flex), held; the feet stay on the floor."""
    w = c.step(c.u(0.5, 0.9))
    c.tr.ankle[:, :, 2] -= (w * c.amp(0.08, 0.18))[:, None]
    c.tr.foot_pitch += (w * 0.15)[:, None]


def tiptoe(c: Ctx) -> None:
    """Heels rise (one or both feet), toes staying on the floor."""
    w = c.bump(0.35) if c.rng.random() < 0.6 else c.step(0.5)
    legs = (0, 1) if c.rng.random() < 0.6 else (c.side,)
    h = c.amp(0.03, 0.06)
    for s in legs:
        c.tr.ankle[:, s, 1] += w * h
        c.tr.foot_pitch[:, s] += w * h * 8


# ---------------------------------------------------------------- body + hand (32-37)
def touching_neck(c: Ctx) -> None:
    """Hand to the side of the neck, small scratch."""
    c.reach("torso", (c.sx * 0.03, 0.02, 0.1), wiggle=_scratch(c, (0, 1, 0), 0.004, 0.012))


def touching_chest(c: Ctx) -> None:
    """Hand to the chest, small scratch or rest."""
    c.reach("torso", (c.sx * 0.04, -0.14, 0.17), wiggle=_scratch(c, (1, 0, 0), 0.0, 0.015))


def touching_back(c: Ctx) -> None:
    """Hand reaches behind the lower back."""
    c.reach("torso", (c.sx * 0.22, -0.38, -0.12), wiggle=_scratch(c, (0, 1, 0), 0.0, 0.012), ramp=0.5)


def touching_shoulder(c: Ctx) -> None:
    """Hand crosses to the opposite shoulder, small scratch."""
    c.reach("torso", (-c.sx * 0.15, -0.02, 0.1), wiggle=_scratch(c, (0, 1, 0), 0.0, 0.012))


def arms_akimbo(c: Ctx) -> None:
    """Both hands on the hips, elbows out, held."""
    for s in (0, 1):
        w = c.reach("pelvis", (SIDE_SIGN[s] * (c.body.hip_half + 0.07), 0.12, 0.02), side=s, ramp=0.6)
        c.tr.elbow_out[:, s] += w * 1.1


def crossing_arms(c: Ctx) -> None:
    """Both forearms fold across the chest, each hand to the other arm, held."""
    for s in (0, 1):
        c.reach("torso", (-SIDE_SIGN[s] * 0.13, -0.22 + 0.03 * s, 0.15), side=s, ramp=0.6)


# ---------------------------------------------------------------- head + hand (38-47)
def _face(c: Ctx, off, lo: float, hi: float, axis=(1, 0, 0), sides=None, ramp=0.4) -> None:
    for s in sides or (c.side,):
        x = off[0] * SIDE_SIGN[s]
        c.reach("head", (x, off[1], off[2]), side=s, wiggle=_scratch(c, axis, lo, hi), ramp=ramp)


def tidying_hair(c: Ctx) -> None:
    """Hand to the top / side of the head, fingers running backwards through the hair."""
    _face(c, (0.09, 0.1, 0.02), 0.015, 0.04, (0, 0, 1))


def touching_hindbrain(c: Ctx) -> None:
    """Hand to the back of the head, small scratch."""
    _face(c, (0.07, 0.0, -0.13), 0.0, 0.015, (0, 1, 0))


def touching_forehead(c: Ctx) -> None:
    """Hand to the forehead, small sideways rub."""
    _face(c, (0.02, 0.05, 0.15), 0.0, 0.015)


def touching_face(c: Ctx) -> None:
    """Hand to the cheek, small scratch."""
    _face(c, (0.07, -0.1, 0.12), 0.0, 0.012, (0, 1, 0))


def rubbing_eyes(c: Ctx) -> None:
    """Hand to one eye, small circular rubbing."""
    _face(c, (0.03, -0.04, 0.15), 0.005, 0.012, (1, 1, 0))


def touching_nose(c: Ctx) -> None:
    """Hand to the nose, brief touch."""
    _face(c, (0.01, -0.1, 0.15), 0.0, 0.006, ramp=0.3)


def touching_ears(c: Ctx) -> None:
    """Hand to the ear, small rub."""
    _face(c, (0.1, -0.07, 0.02), 0.0, 0.01, (0, 1, 0))


def covering_face(c: Ctx) -> None:
    """Both hands over the face, held."""
    _face(c, (0.04, -0.09, 0.15), 0.0, 0.004, sides=(0, 1), ramp=0.5)


def covering_mouth(c: Ctx) -> None:
    """One hand over the mouth, held."""
    _face(c, (0.0, -0.14, 0.14), 0.0, 0.004, ramp=0.4)


def pushing_glasses(c: Ctx) -> None:
    """Index finger to the bridge of the nose, one quick upward push."""
    w = c.reach("head", (0.0, -0.05, 0.16), ramp=0.25)
    push = np.clip(np.sin(np.pi * (c.t - c.a) / max(c.dur, 1e-3)), 0, 1) ** 4 * 0.015
    c.tr.reaches[-1].offset[:, 1] += push
    c.tr.curl[:, c.side, 1:] += w[:, None] * (0.8 - c.tr.curl[:, c.side, 1:])
    c.tr.curl[:, c.side, 0] *= 1 - w


# ---------------------------------------------------------------- leg + hand (48-51)
def _thigh(c: Ctx, wiggle=None, frac=None, up=0.07) -> None:
    s = ("left", "right")[c.side]
    c.reach(f"thigh:{s}", (0.0, up, 0.0), wiggle=wiggle, frac=frac if frac is not None else c.u(0.45, 0.9))


def patting_legs(c: Ctx) -> None:
    """Hand pats the thigh: vertical beats, 2-3 Hz, 3-6 cm."""
    _thigh(c, wiggle=_vec(0, np.abs(c.osc(c.u(1.0, 1.5))) * c.amp(0.03, 0.06), 0))


def touching_legs(c: Ctx) -> None:
    """Hand to the thigh or knee, resting, sliding a little."""
    _thigh(c, wiggle=_vec(0, 0, c.bump(0.5) * c.amp(0.0, 0.04)))


def scratching_legs(c: Ctx) -> None:
    """Hand to the thigh, fast short scratch along it."""
    _thigh(c, wiggle=_scratch(c, (0, 0, 1), 0.008, 0.02))


def scratching_feet(c: Ctx) -> None:
    """Trunk leans forward, hand down to the ankle, short scratch."""
    w = c.bump(0.5)
    c.tr.torso[:, 0] += w * c.amp(0.35, 0.55)
    c.tr.head[:, 0] += w * 0.2
    s = ("left", "right")[c.side]
    c.reach(f"shin:{s}", (0.0, 0.02, 0.06), wiggle=_scratch(c, (0, 1, 0), 0.008, 0.02), frac=0.8, ramp=0.5)


MOTIONS: dict[str, Callable[[Ctx], None]] = {
    "shaking body": shaking_body,
    "sitting straightly": sitting_straightly,
    "shrugging": shrugging,
    "turning around": turning_around,
    "rising up": rising_up,
    "bowing head": bowing_head,
    "head up": head_up,
    "tilting head": tilting_head,
    "turning head": turning_head,
    "nodding": nodding,
    "shaking head": shaking_head,
    "scratching arms": scratching_arms,
    "playing objects": playing_objects,
    "putting hands together": putting_hands_together,
    "rubbing hands": rubbing_hands,
    "pointing oneself": pointing_oneself,
    "clenching fist": clenching_fist,
    "stretching arms": stretching_arms,
    "retracting arms": retracting_arms,
    "waving": waving,
    "spreading hands": spreading_hands,
    "hands touching fingers": hands_touching_fingers,
    "other finger movements": other_finger_movements,
    "illustrative gestures": illustrative_gestures,
    "shaking legs": shaking_legs,
    "curling legs": curling_legs,
    "spread legs": spread_legs,
    "closing legs": closing_legs,
    "crossing legs": crossing_legs,
    "stretching feet": stretching_feet,
    "retracting feet": retracting_feet,
    "tiptoe": tiptoe,
    "scratching or touching neck": touching_neck,
    "scratching or touching chest": touching_chest,
    "scratching or touching back": touching_back,
    "scratching or touching shoulder": touching_shoulder,
    "arms akimbo": arms_akimbo,
    "crossing arms": crossing_arms,
    "playing or tidying hair": tidying_hair,
    "scratching or touching hindbrain": touching_hindbrain,
    "scratching or touching forehead": touching_forehead,
    "scratching or touching face": touching_face,
    "rubbing eyes": rubbing_eyes,
    "touching nose": touching_nose,
    "touching ears": touching_ears,
    "covering face": covering_face,
    "covering mouth": covering_mouth,
    "pushing glasses": pushing_glasses,
    "patting legs": patting_legs,
    "touching legs": touching_legs,
    "scratching legs": scratching_legs,
    "scratching feet": scratching_feet,
}

DESCRIPTIONS: dict[str, str] = {k: (f.__doc__ or "").strip() for k, f in MOTIONS.items()}


def apply_motion(name: str, c: Ctx) -> None:
    """Apply class ``name``'s primitive to ``c.tr`` (KeyError naming the class if unknown)."""
    try:
        fn = MOTIONS[name]
    except KeyError:
        raise KeyError(f"no synthetic motion for class {name!r}") from None
    fn(c)
