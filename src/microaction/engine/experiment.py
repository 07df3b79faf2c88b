"""The experiment of a run (``mar train``): its data, its stages' shape and its bookkeeping.

``TrainTask`` is what the training loop (``engine.trainer.run_stages``) needs from a task: its
settings (``cfg.run`` / ``cfg.optim``), run folder, process info, device, log, training and
validation datasets, training sampler, validation and primary metric. Two tasks implement it:
``Experiment`` (action recognition over a feature store) and ``face.task.FaceTask`` (L-SSAT).

``Experiment`` reads the config's taxonomy, feature store and splits into the train / val
datasets, makes the training sampler and scores validation with the official metrics;
``Stage`` is one stage of a run as the loop (``engine.trainer``) runs it and ``engine.stages``
plans it; ``model_kwargs`` resolves the configured model's constructor arguments. Kept apart
from the loop so that the planner and the loop both look down to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm import tqdm

from microaction.data.loader import ClipDataset, check_store, select_samples
from microaction.data.samplers import TrainBatchSampler, class_weights
from microaction.data.standardize import compute_feature_stats
from microaction.data.store import FeatureStore
from microaction.engine import distributed as dist_
from microaction.engine.config import ExperimentConfig, OptimConfig, RunConfig, check_routing_supervision
from microaction.engine.evaluate import infer, score_outputs
from microaction.engine.precision import resolve_precision
from microaction.engine.runs import read_split
from microaction.engine.yamlconfig import ConfigError
from microaction.taxonomy import Taxonomy, load_taxonomy

__all__ = ["BatchSampler", "Experiment", "LoopConfig", "RunLog", "Stage", "TrainTask", "model_kwargs"]


class RunLog:
    """``log.txt`` (appended) and the console (unless ``echo`` is off); silent on ranks other than 0."""

    def __init__(self, path: Path, enabled: bool, *, echo: bool = True) -> None:
        self.path, self.enabled, self.echo = path, enabled, echo

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        if self.echo:
            tqdm.write(line)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def model_kwargs(cfg: ExperimentConfig, taxonomy: Taxonomy, store: FeatureStore) -> dict[str, Any]:
    """Every constructor argument of the configured model (preset resolved), as saved in checkpoints."""
    from microaction.models import model_entry

    entry = model_entry(cfg.model.name)
    kwargs: dict[str, Any] = {}
    if cfg.model.preset is not None:
        if cfg.model.preset not in entry.presets:
            raise ConfigError(
                f"model {cfg.model.name!r} has no preset {cfg.model.preset!r}; presets: {sorted(entry.presets)}"
            )
        kwargs.update(entry.presets[cfg.model.preset])
    kwargs.update(cfg.model.kwargs)
    m = store.manifest
    kwargs.update(
        num_classes=taxonomy.num_classes,
        num_body=taxonomy.num_body,
        regions=list(m.regions),
        region_dim=int(m.region_dim),
        global_dim=int(m.global_dim),
    )
    return kwargs


# ---------------------------------------------------------------------------------------------
# the experiment: data and bookkeeping shared by the stages


@dataclass
class Stage:
    """One stage of a run: its name, length, learning rate and how its model is made."""

    name: str  # "pretrain" (B-MoE stage 1) or "main"
    epochs: int
    lr: float
    build: Callable[[], nn.Module]  # a fresh model (stage 2 loads the stage-1 weights here)
    make_loss: Callable[[nn.Module], Any]  # the loss for that model: loss(outputs, batch) -> (total, parts)
    meta: dict[str, Any]  # checkpoint metadata (model name + kwargs, taxonomy, store, T, metric)
    freeze: Callable[[nn.Module], list[nn.Parameter]] | None = None  # parameters kept fixed ...
    freeze_epochs: int = 0  # ... for this many first epochs
    experts: Callable[[nn.Module], list[nn.Parameter]] | None = None  # their own AdamW group ...
    expert_lr_scale: float = 1.0  # ... at this fraction of the learning rate ...
    expert_warmup_epochs: float = 0.0  # ... warmed up over this many epochs once they train
    on_done: Callable[[nn.Module], None] | None = None  # called on rank 0 with the final weights


class LoopConfig(Protocol):
    """The settings the loop reads: ``run`` (seed, batch size, precision, saving, ...) and ``optim``."""

    @property
    def run(self) -> RunConfig: ...

    @property
    def optim(self) -> OptimConfig: ...


class BatchSampler(Protocol):
    """The training batches of an epoch (``data.samplers.TrainBatchSampler``, the detection
    windows of ``engine.detection_task``): a function of ``(seed, epoch)``; ``set_epoch(epoch,
    start_batch)`` resumes mid-epoch."""

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None: ...

    def num_batches(self) -> int: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Any: ...


class TrainTask(Protocol):
    """What the training loop needs from a task (see the module docstring); ``primary`` is the
    validation metric that picks the best epoch (higher is better)."""

    @property
    def cfg(self) -> LoopConfig: ...

    @property
    def run_dir(self) -> Path: ...

    @property
    def info(self) -> dist_.DistInfo: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def log(self) -> Callable[[str], None]: ...

    @property
    def primary(self) -> str: ...

    @property
    def train_ds(self) -> Any: ...  # len() and __getitems__(keys) -> a collated batch dict with "index"

    @property
    def val_ds(self) -> Any: ...  # None: no validation

    def sampler(self) -> BatchSampler: ...

    def validate(self, model: nn.Module) -> dict[str, float]: ...


class Experiment:
    def __init__(self, cfg: ExperimentConfig, run_dir: Path, info: dist_.DistInfo, device: torch.device) -> None:
        from microaction import metrics

        self.cfg, self.run_dir, self.info, self.device = cfg, run_dir, info, device
        # first: an unsupported precision is refused before any data is read or anything written
        self.precision = resolve_precision(cfg.run.precision, device)
        self.log = RunLog(run_dir / "log.txt", info.is_main)
        d = cfg.data
        self.taxonomy = load_taxonomy(d.taxonomy)
        check_routing_supervision(cfg.loss.routing_weight, self.taxonomy)  # before any data is read
        self.store = FeatureStore.open(d.store)
        if d.expect:
            check_store(self.store, d.expect, source="data.expect of the config")
        self.primary = metrics.primary_metric(self.taxonomy)
        train_samples = read_split(d, self.taxonomy, d.train_split)
        if not train_samples:
            raise ValueError(f"no training clips: split {d.train_split!r} is empty in the annotations")
        keep = {"allow_missing": d.allow_missing, "keep_no_person": d.keep_no_person}
        train_samples, miss_t = select_samples(self.store, train_samples, source="train", **keep)
        val_samples = read_split(d, self.taxonomy, d.val_split) if d.val_split else []
        val_samples, miss_v = select_samples(self.store, val_samples, source="val", **keep)
        self.warnings = []
        if miss_t or miss_v:
            self.warnings.append(
                f"warning: {len(miss_t)} train and {len(miss_v)} val clips are not in the store; skipped"
            )
        face_size = int(model_kwargs(cfg, self.taxonomy, self.store).get("face_size", 0) or 0)
        # data.standardize: statistics of the training clips, once; they travel in every checkpoint
        self.stats = compute_feature_stats(self.store, [s.key for s in train_samples]) if d.standardize else None
        self.train_ds = ClipDataset(
            self.store,
            train_samples,
            self.taxonomy,
            face_size=face_size,
            num_steps=d.num_steps,
            sampling=d.train_sampling,
            seed=cfg.run.seed,
            flip_prob=d.flip_prob,
            region_drop_prob=d.region_drop_prob,
            feature_noise=d.feature_noise,
            stats=self.stats,
        )
        self.val_ds = (
            ClipDataset(
                self.store,
                val_samples,
                self.taxonomy,
                num_steps=d.num_steps,
                sampling=d.eval_sampling,
                face_size=face_size,
                stats=self.stats,
            )
            if val_samples
            else None
        )

    def base_meta(self) -> dict[str, Any]:
        stats = {"feature_stats": self.stats.to_dict()} if self.stats is not None else {}
        return {
            **stats,
            "taxonomy": self.taxonomy.to_dict(),
            "store_manifest": self.store.manifest.to_dict(),
            "num_steps": self.cfg.data.num_steps,
            "primary_metric": self.primary,
            "best_by": self.cfg.run.best_by,
            "run": self.cfg.run.name,
        }

    def sampler(self) -> TrainBatchSampler:
        r = self.cfg.run
        weights = None
        if r.balanced_sampler:
            if self.taxonomy.multi_label:
                raise ConfigError("run.balanced_sampler needs a single-label taxonomy")
            weights = class_weights(self.train_ds.action, self.taxonomy.num_classes)
        return TrainBatchSampler(
            len(self.train_ds), r.batch_size, seed=r.seed, weights=weights, rank=self.info.rank, world=self.info.world
        )

    def validate(self, model: nn.Module) -> dict[str, float]:
        if self.val_ds is None:
            return {}
        r = self.cfg.run
        out = infer(
            model,
            self.val_ds,
            device=self.device,
            batch_size=r.eval_batch_size,
            precision=r.precision,
            workers=r.workers,
            info=self.info,
            progress=r.progress and self.info.is_main,
            desc="val",
        )
        return score_outputs(self.taxonomy, self.val_ds, out) or {}
