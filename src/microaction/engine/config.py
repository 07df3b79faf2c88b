"""Experiment configs: one YAML file per experiment, mapped onto these dataclasses.

Every value a run uses is in its file, in the file it names as ``base`` (a variant lists only what
it changes; ``engine.yamlconfig`` has the merge rule) or in a default below, and the resolved, flat
config is written into the run folder. ``load_experiment(path, overrides)`` reads a file with
``--set a.b=c`` overrides; unknown keys are errors naming the key, the file and the line.

Sections: ``data`` (store, labels, temporal sampling, augmentation), ``model`` (registry name,
preset, keyword arguments), ``optim`` (AdamW, warm-up + cosine, clipping, accumulation, EMA),
``loss`` (weights of the loss terms), ``stages`` (the two-stage B-MoE recipe) and ``run`` (name,
output folder, seed, device, precision, epochs, batch size, workers, early stopping, sampler).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from microaction.engine.precision import PRECISIONS
from microaction.engine.yamlconfig import ConfigError, from_dict, load_config, to_dict

if TYPE_CHECKING:
    from microaction.taxonomy import Taxonomy

__all__ = [
    "DataConfig",
    "DetectionConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "StagesConfig",
    "check_routing_supervision",
    "config_to_yaml",
    "load_experiment",
]

_SAMPLING = ("uniform", "jitter")


@dataclass
class DataConfig:
    """Where the features and labels are, and how clips become fixed-length inputs."""

    store: str  # feature store folder (``mar extract`` / ``mar synth`` output)
    taxonomy: str = "ma52"  # built-in label set name or a YAML file
    manifest: str | None = None  # one annotation file with a ``split`` column ...
    annotations: dict[str, str] = field(default_factory=dict)  # ... or one file per split: {train: ..., val: ...}
    # (any format ``read_annotations`` reads: manifest .csv, MA-52 list .txt, iMiGUE labels, pose .pkl)
    expect: dict[str, Any] = field(default_factory=dict)  # manifest fields the store must have, e.g. {region_dim: 1408}
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    num_steps: int = 16  # T: every clip is sampled (or padded) to this many feature steps
    train_sampling: str = "jitter"  # jitter: a random step inside each of T segments; uniform: segment centres
    eval_sampling: str = "uniform"
    standardize: bool = False  # per-feature mean / std of the training split, kept in the checkpoint
    allow_missing: bool = False  # skip (with a warning) clips the store lacks instead of failing
    keep_no_person: bool = False  # use clips extracted with no person found (status no_person) instead of failing
    # augmentation (training only)
    flip_prob: float = 0.0  # horizontal flip = swap left/right regions (store's region flip permutation)
    region_drop_prob: float = 0.0  # hide each visible region with this probability (never all of them)
    feature_noise: float = 0.0  # std of Gaussian noise added to features

    def validate(self, where: str) -> None:
        if self.num_steps < 1:
            raise ConfigError(f"{where}: data.num_steps must be >= 1, got {self.num_steps}")
        for name in ("train_sampling", "eval_sampling"):
            if getattr(self, name) not in _SAMPLING:
                raise ConfigError(f"{where}: data.{name} must be one of {_SAMPLING}, got {getattr(self, name)!r}")
        if not self.manifest and not self.annotations:
            raise ConfigError(f"{where}: data needs a manifest (one file with a split column) or annotations per split")
        if self.manifest and self.annotations:
            raise ConfigError(
                f"{where}: give data.manifest (one file with a split column) or data.annotations, not both"
            )
        for name in ("flip_prob", "region_drop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{where}: data.{name} must be in [0, 1]")
        if self.feature_noise < 0:
            raise ConfigError(f"{where}: data.feature_noise must be >= 0")


@dataclass
class ModelConfig:
    """A registered model (``mar models``): name, optional size preset, extra keyword arguments.

    ``num_classes``, ``num_body``, ``regions``, ``region_dim`` and ``global_dim`` come from the
    taxonomy and the feature store; do not set them here.
    """

    name: str = "mean_mlp"
    preset: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self, where: str) -> None:
        fixed = {"num_classes", "num_body", "regions", "region_dim", "global_dim"} & set(self.kwargs)
        if fixed:
            raise ConfigError(f"{where}: model.kwargs.{sorted(fixed)[0]} is set from the taxonomy / store, remove it")


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay (per optimizer step)."""

    lr: float = 1e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01  # cosine floor as a fraction of lr
    clip_grad: float = 1.0  # max global gradient norm; 0 = off
    accumulate: int = 1  # gradient accumulation: optimizer step every N batches
    ema: bool = False  # evaluate and save an exponential moving average of the weights
    ema_decay: float = 0.999

    def validate(self, where: str) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"{where}: optim.schedule must be cosine or constant, got {self.schedule!r}")
        if self.lr <= 0 or self.accumulate < 1 or len(self.betas) != 2:
            raise ConfigError(f"{where}: optim needs lr > 0, accumulate >= 1 and two betas")
        if not 0.0 < self.ema_decay < 1.0:
            raise ConfigError(f"{where}: optim.ema_decay must be in (0, 1)")


