"""Training and evaluation of L-SSAT face models (``mar face train`` / ``mar face eval``).

A small loop for images held in memory (the engine's loop is for feature sequences), with the
same run-folder conventions (docs/architecture.md):

``RUN/config.yaml`` (resolved), ``log.txt``, ``metrics.json`` (``{"epochs": [{epoch, stage, lr,
train_loss, train_primary, train_texture, val: {...}, seconds}], "best": {...}}``),
``best.safetensors`` / ``last.safetensors`` (weights only; metadata key ``microaction`` = JSON with
``model`` = ``"lssat"``, ``model_kwargs``, ``task``, ``class_names``, ``group_names``,
``img_size``, ``channels``, ``primary_metric``, ``epoch``), and at the end ``eval_val.json`` /
``eval_test.json`` of the best checkpoint: ``{"split", "run", "checkpoint", "metrics": {accuracy,
worst_group_accuracy, accuracy_gap, accuracy_std, ...}, "per_group": {...}, "class_names",
"group_names"}``. Nothing pickled.

Per step: augment the uint8 batch (random shift, optional horizontal flip), compute the grey
image (texture targets are computed from it, exactly, on the fly), normalise the input to
[-1, 1], ``loss = primary + λ · texture`` (the model's ``losses``), AdamW with a linear warm-up
and cosine decay, gradient clipping. The best epoch is chosen on the validation split by
``select_metric`` (``accuracy`` or ``worst_group_accuracy``).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from microaction.engine.precision import PRECISIONS, autocast, resolve_precision
from microaction.engine.runs import RunExistsError
from microaction.engine.yamlconfig import ConfigError, from_dict, load_config, to_dict
from microaction.face.data import FaceSplit, load_face_split, read_face_csv
from microaction.face.fairness import group_report
from microaction.face.model import LSSAT, PRESETS, build_lssat, count_parameters
from microaction.face.texture import to_grey

__all__ = [
    "FaceTrainConfig",
    "evaluate_run",
    "evaluate_split",
    "load_face_checkpoint",
    "load_face_config",
    "load_run_config",
    "train_face",
]


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
    threads: int | None = None  # torch CPU threads (default: torch's)
    precision: str = "auto"  # auto | fp32 | bf16 | bf16! (engine/precision.py)
    precision_used: str | None = None  # written into the run's config.yaml: what precision resolved to
    select_metric: str = "accuracy"  # accuracy | worst_group_accuracy
    eval_batch_size: int = 256
    data: FaceDataConfig = field(default_factory=FaceDataConfig)
    model: FaceModelConfig = field(default_factory=FaceModelConfig)
    aux: FaceAuxConfig = field(default_factory=FaceAuxConfig)
    optim: FaceOptimConfig = field(default_factory=FaceOptimConfig)
    augment: FaceAugmentConfig = field(default_factory=FaceAugmentConfig)


def load_face_config(path: str | Path, overrides: list[str] | None = None) -> FaceTrainConfig:
    cfg = load_config(FaceTrainConfig, path, overrides)
    _validate(cfg, str(path))
    return cfg


def _validate(cfg: FaceTrainConfig, where: str) -> None:
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
        (cfg.select_metric in ("accuracy", "worst_group_accuracy"), "select_metric", "accuracy, worst_group_accuracy"),
        (cfg.device in ("cpu", "cuda", "auto") or cfg.device.startswith("cuda:"), "device", "cpu, cuda, auto"),
        (cfg.data.channels in (1, 3), "data.channels", "1, 3"),
        (cfg.precision in PRECISIONS, "precision", ", ".join(PRECISIONS)),
    ]
    for ok, key, known in checks:
        if not ok:
            raise ConfigError(f"{where}: {key}: unknown value (known: {known})")
    if cfg.data.img_size % cfg.model.patch_size:
        raise ConfigError(f"{where}: data.img_size {cfg.data.img_size} is not a multiple of model.patch_size")


# --------------------------------------------------------------------------------------------
# data


@dataclass
class _Data:
    train: FaceSplit
    val: FaceSplit
    test: FaceSplit | None
    class_names: list[str]
    group_names: list[str]
    num_outputs: int


def _prepare_data(cfg: FaceTrainConfig, log: Callable[[str], None]) -> _Data:
    d = cfg.data
    root = Path(d.root)
    if not (root / d.train_csv).is_file() and d.synthesize_if_missing:
        from microaction.face.synthetic import generate_face_dataset

        log(f"generating the synthetic face dataset into {root} ({d.synth or 'defaults'})")
        generate_face_dataset(root, **d.synth)
    image_root = d.image_root or root
    csvs = {"train": d.train_csv, "val": d.val_csv, **({"test": d.test_csv} if d.test_csv else {})}
    items = {
        s: read_face_csv(root / c, image_root=image_root, task=d.task, num_classes=d.num_classes)
        for s, c in csvs.items()
    }
    if d.task == "binary":
        num_classes, num_outputs = 2, 1
    elif d.num_classes is not None:
        num_classes = num_outputs = d.num_classes
    elif d.task == "multilabel":
        raise ConfigError("data.num_classes is required for a multilabel task")
    else:
        num_classes = num_outputs = 1 + max(int(it.label) for v in items.values() for it in v)  # type: ignore[arg-type]
    class_names = d.class_names
    if class_names is None and (root / "meta.json").is_file():
        class_names = json.loads((root / "meta.json").read_text()).get("class_names")
    if class_names is None or len(class_names) != num_classes:
        class_names = [str(i) for i in range(num_classes)]
    group_names = sorted({it.group for v in items.values() for it in v})
    splits = {
        s: load_face_split(
            v, img_size=d.img_size, channels=d.channels, task=d.task, num_classes=num_outputs, group_names=group_names
        )
        for s, v in items.items()
    }
    return _Data(splits["train"], splits["val"], splits.get("test"), list(class_names), group_names, num_outputs)


def _normalise(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8.float().div_(127.5).sub_(1.0)


def _grey(images_u8: torch.Tensor) -> torch.Tensor:
    return images_u8[:, 0] if images_u8.shape[1] == 1 else to_grey(images_u8)


def _augment(x: torch.Tensor, aug: FaceAugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Random shift (reflect padding) and optional horizontal flip of a uint8 batch ``[B, C, H, W]``."""
    b, _, h, w = x.shape
    if aug.shift > 0:
        s = aug.shift
        padded = torch.nn.functional.pad(x.float(), (s, s, s, s), mode="reflect").to(torch.uint8)
        offs = torch.randint(0, 2 * s + 1, (b, 2), generator=g)
        x = torch.stack([padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offs.tolist())])
    if aug.hflip:
        flip = torch.rand(b, generator=g) < 0.5
        x = torch.where(flip.view(b, 1, 1, 1), x.flip(-1), x)
    return x


