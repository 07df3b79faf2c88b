"""Scenes with several seated people: tracking and per-person attribution, measured.

``generate_scene`` renders 2-4 mannequins side by side in one frame, each a clip of the
single-person generator (its own body, style, camera framing, micro-action and ground truth),
composited left to right onto a shared wall by their masks. With ``crossing`` (two people) the
two slide past each other (chairs on rails): the one in front hides the other completely for a
moment, the case that tests identity through crossing and occlusion.

Ground truth per person (``people`` in the returned dict, in ground-truth identity order):
``keypoints`` (observed: jitter and drops as for one person, and confidence 0 where the person
in front covers the landmark), ``keypoints_clean``, ``label``, ``class_name``, ``action_window``
(frames ``[start, end)``) and ``box`` per frame (``[T, 4]`` xyxy of the visible clean landmarks,
NaN when fewer than ``MIN_VISIBLE`` of them are seen: a person mostly hidden behind another is
not there for the scores).

``write_scene`` writes what a user's multi-person data would look like: ``videos/<stem>.mp4``,
``keypoints/<stem>/`` OpenPose JSON per frame with every person of the frame in shuffled order
and no ``person_id`` (what a detector outputs: identity must come from tracking), and
``people/<stem>.npz`` with the ground truth (``keypoints [M, T, 33, 3]``, ``labels [M]``,
``action_windows [M, 2]``, ``boxes [M, T, 4]``, ``fps``, ``size``).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.store import atomic_write_bytes
from microaction.data.synth.generate import PRESETS, ClipSpec, Preset, generate_clip
from microaction.data.synth.writer import write_csv, write_mp4, write_npz
from microaction.layouts import detect_layout
from microaction.skeleton import LANDMARKS
from microaction.taxonomy import Taxonomy, load_taxonomy

__all__ = ["generate_scene", "generate_scenes", "read_scene_truth", "scene_preset", "write_scene"]


def scene_preset(height: int = 160, fps: float = 15.0) -> Preset:
    """The per-person preset of a scene: one height and frame rate for everyone, narrow panels."""
    base = PRESETS["demo"]
    nz = replace(base.nuisance, fps=(float(fps),), pad=(0.6, 1.2), p_occlude_legs=0.0)
    return replace(base, name="scene", heights=(height, height), aspect=(0.62, 0.62), dur=(1.0, 2.0), nuisance=nz)


def _wall(H: int, W: int, rng: np.random.Generator) -> np.ndarray:
    col = rng.integers(120, 230, 3).astype(np.float32)
    grad = np.linspace(1.1, 0.85, H)[:, None, None] * np.linspace(0.95, 1.05, W)[None, :, None]
    return np.clip(col * grad + rng.normal(0, 4, (H, W, 3)), 0, 255).astype(np.uint8)


MIN_VISIBLE = 0.4  # share of a person's landmarks that must be seen for the person to count as there


def _visible_box(kp: np.ndarray) -> np.ndarray:
    ok = kp[:, 2] > 0
    if ok.sum() < MIN_VISIBLE * len(kp):
        return np.full(4, np.nan, np.float32)
    xy = kp[ok, :2]
    return np.array([*xy.min(0), *xy.max(0)], np.float32)


def generate_scene(
    index: int,
    *,
    people: int = 3,
    seed: int = 0,
    crossing: bool = False,
    height: int = 160,
    fps: float = 15.0,
    taxonomy: Taxonomy | None = None,
) -> dict[str, Any]:
    """One rendered scene (see the module docstring); ``index`` and ``seed`` decide everything."""
    if not 2 <= people <= 4:
        raise ValueError(f"a scene has 2 to 4 people, not {people}")
    if crossing and people != 2:
        raise ValueError("crossing scenes have 2 people")
    tax = taxonomy or load_taxonomy("ma52")
    preset = scene_preset(height, fps)
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, 99)))
    labels = rng.choice(tax.num_classes, size=people, replace=False)
    clips = [
        generate_clip(
            ClipSpec(f"p{k}", int(labels[k]), "test", 1_000_000 + index * 8 + k), preset, tax, seed, render=True
        )
        for k in range(people)
    ]
    T = min(len(c["frames"]) for c in clips)
    H, Wp = clips[0]["frames"].shape[1:3]
    W = Wp * people
    W += W % 2
    t = np.arange(T)
    offsets = np.zeros((people, T), np.int64)
    for k in range(people):
        offsets[k] = k * Wp
    if crossing:  # slide past each other over the middle of the clip
        a, b = int(0.2 * T), max(int(0.8 * T), int(0.2 * T) + 2)
        s = np.clip((t - a) / (b - a), 0, 1)
        offsets[0] = np.round(s * Wp).astype(np.int64)
        offsets[1] = np.round((1 - s) * Wp).astype(np.int64)
    order = list(range(people))[::-1]  # person 0 drawn last: in front
    frames = np.repeat(_wall(H, W, rng)[None], T, 0)
    owner = np.full((T, H, W), -1, np.int16)  # who is seen at each pixel
    for k in order:
        fr, m = clips[k]["frames"][:T], clips[k]["masks"][:T] > 0
        for f in range(T):
            x = int(offsets[k, f])
            view = frames[f, :, x : x + Wp]
            view[m[f]] = fr[f][m[f]]
            owner[f, :, x : x + Wp][m[f]] = k
    out_people = []
    for k in range(people):
        c = clips[k]
        shift = offsets[k][:, None].astype(np.float32)
        obs = c["keypoints"][:T].astype(np.float32).copy()
        clean = c["keypoints_clean"][:T].astype(np.float32).copy()
        seen = obs[..., 2] > 0
        obs[..., 0] = np.where(seen, obs[..., 0] + shift, 0.0)
        clean[..., 0] += shift
        # landmarks covered by someone in front are not seen
        xi = np.clip(np.round(clean[..., 0]).astype(int), 0, W - 1)
        yi = np.clip(np.round(clean[..., 1]).astype(int), 0, H - 1)
        covered = owner[t[:, None], yi, xi]
        hidden = (covered >= 0) & (covered < k)
        obs[hidden] = 0.0
        clean[..., 2] = np.where(hidden, 0.0, clean[..., 2])
        a0, a1 = c["meta"]["action_window"]
        out_people.append(
            {
                "keypoints": obs,
                "keypoints_clean": clean,
                "label": int(c["meta"]["label"]),
                "class_name": c["meta"]["class_name"],
                "action_window": [int(a0), int(min(a1, T))],
                "box": np.stack([_visible_box(clean[f]) for f in range(T)]),
            }
        )
    return {"frames": frames, "fps": float(clips[0]["fps"]), "size": (H, W), "people": out_people, "crossing": crossing}


def _openpose_json(kps: list[np.ndarray]) -> str:
    table = {LANDMARKS[m]: j for m, j in detect_layout(25).mediapipe}  # BODY_25
    people = []
    for kp in kps:
        body = np.zeros((25, 3), np.float32)
        for name, j in table.items():
            body[j] = kp[LANDMARKS.index(name)]
        people.append({"person_id": [-1], "pose_keypoints_2d": [round(float(v), 2) for v in body.reshape(-1)]})
    return json.dumps({"version": 1.3, "people": people})


def write_scene(root: str | Path, stem: str, scene: dict[str, Any], *, shuffle_seed: int = 0) -> None:
    """Write a scene's video, per-frame OpenPose JSON (shuffled people) and ground truth."""
    root = Path(root)
    write_mp4(root / "videos" / f"{stem}.mp4", scene["frames"], scene["fps"])
    ppl = scene["people"]
    T = len(scene["frames"])
    rng = np.random.default_rng(shuffle_seed)
    d = root / "keypoints" / stem
    d.mkdir(parents=True, exist_ok=True)
    for f in range(T):
        present = [p["keypoints"][f] for p in ppl if (p["keypoints"][f, :, 2] > 0).sum() >= 4]
        rng.shuffle(present)  # type: ignore[arg-type]
        atomic_write_bytes(d / f"{stem}_{f:06d}_keypoints.json", _openpose_json(present).encode())
    truth = {
        "keypoints": np.stack([p["keypoints"] for p in ppl]),
        "keypoints_clean": np.stack([p["keypoints_clean"] for p in ppl]),
        "boxes": np.stack([p["box"] for p in ppl]),
        "labels": np.asarray([p["label"] for p in ppl], np.int64),
        "action_windows": np.asarray([p["action_window"] for p in ppl], np.int64),
        "fps": np.float64(scene["fps"]),
        "size": np.asarray(scene["size"], np.int64),
        "crossing": np.bool_(scene["crossing"]),
    }
    write_npz(root / "people" / f"{stem}.npz", truth)


