"""Temporal detection as a task of the one training loop (``engine.trainer.run_stages``).

``DetectionTask`` is to ``task: detection`` configs what ``Experiment`` is to clip configs
(``engine.experiment.TrainTask``): it reads the split's recordings (``engine.detection``), makes
the model (``tridet``, ``bmoe_tridet``, ``sliding_window``, or a sliding window around a clip
run's classifier: ``detection.classifier_run``), draws the training windows and scores validation
with the MMA-52 detection mAP. Everything else — AdamW with warm-up + cosine, gradient clipping
and accumulation, EMA, precision, exact resume (``last_state.pt``), torchrun DDP, early stopping,
``best`` / ``last`` checkpoints, ``metrics.json``, ``log.txt`` — is the loop's, as for clip runs.

- The training "dataset" is the list of recordings; a batch key is a window ``(recording, a, b)``
  and ``WindowDataset.__getitems__`` collates windows (``engine.detection.collate_windows``).
- ``WindowBatches`` is the epoch's batches of windows (``engine.detection.WindowSampler``: a
  function of ``(seed, epoch)``, so resuming mid-epoch replays the same windows); under DDP each
  process takes its contiguous share of every global batch.
- ``DetectionLoss`` is the model's own ``loss(out, batch)``; TriDet's running loss normaliser
  (a float the model keeps) is mirrored in a buffer so that ``last_state.pt`` carries it. Under
  DDP each process normalises by its own positives (as ActionFormer / TriDet do), so two
  processes train close to, not exactly like, one.
- Validation runs the whole recordings (each process a contiguous share under DDP) in fp32, as
  ``mar eval`` does; without validation ground truth the loop's best is the last epoch
  (``run.best_by: last``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from microaction.data.standardize import FeatureStats, compute_feature_stats
from microaction.data.store import FeatureStore
from microaction.engine import distributed as dist_
from microaction.engine.config import ExperimentConfig
from microaction.engine.detection import (
    DetectionRecording,
    WindowSampler,
    classifier_run_stats,
    collate_windows,
    detect_recording,
    detection_model_kwargs,
    load_recordings,
    read_split_segments,
    score_detections,
    sliding_window_from_run,
    standardize_recording,
)
from microaction.engine.experiment import RunLog, Stage
from microaction.engine.precision import resolve_precision
from microaction.engine.yamlconfig import ConfigError
from microaction.taxonomy import load_taxonomy

__all__ = ["DetectionLoss", "DetectionTask", "WindowBatches", "WindowDataset"]

Window = tuple[int, int, int]  # (recording index, first step, end step)


class WindowDataset:
    """Training recordings as the loop's dataset: ``__getitems__`` of windows → a collated batch."""

    def __init__(self, recs: list[DetectionRecording], min_inside: float, open_end: bool = False) -> None:
        self.recs, self.min_inside, self.open_end = recs, min_inside, open_end

    def __len__(self) -> int:
        return len(self.recs)

    def __getitems__(self, keys: list[Window]) -> dict[str, torch.Tensor]:
        spans = [(a, b) for _, a, b in keys]
        batch = collate_windows([self.recs[i] for i, _, _ in keys], spans, self.min_inside, open_end=self.open_end)
        batch["index"] = torch.tensor([i for i, _, _ in keys], dtype=torch.long)
        return batch


