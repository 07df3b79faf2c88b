"""Long synthetic recordings: one seated person for minutes, micro-actions at random times.

The detection counterpart of the clip generator (``generate``), built from the same parts: the
body and resting posture (``skeleton3d``), one motion primitive per class (``motions``), idle
motion, observation noise and the camera (``nuisances``, ``camera``). One recording:

- actions arrive as a Poisson process (``rate`` per minute); each draws a class (probability ∝
  √ of MA-52's train count: the long tail, softened so every class occurs), a duration and a side;
- two actions may overlap in time only when their body groups' regions are disjoint (a nod while
  the legs shake, not a nod while touching the nose), at most ``max_overlap`` at once; an action
  that would collide is re-drawn among the classes that fit, else dropped;
- ``idle`` stretches (seconds of the recording with no action at all) and ``distractors``: weak
  (gain × 0.25-0.5), short motions of random classes that are *not* in the ground truth;
- posture drift: slow random walks of the pelvis, trunk and head over the minutes;
- each primitive runs on its own stretch of the tracks and hands back what it changed, faded out
  over ``release`` seconds after the action ends, so a "held" primitive (bowing head) returns to
  rest after its segment instead of staying changed for the rest of the recording.

Files (``generate_recordings(out, "recordings")`` or ``mar synth --preset recordings``)::

    DIR/manifest.csv            video,split   (video = videos/<stem>.mp4; not written unless rendered)
    DIR/keypoints/<stem>.npz    keypoints / keypoints_clean f32 [T,33,3], fps, size [H, W], meta (JSON:
                                the actions and the distractors with classes and times)
    DIR/annotations.json        the ground truth in the MMA-52 detection format:
                                {stem: {"subset": split, "duration": s, "actions": [[class, start, end], ...]}}
    DIR/dataset.json            preset, seed, counts

Every recording draws from its own random stream ``(seed, index)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.store import atomic_write_bytes
from microaction.data.synth.generate import film, run_jobs
from microaction.data.synth.motions import Ctx, apply_motion
from microaction.data.synth.nuisances import Nuisance, add_idle, observe, smooth_noise
from microaction.data.synth.skeleton3d import Tracks, pose, sample_body, sample_rest
from microaction.data.synth.writer import write_csv, write_npz
from microaction.taxonomy import Taxonomy, load_taxonomy

__all__ = [
    "RECORDING_PRESETS",
    "Event",
    "RecordingPreset",
    "generate_recording",
    "generate_recordings",
    "render_recording",
    "schedule_events",
]

SPLITS = ("train", "val", "test")
_TRACK_FIELDS = (
    "root", "torso", "shrug", "protract", "head", "wrist", "elbow_out", "curl", "hand_roll", "ankle", "foot_pitch",
    "knee_out",
)  # fmt: skip


@dataclass(frozen=True)
class RecordingPreset:
    """Size and difficulty of a set of long recordings."""

    name: str
    recordings: dict[str, int]  # recordings per split
    minutes: tuple[float, float] = (1.0, 5.0)  # length range
    rate: float = 20.0  # actions per minute (Poisson), before collisions are dropped
    dur: tuple[float, float] = (1.0, 3.0)  # action duration (s)
    max_overlap: int = 2  # actions at once (on disjoint body parts)
    idle: tuple[float, float] = (0.05, 0.15)  # share of the recording kept free of actions
    distractor_rate: float = 3.0  # weak non-annotated motions per minute
    drift: float = 1.0  # scale of the slow posture drift
    release: float = 0.6  # seconds over which a primitive's change fades after its end
    fps: float = 24.0
    heights: tuple[int, int] = (192, 256)
    aspect: tuple[float, float] = (0.75, 0.95)
    gain: float = 2.0
    nuisance: Nuisance = field(default_factory=lambda: Nuisance(jitter=(0.001, 0.003), p_occlude_legs=0.1))


RECORDING_PRESETS: dict[str, RecordingPreset] = {
    # tests: a few half-minute recordings
    "recordings_tiny": RecordingPreset("recordings_tiny", {"train": 2, "val": 1, "test": 1}, minutes=(0.4, 0.6)),
    # the demo: an hour of recordings at 1-3 minutes each, seconds to generate, about a minute to train on
    "recordings": RecordingPreset("recordings", {"train": 24, "val": 6, "test": 6}, minutes=(1.0, 3.0)),
    # the range: 1-5 minutes
    "recordings_long": RecordingPreset("recordings_long", {"train": 60, "val": 15, "test": 15}, minutes=(1.0, 5.0)),
}


@dataclass(frozen=True)
class Event:
    label: int
    start: float  # seconds
    end: float
    side: int
    gain: float
    annotated: bool = True  # False: a distractor (not in the ground truth)


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, stream, 17)))


def _resources(taxonomy: Taxonomy) -> list[frozenset[str]]:
    return [frozenset(taxonomy.regions_of_body(int(taxonomy.body_of(c)))) for c in range(taxonomy.num_classes)]


def schedule_events(
    rng: np.random.Generator, preset: RecordingPreset, taxonomy: Taxonomy, duration: float
) -> list[Event]:
    """Annotated actions and distractors of one recording, sorted by start."""
    res = _resources(taxonomy)
    counts = np.asarray(taxonomy.train_counts or [1] * taxonomy.num_classes, dtype=np.float64)
    prior = np.sqrt(counts) / np.sqrt(counts).sum()
    # idle stretches: one or two intervals that stay free of actions
    idle_total = rng.uniform(*preset.idle) * duration
    n_idle = 1 + int(rng.random() < 0.5)
    quiet: list[tuple[float, float]] = []
    for _ in range(n_idle):
        length = idle_total / n_idle
        a = rng.uniform(0.0, max(duration - length, 1e-3))
        quiet.append((a, a + length))
    margin = 0.3  # seconds between two actions on the same body parts
    events: list[Event] = []
    n = rng.poisson(preset.rate * duration / 60.0)
    for onset in np.sort(rng.uniform(0.3, max(duration - preset.dur[0] - 0.3, 0.31), n)):
        dur = rng.uniform(*preset.dur)
        start, end = float(onset), float(min(onset + dur, duration - 0.2))
        if end - start < 0.5 or any(a < end and start < b for a, b in quiet):
            continue
        active = [e for e in events if e.end + margin > start]
        if len(active) >= preset.max_overlap:
            continue
        busy = frozenset().union(*(res[e.label] for e in active)) if active else frozenset()
        fits = np.array([not (res[c] & busy) for c in range(taxonomy.num_classes)])
        if not fits.any():
            continue
        p = prior * fits
        c = int(rng.choice(taxonomy.num_classes, p=p / p.sum()))
        events.append(Event(c, start, end, int(rng.random() < 0.7), preset.gain * float(rng.uniform(0.7, 1.3))))
    out = list(events)
    # distractors: weak, short, on body parts no action uses at that moment
    for onset in np.sort(rng.uniform(0.0, duration - 1.3, rng.poisson(preset.distractor_rate * duration / 60.0))):
        start, end = float(onset), float(onset + rng.uniform(0.5, 1.2))
        busy = frozenset().union(*(res[e.label] for e in out if e.start - margin < end and start < e.end + margin))
        free = [c for c in range(taxonomy.num_classes) if not (res[c] & busy)]
        if not free:
            continue
        c = int(rng.choice(free))
        g = preset.gain * float(rng.uniform(0.25, 0.5))
        out.append(Event(c, start, end, int(rng.integers(2)), g, annotated=False))
    return sorted(out, key=lambda e: (e.start, e.end))


def _apply_local(tr: Tracks, ctx_args: tuple[Any, ...], ev: Event, name: str, fps: float, release: float) -> None:
    """Run ``name``'s primitive on the frames around ``ev`` only, fading its change out after the end."""
    body, rng, t = ctx_args
    T = tr.length
    i0 = max(0, int(np.floor((ev.start - 0.1) * fps)))
    i1 = min(T, int(np.ceil((ev.end + release) * fps)) + 1)
    before = {f: getattr(tr, f)[i0:i1].copy() for f in _TRACK_FIELDS}
    sub = Tracks(**{f: v.copy() for f, v in before.items()})
    tl = t[i0:i1]
    apply_motion(name, Ctx(sub, body, rng, tl, ev.start, ev.end, ev.gain, ev.side))
    x = np.clip((tl - ev.end) / max(release, 1e-6), 0.0, 1.0)
    env = 0.5 + 0.5 * np.cos(np.pi * x)  # 1 until the end, then down to 0 over `release`
    for f in _TRACK_FIELDS:
        delta = getattr(sub, f) - before[f]
        getattr(tr, f)[i0:i1] += delta * env.reshape((-1,) + (1,) * (delta.ndim - 1))
    for r in sub.reaches:
        w = np.zeros(T)
        w[i0:i1] = np.asarray(r.weight) * env
        off = np.zeros((T, 3))
        off[i0:i1] = np.broadcast_to(np.asarray(r.offset, dtype=np.float64), (i1 - i0, 3))
        r.weight, r.offset = w, off
        tr.reaches.append(r)


