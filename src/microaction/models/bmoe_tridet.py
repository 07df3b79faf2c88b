"""B-MoE-TriDet: body-part experts and per-step routing in front of TriDet's heads.

``forward(batch)`` on a sequence batch (``regions [B, R, T, D_r]``, ``global [B, T, D_g]``,
``mask [B, T]``, ``region_valid`` ``[B, R]`` or per step ``[B, R, T]``)::

    regions ── one expert per region (batched: LayerNorm → Linear → n_sgp masked SGP blocks → LayerNorm)
            ──▶ e [B, R, T, d]
    global  ── the same encoder on the global stream ──▶ g [B, T, d]
    routing (cross-attention per step): the global step queries the region steps
        w_t = softmax over the regions visible at t of  <Wq LN(g_t), Wk LN(e_{r,t} + emb_r)> / √d_h (heads averaged)
    fusion "gate" (default): [R·w_{t,1} e_{1,t}, …, R·w_{t,R} e_{R,t}, g_t]  ((R + 1)·d)
    fusion "mix" (B-MoE's convex mixture): [Σ_r w_{t,r} e_{r,t}, g_t]  (2d)
        ──▶ TriDet (backbone, neck, heads, Trident head)

Outputs: TriDet's plus ``routing [B, T, R]`` (0 at padded steps and invisible regions); every
detected segment carries the mean routing over its steps (``detect`` → ``routing [K, R]``): which
body part moved. With ``routing_weight > 0`` and ``class_regions`` (the regions of each class's
body group, from the taxonomy) the routing is also supervised inside ground-truth segments
(cross-entropy to the uniform distribution over the class's regions), as B-MoE's classifier is
in this repository's demo.

The gated concatenation keeps which region each feature came from (a convex mixture of the
experts' outputs does not: head and leg motion land in the same d dimensions), while the routing
still decides how much each region counts at each step; uniform routing gives the plain
concatenation of the experts (``bmoe_concat``'s input).

Where the experts depart from B-MoE's M3E (``models.m3e``): no self-attention layers and no
learned absolute positions. A recording is thousands of steps (an hour at 8 steps/s is 28,800):
full attention is quadratic in that, and positions beyond the training windows would never have
been trained. The experts keep M3E's input normalisation, projection and masked SGP blocks (the
micro-motion part, linear in T); long-range context comes from TriDet's downsampling backbone
after the routing. The parameters use M3E's names (``in_norm``, ``in_proj``, ``sgp``, ``norm``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from microaction.models.common import init_linear_layernorm, masked_softmax, nonempty_mask
from microaction.models.registry import register_model
from microaction.models.stacked import StackedLayerNorm, StackedLinear, StackedSGP
from microaction.models.tridet import _PAPER, _TINY, TriDet

__all__ = ["BMoETriDet", "SequenceExperts"]


class SequenceExperts(nn.Module):
    """G independent length-agnostic encoders on ``[G, B, T, D]`` (padded steps zero) → ``[G, B, T, d]``."""

    def __init__(self, G: int, in_dim: int, d_model: int, n_sgp: int, sgp_kernel: int, sgp_k: float, init_std: float):
        super().__init__()
        self.in_norm = StackedLayerNorm(G, in_dim)
        self.in_proj = StackedLinear(G, in_dim, d_model)
        self.sgp = nn.ModuleList(StackedSGP(G, d_model, sgp_kernel, sgp_k, init_std) for _ in range(n_sgp))
        self.norm = StackedLayerNorm(G, d_model)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mf = mask.to(x.dtype).view(1, *mask.shape, 1)
        h = self.in_proj(self.in_norm(x)) * mf
        for blk in self.sgp:
            h = blk(h, mask)
        return self.norm(h) * mf


_B_TINY = {**_TINY, "d_model": 32, "n_heads": 2, "n_sgp": 1}
_B_PAPER = {**_PAPER, "d_model": 512, "n_heads": 8, "n_sgp": 2}


@register_model("bmoe_tridet", presets={"tiny": dict(_B_TINY), "paper": dict(_B_PAPER)})
class BMoETriDet(TriDet):
    """B-MoE region experts + per-step cross-attention routing feeding TriDet (detector)."""

    class_region_table: torch.Tensor

    def __init__(
        self,
        *,
        d_model: int = 512,
        n_heads: int = 8,
        n_sgp: int = 2,
        sgp_kernel: int = 3,
        sgp_k: float = 1.5,
        sgp_init_std: float = 0.1,
        router_temperature: float = 1.0,
        fusion: str = "gate",
        routing_weight: float = 0.0,
        class_regions: Sequence[Sequence[str]] | None = None,
        **kwargs: Any,
    ) -> None:
        if d_model % n_heads or d_model % 16:
            raise ValueError(f"d_model {d_model} must be divisible by n_heads {n_heads} and by 16")
        if router_temperature <= 0:
            raise ValueError(f"router_temperature must be > 0, got {router_temperature}")
        if fusion not in ("gate", "mix"):
            raise ValueError(f"fusion must be 'gate' or 'mix', got {fusion!r}")
        self.fusion = fusion
        self._expert_args = (d_model, n_heads, n_sgp, sgp_kernel, sgp_k, sgp_init_std)
        super().__init__(**kwargs)
        if self.stream != "global":
            raise ValueError("bmoe_tridet reads every stream itself; stream must stay 'global'")
        self.router_temperature = float(router_temperature)
        self.routing_weight = float(routing_weight)
        R = len(self.regions)
        table = torch.zeros(0, R)
        if class_regions is not None:
            if len(class_regions) != self.num_classes:
                raise ValueError(f"class_regions has {len(class_regions)} entries for {self.num_classes} classes")
            table = torch.zeros(self.num_classes, R)
            for c, names in enumerate(class_regions):
                for n in names:
                    if n in self.regions:
                        table[c, self.regions.index(n)] = 1.0
        elif routing_weight > 0:
            raise ValueError("routing_weight > 0 needs class_regions (the regions of each class's body group)")
        self.register_buffer("class_region_table", table, persistent=False)

    def input_dim(self, region_dim: int, global_dim: int) -> int:
        d = self._expert_args[0]
        return d * (2 if self.fusion == "mix" else len(self.regions) + 1)

    def build_input(self, *, region_dim: int, global_dim: int) -> None:
        d, n_heads, n_sgp, kernel, k, std = self._expert_args
        R = len(self.regions)
        if R < 1:
            raise ValueError("bmoe_tridet needs at least one region")
        self.n_heads = n_heads
        self.experts = SequenceExperts(R, region_dim, d, n_sgp, kernel, k, std)
        self.global_encoder = SequenceExperts(1, global_dim, d, n_sgp, kernel, k, std)
        self.region_embed = nn.Parameter(torch.zeros(R, d))
        self.router_norm_q = nn.LayerNorm(d)
        self.router_norm_k = nn.LayerNorm(d)
        self.router_q = nn.Linear(d, d)
        self.router_k = nn.Linear(d, d)
        for m in (self.router_norm_q, self.router_norm_k, self.router_q, self.router_k):
            init_linear_layernorm(m)
        nn.init.trunc_normal_(self.region_embed, std=0.02, a=-0.04, b=0.04)

    def input_features(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        regions, glob = batch["regions"], batch["global"]
        B, R, T, _ = regions.shape
        if R != len(self.regions):
            raise ValueError(f"batch has {R} region streams, model was built for {len(self.regions)} {self.regions}")
        mask = batch["mask"].bool()
        valid = batch["region_valid"].bool()
        valid = valid[:, :, None].expand(B, R, T) if valid.dim() == 2 else valid
        seen = valid & mask[:, None, :]  # [B, R, T]
        x = torch.where(seen.unsqueeze(-1), regions, regions.new_zeros(()))
        e = self.experts(x.transpose(0, 1), mask).transpose(0, 1)  # [B, R, T, d]
        e = torch.where(seen.unsqueeze(-1), e, e.new_zeros(()))
        g = self.global_encoder(torch.where(mask.unsqueeze(-1), glob, glob.new_zeros(()))[None], mask)[0]
        q = self.router_q(self.router_norm_q(g))  # [B, T, d]
        k = self.router_k(self.router_norm_k(e + self.region_embed[None, :, None, :]))  # [B, R, T, d]
        d = q.shape[-1]
        dh = d // self.n_heads
        logits = (q.view(B, 1, T, self.n_heads, dh) * k.view(B, R, T, self.n_heads, dh)).sum(-1).mean(-1)
        logits = logits.transpose(1, 2) / (dh**0.5 * self.router_temperature)  # [B, T, R]
        key = seen.transpose(1, 2)
        w = masked_softmax(logits, nonempty_mask(key)) * key  # steps with no visible region: all zero
        if self.fusion == "mix":
            parts = torch.einsum("btr,brtd->btd", w, e)
        else:  # each expert's sequence scaled by its routing weight (× R: uniform routing = identity)
            parts = (e * (w.transpose(1, 2) * R).unsqueeze(-1)).permute(0, 2, 1, 3).flatten(2)
        fused = torch.cat([parts, g], -1)
        return torch.where(mask.unsqueeze(-1), fused, fused.new_zeros(())), {"routing": w}

    def loss(self, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        losses = super().loss(out, batch)
        if self.routing_weight <= 0 or self.class_region_table.numel() == 0:
            return losses
        w = out["routing"]  # [B, T, R]
        B, T, R = w.shape
        target = w.new_zeros(B, T, R)
        steps = torch.arange(T, device=w.device, dtype=torch.float32)
        for bi in range(B):
            for (a, b_), c in zip(batch["gt_segments"][bi].tolist(), batch["gt_labels"][bi].tolist()):
                if c < 0:
                    continue
                inside = (steps >= a) & (steps < b_)
                target[bi, inside] += self.class_region_table[c].to(w.dtype)
        has = (target.sum(-1) > 0) & batch["mask"].bool()
        if has.any():
            tgt = target[has] / target[has].sum(-1, keepdim=True)
            ce = -(tgt * w[has].clamp_min(1e-8).log()).sum(-1).mean()
        else:
            ce = w.sum() * 0.0
        losses["routing"] = ce.detach()
        losses["loss"] = losses["loss"] + self.routing_weight * ce
        return losses