@dataclass
class LossConfig:
    """Weights of the loss terms (``microaction.models.losses.LossComputer``; see its docstring)."""

    body_weight: float = 0.5  # λ_body: cross-entropy on the body head (models with a body head)
    label_smoothing: float = 0.0
    class_weights: str = "none"  # none | inverse | sqrt_inverse | effective (long-tailed data)
    cb_beta: float = 0.999  # β of the "effective number" class weights
    logit_adjust_tau: float = 0.0  # > 0: logit-adjusted CE (train on logits + τ·log prior)
    emb_weight: float = 0.0  # semantic alignment L_emb (0: off)
    emb_distance: str = "cosine"  # cosine | mse
    emb_on: str = "features"  # features (the classifier's input) | experts (every M3E output, one projection)
    label_embeddings: str = "minilm"  # minilm (offline MiniLM of the label names) or a .npy [C, E] file
    router_entropy_weight: float = 0.0  # routing entropy regulariser (mixture models; 0: off)
    load_balance_weight: float = 0.0  # routing load-balance regulariser (0: off)
    routing_weight: float = 0.0  # body-part routing supervision: routing vs the body group's regions (0: off)
    aux_weights: dict[str, float] = field(default_factory=dict)  # weights of a model's own aux_losses
    # weight of aux losses named neither here nor in the model's aux_loss_weights (micro_dualnet: mac 0.1)
    aux_default_weight: float = 1.0

    def validate(self, where: str) -> None:
        if self.class_weights not in ("none", "inverse", "sqrt_inverse", "effective"):
            raise ConfigError(f"{where}: loss.class_weights must be none, inverse, sqrt_inverse or effective")
        if self.emb_distance not in ("cosine", "mse"):
            raise ConfigError(f"{where}: loss.emb_distance must be cosine or mse")
        if self.emb_on not in ("features", "experts"):
            raise ConfigError(f"{where}: loss.emb_on must be features or experts")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"{where}: loss.label_smoothing must be in [0, 1)")


@dataclass
class StagesConfig:
    """The two-stage B-MoE recipe; both stages run from one ``mar train``, each resumable.

    Stage 1 (``pretrain_epochs`` > 0): one M3E classifier per region stream and one on the global
    stream, each trained with its own classification loss (+ L_emb). Stage 2: the B-MoE model of
    ``model`` with its experts and global encoder initialised from stage 1, trained whole; its
    experts stay fixed for the first ``freeze_experts_epochs`` epochs, and so does the router
    (a router trained on frozen experts learns to prefer whichever expert is best *before* they
    adapt, the start of a collapse) unless ``router_trains_frozen``. In stage 2 the experts (and
    the global encoder) are their own AdamW group: learning rate ``expert_lr_scale`` × ``optim.lr``,
    warmed up linearly over ``expert_warmup_epochs`` from the epoch they start training.
    """

    pretrain_epochs: int = 0
    pretrain_lr: float | None = None  # default: optim.lr
    pretrain_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs of the stage-1 M3E models
    freeze_experts_epochs: int = 0
    router_trains_frozen: bool = False  # train the router while the experts are frozen (off: frozen too)
    expert_lr_scale: float = 1.0  # stage-2 learning rate of the experts, as a fraction of optim.lr
    expert_warmup_epochs: float = 0.0  # linear warm-up of the experts' learning rate once they train

    def validate(self, where: str) -> None:
        if self.pretrain_epochs < 0 or self.freeze_experts_epochs < 0:
            raise ConfigError(f"{where}: stages.pretrain_epochs and stages.freeze_experts_epochs must be >= 0")
        if self.pretrain_lr is not None and self.pretrain_lr <= 0:
            raise ConfigError(f"{where}: stages.pretrain_lr must be > 0")
        if self.expert_lr_scale < 0 or self.expert_warmup_epochs < 0:
            raise ConfigError(f"{where}: stages.expert_lr_scale and stages.expert_warmup_epochs must be >= 0")


