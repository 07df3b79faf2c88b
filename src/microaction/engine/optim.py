"""Optimisation helpers of the training loop: learning-rate schedule, AdamW parameter groups and
the AdamW itself (``adamw``: the fused kernel where the device has one), EMA."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["EMA", "adamw", "adamw_impl", "group_lr", "load_optimizer_state", "lr_at", "param_groups"]


def lr_at(
    step: int, total: int, warmup: int, base: float, *, schedule: str = "cosine", min_ratio: float = 0.0
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine (or constant)."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    if schedule == "constant" or total <= warmup:
        return base
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    lo = base * min_ratio
    return lo + (base - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _decays(p: nn.Parameter) -> bool:
    """Matrices decay; biases, norms and other 1-D parameters (and ``[1, ...]`` embeddings) do not.
    Judged on the shape of ONE module: a stacked parameter (``p.stack_dims`` leading axes, as
    ``StackedM3E`` marks its ``[G, ...]`` weights) decays exactly when its unstacked shape would."""
    core = p.shape[int(getattr(p, "stack_dims", 0)) :]
    return len(core) > 1 and core[0] != 1


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    experts: Iterable[nn.Parameter] = (),
    expert_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """AdamW groups: decayed / not decayed (``_decays``), and the same two for ``experts`` (B-MoE's
    expert encoders in stage 2: their own learning rate ``expert_lr_scale`` × lr). Every group has
    ``name`` (``"main"`` or ``"experts"``) and ``lr_scale``; empty groups are left out."""
    ids = {id(p) for p in experts}
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        buckets.setdefault(("experts" if id(p) in ids else "main", _decays(p)), []).append(p)
    groups = []
    for name in ("main", "experts"):
        for decay in (True, False):
            params = buckets.get((name, decay), [])
            if params or name == "main":  # the main pair always exists (a stable layout for resuming)
                groups.append(
                    {
                        "params": params,
                        "weight_decay": weight_decay if decay else 0.0,
                        "name": name,
                        "lr_scale": expert_lr_scale if name == "experts" else 1.0,
                    }
                )
    return groups


def group_lr(group: dict[str, Any], lr: float, step: int, *, unfreeze_step: int = 0, warmup_steps: int = 0) -> float:
    """The learning rate of one parameter group at optimizer step ``step``: the schedule's ``lr`` ×
    the group's ``lr_scale``; an ``experts`` group also ramps linearly from 0 over ``warmup_steps``
    steps starting at ``unfreeze_step`` (where frozen experts start training), so they do not
    start at the peak rate with an empty optimiser state."""
    lr = lr * float(group.get("lr_scale", 1.0))
    if group.get("name") == "experts" and warmup_steps > 0:
        lr *= min(1.0, max(0.0, (step - unfreeze_step + 1) / warmup_steps))
    return lr


def adamw_impl(params: Iterable[torch.Tensor]) -> str:
    """``"fused"``, ``"foreach"`` or ``"for-loop"``: the fastest AdamW implementation PyTorch offers
    for ``params`` (one device type, floating point). The fused kernel updates every tensor in one
    pass over its parameter, gradient and two moments (~12 passes with the for-loop version, the
    default on CPU): CPU from PyTorch 2.4, CUDA; foreach (a few multi-tensor passes) elsewhere on GPUs."""
    from torch.utils._foreach_utils import _get_foreach_kernels_supported_devices, _get_fused_kernels_supported_devices

    ps = list(params)
    kinds = {p.device.type for p in ps}
    if len(kinds) != 1 or not all(p.is_floating_point() for p in ps):
        return "for-loop"
    kind = kinds.pop()
    if kind in _get_fused_kernels_supported_devices():
        return "fused"
    return "foreach" if kind in _get_foreach_kernels_supported_devices() else "for-loop"


def _set_impl(opt: torch.optim.Optimizer, impl: str) -> None:
    for g in opt.param_groups:
        g["fused"] = True if impl == "fused" else None
        g["foreach"] = True if impl == "foreach" else None


def adamw(groups: list[dict[str, Any]], *, lr: float, betas: tuple[float, float], eps: float) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``groups`` (``param_groups``) with ``adamw_impl``'s implementation:
    the same update as the for-loop version, to float rounding."""
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    _set_impl(opt, adamw_impl(p for g in opt.param_groups for p in g["params"]))
    return opt


def load_optimizer_state(opt: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``opt.load_state_dict(state)`` keeping ``opt``'s implementation (a saved state carries the
    ``fused`` / ``foreach`` flags of the run that wrote it, e.g. an older run's for-loop AdamW)."""
    impl = {(g.get("fused"), g.get("foreach")) for g in opt.param_groups}
    opt.load_state_dict(state)
    if len(impl) == 1:
        fused, foreach = impl.pop()
        _set_impl(opt, "fused" if fused else "foreach" if foreach else "for-loop")


class EMA:
    """Exponential moving average of a model's weights (decay warmed up as (1 + n) / (10 + n))."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """``ema ← d·ema + (1 - d)·model`` for floating tensors (multi-tensor ops: two passes over
        all of them, not two Python-level ops per tensor), a copy for the others."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = model.state_dict()
        floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                floats[0].append(v)
                floats[1].append(src[k].detach())
            else:
                v.copy_(src[k])
        if floats[0]:
            torch._foreach_mul_(floats[0], d)
            torch._foreach_add_(floats[0], floats[1], alpha=1 - d)
