"""Baselines for ablations, on the shared input contract (see ``microaction.models``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from microaction.data.store import DEFAULT_REGIONS
from microaction.models.common import ClassifierHeads, masked_mean, region_step_mask
from microaction.models.registry import register_model

__all__ = ["MeanMLP"]


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