def read_scene_truth(root: str | Path, stem: str) -> dict[str, np.ndarray]:
    """The ground truth ``write_scene`` wrote for ``stem``."""
    with np.load(Path(root) / "people" / f"{stem}.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def generate_scenes(out: str | Path, count: int, *, seed: int = 0, height: int = 160) -> list[str]:
    """``count`` scenes into ``out`` (one in three: two people crossing; else 3 or 4 people side by
    side), with ``manifest.csv``: one row per person, ``video,label,split,person,x1,y1,x2,y2``,
    the box of the person at frame 0 (``mar extract --videos out/manifest.csv`` extracts each
    annotated person, keys ``<scene>#p<k>``; ``mar extract --videos out/videos --people all``
    finds and tracks them)."""
    root = Path(out)
    rows: list[list[Any]] = []
    stems = []
    for i in range(count):
        crossing = i % 3 == 0
        people = 2 if crossing else 3 + (i % 2)
        scene = generate_scene(i, people=people, crossing=crossing, seed=seed, height=height)
        stem = f"scene{i:04d}_{people}p{'_cross' if crossing else ''}"
        write_scene(root, stem, scene, shuffle_seed=seed * 100_003 + i)
        stems.append(stem)
        for k, p in enumerate(scene["people"]):
            kp = p["keypoints_clean"][0]
            ok = kp[:, 2] > 0
            x0, y0 = kp[ok, :2].min(0) - 4
            x1, y1 = kp[ok, :2].max(0) + 4
            rows.append([f"videos/{stem}.mp4", p["label"], "test", f"p{k}", *(f"{v:.1f}" for v in (x0, y0, x1, y1))])
    write_csv(root / "manifest.csv", ["video", "label", "split", "person", "x1", "y1", "x2", "y2"], rows)
    return stems