# --------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def predict_split(
    model: LSSAT, split: FaceSplit, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits ``[N, K]`` for a split."""
    model.eval()
    out = []
    for i in range(0, len(split), batch_size):
        x = _normalise(split.images[i : i + batch_size]).to(device)
        out.append(model(x)["logits"].float().cpu())
    return torch.cat(out)


def _predictions(logits: torch.Tensor, task: str) -> np.ndarray:
    if task == "multiclass":
        return logits.argmax(1).numpy()
    if task == "binary":
        return (logits.reshape(-1) > 0).long().numpy()
    return (logits > 0).long().numpy()


def evaluate_split(
    model: LSSAT, split: FaceSplit, task: str, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Accuracy and group-fairness metrics (``group_report``) of ``model`` on ``split``."""
    logits = predict_split(model, split, batch_size=batch_size, device=device)
    pred = _predictions(logits, task)
    true = split.labels.long().numpy()
    groups = np.array([split.group_names[i] for i in split.groups.tolist()])
    return group_report(true, pred, groups, binary=task == "binary")


def _flat(report: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in report.items() if isinstance(v, int | float)}


# --------------------------------------------------------------------------------------------
# checkpoints


def _save(model: LSSAT, path: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"microaction": json.dumps(meta)})
    tmp.replace(path)


def load_face_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[LSSAT, dict[str, Any]]:
    """Model and metadata from a ``best``/``last.safetensors`` written by ``train_face``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("microaction")
    if raw is None:
        raise ValueError(f"{path}: not a microaction face checkpoint (no 'microaction' metadata)")
    meta = json.loads(raw)
    if meta.get("model") != "lssat":
        raise ValueError(f"{path}: checkpoint of model {meta.get('model')!r}, expected 'lssat'")
    model = LSSAT(**meta["model_kwargs"])
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval(), meta


# --------------------------------------------------------------------------------------------
# training


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


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


STATE_FORMAT = 1
_RUN_FILES = ("log.txt", "metrics.json", "last.safetensors", "best.safetensors", "last_state.pt")


def load_run_config(run: str | Path) -> FaceTrainConfig:
    """The resolved config a face run folder was trained with."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run}: not a face run folder (no config.yaml)")
    return from_dict(FaceTrainConfig, yaml.safe_load(path.read_text()) or {}, where=str(path))


