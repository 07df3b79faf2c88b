"""Temporal detection in the engine: recordings, random training windows, whole-recording inference.

A config with ``task: detection`` (``mar train`` / ``mar eval`` hand it here) reads a temporal
annotation file (``data.manifest`` or ``data.annotations``: anything ``read_segments`` reads; the
split of each video comes from the file or from the per-split files) and a feature store whose
items are whole recordings (``mar extract`` of the recordings). Store items are matched to the
annotation's video ids by their key (``video_key``) or its last path component.

- Time: step ``i`` of a recording sits at ``timestamps[0] + i·dt`` (``dt`` the median step) and
  covers ± dt/2; segments go to steps and detections back to seconds through that grid.
- Training windows (``WindowSampler``, ``collate_windows``): each epoch draws
  ``detection.windows_per_epoch`` windows of ``detection.window`` steps at random positions
  (recordings in proportion to their length); a segment cut by the window is kept (clipped) when
  ``detection.min_inside`` of it is inside. Training itself is the engine's one loop
  (``engine.detection_task.DetectionTask`` on ``engine.trainer``): exact resume, DDP, EMA,
  precision, early stopping and the run folder of clip runs; without a validation split with
  ground truth, best is the last epoch (``run.best_by: last``). ``data.allow_missing`` skips
  recordings the store lacks.
- Inference (``detect_recording``): a whole recording in one pass (the detectors are convolutional
  and masked, so a recording of any length runs as one sequence), detections in seconds with the
  routing over regions where the model has one.
- Evaluation (``evaluate_detection_run``): MMA-52 detection mAP (``metrics.detection``) at
  ``detection.tious``; ``eval_<split>.json`` and ``detections_<split>.json`` in the run folder.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from microaction.data.readers.segment_readers import read_segments
from microaction.data.readers.segments import Detection, Segment, SegmentTable
from microaction.data.standardize import FeatureStats
from microaction.data.store import FeatureStore, Item, atomic_write_bytes
from microaction.engine.config import ExperimentConfig
from microaction.taxonomy import Taxonomy

__all__ = [
    "DetectionRecording",
    "WindowSampler",
    "detect_recording",
    "detect_split",
    "evaluate_detection_run",
    "is_detector_run",
    "load_detector",
    "load_recordings",
    "read_split_segments",
    "recording_from_item",
    "split_names",
]


@dataclass
class DetectionRecording:
    """One recording's features (store layout) and ground truth in steps."""

    video: str
    key: str
    regions: np.ndarray  # [R, T, D]
    global_: np.ndarray  # [T, Dg]
    region_valid: np.ndarray  # [R] or [R, T]
    t0: float  # seconds of step 0
    dt: float  # seconds per step
    segments: np.ndarray  # [N, 2] steps
    labels: np.ndarray  # [N]

    @property
    def length(self) -> int:
        return int(self.global_.shape[0])

    def to_steps(self, seconds: np.ndarray) -> np.ndarray:
        return (np.asarray(seconds, dtype=np.float64) - self.t0) / self.dt

    def to_seconds(self, steps: np.ndarray) -> np.ndarray:
        return self.t0 + np.asarray(steps, dtype=np.float64) * self.dt


def step_grid(timestamps: np.ndarray, where: str) -> tuple[float, float]:
    ts = np.asarray(timestamps, dtype=np.float64)
    if len(ts) < 2:
        raise ValueError(f"{where}: a recording needs at least 2 feature steps, has {len(ts)}")
    dt = float(np.median(np.diff(ts)))
    if not dt > 0:
        raise ValueError(f"{where}: timestamps do not increase")
    return float(ts[0]), dt


def read_split_segments(cfg: ExperimentConfig, taxonomy: Taxonomy, split: str) -> tuple[list[Segment], list[str]]:
    """The split's segments and every video of the split (also those without segments)."""
    data = cfg.data
    if data.annotations:
        if split not in data.annotations:
            return [], []
        table: SegmentTable = read_segments(data.annotations[split], taxonomy)
        videos = table.videos()
        return list(table.segments), videos
    assert data.manifest is not None
    table = read_segments(data.manifest, taxonomy)
    videos = [v for v in table.videos() if table.splits.get(v) == split]
    keep = set(videos)
    return [s for s in table.segments if s.video in keep], videos