def _drift(rng: np.random.Generator, tr: Tracks, fps: float, scale: float) -> None:
    """Slow posture drift over minutes (leaning, shifting on the chair, turning a little)."""
    T = tr.length
    if scale <= 0 or T < 4:
        return
    tr.root[:, 0] += smooth_noise(rng, T, fps, (), 0.02) * 0.02 * scale
    tr.root[:, 2] += smooth_noise(rng, T, fps, (), 0.02) * 0.015 * scale
    tr.torso += smooth_noise(rng, T, fps, (3,), 0.02) * (np.array([0.05, 0.06, 0.03]) * scale)
    tr.head += smooth_noise(rng, T, fps, (3,), 0.03) * (np.array([0.04, 0.06, 0.03]) * scale)


def generate_recording(
    index: int, split: str, preset: RecordingPreset, taxonomy: Taxonomy, seed: int, *, render: bool = False
) -> dict[str, Any]:
    """One recording: keypoints (observed and clean), fps, size, events (annotated and distractors);
    with ``render`` also ``frames`` ``[T, H, W, 3]`` (the mannequin, as the clip generator draws
    it; held in memory whole, so meant for short recordings)."""
    rng = _rng(seed, index, 0)
    fps = preset.fps
    duration = float(rng.uniform(*preset.minutes) * 60.0)
    T = round(duration * fps)
    t = np.arange(T) / fps
    body = sample_body(rng)
    tr = sample_rest(rng, body, T)
    events = schedule_events(rng, preset, taxonomy, duration)
    for ev in events:
        _apply_local(tr, (body, rng, t), ev, taxonomy.names[ev.label], fps, preset.release)
    _drift(rng, tr, fps, preset.drift)
    add_idle(rng, tr, fps, preset.nuisance.idle)
    ps = pose(body, tr)
    cam, xy, clean, (H, W) = film(rng, body, ps, preset.heights, preset.aspect)
    occlude = bool(rng.random() < preset.nuisance.p_occlude_legs)
    observed = observe(rng, xy, (H, W), preset.nuisance, occlude_legs=occlude)
    actions = [[e.label, round(e.start, 3), round(e.end, 3)] for e in events if e.annotated]
    meta = {
        "split": split,
        "duration": round(duration, 3),
        "actions": actions,
        "distractors": [[e.label, round(e.start, 3), round(e.end, 3)] for e in events if not e.annotated],
        "occluded_legs": occlude,
        "camera": cam.describe(),
        "seed": seed,
        "index": index,
    }
    out = {"keypoints": observed, "keypoints_clean": clean, "fps": fps, "size": (H, W), "meta": meta}
    if render:
        from microaction.data.synth.render import render_clip, sample_style

        style = sample_style(_rng(seed, index, 1))
        out["frames"], _ = render_clip(body, ps, cam, style, _rng(seed, index, 2), occlude_legs=occlude)
    return out