@dataclass
class DetectionConfig:
    """Temporal detection (``task: detection``, ``engine.detection``): windows of recordings.

    ``data.manifest`` (or ``data.annotations``) is then a temporal annotation file (MMA-52 JSON /
    CSV, iMiGUE instances, SMG finelabels, generic segment CSV) and every store item a recording.
    """

    window: int = 256  # training window (feature steps), drawn at random positions of the recordings
    windows_per_epoch: int = 0  # 0: as many as cover the training recordings twice
    min_inside: float = 0.5  # a segment cut by the window is kept when this share of it is inside
    tious: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    classifier_run: str | None = None  # sliding_window: start from this clip run's classifier
    # trained for ``mar live``: this share of the windows ends 0-``online_reach`` seconds after a
    # ground-truth end (the live detector's view: a window ending a look-ahead after an action),
    # and a segment cut by a window's right edge is not labelled (it has not ended yet)
    online: float = 0.0
    online_reach: float = 2.0

    def validate(self, where: str) -> None:
        if self.window < 8 or self.windows_per_epoch < 0:
            raise ConfigError(f"{where}: detection.window must be >= 8 and detection.windows_per_epoch >= 0")
        if not 0.0 < self.min_inside <= 1.0:
            raise ConfigError(f"{where}: detection.min_inside must be in (0, 1]")
        if not 0.0 <= self.online <= 1.0 or self.online_reach < 0:
            raise ConfigError(f"{where}: detection.online must be in [0, 1] and detection.online_reach >= 0")
        if not self.tious or any(not 0.0 < t < 1.0 for t in self.tious):
            raise ConfigError(f"{where}: detection.tious must be thresholds in (0, 1)")


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"  # the run folder is out_dir/name
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | bf16! (forced); see engine/precision.py
    precision_used: str | None = None  # written by mar train: what ``precision`` resolved to (fp32 | bf16)
    # written by mar train: what picks best.safetensors: val (the validation split's primary metric)
    # or last (no validation split with labels: the last epoch)
    best_by: str | None = None
    epochs: int = 30
    batch_size: int = 32  # global: summed over processes under torchrun
    eval_batch_size: int = 64
    workers: int = 0  # 0: load in a prefetching thread (fastest for feature stores); N: DataLoader processes
    early_stopping: int = 0  # stop after this many epochs without a better validation metric; 0 = off
    balanced_sampler: bool = False  # draw training clips with probability ∝ 1 / class frequency
    save_every_steps: int = 0  # also save a resumable state every N optimizer steps (0: each epoch only)
    threads: int = 0  # torch CPU threads; 0 = torch's default
    progress: bool = True  # tqdm progress bars
    max_steps: int = 0  # stop after this many optimizer steps (0: no limit; for smoke tests)

    def validate(self, where: str) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"{where}: run.precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision_used not in (None, "fp32", "bf16"):
            raise ConfigError(f"{where}: run.precision_used must be fp32 or bf16 (mar train writes it)")
        if self.best_by not in (None, "val", "last"):
            raise ConfigError(f"{where}: run.best_by must be val or last (mar train writes it)")
        if self.max_steps < 0:
            raise ConfigError(f"{where}: run.max_steps must be >= 0 (0: no limit)")
        if self.epochs < 1 or self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError(f"{where}: run.epochs, run.batch_size and run.eval_batch_size must be >= 1")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ConfigError(f"{where}: run.name {self.name!r} is not a folder name")


@dataclass
class ExperimentConfig:
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    stages: StagesConfig = field(default_factory=StagesConfig)
    run: RunConfig = field(default_factory=RunConfig)
    task: str = "classification"  # classification (clips) | detection (recordings, engine.detection)
    detection: DetectionConfig = field(default_factory=DetectionConfig)

    def validate(self, where: str = "config") -> ExperimentConfig:
        if self.task not in ("classification", "detection"):
            raise ConfigError(f"{where}: task must be classification or detection, got {self.task!r}")
        for f in dataclasses.fields(self):
            if f.name != "task":
                getattr(self, f.name).validate(where)
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read an experiment YAML (with ``a.b=c`` overrides); errors name the key and the file."""
    return load_config(ExperimentConfig, path, overrides).validate(str(path))


def experiment_from_dict(data: dict[str, Any], *, where: str = "config") -> ExperimentConfig:
    return from_dict(ExperimentConfig, data, where=where).validate(where)


def config_to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)


def check_routing_supervision(routing_weight: float, taxonomy: Taxonomy) -> None:
    """Refuse ``loss.routing_weight`` > 0 with a label set that cannot supervise routing: one
    without body groups (iMiGUE, SocialGesture, MPII-GI), or whose groups name no regions."""
    if routing_weight <= 0:
        return
    if not taxonomy.has_body:
        raise ConfigError(
            f"loss.routing_weight {routing_weight:g}: label set {taxonomy.name!r} has no body groups (no body level "
            "above its classes), and routing is supervised towards the regions of each clip's body group; "
            "set loss.routing_weight: 0"
        )
    if not taxonomy.body_regions:
        raise ConfigError(
            f"loss.routing_weight {routing_weight:g}: label set {taxonomy.name!r} has body groups but no "
            "body_regions (the feature regions each group moves) to supervise routing towards"
        )
