"""Presets, split sizes and the per-clip recipe of the synthetic micro-action benchmark.

One clip: a random body and resting posture → the class's motion primitive in a 1-3 s window at
a random onset → maybe a weak distractor of another body group → breathing and sway → 3-D pose
→ a random camera → 2-D keypoints with jitter, confidences and drops (and, with ``render``, the
mannequin video and region masks). Every clip draws from its own random stream, derived from
``(seed, clip index)``, so a dataset is the same whatever the number of workers, and the keypoints
are the same with or without rendering.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from microaction.data.synth.camera import Camera, sample_camera
from microaction.data.synth.diagnostic import run_program
from microaction.data.synth.motions import Ctx, apply_motion
from microaction.data.synth.nuisances import Nuisance, add_idle, observe, sample_timing
from microaction.data.synth.render import render_clip, sample_style
from microaction.data.synth.skeleton3d import Body, Pose, pose, sample_body, sample_rest
from microaction.data.synth.writer import GENERATOR
from microaction.taxonomy import Taxonomy, load_taxonomy

__all__ = ["PRESETS", "ClipSpec", "Preset", "generate_clip", "generate_dataset", "plan", "run_jobs", "split_counts"]

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
_T = TypeVar("_T")
DIAGNOSTIC = "synth_diagnostic"  # the label set whose classes run diagnostic.run_program


@dataclass(frozen=True)
class Preset:
    """Size and difficulty of a generated dataset."""

    name: str
    clips: dict[str, int]  # clips per split (distributed over classes like MA-52's train counts)
    min_per_class: dict[str, int]
    heights: tuple[int, int] = (192, 256)  # image height range (pixels, even)
    aspect: tuple[float, float] = (0.75, 0.95)  # width / height
    gain: float = 1.0  # motion amplitude multiplier (lower: harder)
    dur: tuple[float, float] = (1.0, 3.0)  # action duration (s)
    nuisance: Nuisance = field(default_factory=Nuisance)
    exact_train: bool = False  # train split = MA-52's train counts exactly
    taxonomy: str = "ma52"  # the label set; "synth_diagnostic": the diagnostic programs (diagnostic.py)


PRESETS: dict[str, Preset] = {
    # a handful of short clips per split, every class in train: tests
    "tiny": Preset("tiny", {"train": 52, "val": 16, "test": 16}, {"train": 1, "val": 0, "test": 0},
                   heights=(128, 160), dur=(1.0, 1.5), nuisance=Nuisance(pad=(0.1, 0.4), fps=(15.0, 20.0))),
    # the `mar demo` benchmark: every class in every split, MA-52's long tail, minutes on a CPU.
    # 14x fewer training clips than MA-52, so motions are 2x larger and keypoint jitter half as
    # strong (calibrated in docs/synthetic.md: the m3e_global baseline lands mid-range, not at 100 %)
    "demo": Preset("demo", {"train": 780, "val": 260, "test": 260}, {"train": 3, "val": 2, "test": 2},
                   heights=(160, 208), gain=2.0,
                   nuisance=Nuisance(fps=(15.0, 20.0), pad=(0.2, 0.6), jitter=(0.001, 0.003))),
    # MA-52's sizes: train counts exactly, val / test 5,586 clips each in the same proportions
    "ma52": Preset("ma52", {"train": 11250, "val": 5586, "test": 5586}, {"train": 1, "val": 1, "test": 1},
                   heights=(224, 288), exact_train=True),
    # classes that only the time course tells apart (order, rhythm, duration; diagnostic.py), balanced,
    # the demo's image sizes, frame rates and noise; a large test split so that "at chance inside a
    # group" is measured to about +-2 points (docs/synthetic.md)
    "diagnostic": Preset("diagnostic", {"train": 780, "val": 260, "test": 2600}, {"train": 0, "val": 0, "test": 0},
                         heights=(160, 208), dur=(3.4, 4.4), taxonomy=DIAGNOSTIC,
                         nuisance=Nuisance(fps=(15.0, 20.0), pad=(0.2, 0.6), jitter=(0.001, 0.003))),
    "diagnostic_tiny": Preset("diagnostic_tiny", {"train": 52, "val": 26, "test": 26}, {"train": 0, "val": 0, "test": 0},
                              heights=(128, 160), dur=(3.4, 4.4), taxonomy=DIAGNOSTIC,
                              nuisance=Nuisance(fps=(15.0,), pad=(0.2, 0.4), jitter=(0.001, 0.003))),
}  # fmt: skip


def split_counts(weights: np.ndarray | tuple[int, ...], total: int, minimum: int = 0) -> np.ndarray:
    """Integer counts per class summing to ``max(total, C * minimum)``, proportional to ``weights``
    (largest remainder), each at least ``minimum``."""
    w = np.asarray(weights, dtype=np.float64)
    C = len(w)
    total = max(int(total), C * minimum)
    counts = np.full(C, minimum, dtype=np.int64)
    rest = total - counts.sum()
    if rest > 0:
        share = w / w.sum() * (total)
        extra = np.maximum(share - minimum, 0)
        extra = extra / extra.sum() * rest if extra.sum() > 0 else np.full(C, rest / C)
        base = np.floor(extra).astype(np.int64)
        left = int(rest - base.sum())
        order = np.argsort(-(extra - base), kind="stable")
        base[order[:left]] += 1
        counts += base
    return counts


@dataclass(frozen=True)
class ClipSpec:
    stem: str
    label: int
    split: str
    index: int  # position in the dataset: the clip's random stream


def plan(preset: Preset, taxonomy: Taxonomy) -> list[ClipSpec]:
    """Every clip of a preset: classes per split from MA-52's train counts, shuffled names."""
    counts = np.asarray(taxonomy.train_counts)
    specs: list[ClipSpec] = []
    for split in SPLITS:
        if preset.exact_train and split == "train":
            per = counts.astype(np.int64)
        else:
            per = split_counts(counts, preset.clips[split], preset.min_per_class.get(split, 0))
        labels = np.repeat(np.arange(len(per)), per)
        order = np.random.default_rng([len(specs), 7]).permutation(len(labels))  # names carry no label order
        for k, j in enumerate(order):
            specs.append(ClipSpec(f"{split}_{k:05d}", int(labels[j]), split, len(specs)))
    return specs