def split_names(cfg: ExperimentConfig, taxonomy: Taxonomy) -> list[str]:
    """The splits of a run's annotations that hold recordings (train / val / test first)."""
    data = cfg.data
    if data.annotations:
        names = list(data.annotations)
    else:
        assert data.manifest is not None
        names = sorted({s for s in read_segments(data.manifest, taxonomy).splits.values() if s})
    order = [data.train_split, data.val_split, data.test_split]
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def _key_index(store: FeatureStore) -> dict[str, str]:
    """Video id → store key: the key itself and its last path component (``videos__x`` → ``x``)."""
    index: dict[str, str] = {}
    for k in store.keys():  # noqa: SIM118 (iterating a FeatureStore reads every item)
        for name in {k, k.split("__")[-1]}:
            if name in index and index[name] != k:
                index[name] = ""  # ambiguous: only the full key matches
            else:
                index.setdefault(name, k)
    return index


def load_recordings(
    store: FeatureStore,
    segments: list[Segment],
    videos: list[str],
    *,
    source: str,
    stats: FeatureStats | None = None,
    allow_missing: bool = False,
) -> list[DetectionRecording]:
    """The recordings ``videos`` from ``store`` with their ground truth in steps (standardised with
    ``stats`` when given). A recording the store lacks is an error, or skipped with ``allow_missing``."""
    from microaction.data.store import video_key

    index = _key_index(store)
    by_video: dict[str, list[Segment]] = {}
    for s in segments:
        by_video.setdefault(s.video, []).append(s)
    out = []
    absent = []
    for v in videos:
        key = index.get(v) or index.get(video_key(v))
        if not key:
            absent.append(v)
            continue
        rec = recording_from_item(v, store.read(key), where=f"{store.root}: item {key}", stats=stats)
        segs = by_video.get(v, [])
        if segs:
            rec.segments = np.stack([rec.to_steps(np.array([s.start, s.end])) for s in segs])
            rec.labels = np.array([s.label for s in segs], np.int64)
        out.append(rec)
    if absent and not allow_missing:
        raise FileNotFoundError(
            f"{source}: {len(absent)} recording(s) not in the feature store {store.root}, e.g. {absent[:3]} "
            "(extract them with mar extract, or set data.allow_missing: true to skip them)"
        )
    return out


def collate_windows(
    recs: list[DetectionRecording], spans: list[tuple[int, int]], min_inside: float = 0.5, *, open_end: bool = False
) -> dict[str, torch.Tensor]:
    """Windows ``[a, b)`` of recordings → a sequence batch with ``gt_segments`` / ``gt_labels`` (steps,
    window-relative). ``open_end``: a segment cut by the right edge is left out (as a live window
    sees it: not ended yet), one cut by the left edge kept when ``min_inside`` of it is inside."""
    n = max(b - a for a, b in spans)
    R, D = recs[0].regions.shape[0], recs[0].regions.shape[2]
    Dg = recs[0].global_.shape[1]
    B = len(recs)
    regions = np.zeros((B, R, n, D), np.float32)
    glob = np.zeros((B, n, Dg), np.float32)
    mask = np.zeros((B, n), bool)
    per_step = any(r.region_valid.ndim == 2 for r in recs)
    valid = np.zeros((B, R, n) if per_step else (B, R), bool)
    segs: list[np.ndarray] = []
    labs: list[np.ndarray] = []
    for i, (r, (a, b)) in enumerate(zip(recs, spans)):
        L = b - a
        regions[i, :, :L] = r.regions[:, a:b]
        glob[i, :L] = r.global_[a:b]
        mask[i, :L] = True
        v = r.region_valid[:, a:b] if r.region_valid.ndim == 2 else r.region_valid
        if per_step:
            valid[i, :, :L] = v if v.ndim == 2 else v[:, None]
        else:
            valid[i] = v
        s = r.segments - a
        if len(s):
            inside = np.clip(s, -0.5, L - 0.5)
            keep = (inside[:, 1] - inside[:, 0]) >= min_inside * np.maximum(s[:, 1] - s[:, 0], 1e-6)
            keep &= inside[:, 1] > inside[:, 0]
            if open_end and b < r.length:
                keep &= s[:, 1] <= L - 0.5 + 1e-6
            segs.append(inside[keep])
            labs.append(r.labels[keep])
        else:
            segs.append(np.zeros((0, 2)))
            labs.append(np.zeros(0, np.int64))
    N = max(1, max(len(x) for x in labs))
    gs = np.zeros((B, N, 2), np.float32)
    gl = np.full((B, N), -1, np.int64)
    for i, (s, lab) in enumerate(zip(segs, labs)):
        gs[i, : len(s)] = s
        gl[i, : len(lab)] = lab
    return {
        "regions": torch.from_numpy(regions),
        "global": torch.from_numpy(glob),
        "mask": torch.from_numpy(mask),
        "region_valid": torch.from_numpy(valid),
        "gt_segments": torch.from_numpy(gs),
        "gt_labels": torch.from_numpy(gl),
    }