def _write_sidecar(root: Path, stem: str, rec: dict[str, Any]) -> None:
    sidecar = {
        "keypoints": rec["keypoints"].astype(np.float32),
        "keypoints_clean": rec["keypoints_clean"].astype(np.float32),
        "fps": np.float64(rec["fps"]),
        "size": np.asarray(rec["size"], np.int64),
        "meta": np.asarray(json.dumps(rec["meta"])),
    }
    write_npz(root / "keypoints" / f"{stem}.npz", sidecar)


def _work(job: tuple[int, str, str, RecordingPreset, dict[str, Any], int, str]) -> tuple[str, dict[str, Any]]:
    index, stem, split, preset, tax, seed, root = job
    rec = generate_recording(index, split, preset, Taxonomy.from_dict(tax), seed)
    _write_sidecar(Path(root), stem, rec)
    m = rec["meta"]
    return stem, {"subset": split, "duration": m["duration"], "actions": m["actions"]}


def _stems(p: RecordingPreset) -> list[tuple[int, str, str]]:
    """``(index, stem, split)`` of every recording of a preset, in generation order."""
    out: list[tuple[int, str, str]] = []
    for split in SPLITS:
        for k in range(p.recordings.get(split, 0)):
            out.append((len(out), f"rec_{split}_{k:03d}", split))
    return out