def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index, stream)))


def film(
    rng: np.random.Generator, body: Body, ps: Pose, heights: tuple[int, int], aspect: tuple[float, float]
) -> tuple[Camera, np.ndarray, np.ndarray, tuple[int, int]]:
    """A random image size and camera framing the whole pose sequence: (camera, pixel positions
    ``[T, 33, 2]``, clean keypoints ``[T, 33, 3]`` with confidence 1 inside the image, (H, W))."""
    H = int(rng.integers(heights[0] // 2, heights[1] // 2 + 1)) * 2
    W = round(H * rng.uniform(*aspect) / 2) * 2
    head_top = ps.head_center + ps.head_rot[:, :, 1] * body.head_h * 1.1
    cam = sample_camera(rng, np.concatenate([ps.landmarks.reshape(-1, 3), head_top]), (H, W))
    xy, _ = cam.project(ps.landmarks)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= W - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= H - 1)
    clean = np.concatenate([xy, inside[..., None].astype(np.float64)], -1)
    return cam, xy, clean, (H, W)


def _distractors(taxonomy: Taxonomy, body_group: int) -> list[str]:
    """Classes whose motion may play weakly beside one of ``body_group``: MA-52's of another body
    group; for the diagnostic label set, MA-52's motions on regions the group does not use."""
    if taxonomy.name != DIAGNOSTIC:
        return [taxonomy.names[c] for c in range(taxonomy.num_classes) if int(taxonomy.body_of(c)) != body_group]
    ma52, own = load_taxonomy("ma52"), set(taxonomy.regions_of_body(body_group))
    return [n for c, n in enumerate(ma52.names) if not own & set(ma52.regions_of_body(int(ma52.body_of(c))))]


def generate_clip(
    spec: ClipSpec, preset: Preset, taxonomy: Taxonomy, seed: int, *, render: bool = False
) -> dict[str, Any]:
    """One clip: keypoints (observed and clean), fps, size, metadata; frames and masks if ``render``."""
    rng = _rng(seed, spec.index, 0)
    nz = preset.nuisance
    name = taxonomy.names[spec.label]
    body_group = int(taxonomy.body_of(spec.label))
    fps, T, a, b = sample_timing(rng, nz, preset.dur)
    body = sample_body(rng)
    tr = sample_rest(rng, body, T)
    t = np.arange(T) / fps
    side = int(rng.random() < 0.7)  # right hand / leg acts in 70 % of clips
    gain = preset.gain * rng.uniform(0.7, 1.3)
    program = None
    if taxonomy.name == DIAGNOSTIC:
        program = run_program(name, Ctx(tr, body, rng, t, a, b, gain, side))
    else:
        apply_motion(name, Ctx(tr, body, rng, t, a, b, gain, side))
    distractor = ""
    if rng.random() < nz.p_distractor:
        others = _distractors(taxonomy, body_group)
        distractor = others[int(rng.choice(len(others)))]
        d_dur = rng.uniform(0.5, 1.2)
        d_a = rng.uniform(0, max(t[-1] - d_dur, 1e-3))
        apply_motion(
            distractor, Ctx(tr, body, rng, t, d_a, d_a + d_dur, gain * rng.uniform(0.25, 0.5), int(rng.integers(2)))
        )
    add_idle(rng, tr, fps, nz.idle)
    ps = pose(body, tr)

    cam, xy, clean, (H, W) = film(rng, body, ps, preset.heights, preset.aspect)
    occlude = bool(rng.random() < nz.p_occlude_legs)
    observed = observe(rng, xy, (H, W), nz, occlude_legs=occlude)

    meta = {
        "class_name": name,
        "label": spec.label,
        "body": body_group,
        "split": spec.split,
        "moving_regions": list(taxonomy.regions_of_body(body_group)),
        "action_window": [int(np.floor(a * fps)), min(T, int(np.ceil(b * fps)))],
        "side": ("left", "right")[side],
        "gain": float(gain),
        "distractor": distractor,
        "occluded_legs": occlude,
        "camera": cam.describe(),
        "seed": seed,
        "index": spec.index,
    }
    if program is not None:
        meta["program"] = program
    clip: dict[str, Any] = {"keypoints": observed, "keypoints_clean": clean, "fps": fps, "size": (H, W), "meta": meta}
    if render:
        frames, masks = render_clip(
            body, ps, cam, sample_style(_rng(seed, spec.index, 1)), _rng(seed, spec.index, 2), occlude_legs=occlude
        )
        clip["frames"], clip["masks"] = frames, masks
    return clip


def _work(job: tuple[ClipSpec, Preset, dict[str, Any], int, bool, str]) -> tuple[str, int, int, str]:
    from microaction.data.synth.writer import write_clip

    spec, preset, tax, seed, render, root = job
    taxonomy = Taxonomy.from_dict(tax)
    clip = generate_clip(spec, preset, taxonomy, seed, render=render)
    write_clip(Path(root), spec.stem, clip)
    return spec.stem, spec.label, int(clip["meta"]["body"]), spec.split


def run_jobs(work: Callable[[Any], _T], jobs: list[Any], workers: int, *, chunksize: int, desc: str, unit: str,
             progress: bool) -> list[_T]:  # fmt: skip
    """``work`` of each job, in order: in ``workers`` forked processes (in this one for 1), with a
    progress bar when ``progress``."""
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) if workers > 1 else nullcontext() as pool:
        it: Iterable[_T] = map(work, jobs) if pool is None else pool.imap(work, jobs, chunksize=chunksize)
        if progress:
            from tqdm import tqdm

            it = tqdm(it, total=len(jobs), desc=desc, unit=unit)
        return list(it)


