"""Building blocks shared by the model families (masking helpers, heads)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHeads", "masked_mean"]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting only positions where ``mask`` (broadcastable) is True."""
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


class ClassifierHeads(nn.Module):
    """Action head and (when ``num_body`` > 0) body head over one pooled feature."""

    def __init__(self, *, in_dim: int, num_classes: int, num_body: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.action = nn.Linear(in_dim, num_classes)
        self.body = nn.Linear(in_dim, num_body) if num_body > 0 else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.drop(x)
        out = {"action": self.action(x)}
        if self.body is not None:
            out["body"] = self.body(x)
        return out