class WindowSampler:
    """Random training windows: recordings drawn in proportion to their length, uniform start;
    with ``online`` > 0 that share of the windows ends 0-``reach`` seconds after a ground-truth
    segment's end drawn at random (``detection.online``)."""

    def __init__(
        self, recs: list[DetectionRecording], window: int, seed: int, online: float = 0.0, reach: float = 2.0
    ) -> None:
        if not recs:
            raise ValueError("no training recordings")
        self.recs, self.window, self.seed = recs, window, seed
        self.online, self.reach = float(online), float(reach)
        lengths = np.array([r.length for r in recs], np.float64)
        self.p = lengths / lengths.sum()

    def epoch(self, epoch: int, count: int, batch_size: int) -> list[list[tuple[int, int, int]]]:
        rng = np.random.default_rng([self.seed, epoch])
        which = rng.choice(len(self.recs), size=count, p=self.p)
        spans = []
        for i in which.tolist():
            L = self.recs[i].length
            a = int(rng.integers(0, max(L - self.window, 0) + 1))
            if self.online > 0 and rng.random() < self.online and len(self.recs[i].segments):
                r = self.recs[i]  # right edge a look-ahead after an action's end (steps: the edge is b - 0.5)
                end = float(r.segments[rng.integers(len(r.segments)), 1]) + rng.uniform(0, self.reach) / r.dt
                b = int(np.clip(math.ceil(end + 0.5), 1, L))
                spans.append((i, max(0, b - self.window), b))
                continue
            spans.append((i, a, min(a + self.window, L)))
        return [spans[k : k + batch_size] for k in range(0, len(spans), batch_size)]


@torch.no_grad()
def detect_recording(model: nn.Module, rec: DetectionRecording, device: torch.device | str = "cpu") -> list[Detection]:
    """Detections of a whole recording (seconds), best first, with routing where the model has one."""
    model.eval()
    batch = collate_windows([rec], [(0, rec.length)])
    batch = {k: v.to(device) for k, v in batch.items() if not k.startswith("gt_")}
    res = model.detect(model(batch))[0]  # type: ignore[operator]
    segs = rec.to_seconds(res["segments"].double().cpu().numpy())
    segs = np.clip(segs, 0.0, None)
    routing = res.get("routing")
    out = []
    for k in range(len(res["scores"])):
        r = None if routing is None else tuple(round(float(x), 4) for x in routing[k].tolist())
        out.append(Detection(rec.video, float(segs[k, 0]), float(segs[k, 1]), int(res["labels"][k]),
                             float(res["scores"][k]), r))  # fmt: skip
    return out


def score_detections(
    recs: list[DetectionRecording], dets: list[Detection], segments: list[Segment], num_classes: int, tious: list[float]
) -> dict[str, float]:
    from microaction.metrics.detection import detection_map

    keep = {r.video for r in recs}
    gt = [s for s in segments if s.video in keep]
    if not gt:
        return {}
    return detection_map(gt, dets, num_classes, tious)