def render_recording(
    out: str | os.PathLike[str],
    stem: str,
    preset: str | RecordingPreset = "recordings",
    *,
    seed: int = 0,
    taxonomy: str = "ma52",
) -> Path:
    """The video of one generated recording, ``out/videos/<stem>.mp4`` (H.264), frame for frame
    with its keypoint sidecar (same seed and preset as ``generate_recordings``)."""
    from microaction.data.synth.writer import write_mp4

    p = RECORDING_PRESETS[preset] if isinstance(preset, str) else preset
    found = [(i, split) for i, s, split in _stems(p) if s == stem]
    if not found:
        raise ValueError(f"preset {p.name!r} has no recording {stem!r}")
    index, split = found[0]
    rec = generate_recording(index, split, p, load_taxonomy(taxonomy), seed, render=True)
    path = Path(out) / "videos" / f"{stem}.mp4"
    write_mp4(path, rec["frames"], rec["fps"])
    return path


def generate_recordings(
    out: str | os.PathLike[str],
    preset: str | RecordingPreset = "recordings",
    *,
    seed: int = 0,
    workers: int | None = None,
    taxonomy: str = "ma52",
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a set of recordings into ``out``; returns the ``dataset.json`` record."""
    p = RECORDING_PRESETS[preset] if isinstance(preset, str) else preset
    tax = load_taxonomy(taxonomy)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(i, stem, split, p, tax.to_dict(), seed, str(root)) for i, stem, split in _stems(p)]
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    gt = dict(run_jobs(_work, jobs, workers, chunksize=1, desc=f"synth {p.name}", unit="recording", progress=progress))
    from microaction.data.readers.segments import Segment, write_mma52_json

    segments = [Segment(v, a, b, c, g["subset"]) for v, g in gt.items() for c, a, b in g["actions"]]
    write_mma52_json(
        root / "annotations.json",
        segments,
        tax,
        durations={v: g["duration"] for v, g in gt.items()},
        splits={v: g["subset"] for v, g in gt.items()},
    )
    write_csv(
        root / "manifest.csv", ["video", "split"], ([f"videos/{stem}.mp4", g["subset"]] for stem, g in gt.items())
    )
    record = {
        "generator": "microaction.data.synth.recording",
        "preset": p.name,
        "seed": seed,
        "taxonomy": tax.name,
        "recordings": {s: sum(1 for g in gt.values() if g["subset"] == s) for s in SPLITS},
        "actions": {s: sum(len(g["actions"]) for g in gt.values() if g["subset"] == s) for s in SPLITS},
        "hours": round(sum(g["duration"] for g in gt.values()) / 3600.0, 3),
        "params": asdict(p),
    }
    atomic_write_bytes(root / "dataset.json", (json.dumps(record, indent=1) + "\n").encode())
    return record
