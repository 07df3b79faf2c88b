"""The diagnostic preset's motion programs: classes that only the time course tells apart.

Each class of ``load_taxonomy("synth_diagnostic")`` belongs to a **group** (``GROUPS``): the classes
of a group move one body part with the same elementary moves, drawn from the same distributions
(amplitudes, ramps, holds, beat periods, rest), and differ in one factor only:

- ``order``: two moves A and B (each out and back to rest), A then B against B then A;
- ``rhythm``: four identical beats (one cycle out and back each) in bursts of 4, 2 + 2 or 1 + 1 + 1 + 1,
  with the same total rest;
- ``duration``: two pulses of one move with the same ramps, their holds split (H, 0) or (H/2, H/2).

A clip of any class of a group is then, frame for frame, a rearrangement in time of the same
frames (the moves, the ramps, the holds and the rest), up to where the frame grid falls: the
time-averaged statistics of every track (mean, std, mean |Δ|, any per-frame feature's mean) have
the same distribution for every class of the group. A model that pools time away before it
classifies is at chance inside a group (1 / the group's size); the order, rhythm and durations are
in the time course only.

A program draws every random parameter in the same sequence whatever the class (so the classes'
parameter distributions are equal by construction), edits the clip's tracks inside the action
window ``[c.a, c.b]`` and returns its description (``program`` in the clip's metadata): the factor
and the segments ``{"move", "start", "end", "hold"}`` (+ ``"period"``, the beat, for rhythm) in
seconds from the clip's start, from which the benchmark's oracle classifies
(``benchmarks/bench_diagnostic.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from microaction.data.synth.motions import Ctx
from microaction.data.synth.skeleton3d import SIDE_SIGN

__all__ = ["GROUPS", "MOVES", "Group", "group_of", "run_program"]


@dataclass(frozen=True)
class Group:
    """Classes that share a body part and their moves' statistics and differ in one ``factor``."""

    factor: str  # order | rhythm | duration
    moves: tuple[str, ...]  # order: (A, B); rhythm / duration: (the move,)
    classes: tuple[str, ...]  # class names (the taxonomy's), one per variant
    variants: tuple[Any, ...]  # order: index of the first move; rhythm: burst sizes; duration: long?


GROUPS: dict[str, Group] = {
    "body_duration": Group("duration", ("lean",), ("leaning forward once long", "leaning forward twice short"),
                           (True, False)),
    "head_order": Group("order", ("bow", "turn"), ("bowing then turning head", "turning then bowing head"), (0, 1)),
    "head_rhythm": Group("rhythm", ("nod",), ("nodding four in a row", "nodding two and two", "nodding one by one"),
                         ((4,), (2, 2), (1, 1, 1, 1))),
    "hand_order": Group("order", ("lift", "open"), ("raising then opening hand", "opening then raising hand"), (0, 1)),
    "hand_duration": Group("duration", ("lift",), ("raising hand once long", "raising hand twice short"),
                           (True, False)),
    "leg_rhythm": Group("rhythm", ("tap",), ("tapping heel four in a row", "tapping heel two and two"),
                        ((4,), (2, 2))),
}  # fmt: skip


def group_of(name: str) -> tuple[str, int]:
    """(group, variant index) of a class name (KeyError naming it if it is not a diagnostic class)."""
    for g, grp in GROUPS.items():
        if name in grp.classes:
            return g, grp.classes.index(name)
    raise KeyError(f"{name!r} is not a class of the diagnostic preset")


# ---------------------------------------------------------------- time profiles, [T] in [0, 1]
def _pulse(t: np.ndarray, start: float, ramp: float, hold: float) -> np.ndarray:
    """Raised-cosine ramp up over ``ramp`` s from ``start``, held ``hold`` s, ramp down."""
    up = np.clip((t - start) / ramp, 0, 1)
    down = np.clip((start + 2 * ramp + hold - t) / ramp, 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))


def _cycle(t: np.ndarray, start: float, period: float) -> np.ndarray:
    """One beat: ``(1 - cos)/2`` over one ``period`` from ``start`` (out and back), 0 elsewhere."""
    x = np.clip((t - start) / period, 0, 1)
    return 0.5 - 0.5 * np.cos(2 * np.pi * x)


# ---------------------------------------------------------------- moves: (ctx, profile [T], amplitude)
def _lean(c: Ctx, w: np.ndarray, amp: float) -> None:
    c.tr.torso[:, 0] += w * amp  # spine pitches forward


def _head_pitch(c: Ctx, w: np.ndarray, amp: float) -> None:
    c.tr.head[:, 0] += w * amp


def _turn(c: Ctx, w: np.ndarray, amp: float) -> None:
    c.tr.head[:, 1] += w * c.sx * amp


def _lift(c: Ctx, w: np.ndarray, amp: float) -> None:
    c.tr.wrist[:, c.side] += w[:, None] * np.array([0.0, amp, 0.6 * amp])  # up and forward