class WindowBatches:
    """The batches of windows of one epoch (the loop's batch sampler): ``count`` windows in
    batches of ``batch_size`` (the global batch; process ``rank`` of ``world`` takes its slice)."""

    def __init__(self, sampler: WindowSampler, count: int, batch_size: int, *, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ConfigError(f"run.batch_size {batch_size} must be a multiple of the number of processes {world}")
        if 0 < count % batch_size < world:
            raise ConfigError(
                f"detection.windows_per_epoch {count}: its last batch of {count % batch_size} window(s) "
                f"cannot be shared by {world} processes; make it a multiple of run.batch_size"
            )
        self.sampler, self.count, self.batch_size = sampler, count, batch_size
        self.rank, self.world = rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start_batch)

    def num_batches(self) -> int:
        return math.ceil(self.count / self.batch_size)

    def __len__(self) -> int:
        return self.num_batches() - self.start

    def __iter__(self) -> Iterator[list[Window]]:
        batches = self.sampler.epoch(self.epoch, self.count, self.batch_size)
        for spans in batches[self.start :]:
            lo, hi = self.rank * len(spans) // self.world, (self.rank + 1) * len(spans) // self.world
            yield spans[lo:hi]


class DetectionLoss(nn.Module):
    """A detector's own ``loss(out, batch) -> {"loss", parts...}`` as the loop's
    ``loss(out, batch) -> (total, parts)``. The model's running loss normaliser (TriDet's
    ``loss_normalizer``, a float) lives in the ``normalizer`` buffer between steps, so it is saved
    with the loss's state and restored on resume."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self._model = [model]  # not a submodule: its parameters belong to the model
        norm = getattr(model, "loss_normalizer", None)
        self.keeps_normalizer = norm is not None
        self.register_buffer("normalizer", torch.tensor(float(norm or 0.0), dtype=torch.float64))

    def forward(self, out: dict[str, Any], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        model: Any = self._model[0]
        normalizer: torch.Tensor = self.normalizer  # type: ignore[assignment]
        if self.keeps_normalizer:
            model.loss_normalizer = float(normalizer)
        losses = model.loss(out, batch)
        if self.keeps_normalizer:
            normalizer.fill_(float(model.loss_normalizer))
        return losses["loss"], {k: float(v) for k, v in losses.items() if k != "loss"}


class DetectionTask:
    """A ``task: detection`` config as the loop's task (``engine.experiment.TrainTask``)."""

    primary = "mAP"
    items = "recordings"  # what the datasets hold, for the log

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, info: dist_.DistInfo, device: torch.device) -> None:
        from microaction.data.loader import check_store

        self.cfg, self.run_dir, self.info, self.device = cfg, run_dir, info, device
        self.precision = resolve_precision(cfg.run.precision, device)  # refused before any data is read
        if cfg.run.balanced_sampler or cfg.stages.pretrain_epochs > 0:
            raise ConfigError("task: detection has no run.balanced_sampler or stages.pretrain_epochs")
        if cfg.detection.classifier_run and cfg.model.name != "sliding_window":
            raise ConfigError("detection.classifier_run is for model sliding_window")
        self.log = RunLog(run_dir / "log.txt", info.is_main)
        d = cfg.data
        self.taxonomy = load_taxonomy(d.taxonomy)
        self.store = FeatureStore.open(d.store)
        check_store(self.store, d.expect, source=d.store)
        seg_tr, vid_tr = read_split_segments(cfg, self.taxonomy, d.train_split)
        self.val_segments, vid_va = read_split_segments(cfg, self.taxonomy, d.val_split)
        skip = d.allow_missing
        train = load_recordings(self.store, seg_tr, vid_tr, source=f"split {d.train_split!r}", allow_missing=skip)
        self.stats = self._stats(train)
        if self.stats is not None:
            for r in train:
                standardize_recording(r, self.stats)
        self.val = load_recordings(self.store, self.val_segments, vid_va, source=f"split {d.val_split!r}",
                                   stats=self.stats, allow_missing=skip)  # fmt: skip
        self.train = train
        self.train_ds = WindowDataset(train, cfg.detection.min_inside, open_end=cfg.detection.online > 0)
        self.val_ds = self.val or None
        # without validation ground truth no epoch can be told better than another
        self.validated = any(len(r.labels) for r in self.val)
        found = {r.video for r in train + self.val}
        missing = [v for v in vid_tr + vid_va if v not in found]
        self.warnings = []
        if missing:
            self.warnings.append(
                f"warning: {len(vid_tr) - len(train)} train and {len(vid_va) - len(self.val)} val recordings are "
                f"not in the store; skipped (data.allow_missing), e.g. {missing[:3]}"
            )
        self.model_kwargs = self._model_kwargs()
        total_steps = sum(r.length for r in train)
        dc = cfg.detection
        self.windows = dc.windows_per_epoch or max(cfg.run.batch_size, math.ceil(2 * total_steps / dc.window))
        self.warnings.append(
            f"detection: {len(train)} training recordings ({total_steps} steps), {len(self.val)} validation; "
            f"{self.windows} windows of {dc.window} steps per epoch"
        )

    def _stats(self, train: list[DetectionRecording]) -> FeatureStats | None:
        cfg = self.cfg
        if cfg.detection.classifier_run:  # the clip run's classifier expects its own run's standardisation
            if cfg.data.standardize:
                raise ValueError(
                    "data.standardize with detection.classifier_run: the classifier keeps the feature "
                    "statistics of its own run; leave data.standardize off"
                )
            return classifier_run_stats(cfg.detection.classifier_run)
        if cfg.data.standardize:  # statistics of the training recordings; they travel in every checkpoint
            return compute_feature_stats(self.store, [r.key for r in train])
        return None

    def _model_kwargs(self) -> dict[str, Any]:
        kwargs = detection_model_kwargs(self.cfg, self.taxonomy, self.store)
        if not self.cfg.detection.classifier_run:
            return kwargs
        common = ("num_classes", "num_body", "regions", "region_dim", "global_dim")
        self._overrides = {k: v for k, v in kwargs.items() if k not in common}
        return sliding_window_from_run(self.cfg.detection.classifier_run, **self._overrides)[1]

    def build_model(self) -> nn.Module:
        from microaction.models import create_model

        cfg = self.cfg
        if cfg.detection.classifier_run:
            model = sliding_window_from_run(cfg.detection.classifier_run, **self._overrides)[0]
        else:
            model = create_model(cfg.model.name, **self.model_kwargs)
        if getattr(model, "task", "") != "detection":
            raise ConfigError(
                f"model {cfg.model.name!r} is not a detector; task: detection needs tridet, bmoe_tridet or sliding_window"
            )
        return model

    def sampler(self) -> WindowBatches:
        r = self.cfg.run
        dc = self.cfg.detection
        windows = WindowSampler(self.train, dc.window, r.seed, online=dc.online, reach=dc.online_reach)
        return WindowBatches(windows, self.windows, r.batch_size, rank=self.info.rank, world=self.info.world)

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict[str, float]:
        """Val mAP of whole-recording detection (fp32, as ``mar eval``); each process detects a
        contiguous share of the recordings, all score the gathered detections."""
        if not self.val:
            return {}
        n, info = len(self.val), self.info
        mine = self.val[info.rank * n // info.world : (info.rank + 1) * n // info.world]
        dets = [d for r in mine for d in detect_recording(model, r, self.device)]
        dets = [d for part in dist_.gather_objects(info, dets) for d in part]
        return score_detections(self.val, dets, self.val_segments, self.taxonomy.num_classes, self.cfg.detection.tious)

    def stage(self) -> Stage:
        """The one stage of a detection run."""
        meta: dict[str, Any] = {
            "model": self.cfg.model.name,
            "model_kwargs": self.model_kwargs,
            "taxonomy": self.taxonomy.to_dict(),
            "store_manifest": self.store.manifest.to_dict(),
            "num_steps": self.cfg.detection.window,
            "primary_metric": self.primary,
            "task": "detection",
            "best_by": self.cfg.run.best_by,
            "run": self.cfg.run.name,
        }
        if self.stats is not None:
            meta["feature_stats"] = self.stats.to_dict()
        return Stage("main", self.cfg.run.epochs, self.cfg.optim.lr, self.build_model, DetectionLoss, meta)