# ---------------------------------------------------------------------------------------------
# models


def detection_model_kwargs(cfg: ExperimentConfig, taxonomy: Taxonomy, store: FeatureStore) -> dict[str, Any]:
    from microaction.engine.experiment import model_kwargs
    from microaction.models import model_entry

    kw = model_kwargs(cfg, taxonomy, store)
    kw["num_body"] = 0  # detectors have no body head
    params = inspect.signature(model_entry(cfg.model.name).cls.__init__).parameters
    if "class_regions" in params and "class_regions" not in kw and taxonomy.has_body:
        kw["class_regions"] = [
            list(taxonomy.regions_of_body(int(taxonomy.body_of(c)))) for c in range(taxonomy.num_classes)
        ]
    return kw


def classifier_run_stats(run_dir: str | os.PathLike[str]) -> FeatureStats | None:
    """The feature statistics a clip run standardised with (``data.standardize``), or None."""
    from microaction.engine.checkpoint import read_meta
    from microaction.engine.runs import find_checkpoint

    path = Path(run_dir)
    ckpt = path if path.suffix == ".safetensors" else find_checkpoint(path, "best")
    return FeatureStats.from_meta(read_meta(ckpt), source=str(ckpt))  # the metadata only, no weights


def sliding_window_from_run(run_dir: str | os.PathLike[str], **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """A ``sliding_window`` detector around a trained clip run's classifier (softmax scores, its T
    as the window); returns the model and its constructor kwargs."""
    from microaction.engine.checkpoint import load_weights
    from microaction.engine.runs import find_checkpoint
    from microaction.models import create_model

    path = Path(run_dir)
    state, meta = load_weights(path if path.suffix == ".safetensors" else find_checkpoint(path, "best"))
    ck = dict(meta["model_kwargs"])
    common = {k: ck.pop(k) for k in ("num_classes", "num_body", "regions", "region_dim", "global_dim")}
    kw = {**common, "classifier": meta["model"], "classifier_kwargs": ck, "window": int(meta["num_steps"]),
          "stride": max(1, int(meta["num_steps"]) // 4), "score": "softmax", **overrides}  # fmt: skip
    model = create_model("sliding_window", **kw)
    model.classifier.load_state_dict(state, strict=True)  # type: ignore[union-attr]
    return model, kw


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_detection_run(
    run: Any,
    split: str = "val",
    *,
    store: str | os.PathLike[str] | None = None,
    checkpoint: str = "best",
    out: str | os.PathLike[str] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Detections on a split's recordings, scored with the MMA-52 detection mAP; writes
    ``eval_<split>.json`` and ``detections_<split>.json`` (with routing) into the run folder or ``out``.
    ``run`` is a run folder or a ``LoadedRun``."""
    from microaction.data.readers.segments import write_detections

    loaded = load_detector(run, checkpoint, device=device)

    cfg: ExperimentConfig = loaded.config
    tax: Taxonomy = loaded.taxonomy
    t0 = time.perf_counter()
    recs, segments, dets = detect_split(loaded, split, store=store, device=device)
    seconds = time.perf_counter() - t0
    metrics = score_detections(recs, dets, segments, tax.num_classes, cfg.detection.tious)
    out_dir = Path(out) if out is not None else Path(loaded.run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    regions = list(getattr(loaded.model, "regions", ()))
    write_detections(out_dir / f"detections_{split}.json", dets, regions=regions, taxonomy=tax)
    report = {
        "split": split,
        "run": str(loaded.run_dir),
        "task": "detection",
        "checkpoint": str(loaded.checkpoint),
        "metrics": metrics,
        "clips": len(recs),
        "recordings": len(recs),
        "ground_truth": sum(len(r.labels) for r in recs),
        "detections": len(dets),
        "hours": round(sum(r.length * r.dt for r in recs) / 3600.0, 4),
        "inference_seconds": round(seconds, 3),
        "class_names": list(tax.names),
        "regions": regions,
    }
    atomic_write_bytes(out_dir / f"eval_{split}.json", json.dumps(report, indent=1).encode())
    return report


# ---------------------------------------------------------------------------------------------
# a trained detector on any recording (mar timeline, mar submit --run)


def is_detector_run(meta: dict[str, Any]) -> bool:
    """Whether a checkpoint's metadata is a detection run's (``task: detection``)."""
    return meta.get("task") == "detection"


def load_detector(run: Any, checkpoint: str = "best", *, device: str = "cpu") -> Any:
    """A detection run (folder, ``.safetensors`` or ``LoadedRun``) loaded; a run of another task
    (a clip classifier) is refused with the models that detect."""
    from microaction.engine.runs import LoadedRun, load_run, stale_best_note

    loaded = run if isinstance(run, LoadedRun) else load_run(run, checkpoint, device=device)
    if not is_detector_run(loaded.meta):
        raise ValueError(
            f"{loaded.checkpoint}: not a detection run (model {loaded.meta.get('model')!r} trained on clips); "
            "this needs a run trained with task: detection (tridet, bmoe_tridet, sliding_window; "
            "e.g. mar train configs/demo_tridet.yaml)"
        )
    note = stale_best_note(loaded.meta, Path(loaded.checkpoint))  # a run trained before best_by
    if note:
        print(note, file=sys.stderr, flush=True)
    return loaded


def detect_split(
    loaded: Any, split: str, *, store: str | os.PathLike[str] | None = None, device: str = "cpu"
) -> tuple[list[DetectionRecording], list[Segment], list[Detection]]:
    """Every recording of a split of a detection run's annotations (also those without ground
    truth, e.g. a hidden test split), its segments and the run's detections on them."""
    if loaded.config is None:
        raise FileNotFoundError(f"{loaded.run_dir}: no config.yaml, so the split's annotations are unknown")
    fs = loaded.open_store(store)
    cfg: ExperimentConfig = loaded.config
    segments, videos = read_split_segments(cfg, loaded.taxonomy, split)
    if not videos:
        have = split_names(cfg, loaded.taxonomy)
        raise ValueError(
            f"{loaded.run_dir}: split {split!r} has no recordings in the run's annotations; "
            f"it has {', '.join(repr(n) for n in have) or 'none'}" + (f" (e.g. --split {have[-1]})" if have else "")
        )
    stats = FeatureStats.from_meta(loaded.meta, source=str(loaded.checkpoint))
    recs = load_recordings(fs, segments, videos, source=f"split {split!r}", stats=stats,
                           allow_missing=cfg.data.allow_missing)  # fmt: skip
    model = loaded.model.to(device)
    return recs, segments, [d for r in recs for d in detect_recording(model, r, device)]


def recording_from_item(video: str, item: Item, *, where: str, stats: FeatureStats | None = None) -> DetectionRecording:
    """A whole recording's features (a store item or an extraction, store layout) as a
    ``DetectionRecording`` without ground truth, for ``detect_recording``; standardised with ``stats``
    (a run's ``feature_stats``, ``FeatureStats.from_meta``) when given."""
    t0, dt = step_grid(item.timestamps, where)
    rec = DetectionRecording(video, item.key, item.regions, item.global_, np.asarray(item.region_valid, bool), t0, dt,
                    np.zeros((0, 2)), np.zeros(0, np.int64))  # fmt: skip
    if stats is not None:
        standardize_recording(rec, stats, where=where)
    return rec


def standardize_recording(rec: DetectionRecording, stats: FeatureStats, *, where: str = "") -> None:
    """``rec``'s features standardised in place (float32) with a run's training statistics."""
    R, _, D = rec.regions.shape
    stats.check(R, D, rec.global_.shape[-1], source=where or rec.key)
    rec.regions = stats.apply_regions(rec.regions.astype(np.float32)).astype(np.float32)
    rec.global_ = stats.apply_global(rec.global_.astype(np.float32)).astype(np.float32)