def generate_dataset(
    out: str | os.PathLike[str],
    preset: str | Preset = "demo",
    *,
    seed: int = 0,
    render: bool = False,
    workers: int | None = None,
    taxonomy: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate a dataset into ``out`` (see :mod:`~microaction.data.synth.writer` for the files);
    returns the ``dataset.json`` record. ``taxonomy``: the label set (default: the preset's)."""
    from microaction.data.synth.writer import write_manifest

    p = PRESETS[preset] if isinstance(preset, str) else preset
    tax = load_taxonomy(taxonomy or p.taxonomy)
    if not tax.train_counts:
        raise ValueError(f"taxonomy {tax.name!r} has no train_counts to draw class frequencies from")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    specs = plan(p, tax)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    jobs = [(s, p, tax.to_dict(), seed, render, str(root)) for s in specs]
    rows = run_jobs(_work, jobs, workers, chunksize=4, desc=f"synth {p.name}{' +render' if render else ''}",
                    unit="clip", progress=progress)  # fmt: skip
    write_manifest(root, rows)
    record = _record(p, tax, seed, render, rows)
    (root / "dataset.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (root / "README.md").write_text(_readme(record), encoding="utf-8")
    return record


def _record(p: Preset, tax: Taxonomy, seed: int, render: bool, rows: list[tuple[str, int, int, str]]) -> dict[str, Any]:
    counts = {s: [0] * tax.num_classes for s in SPLITS}
    for _, label, _, split in rows:
        counts[split][label] += 1
    params = asdict(replace(p, clips=dict(p.clips)))
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "preset": p.name,
        "seed": seed,
        "rendered": render,
        "taxonomy": tax.name,
        "class_names": list(tax.names),
        "clips": {s: int(sum(counts[s])) for s in SPLITS},
        "counts": counts,
        "params": params,
    }


def _readme(r: dict[str, Any]) -> str:
    what = (
        ["performing the diagnostic preset's classes (label set synth_diagnostic): groups of classes with the",
         "same time-averaged motion that differ in order, rhythm or hold duration; balanced classes."]
        if r["taxonomy"] == DIAGNOSTIC
        else ["performing MA-52's 52 micro-actions as procedural motions, with class frequencies following",
              "MA-52's training counts."]
    )  # fmt: skip
    lines = [
        f"# Synthetic micro-action dataset (preset `{r['preset']}`, seed {r['seed']})",
        "",
        "Generated by `mar synth` (microaction.data.synth): a seated 3-D mannequin in MediaPipe's 33-landmark layout",
        *what,
        "The ground truth is exact: `keypoints/<stem>.npz` holds the observed and the clean keypoints and the",
        "regions the action moves. See docs/synthetic.md in the microaction repository.",
        "",
        f"Clips: train {r['clips']['train']}, val {r['clips']['val']}, test {r['clips']['test']}"
        f" ({'rendered videos and masks' if r['rendered'] else 'keypoints only'}).",
        "",
        "| id | class | train | val | test |",
        "|---|---|---|---|---|",
    ]
    for i, n in enumerate(r["class_names"]):
        lines.append(f"| {i} | {n} | {r['counts']['train'][i]} | {r['counts']['val'][i]} | {r['counts']['test'][i]} |")
    return "\n".join(lines) + "\n"