def _open(c: Ctx, w: np.ndarray, amp: float) -> None:
    c.tr.wrist[:, c.side, 0] += w * SIDE_SIGN[c.side] * amp  # outwards
    c.tr.hand_roll[:, c.side] += w * 1.0  # palm turning up


def _tap(c: Ctx, w: np.ndarray, amp: float) -> None:
    c.tr.ankle[:, c.side, 1] += w * amp  # the heel rises, the toes stay down
    c.tr.foot_pitch[:, c.side] += w * amp * 8


# name -> (apply, amplitude range before the clip's gain)
MOVES: dict[str, tuple[Callable[[Ctx, np.ndarray, float], None], tuple[float, float]]] = {
    "lean": (_lean, (0.18, 0.3)),
    "bow": (_head_pitch, (0.22, 0.38)),
    "turn": (_turn, (0.3, 0.5)),
    "nod": (_head_pitch, (0.14, 0.24)),
    "lift": (_lift, (0.10, 0.16)),
    "open": (_open, (0.10, 0.16)),
    "tap": (_tap, (0.03, 0.05)),
}


def _move(c: Ctx, name: str, w: np.ndarray, amp: float) -> None:
    MOVES[name][0](c, w, amp)


def _amp(c: Ctx, name: str) -> float:
    return c.amp(*MOVES[name][1])


def _seg(move: str, start: float, end: float, hold: float) -> dict[str, Any]:
    return {"move": move, "start": round(start, 4), "end": round(end, 4), "hold": round(hold, 4)}


# ---------------------------------------------------------------- the three factors
def _order(c: Ctx, grp: Group, first: int) -> list[dict[str, Any]]:
    """Move A and move B (each out, held, back), in the order the variant says."""
    gap = c.u(0.3, 0.6)
    rest = c.dur - gap
    d = c.u(0.4, 0.6) * rest
    durs = (d, rest - d)  # each move keeps its own duration whichever comes first
    ramps = (c.u(0.25, 0.35), c.u(0.25, 0.35))
    amps = (_amp(c, grp.moves[0]), _amp(c, grp.moves[1]))
    segs = []
    start = c.a
    for k in (first, 1 - first):
        hold = max(durs[k] - 2 * ramps[k], 0.0)
        _move(c, grp.moves[k], _pulse(c.t, start, ramps[k], hold), amps[k])
        segs.append(_seg(grp.moves[k], start, start + 2 * ramps[k] + hold, hold))
        start += durs[k] + gap
    return segs


def _rhythm(c: Ctx, grp: Group, bursts: tuple[int, ...]) -> list[dict[str, Any]]:
    """Four beats of one move in ``bursts``; the total rest is the same for every grouping."""
    period = c.u(0.4, 0.5)
    amp = _amp(c, grp.moves[0])
    rest = c.dur - 4 * period
    inner = c.u(0.6, 0.9) * rest  # rest between bursts (drawn for every class)
    lead = c.u(0.0, 1.0)  # where the remaining rest falls: before or after the beats
    gaps = len(bursts) - 1
    inner_gap = inner / gaps if gaps else 0.0
    start = c.a + lead * (rest - (inner if gaps else 0.0))
    segs = []
    for n in bursts:
        w = sum(_cycle(c.t, start + i * period, period) for i in range(n))
        _move(c, grp.moves[0], np.asarray(w), amp)
        segs.append({**_seg(grp.moves[0], start, start + n * period, 0.0), "period": round(period, 4)})
        start += n * period + inner_gap
    return segs


def _duration(c: Ctx, grp: Group, long: bool) -> list[dict[str, Any]]:
    """Two pulses of one move with equal ramps; holds (H, 0) in either order, or (H/2, H/2)."""
    ramp = c.u(0.25, 0.35)
    gap = c.u(0.4, 0.7)
    room = c.dur - 4 * ramp - gap
    H = c.u(0.8, 1.0) * room
    lead = c.u(0.0, 1.0) * (room - H)
    amp = _amp(c, grp.moves[0])
    long_first = bool(c.rng.random() < 0.5)
    holds = ((H, 0.0) if long_first else (0.0, H)) if long else (H / 2, H / 2)
    start = c.a + lead
    segs = []
    for hold in holds:
        _move(c, grp.moves[0], _pulse(c.t, start, ramp, hold), amp)
        segs.append(_seg(grp.moves[0], start, start + 2 * ramp + hold, hold))
        start += 2 * ramp + hold + gap
    return segs


FACTORS: dict[str, Callable[[Ctx, Group, Any], list[dict[str, Any]]]] = {
    "order": _order,
    "rhythm": _rhythm,
    "duration": _duration,
}


def run_program(name: str, c: Ctx) -> dict[str, Any]:
    """Apply class ``name``'s program to ``c.tr``; returns its description: the factor and the
    segments (not the class or the group: the oracle classifies from the timings)."""
    g, v = group_of(name)
    grp = GROUPS[g]
    return {"factor": grp.factor, "segments": FACTORS[grp.factor](c, grp, grp.variants[v])}
