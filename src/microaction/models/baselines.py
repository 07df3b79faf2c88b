"""Baselines for ablations, on the shared input contract (see ``microaction.models``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from microaction.data.store import DEFAULT_REGIONS
from microaction.models.common import ClassifierHeads, masked_mean, pooled_stats, region_step_mask
from microaction.models.registry import register_model

__all__ = ["MeanMLP", "PooledLinear", "RunningStandardize"]


@register_model("mean_mlp", presets={"tiny": {"hidden": 64}, "paper": {"hidden": 1024}})
class MeanMLP(nn.Module):
    """Mean-pooled region and global features, concatenated, then an MLP."""

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        hidden: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.regions = tuple(regions)
        in_dim = len(self.regions) * region_dim + global_dim
        self.norm = nn.LayerNorm(in_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.heads = ClassifierHeads(in_dim=hidden, num_classes=num_classes, num_body=num_body)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = batch["mask"]
        seen = region_step_mask(batch)  # [B, R, T]: each region's mean is over the steps it is seen
        regions = masked_mean(batch["regions"], seen, dim=2)  # [B, R, D]; 0 for an invisible region
        glob = masked_mean(batch["global"], mask, dim=1)
        x = torch.cat([regions.flatten(1), glob], dim=-1)
        return {"features": self.mlp(self.norm(x))}

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**feats, **self.heads(feats["features"])}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))


class RunningStandardize(nn.Module):
    """Per-feature standardisation with the statistics of every training sample seen so far
    (exact running mean / variance, Chan's merge). Training batches update the statistics and are
    then scaled with them, never with the batch's own (so a sample's output does not depend on its
    batch, and a batch of one works); eval uses the stored ones. They are buffers: saved with the
    weights."""

    count: torch.Tensor
    mean: torch.Tensor
    m2: torch.Tensor

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(dim, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                xb = x.detach().to(torch.float64).reshape(-1, x.shape[-1])
                nb = float(xb.shape[0])
                mb = xb.mean(0)
                m2b = ((xb - mb) ** 2).sum(0)
                n = self.count + nb
                d = mb - self.mean
                self.mean += d * (nb / n)
                self.m2 += m2b + d * d * (self.count * nb / n)
                self.count.fill_(float(n))
        if float(self.count) == 0:
            return x
        var = self.m2 / self.count.clamp_min(1.0)
        return (x - self.mean.to(x.dtype)) / (var.to(x.dtype) + self.eps).sqrt()


@register_model("pooled_linear", presets={"tiny": {}, "paper": {}})
class PooledLinear(nn.Module):
    """Linear probe: multinomial logistic regression on pooled mean / std / mean |Δ| (standardised)."""

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        streams: str = "all",
    ) -> None:
        super().__init__()
        if streams not in ("all", "global"):
            raise ValueError(f"streams must be 'all' or 'global', got {streams!r}")
        self.regions = tuple(regions)
        self.streams = streams
        in_dim = 3 * (global_dim + (len(self.regions) * region_dim if streams == "all" else 0))
        self.standardize = RunningStandardize(in_dim)
        # one linear layer per head: a logistic regression (its L2 penalty is optim.weight_decay)
        self.heads = ClassifierHeads(in_dim=in_dim, num_classes=num_classes, num_body=num_body)
        for lin in (self.heads.action, self.heads.body):
            if lin is not None:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        mask = batch["mask"].bool()
        parts = [pooled_stats(batch["global"], mask)]
        if self.streams == "all":
            reg = pooled_stats(batch["regions"], region_step_mask(batch))  # [B, R, 3D], steps each is seen
            parts.append(reg.flatten(1))
        return {"features": self.standardize(torch.cat(parts, -1))}

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**feats, **self.heads(feats["features"])}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))
