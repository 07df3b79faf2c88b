"""Training and evaluation of L-SSAT face models (``mar face train`` / ``mar face eval``): the face
task of the one training loop.

``FaceTask`` is a task of ``engine.trainer.run_stages``, as ``mar train``'s ``Experiment`` is: its
own model (``LSSAT``, whose batch forward returns the texture-MAE loss as
``aux_losses["texture"]``), data (``face.data.FaceImages``: uint8 images; shifts and flips drawn
from ``(seed, epoch, position)``), loss (``FaceLoss``: ``primary + λ · texture``) and metrics
(accuracy, group fairness, AUC: ``evaluate_split``); the engine's loop, learning-rate schedule,
checkpoints, exact resume, precision and run folder.

The run folder is ``mar train``'s (docs/architecture.md): ``config.yaml`` (the resolved face
config), ``log.txt``, ``metrics.json`` (``{"epochs": [{epoch, stage, lr, train_loss, train_parts:
{primary, texture}, steps, val: {...}, seconds}], "best": {...}}``), ``best.safetensors`` /
``last.safetensors`` (metadata key ``microaction`` = JSON with ``model`` = ``"lssat"``,
``model_kwargs``, ``task``, ``class_names``, ``group_names``, ``img_size``, ``channels``,
``primary_metric``, ``epoch``), ``last_state.pt``, and at the end ``eval_val.json`` /
``eval_test.json`` of the best checkpoint: ``{"split", "run", "checkpoint", "metrics": {accuracy,
worst_group_accuracy, accuracy_gap, accuracy_std, ...}, "per_group": {...}, "class_names",
"group_names"}``. The best epoch is chosen on the validation split by ``select_metric``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from microaction.data.samplers import TrainBatchSampler
from microaction.engine import distributed as dist_
from microaction.engine.checkpoint import CheckpointError, load_weights
from microaction.engine.experiment import RunLog, Stage
from microaction.engine.precision import resolve_precision
from microaction.engine.runs import start_run_dir
from microaction.engine.trainer import read_resume_state, run_stages
from microaction.engine.yamlconfig import ConfigError, to_dict
from microaction.face.config import (
    FaceTrainConfig,
    load_run_config,
    loop_config,
    model_kwargs_of,
    run_dir_of,
    validate_face_config,
)
from microaction.face.data import FaceData, FaceImages, FaceSplit, prepare_face_data
from microaction.face.fairness import attribute_report, auc_report, group_report
from microaction.models.face_vit import LSSAT, build_lssat, count_parameters, normalise_images, primary_loss

__all__ = [
    "FaceLoss",
    "FaceTask",
    "evaluate_face_run",
    "evaluate_split",
    "face_metrics",
    "load_face_checkpoint",
    "predict_split",
    "train_face",
]


# --------------------------------------------------------------------------------------------
# metrics


@torch.no_grad()
def predict_split(
    model: nn.Module, split: FaceSplit, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits ``[N, K]`` for a split."""
    model.eval()
    out = []
    for i in range(0, len(split), batch_size):
        x = normalise_images(split.images[i : i + batch_size]).to(device)
        out.append(model(x)["logits"].float().cpu())
    return torch.cat(out)


def _predictions(logits: torch.Tensor, task: str) -> np.ndarray:
    if task == "multiclass":
        return logits.argmax(1).numpy()
    if task == "binary":
        return (logits.reshape(-1) > 0).long().numpy()
    return (logits > 0).long().numpy()


