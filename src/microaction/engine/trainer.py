"""The training loop (``mar train``): plain PyTorch, one file, read it top to bottom.

``train(config_path, overrides)`` builds the data (``data.loader``), the model (registry), the
loss (``models.losses``) and AdamW, then runs the stages of the config: the main stage, preceded
by the B-MoE stage-1 pre-training when ``stages.pretrain_epochs`` > 0 (see ``engine.stages``).

Per epoch: batches (bf16 autocast where ``run.precision`` resolves to it: ``engine.precision``; gradient accumulation, clipping, warm-up + cosine
learning rate set per optimizer step, EMA optional), then validation with the official metrics,
``best.safetensors`` when the primary metric improves, ``last.safetensors``, the resumable
``last_state.pt``, ``metrics.json`` and a line in ``log.txt``.

Exact resume: ``last_state.pt`` holds everything the rest of the run depends on (weights,
optimizer moments, EMA, global RNG states, stage / epoch / batch position, loss sums, best so far,
metric history). The data order is a function of ``(seed, epoch)`` and every per-clip random
choice of ``(seed, epoch, position)`` (``data.loader``), so ``train(resume=RUN_DIR)`` after a
kill at any instant replays the same batches and ends with the same weights, bit for bit on CPU.
A state is saved every epoch and, with ``run.save_every_steps``, every N optimizer steps.

The loop (``run_stages``) runs any ``engine.experiment.TrainTask``: ``train`` builds the action
task (``Experiment``) from an experiment config, or the detection task
(``engine.detection_task.DetectionTask``) from a ``task: detection`` one; ``mar face train`` runs
the L-SSAT face task (``face.train.FaceTask``) through the same loop. ``run.max_steps`` caps the
optimizer steps. One stage is a sequence of named steps: ``build_stage`` (model, loss, optimizer,
EMA, DDP; a saved state loaded), then per epoch ``train_epoch`` (``optimizer_step`` per step) and
``end_epoch`` (``epoch_entry``, ``update_best``: best / patience, checkpoints, ``snapshot``), and
``finish_stage``.

Under ``torchrun`` each process takes its share of every global batch (``run.batch_size`` is the
global batch), gradients are averaged by DDP, and only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from microaction.data.loader import make_loader
from microaction.data.store import StoreMismatch
from microaction.engine import distributed as dist_
from microaction.engine.checkpoint import get_rng_state, load_state, save_state, save_weights, set_rng_state
from microaction.engine.config import ExperimentConfig, config_to_yaml, experiment_from_dict, load_experiment
from microaction.engine.detection_task import DetectionTask
from microaction.engine.experiment import Experiment, Stage, TrainTask
from microaction.engine.hostmem import keep_freed_host_memory
from microaction.engine.optim import EMA, adamw, group_lr, load_optimizer_state, lr_at, param_groups
from microaction.engine.precision import autocast, resolve_precision
from microaction.engine.runs import check_run_dir, resume_config, start_run_dir, write_metrics
from microaction.engine.stages import plan_stages
from microaction.engine.yamlconfig import apply_overrides

__all__ = ["read_resume_state", "run_stages", "train"]

STATE_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# small pieces


class TrainStep(nn.Module):
    """Model + loss as one module, so DDP also averages the gradients of a loss's own parameters
    (the L_emb projection). ``forward(batch) -> (total loss, parts)``."""

    def __init__(self, model: nn.Module, loss: Any) -> None:
        super().__init__()
        self.model = model
        self.loss = loss  # registered as a submodule when it is an nn.Module

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = self.loss(self.model(batch), batch)
        return total, {k: v for k, v in parts.items() if k != "total"}


def _improved(value: float | None, best: float | None) -> bool:
    if value is None:
        return True  # no validation labels: the latest weights are the best we know
    return best is None or value > best


# ---------------------------------------------------------------------------------------------
# one stage


def fresh_state(stage: str, *, store: str, history: str = "[]") -> dict[str, Any]:
    return {
        "stage": stage,
        "epoch": 0,
        "batch": 0,
        "step": 0,
        "loss_sum": 0.0,
        "loss_count": 0,
        "parts_sum": {},
        "seconds": 0.0,
        "patience": 0,
        "history": history,
        "best": "null",
        "store": store,
        "done": False,
    }


@dataclass
class StageRun:
    """What one stage trains with, made by ``build_stage`` and used by the steps below."""

    exp: TrainTask
    stage: Stage
    model: nn.Module
    step_module: TrainStep
    net: nn.Module  # step_module, or its DDP wrapper
    opt: torch.optim.Optimizer
    ema: EMA | None
    frozen: set[int]  # ids of the parameters held fixed for stage.freeze_epochs
    sampler: Any
    num_batches: int  # per epoch
    total: int  # optimizer steps of the stage (capped by run.max_steps)
    warmup: int
    unfreeze: int  # the step at which frozen parameters start training
    expert_warmup: int
    precision: str

    @property
    def loss_module(self) -> nn.Module | None:
        return self.step_module.loss if isinstance(self.step_module.loss, nn.Module) else None

    def weights(self) -> nn.Module:
        """The weights checkpoints and validation see: the EMA's when there is one."""
        return self.ema.model if self.ema is not None else self.model


