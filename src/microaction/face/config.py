"""Configuration of an L-SSAT face run (``mar face train CONFIG``): dataclasses + YAML, unknown keys
are errors. ``loop_config`` maps it onto the engine's ``run`` / ``optim`` settings, so a face run
goes through the same training loop as ``mar train`` (``engine.trainer.run_stages``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from microaction.engine.config import OptimConfig, RunConfig
from microaction.engine.yamlconfig import ConfigError, from_dict, load_config
from microaction.models.face_vit import PRESETS

__all__ = [
    "SELECT_METRICS",
    "FaceLoop",
    "FaceTrainConfig",
    "load_face_config",
    "load_run_config",
    "loop_config",
    "model_kwargs_of",
    "run_dir_of",
    "validate_face_config",
]

SELECT_METRICS = ("accuracy", "worst_group_accuracy", "auc", "auc_macro")


@dataclass
class FaceDataConfig:
    root: str = "runs/face_synth"  # folder with the CSVs (and, by default, the images)
    train_csv: str = "train.csv"
    val_csv: str = "val.csv"
    test_csv: str | None = "test.csv"  # null: no test split
    image_root: str | None = None  # image paths are relative to this (default: root)
    task: str = "multiclass"  # multiclass | multilabel | binary
    num_classes: int | None = None  # default: from the labels (multiclass); required for multilabel
    class_names: list[str] | None = None  # default: root/meta.json's, else "0", "1", ...
    img_size: int = 64
    channels: int = 1  # 1 grey, 3 RGB (texture targets always use the grey image)
    synthesize_if_missing: bool = False  # generate the synthetic face dataset into root when absent
    format: str = "csv"  # csv (path,label[,group] files) | celeba (root/list_attr_celeba.txt + list_eval_partition.txt)
    attributes: list[str] | None = None  # celeba: the target attributes (default: all 40)
    group_attribute: str | None = None  # celeba: the attribute that is the fairness group (e.g. Male)
    synth: dict[str, Any] = field(default_factory=dict)  # SynthFaceConfig overrides for that


@dataclass
class FaceModelConfig:
    preset: str = "micro"  # micro | tiny | small | base
    patch_size: int = 16
    dim: int | None = None  # overrides of the preset
    depth: int | None = None
    heads: int | None = None
    mlp_ratio: float = 4.0
    pool: str = "mean"  # mean | cls
    head_dropout: float = 0.0


@dataclass
class FaceAuxConfig:
    target: str = "ldp"  # none | pixel | ldp | lbp | lbp_uniform
    loss: str = "bits"  # bits (BCE on 8 bit-planes) | code (softmax over codes)
    weight: float = 1.0  # λ in L = L_primary + λ L_texture
    mask_ratio: float = 0.75
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    ldp_k: int = 3


@dataclass
class FaceOptimConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    grad_clip: float = 1.0
    max_steps: int | None = None  # stop after this many optimiser steps (smoke tests)


@dataclass
class FaceAugmentConfig:
    shift: int = 4  # random translation up to ± this many pixels (reflect padding)
    hflip: bool = False  # off for the synthetic set: a mirror turns a 45° texture into 135°


@dataclass
class FaceTrainConfig:
    name: str = "face"
    out_dir: str = "runs"
    run_dir: str | None = None  # default: out_dir/name_seed<seed>
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    precision: str = "auto"  # as run.precision of mar train: auto | fp32 | bf16 | bf16! (engine/precision.py)
    precision_used: str | None = None  # written into the run's config.yaml: what precision resolved to
    threads: int | None = None  # torch CPU threads (default: torch's)
    select_metric: str = "accuracy"  # accuracy | worst_group_accuracy | auc (binary) | auc_macro (multilabel)
    eval_batch_size: int = 256
    data: FaceDataConfig = field(default_factory=FaceDataConfig)
    model: FaceModelConfig = field(default_factory=FaceModelConfig)
    aux: FaceAuxConfig = field(default_factory=FaceAuxConfig)
    optim: FaceOptimConfig = field(default_factory=FaceOptimConfig)
    augment: FaceAugmentConfig = field(default_factory=FaceAugmentConfig)


def load_face_config(path: str | Path, overrides: list[str] | None = None) -> FaceTrainConfig:
    cfg = load_config(FaceTrainConfig, path, overrides)
    validate_face_config(cfg, str(path))
    return cfg


def validate_face_config(cfg: FaceTrainConfig, where: str) -> None:
    checks = [
        (cfg.data.task in ("multiclass", "multilabel", "binary"), "data.task", "multiclass, multilabel, binary"),
        (
            cfg.aux.target in ("none", "pixel", "ldp", "lbp", "lbp_uniform"),
            "aux.target",
            "none, pixel, ldp, lbp, lbp_uniform",
        ),
        (cfg.aux.loss in ("bits", "code"), "aux.loss", "bits, code"),
        (cfg.model.preset in PRESETS, "model.preset", ", ".join(PRESETS)),
        (cfg.model.pool in ("mean", "cls"), "model.pool", "mean, cls"),
        (cfg.select_metric in SELECT_METRICS, "select_metric", ", ".join(SELECT_METRICS)),
        (cfg.data.format in ("csv", "celeba"), "data.format", "csv, celeba"),
        (cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:"), "device", "cpu, cuda, auto"),
        (cfg.data.channels in (1, 3), "data.channels", "1, 3"),
    ]
    for ok, key, known in checks:
        if not ok:
            raise ConfigError(f"{where}: {key}: unknown value (known: {known})")
    auc_task = {"auc": "binary", "auc_macro": "multilabel"}.get(cfg.select_metric)
    if auc_task is not None and cfg.data.task != auc_task:
        raise ConfigError(f"{where}: select_metric {cfg.select_metric} needs data.task {auc_task}")
    if cfg.data.format == "celeba" and cfg.data.task == "multiclass":
        raise ConfigError(f"{where}: CelebA attributes make a multilabel or binary task (data.task)")
    loop_config(cfg)  # the engine's own checks (precision, epochs, batch sizes)
    if cfg.data.img_size % cfg.model.patch_size:
        raise ConfigError(f"{where}: data.img_size {cfg.data.img_size} is not a multiple of model.patch_size")


def model_kwargs_of(cfg: FaceTrainConfig, num_outputs: int) -> dict[str, Any]:
    m, a = cfg.model, cfg.aux
    size = {**PRESETS[m.preset], **{k: v for k, v in (("dim", m.dim), ("depth", m.depth), ("heads", m.heads)) if v}}
    return {
        "num_outputs": num_outputs,
        "task": cfg.data.task,
        "img_size": cfg.data.img_size,
        "patch_size": m.patch_size,
        "in_chans": cfg.data.channels,
        **size,
        "mlp_ratio": m.mlp_ratio,
        "pool": m.pool,
        "head_dropout": m.head_dropout,
        "aux_target": a.target if a.weight > 0 else "none",
        "aux_loss": a.loss,
        "mask_ratio": a.mask_ratio,
        "decoder_dim": a.decoder_dim,
        "decoder_depth": a.decoder_depth,
        "decoder_heads": a.decoder_heads,
        "ldp_k": a.ldp_k,
    }


def run_dir_of(cfg: FaceTrainConfig) -> Path:
    return Path(cfg.run_dir) if cfg.run_dir else Path(cfg.out_dir) / f"{cfg.name}_seed{cfg.seed}"


def load_run_config(run: str | Path) -> FaceTrainConfig:
    """The resolved config a face run folder was trained with."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a face run folder (no config.yaml)")
    return from_dict(FaceTrainConfig, yaml.safe_load(path.read_text()) or {}, where=str(path))


@dataclass
class FaceLoop:
    """The engine's settings of a face run (what ``engine.experiment.LoopConfig`` asks for)."""

    run: RunConfig
    optim: OptimConfig


def loop_config(cfg: FaceTrainConfig, *, progress: bool = True) -> FaceLoop:
    """The engine's ``run`` / ``optim`` settings of a face config: AdamW with linear warm-up and
    cosine decay to 0, gradient clipping, one stage of ``optim.epochs`` epochs."""
    o = cfg.optim
    shared = (
        "name",
        "out_dir",
        "seed",
        "device",
        "precision",
        "precision_used",
        "eval_batch_size",
    )  # same meaning in both
    run = RunConfig(
        **{k: getattr(cfg, k) for k in shared},
        epochs=o.epochs,
        batch_size=o.batch_size,
        threads=cfg.threads or 0,
        progress=progress,
        max_steps=o.max_steps or 0,
    )
    optim = OptimConfig(
        lr=o.lr, weight_decay=o.weight_decay, warmup_epochs=o.warmup_epochs, min_lr_ratio=0.0, clip_grad=o.grad_clip
    )
    run.validate("config")
    optim.validate("config")
    return FaceLoop(run, optim)