def train_face(
    cfg: FaceTrainConfig,
    *,
    echo: bool = True,
    resume: bool = False,
    overwrite: bool = False,
    run_dir: str | Path | None = None,
) -> Path:
    """Train ``cfg`` into its run folder (``run_dir``, default ``run_dir_of(cfg)``); returns the folder.

    A folder holding a run already is refused unless ``resume`` (continue from its
    ``last_state.pt``; a folder without one starts afresh) or ``overwrite`` (start again)."""
    _validate(cfg, "config")
    prec = resolve_precision(cfg.precision, _resolve_device(cfg.device))  # refused before anything is written
    cfg = replace(cfg, precision_used=prec.used)
    run = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    existing = [n for n in _RUN_FILES if (run / n).exists()]
    state: dict[str, Any] | None = None
    if resume and (run / "last_state.pt").is_file():
        state = _load_state(run / "last_state.pt")
        saved = load_run_config(run)
        if to_dict(replace(saved, precision_used=prec.used)) != to_dict(cfg):
            raise ConfigError(f"{run}: the config differs from the one this run was started with (config.yaml)")
    elif existing and not overwrite and not resume:
        raise RunExistsError(
            f"{run} holds a run already ({', '.join(existing)}): resume it (mar face train --resume {run}), "
            "or pass --overwrite"
        )
    run.mkdir(parents=True, exist_ok=True)
    if state is None:
        for n in existing:
            (run / n).unlink()
        (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    log_file = (run / "log.txt").open("a" if state is not None else "w", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        log_file.write(line + "\n")
        log_file.flush()
        if echo:
            print(line, flush=True)

    log(prec.describe())
    threads = torch.get_num_threads()
    try:
        return _train(cfg, run, log, state)
    finally:
        torch.set_num_threads(threads)  # cfg.threads is for this run only
        log_file.close()


def _load_state(path: Path) -> dict[str, Any]:
    try:
        state = dict(torch.load(str(path), map_location="cpu", weights_only=True))
    except Exception as e:
        raise RuntimeError(f"{path}: unreadable training state ({e})") from None
    if state.get("format") != STATE_FORMAT:
        raise RuntimeError(f"{path}: state format {state.get('format')} is not {STATE_FORMAT}")
    return state


def _save_state(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, str(tmp))
    tmp.replace(path)  # a crash while writing leaves the previous state whole


def _train(cfg: FaceTrainConfig, run: Path, log: Callable[[str], None], state: dict[str, Any] | None = None) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    device = _resolve_device(cfg.device)
    data = _prepare_data(cfg, log)
    log(
        f"data: train {len(data.train)}, val {len(data.val)}, test {len(data.test) if data.test else 0}; "
        f"{len(data.class_names)} classes, groups {data.group_names}"
    )
    kwargs = model_kwargs_of(cfg, data.num_outputs)
    model = build_lssat(**{"preset": cfg.model.preset, **kwargs}).to(device)
    log(
        f"model: lssat {cfg.model.preset} ({count_parameters(model) / 1e6:.2f} M parameters), aux={kwargs['aux_target']}"
    )
    meta = {
        "model": "lssat",
        "model_kwargs": kwargs,
        "task": cfg.data.task,
        "class_names": data.class_names,
        "group_names": data.group_names,
        "img_size": cfg.data.img_size,
        "channels": cfg.data.channels,
        "primary_metric": cfg.select_metric,
        "experiment": cfg.name,
        "seed": cfg.seed,
    }
    o = cfg.optim
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "token" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "token" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=o.lr
    )
    n = len(data.train)
    steps_per_epoch = max(1, n // o.batch_size)  # drop the last incomplete batch
    total = steps_per_epoch * o.epochs if o.max_steps is None else min(o.max_steps, steps_per_epoch * o.epochs)
    warmup = max(1, round(o.warmup_epochs * steps_per_epoch))
    g = torch.Generator().manual_seed(cfg.seed)
    g_mask = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    history: dict[str, Any] = {"epochs": [], "best": None}
    best_value, step, first = -1.0, 0, 1
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["rng_data"])
        g_mask.set_state(state["rng_mask"])
        torch.set_rng_state(state["rng_torch"])
        history, best_value = json.loads(state["history"]), float(state["best_value"])
        step, first = int(state["step"]), int(state["epoch"]) + 1
        log(f"resuming after epoch {state['epoch']} (step {step})")
    for epoch in range(first, o.epochs + 1):
        if step >= total:
            break
        t0 = time.time()
        model.train()
        perm = torch.randperm(n, generator=g)
        sums = {"loss": 0.0, "primary": 0.0, "texture": 0.0}
        count = 0
        for b in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[b * o.batch_size : (b + 1) * o.batch_size]
            x_u8 = _augment(data.train.images[idx], cfg.augment, g)
            grey = _grey(x_u8).to(device)
            x = _normalise(x_u8).to(device)
            y = data.train.labels[idx].to(device)
            lr = _lr_at(step, total, warmup, o.lr)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(device, cfg.precision_used or "fp32"):
                out = model.losses(x, y, grey=grey, aux_weight=cfg.aux.weight, generator=g_mask)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            if o.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
            opt.step()
            step += 1
            count += 1
            for k in sums:
                if k in out:
                    sums[k] += float(out[k].detach())
            if not math.isfinite(float(out["loss"].detach())):
                raise RuntimeError(f"loss is not finite at epoch {epoch}, step {step}")
        with autocast(device, cfg.precision_used or "fp32"):
            val = evaluate_split(model, data.val, cfg.data.task, batch_size=cfg.eval_batch_size, device=device)
        val_flat = _flat(val)
        record = {
            "epoch": epoch,
            "stage": "train",
            "lr": lr,
            "train_loss": sums["loss"] / max(1, count),
            "train_primary": sums["primary"] / max(1, count),
            "train_texture": sums["texture"] / max(1, count) if model.aux is not None else None,
            "steps": step,
            "val": val_flat,
            "seconds": round(time.time() - t0, 2),
        }
        history["epochs"].append(record)
        value = val_flat[cfg.select_metric]
        meta_epoch = {**meta, "epoch": epoch}
        _save(model, run / "last.safetensors", meta_epoch)
        improved = value > best_value
        if improved:
            best_value = value
            history["best"] = {"epoch": epoch, "metric": cfg.select_metric, "value": value, "val": val_flat}
            _save(model, run / "best.safetensors", meta_epoch)
        (run / "metrics.json").write_text(json.dumps(history, indent=1) + "\n")
        _save_state(
            run / "last_state.pt",
            {
                "format": STATE_FORMAT,
                "epoch": epoch,
                "step": step,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "rng_data": g.get_state(),
                "rng_mask": g_mask.get_state(),
                "rng_torch": torch.get_rng_state(),
                "history": json.dumps(history),
                "best_value": best_value,
            },
        )
        tex = f" texture {record['train_texture']:.4f}" if record["train_texture"] is not None else ""
        log(
            f"epoch {epoch}/{o.epochs} loss {record['train_loss']:.4f} (primary {record['train_primary']:.4f}{tex}) "
            f"val acc {val_flat['accuracy']:.4f} worst {val_flat['worst_group_accuracy']:.4f} "
            f"gap {val_flat['accuracy_gap']:.4f}{' *' if improved else ''} [{record['seconds']:.1f}s]"
        )
    for split in ("val", "test"):
        if split == "test" and data.test is None:
            continue
        result = evaluate_run(run, split=split, device=str(device), data=data)
        m = result["metrics"]
        log(
            f"best epoch on {split}: acc {m['accuracy']:.4f} worst-group {m['worst_group_accuracy']:.4f} gap {m['accuracy_gap']:.4f}"
        )
    return run


def evaluate_run(
    run: str | Path,
    *,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "cpu",
    data: _Data | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a split of its config's data; writes ``eval_<split>.json``."""
    run = Path(run)
    cfg = load_run_config(run)
    dev = _resolve_device(device)
    model, meta = load_face_checkpoint(run / f"{checkpoint}.safetensors", dev)
    if data is None:
        data = _prepare_data(cfg, lambda _m: None)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    if split not in splits or splits[split] is None:
        raise ValueError(f"{run}: no {split!r} split in its config (known: {[k for k, v in splits.items() if v]})")
    report = evaluate_split(model, splits[split], meta["task"], batch_size=cfg.eval_batch_size, device=dev)  # type: ignore[arg-type]
    result = {
        "split": split,
        "run": str(run),
        "checkpoint": checkpoint,
        "epoch": meta.get("epoch"),
        "experiment": meta.get("experiment"),
        "seed": meta.get("seed"),
        "aux_target": meta["model_kwargs"].get("aux_target"),
        "metrics": _flat(report),
        "per_group": {k: v for k, v in report.items() if isinstance(v, dict)},
        "class_names": meta.get("class_names"),
        "group_names": meta.get("group_names"),
    }
    (run / f"eval_{split}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