def evaluate_split(
    model: nn.Module,
    split: FaceSplit,
    task: str,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Accuracy and group-fairness metrics (``group_report``) of ``model`` on ``split``; binary tasks
    add the AUC (overall and per group), multi-label tasks the per-attribute AUC and fairness."""
    logits = predict_split(model, split, batch_size=batch_size, device=device)
    return face_metrics(logits, split, task, class_names=class_names)


def face_metrics(
    logits: torch.Tensor, split: FaceSplit, task: str, *, class_names: list[str] | None = None
) -> dict[str, Any]:
    """The metrics of ``evaluate_split`` from a split's logits ``[N, K]``."""
    pred = _predictions(logits, task)
    true = split.labels.long().numpy()
    groups = np.array([split.group_names[i] for i in split.groups.tolist()])
    report = group_report(true, pred, groups, binary=task == "binary")
    if task == "binary":
        report.update(auc_report(true, logits.reshape(-1).numpy(), groups))
    elif task == "multilabel":
        report.update(auc_report(true, logits.numpy(), groups, names=class_names))
        report.update(attribute_report(true, pred, groups, names=class_names))
    return report


def _flat(report: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in report.items() if isinstance(v, int | float)}


# --------------------------------------------------------------------------------------------
# the task


class FaceLoss:
    """``loss(outputs, batch) -> (total, parts)``: the primary loss of the task plus
    ``aux_weight`` × the model's ``aux_losses["texture"]`` (L-SSAT's λ)."""

    def __init__(self, task: str, aux_weight: float) -> None:
        self.task, self.aux_weight = task, float(aux_weight)

    def __call__(
        self, outputs: dict[str, Any], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        primary = primary_loss(outputs["logits"].float(), batch["label"], self.task)  # type: ignore[arg-type]
        total, parts = primary, {"primary": primary}
        texture = (outputs.get("aux_losses") or {}).get("texture")
        if texture is not None and self.aux_weight > 0:
            total = total + self.aux_weight * texture
            parts["texture"] = texture
        value = float(total.detach())
        if not np.isfinite(value):
            raise RuntimeError(f"the face loss is not finite ({value}; parts {list(parts)})")
        return total, {k: float(v.detach()) for k, v in parts.items()}


class FaceTask:
    """The L-SSAT face task as the engine's training loop runs it (``engine.experiment.TrainTask``)."""

    def __init__(
        self,
        face: FaceTrainConfig,
        data: FaceData,
        run_dir: Path,
        info: dist_.DistInfo,
        device: torch.device,
        log: RunLog,
        *,
        progress: bool = True,
    ) -> None:
        self.face, self.data = face, data
        self.cfg = loop_config(face, progress=progress)
        self.run_dir, self.info, self.device, self.log = run_dir, info, device, log
        self.primary = face.select_metric
        self.train_ds = FaceImages(data.train, augment=face.augment, seed=face.seed)
        self.val_ds = data.val
        self.model_kwargs = model_kwargs_of(face, data.num_outputs)

    def sampler(self) -> TrainBatchSampler:
        return TrainBatchSampler(
            len(self.train_ds), self.cfg.run.batch_size, seed=self.face.seed, rank=self.info.rank, world=self.info.world
        )

    def validate(self, model: nn.Module) -> dict[str, float]:
        report = evaluate_split(
            model,
            self.data.val,
            self.face.data.task,
            batch_size=self.face.eval_batch_size,
            device=self.device,
            class_names=self.data.class_names,
        )
        return _flat(report)

    def build_model(self) -> LSSAT:
        return build_lssat(**{"preset": self.face.model.preset, **self.model_kwargs})

    def stage(self) -> Stage:
        """The one stage of a face run."""
        meta = {
            "model": "lssat",
            "model_kwargs": self.model_kwargs,
            "task": self.face.data.task,
            "class_names": self.data.class_names,
            "group_names": self.data.group_names,
            "img_size": self.face.data.img_size,
            "channels": self.face.data.channels,
            "primary_metric": self.face.select_metric,
            "experiment": self.face.name,
            "seed": self.face.seed,
        }
        return Stage(
            "main",
            self.cfg.run.epochs,
            self.cfg.optim.lr,
            self.build_model,
            lambda _model: FaceLoss(self.face.data.task, self.face.aux.weight),
            meta,
        )

    def signature(self) -> str:
        """The data a run was started on (a resumed run must find the same)."""
        d = self.data
        sizes = {"train": len(d.train), "val": len(d.val), "test": len(d.test) if d.test is not None else 0}
        return json.dumps({"face_data": to_dict(self.face.data), "sizes": sizes}, sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------
# the front: mar face train / eval


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
    validate_face_config(cfg, "config")
    run = Path(run_dir) if run_dir is not None else run_dir_of(cfg)
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info, device = dist_.setup(cfg.device)
    try:
        prec = resolve_precision(cfg.precision, device)  # refused before anything is written
        cfg = replace(cfg, precision_used=prec.used)
        state = read_resume_state(run, info) if resume else None
        if state is not None and to_dict(replace(load_run_config(run), precision_used=prec.used)) != to_dict(cfg):
            raise ConfigError(f"{run}: the config differs from the one this run was started with (config.yaml)")
        if state is None:
            import yaml

            start_run_dir(
                run,
                yaml.safe_dump(to_dict(cfg), sort_keys=False),
                info,
                overwrite or resume,
                command="mar face train",
                rename="--set name=... or run_dir=...",
            )
        log = RunLog(run / "log.txt", info.is_main, echo=echo)
        data = prepare_face_data(cfg, log)
        log(
            f"data: train {len(data.train)}, val {len(data.val)}, test {len(data.test) if data.test else 0}; "
            f"{len(data.class_names)} classes, groups {data.group_names}"
        )
        task = FaceTask(cfg, data, run, info, device, log, progress=echo)
        if state is not None and state.get("store") != task.signature():
            raise RuntimeError(f"{run}: the face data differs from the data this run was started with")
        log(
            f"model: lssat {cfg.model.preset} ({count_parameters(task.build_model()) / 1e6:.2f} M parameters), "
            f"aux={task.model_kwargs['aux_target']}; "
            + ("resuming" if state else "starting")
            + f" {run} (seed {cfg.seed}, device {device}, {prec.describe()})"
        )
        run_stages(task, [task.stage()], state, task.signature())
        if info.is_main:
            for split in ("val", "test"):
                if split == "test" and data.test is None:
                    continue
                m = evaluate_face_run(run, split=split, device=str(device), data=data)["metrics"]
                log(
                    f"best epoch on {split}: acc {m['accuracy']:.4f} worst-group {m['worst_group_accuracy']:.4f} "
                    f"gap {m['accuracy_gap']:.4f}"
                )
        dist_.barrier(info)
        return run
    finally:
        dist_.cleanup(info)
        torch.set_num_threads(threads)  # cfg.threads is for this run only


def load_face_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[LSSAT, dict[str, Any]]:
    """Model and metadata from a ``best``/``last.safetensors`` written by ``train_face``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    state, meta = load_weights(path)
    if meta.get("model") != "lssat":
        raise CheckpointError(f"{path}: checkpoint of model {meta.get('model')!r}, expected 'lssat'")
    model = LSSAT(**meta["model_kwargs"])
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def evaluate_face_run(
    run: str | Path,
    *,
    split: str = "test",
    checkpoint: str = "best",
    device: str = "cpu",
    data: FaceData | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a split of its config's data; writes ``eval_<split>.json``."""
    run = Path(run)
    cfg = load_run_config(run)
    dev = dist_.resolve_device(device)
    model, meta = load_face_checkpoint(run / f"{checkpoint}.safetensors", dev)
    if data is None:
        data = prepare_face_data(cfg, lambda _m: None)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    chosen = splits.get(split)
    if chosen is None:
        raise ValueError(f"{run}: no {split!r} split in its config (known: {[k for k, v in splits.items() if v]})")
    report = evaluate_split(
        model, chosen, meta["task"], batch_size=cfg.eval_batch_size, device=dev, class_names=meta.get("class_names")
    )
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
