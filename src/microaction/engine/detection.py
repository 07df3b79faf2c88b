"""Temporal detection in the engine: recordings, random training windows, whole-recording inference.

A config with ``task: detection`` (``mar train`` / ``mar eval`` hand it here) reads a temporal
annotation file (``data.manifest`` or ``data.annotations``: anything ``read_segments`` reads; the
split of each video comes from the file or from the per-split files) and a feature store whose
items are whole recordings (``mar extract`` of the recordings). Store items are matched to the
annotation's video ids by their key (``video_key``) or its last path component.

- Time: step ``i`` of a recording sits at ``timestamps[0] + i·dt`` (``dt`` the median step) and
  covers ± dt/2; segments go to steps and detections back to seconds through that grid.
- Training (``train_detection``): each epoch draws ``detection.windows_per_epoch`` windows of
  ``detection.window`` steps at random positions (recordings in proportion to their length); a
  segment cut by the window is kept (clipped) when ``detection.min_inside`` of it is inside.
  AdamW with warm-up + cosine (``optim``), the model's own ``loss(out, batch)``, validation mAP
  on the ``val`` split after every epoch, ``best.safetensors`` / ``last.safetensors`` as for clips;
  without a validation split with ground truth, best is the last epoch (``run.best_by: last``
  in ``config.yaml`` and the checkpoints, said in ``log.txt``). ``data.allow_missing`` skips
  recordings the store lacks.
- Inference (``detect_recording``): a whole recording in one pass (the detectors are convolutional
  and masked, so a recording of any length runs as one sequence), detections in seconds with the
  routing over regions where the model has one.
- Evaluation (``evaluate_detection_run``): MMA-52 detection mAP (``metrics_detection``) at
  ``detection.tious``; ``eval_<split>.json`` and ``detections_<split>.json`` in the run folder.

Runs are single-process (no DDP) and not resumable mid-way: a detection run on the demo's scale
takes a minute.
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

from microaction.data.segment_readers import read_segments
from microaction.data.segments import Detection, Segment, SegmentTable
from microaction.data.standardize import FeatureStats, compute_feature_stats
from microaction.data.store import FeatureStore, Item, atomic_write_bytes
from microaction.engine.checkpoint import save_weights
from microaction.engine.config import ExperimentConfig
from microaction.engine.optim import lr_at, param_groups
from microaction.taxonomy import Taxonomy, load_taxonomy

__all__ = [
    "Recording",
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
    "train_detection",
]


@dataclass
class Recording:
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
) -> list[Recording]:
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


def _valid_slice(valid: np.ndarray, a: int, b: int) -> np.ndarray:
    return valid[:, a:b] if valid.ndim == 2 else valid


def collate_windows(
    recs: list[Recording], spans: list[tuple[int, int]], min_inside: float = 0.5
) -> dict[str, torch.Tensor]:
    """Windows ``[a, b)`` of recordings → a sequence batch with ``gt_segments`` / ``gt_labels`` (steps, window-relative)."""
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
        v = _valid_slice(r.region_valid, a, b)
        if per_step:
            valid[i, :, :L] = v if v.ndim == 2 else v[:, None]
        else:
            valid[i] = v
        s = r.segments - a
        if len(s):
            inside = np.clip(s, -0.5, L - 0.5)
            keep = (inside[:, 1] - inside[:, 0]) >= min_inside * np.maximum(s[:, 1] - s[:, 0], 1e-6)
            keep &= inside[:, 1] > inside[:, 0]
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
    """Random training windows: recordings drawn in proportion to their length, uniform start."""

    def __init__(self, recs: list[Recording], window: int, seed: int) -> None:
        if not recs:
            raise ValueError("no training recordings")
        self.recs, self.window, self.seed = recs, window, seed
        lengths = np.array([r.length for r in recs], np.float64)
        self.p = lengths / lengths.sum()

    def epoch(self, epoch: int, count: int, batch_size: int) -> list[list[tuple[int, int, int]]]:
        rng = np.random.default_rng([self.seed, epoch])
        which = rng.choice(len(self.recs), size=count, p=self.p)
        spans = []
        for i in which.tolist():
            L = self.recs[i].length
            a = int(rng.integers(0, max(L - self.window, 0) + 1))
            spans.append((i, a, min(a + self.window, L)))
        return [spans[k : k + batch_size] for k in range(0, len(spans), batch_size)]


@torch.no_grad()
def detect_recording(model: nn.Module, rec: Recording, device: torch.device | str = "cpu") -> list[Detection]:
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
    recs: list[Recording], dets: list[Detection], segments: list[Segment], num_classes: int, tious: list[float]
) -> dict[str, float]:
    from microaction.metrics_detection import detection_map

    keep = {r.video for r in recs}
    gt = [s for s in segments if s.video in keep]
    if not gt:
        return {}
    return detection_map(gt, dets, num_classes, tious)


# ---------------------------------------------------------------------------------------------
# training


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


def _log(run_dir: Path, msg: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    with open(run_dir / "log.txt", "a", encoding="utf-8") as f:
        f.write(line + "\n")


def train_detection(cfg: ExperimentConfig, *, overwrite: bool = False) -> Path:
    """Train a detector (``task: detection``); returns the run folder."""
    from microaction.data.loader import check_store
    from microaction.engine import distributed as dist_
    from microaction.engine.runs import check_run_dir, prepare_run_dir, write_metrics
    from microaction.models import create_model

    if cfg.run.precision not in ("auto", "fp32"):
        raise ValueError(f"detection runs train in fp32 (run.precision: auto or fp32, got {cfg.run.precision!r})")
    cfg.run.precision_used = "fp32"  # config.yaml records it
    info, device = dist_.setup(cfg.run.device)
    if info.enabled:
        raise RuntimeError("detection runs are single-process; start them without torchrun")
    torch.manual_seed(cfg.run.seed)
    tax = load_taxonomy(cfg.data.taxonomy)
    store = FeatureStore.open(cfg.data.store)
    check_store(store, cfg.data.expect, source=cfg.data.store)
    run_dir = cfg.run_dir
    check_run_dir(run_dir, overwrite)
    seg_tr, vid_tr = read_split_segments(cfg, tax, cfg.data.train_split)
    seg_va, vid_va = read_split_segments(cfg, tax, cfg.data.val_split)
    skip = cfg.data.allow_missing
    train = load_recordings(store, seg_tr, vid_tr, source=f"split {cfg.data.train_split!r}", allow_missing=skip)
    stats = None
    if cfg.detection.classifier_run:  # the clip run's classifier expects its own run's standardisation
        if cfg.data.standardize:
            raise ValueError(
                "data.standardize with detection.classifier_run: the classifier keeps the feature "
                "statistics of its own run; leave data.standardize off"
            )
        stats = classifier_run_stats(cfg.detection.classifier_run)
    elif cfg.data.standardize:  # statistics of the training recordings; they travel in every checkpoint
        stats = compute_feature_stats(store, [r.key for r in train])
    if stats is not None:
        for r in train:
            standardize_recording(r, stats)
    val = load_recordings(
        store, seg_va, vid_va, source=f"split {cfg.data.val_split!r}", stats=stats, allow_missing=skip
    )
    # without validation ground truth no epoch can be told better than another: the last one is best
    validated = any(len(r.labels) for r in val)
    cfg.run.best_by = "val" if validated else "last"  # config.yaml records it
    prepare_run_dir(cfg, info, overwrite)
    found = {r.video for r in train + val}
    missing = [v for v in vid_tr + vid_va if v not in found]
    if missing:
        _log(run_dir, f"warning: {len(vid_tr) - len(train)} train and {len(vid_va) - len(val)} val recordings are "
                      f"not in the store; skipped (data.allow_missing), e.g. {missing[:3]}")  # fmt: skip
    kwargs = detection_model_kwargs(cfg, tax, store)
    if cfg.detection.classifier_run:
        if cfg.model.name != "sliding_window":
            raise ValueError("detection.classifier_run is for model sliding_window")
        extra = {
            k: v
            for k, v in kwargs.items()
            if k not in ("num_classes", "num_body", "regions", "region_dim", "global_dim")
        }
        model, kwargs = sliding_window_from_run(cfg.detection.classifier_run, **extra)
    else:
        model = create_model(cfg.model.name, **kwargs)
    if getattr(model, "task", "") != "detection":
        raise ValueError(
            f"model {cfg.model.name!r} is not a detector; task: detection needs tridet, bmoe_tridet or sliding_window"
        )
    model.to(device)
    dc, oc = cfg.detection, cfg.optim
    total_steps = sum(r.length for r in train)
    per_epoch = dc.windows_per_epoch or max(cfg.run.batch_size, math.ceil(2 * total_steps / dc.window))
    sampler = WindowSampler(train, dc.window, cfg.run.seed)
    steps_per_epoch = math.ceil(per_epoch / cfg.run.batch_size)
    total = steps_per_epoch * cfg.run.epochs
    warmup = round(oc.warmup_epochs * steps_per_epoch)
    opt = torch.optim.AdamW(param_groups(model, oc.weight_decay), lr=oc.lr, betas=tuple(oc.betas), eps=oc.eps)  # type: ignore[arg-type]
    meta = {
        "model": cfg.model.name,
        "model_kwargs": kwargs,
        "taxonomy": tax.to_dict(),
        "store_manifest": store.manifest.to_dict(),
        "num_steps": dc.window,
        "primary_metric": "mAP",
        "task": "detection",
        "best_by": cfg.run.best_by,
    }
    if stats is not None:
        meta["feature_stats"] = stats.to_dict()
    _log(run_dir, f"detection run {run_dir}: {len(train)} training recordings ({total_steps} steps), "
                  f"{len(val)} validation; {per_epoch} windows of {dc.window} steps per epoch, device {device}")  # fmt: skip
    if not validated:
        why = f"{len(val)} recordings without ground truth" if val else "none"
        _log(run_dir, f"no validation split {cfg.data.val_split!r} with ground truth ({why}): "
                      "best.safetensors is the last epoch (run.best_by: last)")  # fmt: skip
    threads = torch.get_num_threads()
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    step = 0
    try:
        for epoch in range(cfg.run.epochs):
            t0 = time.perf_counter()
            model.train()
            losses = []
            for spans in sampler.epoch(epoch, per_epoch, cfg.run.batch_size):
                batch = collate_windows([train[i] for i, _, _ in spans], [(a, b) for _, a, b in spans], dc.min_inside)
                batch = {k: v.to(device) for k, v in batch.items()}
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, warmup, oc.lr, schedule=oc.schedule, min_ratio=oc.min_lr_ratio)
                loss = model.loss(model(batch), batch)["loss"]  # type: ignore[operator]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if oc.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), oc.clip_grad)
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
            val_metrics: dict[str, float] = {}
            if val:
                dets = [d for r in val for d in detect_recording(model, r, device)]
                val_metrics = score_detections(val, dets, seg_va, tax.num_classes, dc.tious)
            rec = {"epoch": epoch + 1, "stage": "detection", "lr": opt.param_groups[0]["lr"],
                   "train_loss": float(np.mean(losses)), "val": val_metrics,
                   "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
            history.append(rec)
            score = val_metrics.get("mAP")
            if best is None or score is None or best["metric"] is None or score > best["metric"]:
                best = {"epoch": epoch + 1, "metric": score, "by": cfg.run.best_by, "val": val_metrics}
                save_weights(
                    run_dir / "best.safetensors", model.state_dict(), {**meta, "epoch": epoch + 1, "metric": score}
                )
            save_weights(
                run_dir / "last.safetensors", model.state_dict(), {**meta, "epoch": epoch + 1, "metric": score}
            )
            write_metrics(run_dir, {"history": json.dumps(history), "best": json.dumps(best)})
            shown = f"val mAP {100 * score:.2f}" if score is not None else "no validation (best: this epoch)"
            _log(
                run_dir,
                f"epoch {epoch + 1}/{cfg.run.epochs}: loss {rec['train_loss']:.4f}, {shown} ({rec['seconds']}s)",
            )
    finally:
        torch.set_num_threads(threads)
    return run_dir


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
    from microaction.data.segments import write_detections

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
) -> tuple[list[Recording], list[Segment], list[Detection]]:
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


def recording_from_item(video: str, item: Item, *, where: str, stats: FeatureStats | None = None) -> Recording:
    """A whole recording's features (a store item or an extraction, store layout) as a
    ``Recording`` without ground truth, for ``detect_recording``; standardised with ``stats``
    (a run's ``feature_stats``, ``FeatureStats.from_meta``) when given."""
    t0, dt = step_grid(item.timestamps, where)
    rec = Recording(video, item.key, item.regions, item.global_, np.asarray(item.region_valid, bool), t0, dt,
                    np.zeros((0, 2)), np.zeros(0, np.int64))  # fmt: skip
    if stats is not None:
        standardize_recording(rec, stats, where=where)
    return rec


def standardize_recording(rec: Recording, stats: FeatureStats, *, where: str = "") -> None:
    """``rec``'s features standardised in place (float32) with a run's training statistics."""
    R, _, D = rec.regions.shape
    stats.check(R, D, rec.global_.shape[-1], source=where or rec.key)
    rec.regions = stats.apply_regions(rec.regions.astype(np.float32)).astype(np.float32)
    rec.global_ = stats.apply_global(rec.global_.astype(np.float32)).astype(np.float32)