def build_stage(exp: TrainTask, stage: Stage, state: dict[str, Any]) -> StageRun:
    """Model, loss, optimizer, EMA and DDP wrapper of ``stage``, loaded from ``state`` when it is a
    saved one (its global RNG states too); the schedule's step counts."""
    cfg, info, device = exp.cfg, exp.info, exp.device
    r, o = cfg.run, cfg.optim
    if torch.device(device).type == "cpu":
        keep_freed_host_memory()  # large activations reuse memory instead of new zero-filled pages
    torch.manual_seed(r.seed)
    model = stage.build().to(device)
    step_module = TrainStep(model, stage.make_loss(model)).to(device)
    if info.rank > 0:
        torch.manual_seed(r.seed + 1_000_003 * info.rank)  # different dropout per process; rank 0 = single process
    groups = param_groups(
        step_module,
        o.weight_decay,
        experts=stage.experts(model) if stage.experts is not None else (),
        expert_lr_scale=stage.expert_lr_scale,
    )
    opt = adamw(groups, lr=stage.lr, betas=(o.betas[0], o.betas[1]), eps=o.eps)
    ema = EMA(model, o.ema_decay) if o.ema else None
    frozen = {id(p) for p in stage.freeze(model)} if stage.freeze is not None and stage.freeze_epochs > 0 else set()
    if "model" in state:  # a saved state: carry on from it
        model.load_state_dict(state["model"])
        if isinstance(step_module.loss, nn.Module):
            step_module.loss.load_state_dict(state["loss"])
        load_optimizer_state(opt, state["optimizer"])
        if ema is not None:
            ema.model.load_state_dict(state["ema"])
            ema.updates = int(state["ema_updates"])
        rngs = state["rng"]
        set_rng_state(rngs[info.rank] if len(rngs) == info.world else rngs[0])
    net: nn.Module = step_module
    if info.enabled:
        net = nn.parallel.DistributedDataParallel(
            step_module, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    sampler = exp.sampler()
    nb = sampler.num_batches()
    steps_per_epoch = math.ceil(nb / o.accumulate)
    total = steps_per_epoch * stage.epochs
    if r.max_steps:
        total = min(total, r.max_steps)
    return StageRun(
        exp, stage, model, step_module, net, opt, ema, frozen, sampler, nb, total,
        warmup=round(o.warmup_epochs * steps_per_epoch),
        unfreeze=steps_per_epoch * stage.freeze_epochs if frozen else 0,
        expert_warmup=round(stage.expert_warmup_epochs * steps_per_epoch),
        # resolved before the run started (train / the face front record it as run.precision_used)
        precision=r.precision_used or resolve_precision(r.precision, device).used,
    )  # fmt: skip


def snapshot(run: StageRun, state: dict[str, Any]) -> dict[str, Any]:
    """The resumable state now: ``state`` plus weights, optimizer, EMA and every process's RNG
    states (collective under DDP: every process calls it)."""
    info = run.exp.info
    rngs = dist_.gather_objects(info, get_rng_state())
    out = {k: v for k, v in state.items() if k not in ("model", "loss", "optimizer", "rng", "ema")}
    out.update(
        model={k: v.detach().cpu().clone() for k, v in run.model.state_dict().items()},
        optimizer=run.opt.state_dict(),
        rng=rngs,
        world=info.world,
        format=STATE_FORMAT,
    )
    loss_module = run.loss_module
    if loss_module is not None:
        out["loss"] = {k: v.detach().cpu().clone() for k, v in loss_module.state_dict().items()}
    if run.ema is not None:
        out.update(ema=run.ema.model.state_dict(), ema_updates=run.ema.updates)
    return out


def optimizer_step(run: StageRun, state: dict[str, Any], freeze_now: bool) -> None:
    """One optimizer step on the accumulated gradients: the schedule's learning rate per group,
    frozen parameters left alone, clipping, AdamW, EMA; counts the step in ``state``."""
    o, stage, opt = run.exp.cfg.optim, run.stage, run.opt
    lr = lr_at(state["step"], run.total, run.warmup, stage.lr, schedule=o.schedule, min_ratio=o.min_lr_ratio)
    for g in opt.param_groups:
        g["lr"] = group_lr(g, lr, state["step"], unfreeze_step=run.unfreeze, warmup_steps=run.expert_warmup)
    if freeze_now:
        for p in run.model.parameters():
            if id(p) in run.frozen:
                p.grad = None
    if o.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_([p for p in run.step_module.parameters() if p.grad is not None], o.clip_grad)
    opt.step()
    opt.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update(run.model)
    state["step"] += 1


def train_epoch(run: StageRun, state: dict[str, Any], epoch: int, t0: float) -> None:
    """The batches of ``epoch`` from ``state["batch"]`` on (gradient accumulation, a saved state
    every ``run.save_every_steps`` steps, ``run.max_steps``); loss sums and position in ``state``."""
    exp, stage = run.exp, run.stage
    r, info, acc, nb = exp.cfg.run, exp.info, exp.cfg.optim.accumulate, run.num_batches
    start = state["batch"]
    run.sampler.set_epoch(epoch, start)
    run.step_module.train()
    freeze_now = epoch < stage.freeze_epochs and bool(run.frozen)
    bar = tqdm(
        make_loader(exp.train_ds, run.sampler, workers=r.workers),
        total=nb,
        initial=start,
        unit="batch",
        desc=f"{stage.name} {epoch + 1}/{stage.epochs}",
        leave=False,
        disable=None if (r.progress and info.is_main) else True,  # None: off when stderr is not a terminal
        mininterval=0.5,
    )
    clips, t_bar = 0, time.perf_counter()
    for b, batch in enumerate(bar, start=start):
        batch = {k: v.to(exp.device, non_blocking=True) for k, v in batch.items()}
        stepping = (b + 1) % acc == 0 or b + 1 == nb
        sync = run.net.no_sync() if info.enabled and not stepping else nullcontext()  # type: ignore[operator]
        with sync:
            with autocast(exp.device, run.precision):
                loss, parts = run.net(batch)
            (loss / acc).backward()
        state["loss_sum"] += float(loss.detach())
        state["loss_count"] += 1
        for k, v in parts.items():
            state["parts_sum"][k] = state["parts_sum"].get(k, 0.0) + float(v)
        clips += len(batch["index"])
        if stepping:
            optimizer_step(run, state, freeze_now)
            state["batch"] = b + 1
            if r.save_every_steps and state["step"] % r.save_every_steps == 0 and b + 1 < nb:
                state["seconds"] = time.perf_counter() - t0
                snap = snapshot(run, state)
                if info.is_main:
                    save_state(exp.run_dir / "last_state.pt", snap)
            if r.max_steps and state["step"] >= r.max_steps:
                break
        if info.is_main and r.progress:
            bar.set_postfix(
                loss=f"{state['loss_sum'] / max(1, state['loss_count']):.4f}",
                clips_s=f"{clips / max(1e-9, time.perf_counter() - t_bar):.0f}",
                refresh=False,
            )
    bar.close()


def update_best(
    state: dict[str, Any], entry: dict[str, Any], *, primary: str, early_stopping: int, best_by: str | None = None
) -> tuple[bool, bool]:
    """After an epoch (``entry``: its history line): the best so far and the patience count in
    ``state``. Only the main stage competes; an epoch without a validation value (no labels) is
    the best we know. Returns (improved, stop: ``early_stopping`` epochs without improvement)."""
    if entry["stage"] != "main":
        return False, False
    value = entry["val"].get(primary) if entry["val"] else None
    best = json.loads(state.get("best", "null"))
    improved = best is None or _improved(value, best.get("value"))
    if improved:
        best = {"epoch": entry["epoch"], "stage": entry["stage"], "metric": primary, "value": value,
                "val": entry["val"], **({"by": best_by} if best_by else {})}  # fmt: skip
        state["patience"] = 0
        state["best"] = json.dumps(best)
    else:
        state["patience"] += 1
    return improved, early_stopping > 0 and state["patience"] >= early_stopping


def epoch_entry(run: StageRun, state: dict[str, Any], epoch: int, t0: float) -> dict[str, Any]:
    """The history line of an epoch that started at ``t0``: losses averaged over all processes
    (collective), validation."""
    sums = dist_.gather_objects(run.exp.info, (state["loss_sum"], state["loss_count"], state["parts_sum"]))
    n_loss = sum(s[1] for s in sums)
    val = run.exp.validate(run.weights())
    return {
        "epoch": epoch + 1,
        "stage": run.stage.name,
        "lr": run.opt.param_groups[0]["lr"],
        "lr_experts": next((g["lr"] for g in run.opt.param_groups if g["name"] == "experts"), None),
        "train_loss": sum(s[0] for s in sums) / max(1, n_loss),
        "train_parts": {k: sum(s[2].get(k, 0.0) for s in sums) / max(1, n_loss) for k in sums[0][2]},
        "steps": state["step"],
        "val": val,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def end_epoch(run: StageRun, state: dict[str, Any], epoch: int, t0: float) -> bool:
    """Validation, best / patience, the epoch's checkpoints, state, metrics and log line; returns
    whether early stopping ends the stage."""
    exp, stage, r = run.exp, run.stage, run.exp.cfg.run
    entry = epoch_entry(run, state, epoch, t0)
    value = entry["val"].get(exp.primary) if entry["val"] else None
    history = json.loads(state.get("history", "[]"))
    history.append(entry)
    improved, stop = update_best(state, entry, primary=exp.primary, early_stopping=r.early_stopping,
                                 best_by=r.best_by)  # fmt: skip
    state.update(epoch=stage.epochs if stop else epoch + 1, batch=0, loss_sum=0.0, loss_count=0, parts_sum={},
                 seconds=0.0, history=json.dumps(history))  # fmt: skip
    snap = snapshot(run, state)
    if exp.info.is_main:
        sd = run.weights().state_dict()
        meta = {**stage.meta, "stage": stage.name, "epoch": epoch + 1, "metric": value}
        if stage.name == "main":
            if improved:
                save_weights(exp.run_dir / "best.safetensors", sd, meta)
            save_weights(exp.run_dir / "last.safetensors", sd, meta)
        save_state(exp.run_dir / "last_state.pt", snap)
        write_metrics(exp.run_dir, snap)
        best = json.loads(state["best"])
        shown = f" val {exp.primary} {100 * value:.2f}" if value is not None else ""
        best_s = (
            f" (best {100 * best['value']:.2f} @ {best['epoch']})" if best and best.get("value") is not None else ""
        )
        exp.log(f"[{stage.name}] epoch {epoch + 1}/{stage.epochs} lr {entry['lr']:.2e} "
                f"loss {entry['train_loss']:.4f}{shown}{best_s} {entry['seconds']:.1f}s")  # fmt: skip
    if stop:
        exp.log(f"[{stage.name}] early stopping: no better val {exp.primary} for {r.early_stopping} epochs")
    return stop


def finish_stage(run: StageRun, state: dict[str, Any]) -> dict[str, Any]:
    """The stage is over: its state marked done (resuming then goes straight on), its weights
    handed on (``stage.on_done``); returns the final state."""
    exp = run.exp
    final = snapshot(run, state)
    final["done"] = True
    if exp.info.is_main:
        save_state(exp.run_dir / "last_state.pt", final)
        write_metrics(exp.run_dir, final)
        if run.stage.on_done is not None:
            run.stage.on_done(run.weights())
    dist_.barrier(exp.info)
    return final


def _run_stage(exp: TrainTask, stage: Stage, state: dict[str, Any]) -> dict[str, Any]:
    """Train ``stage`` from ``state`` (a saved state of this stage, or ``fresh_state``); returns the final state."""
    state = dict(state)
    run = build_stage(exp, stage, state)
    r = exp.cfg.run
    if state["epoch"] == 0 and state["batch"] == 0:
        exp.log(
            f"[{stage.name}] {stage.epochs} epochs × {run.num_batches} batches of {r.batch_size} "
            f"({len(exp.train_ds)} train / {len(exp.val_ds) if exp.val_ds else 0} val {getattr(exp, 'items', 'clips')}), "
            f"{sum(p.numel() for p in run.model.parameters()):,} parameters"
        )
    elif "model" in state:
        exp.log(f"[{stage.name}] resuming after epoch {state['epoch']} (batch {state['batch']}, step {state['step']})")
    for epoch in range(state["epoch"], stage.epochs):
        if r.max_steps and state["step"] >= r.max_steps:
            break
        t0 = time.perf_counter() - state["seconds"]
        train_epoch(run, state, epoch, t0)
        if end_epoch(run, state, epoch, t0):
            break
    return finish_stage(run, state)


# ---------------------------------------------------------------------------------------------
# the entry point


def train(
    config_path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | None = None,
    *,
    config: ExperimentConfig | None = None,
    resume: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train from a YAML config (or a config object), or resume a run folder; returns the run folder.

    ``overrides`` are ``a.b=value`` strings (``mar train --set``). A resumed run (``resume=RUN_DIR``)
    reads ``RUN_DIR/config.yaml``; only ``RESUMABLE_OVERRIDES`` may change then.
    """
    overrides = list(overrides or [])
    if resume is not None:
        cfg = resume_config(Path(resume), overrides)
    elif config is not None:
        cfg = config
        if overrides:
            data = cfg.to_dict()
            apply_overrides(data, overrides)
            cfg = experiment_from_dict(data)
    elif config_path is not None:
        cfg = load_experiment(Path(config_path), overrides)
    else:
        raise ValueError("train() needs a config path, a config object or a run folder to resume")
    threads = torch.get_num_threads()
    if cfg.run.threads > 0:
        torch.set_num_threads(cfg.run.threads)
    info, device = dist_.setup(cfg.run.device)
    try:
        state: dict[str, Any] | None = None
        if resume is not None:
            run_dir = Path(resume)
            state = read_resume_state(run_dir, info)
        else:
            run_dir = cfg.run_dir
            check_run_dir(run_dir, overwrite)
        exp = make_task(cfg, run_dir, info, device)  # reads and checks the data before anything is written
        started_in, cfg.run.precision_used = cfg.run.precision_used, exp.precision.used  # config.yaml records it
        cfg.run.best_by = "val" if has_val_labels(exp) else "last"  # and what picks best.safetensors
        if resume is None:
            start_run_dir(cfg.run_dir, config_to_yaml(cfg), info, overwrite)
        for w in exp.warnings:
            exp.log(w)
        if cfg.run.best_by == "last":
            exp.log(
                f"no validation split {cfg.data.val_split!r} with labels: best.safetensors is the last epoch "
                "(run.best_by: last)"
            )
        store_sig = json.dumps(exp.store.manifest.signature(), sort_keys=True)
        if state is not None and state.get("store") != store_sig:
            raise StoreMismatch(f"{cfg.data.store}: the feature store differs from the one {run_dir} was started with")
        exp.log(
            ("resuming" if state else "starting") + f" {run_dir} (seed {cfg.run.seed}, device {device}, "
            f"{info.world} process(es), {exp.precision.describe()})"
        )
        if state is not None and started_in not in (None, exp.precision.used):
            exp.log(f"note: this run started in {started_in} and continues in {exp.precision.used} on {device}")
        run_stages(exp, [exp.stage()] if isinstance(exp, DetectionTask) else plan_stages(exp), state, store_sig)
        return run_dir
    finally:
        dist_.cleanup(info)
        torch.set_num_threads(threads)


def make_task(
    cfg: ExperimentConfig, run_dir: Path, info: dist_.DistInfo, device: torch.device
) -> Experiment | DetectionTask:
    """The task of a config: clips (``Experiment``) or recordings (``task: detection``)."""
    if cfg.task == "detection":
        return DetectionTask(cfg, run_dir, info, device)
    return Experiment(cfg, run_dir, info, device)


def has_val_labels(exp: Experiment | DetectionTask) -> bool:
    """Whether the task's validation split has labels to pick the best epoch by."""
    if isinstance(exp, DetectionTask):
        return exp.validated
    ds = exp.val_ds
    if ds is None:
        return False
    if exp.taxonomy.multi_label:
        return ds.multi_hot is not None and bool(ds.multi_hot.any())
    return bool((ds.action >= 0).any())


def read_resume_state(run_dir: Path, info: dist_.DistInfo) -> dict[str, Any] | None:
    """``run_dir/last_state.pt`` checked against this process set (``None`` when there is none)."""
    if not (run_dir / "last_state.pt").is_file():
        return None
    state = load_state(run_dir / "last_state.pt")
    if state.get("format") != STATE_FORMAT:
        raise RuntimeError(f"{run_dir}/last_state.pt: state format {state.get('format')} is not {STATE_FORMAT}")
    if state.get("world", 1) != info.world:
        raise RuntimeError(
            f"{run_dir} was trained with {state.get('world')} process(es); resume it with the same number"
        )
    return state


def run_stages(exp: TrainTask, stages: list[Stage], state: dict[str, Any] | None, signature: str) -> None:
    """The stages in order; a resumed run re-enters the stage its state belongs to. ``signature``
    names the data the run was started on (a resumed state must carry the same)."""
    names = [s.name for s in stages]
    if state is None:
        state = fresh_state(names[0], store=signature)
    if state["stage"] not in names:
        raise RuntimeError(f"{exp.run_dir}: saved stage {state['stage']!r} is not one of this config's stages {names}")
    for i in range(names.index(state["stage"]), len(stages)):
        if state["stage"] != stages[i].name:
            state = fresh_state(stages[i].name, store=signature, history=state.get("history", "[]"))
        if state.get("done") and i == len(stages) - 1:
            exp.log(f"{exp.run_dir} has finished already; nothing to do")
            return
        state = _run_stage(exp, stages[i], state)
    best = json.loads(state.get("best", "null"))
    if best and best.get("value") is not None:
        exp.log(f"finished: best val {exp.primary} {100 * best['value']:.2f} at epoch {best['epoch']}")
    else:
        exp.log("finished")
