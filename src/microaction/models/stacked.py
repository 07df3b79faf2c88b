"""Stacked building blocks: G independent copies of a layer computed together (B-MoE's per-region
experts, B-MoE-TriDet's stacked SGP). Parameter names equal the single modules'; shapes are
``(G, *single shape)``. The linear layers are batched matrix products whose backward writes the
weight gradient in the weight's own layout; the SGP blocks run ``sgp.sgp_core`` channels-last."""

from __future__ import annotations

import math
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from microaction.models.common import Dropout, attention
from microaction.models.sgp import SGPParams, sgp_core, sgp_window

__all__ = [
    "GMM_LOOP_MIN",
    "StackedAttention",
    "StackedLayerNorm",
    "StackedLinear",
    "StackedMlp",
    "StackedSGP",
    "StackedTransformerLayer",
    "stacked_linear",
]


class _WB(nn.Module):
    """A ``weight`` and a ``bias`` parameter (lets stacked modules mirror the single modules' names)."""

    def __init__(self, weight: tuple[int, ...], bias: tuple[int, ...]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(weight))
        self.bias = nn.Parameter(torch.empty(bias))


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype active for ``device_type``, or None."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        enabled = torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
    if not enabled:
        return None
    try:
        return torch.get_autocast_dtype(device_type)
    except AttributeError:  # torch < 2.4
        return torch.get_autocast_cpu_dtype() if device_type == "cpu" else torch.get_autocast_gpu_dtype()


# per-expert products of at least this many multiply-adds run as G ``mm`` calls on CPU
GMM_LOOP_MIN = 1 << 28


def _gmm(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a [G, n, k] @ b [G, k, m] (+ bias [G, m])``. One ``bmm`` / ``baddbmm`` (one kernel: what GPUs
    want, and on CPU 15-25 % faster than G calls for the small products of the demo's widths), except
    for large products on CPU: G ``mm``/``addmm`` calls into one output, which ran paper-size
    shapes ~20 % faster than ``bmm`` on a Xeon with AMX (on par on an AMD EPYC)."""
    _, n, k = a.shape
    if a.device.type != "cpu" or n * k * b.shape[2] < GMM_LOOP_MIN:
        return torch.bmm(a, b) if bias is None else torch.baddbmm(bias.unsqueeze(1), a, b)
    out = torch.empty(a.shape[0], a.shape[1], b.shape[2], dtype=a.dtype, device=a.device)
    for g in range(a.shape[0]):
        if bias is None:
            torch.mm(a[g], b[g], out=out[g])
        else:
            torch.addmm(bias[g], a[g], b[g], out=out[g])
    return out


class _StackedLinearFn(torch.autograd.Function):
    """``y = x @ Wᵀ + b`` for G stacked weights ``W [G, out, in]``, ``x [G, N, in]``.

    Autograd's own ``baddbmm`` backward computes the gradient of ``Wᵀ`` and then copies it into
    ``W``'s layout, and expands the bias gradient; here ``∂W = ∂yᵀ @ x`` comes out in ``W``'s layout
    and ``∂b = Σ_n ∂y`` directly, and every product is a plain ``mm`` per expert. Honours autocast
    like ``baddbmm`` (products in the autocast dtype, gradients returned in the inputs' dtypes).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype)
        dt = _autocast_dtype(x.device.type)
        if dt is not None:
            x, weight = x.to(dt), weight.to(dt)
            bias = None if bias is None else bias.to(dt)
        with torch.autocast(x.device.type, enabled=False):
            y = _gmm(x, weight.transpose(1, 2), bias)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        gy = gy.to(x.dtype)
        gx = gw = gb = None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                gx = _gmm(gy, weight).to(ctx.dtypes[0])
            if ctx.needs_input_grad[1]:
                gw = _gmm(gy.transpose(1, 2), x).to(ctx.dtypes[1])
            if ctx.has_bias and ctx.needs_input_grad[2]:
                gb = gy.sum(1, dtype=torch.float32).to(ctx.dtypes[2])
        return gx, gw, gb


def stacked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """G linear maps at once: ``x [G, ..., in]``, ``weight [G, out, in]``, ``bias [G, out]`` or None."""
    G = x.shape[0]
    y = _StackedLinearFn.apply(x.reshape(G, -1, x.shape[-1]), weight, bias)
    return y.view(*x.shape[:-1], y.shape[-1])


class StackedLinear(nn.Module):
    """G linear maps: ``weight [G, out, in]``, ``bias [G, out]``; ``x [G, ..., in]``."""

    def __init__(self, G: int, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(G, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(G, out_features)) if bias else None
        nn.init.trunc_normal_(self.weight, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stacked_linear(x, self.weight, self.bias)


class StackedLayerNorm(nn.Module):
    """G LayerNorms over the last axis: ``weight``/``bias`` ``[G, C]``; ``x [G, ..., C]``."""

    def __init__(self, G: int, C: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(G, C))
        self.bias = nn.Parameter(torch.zeros(G, C))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return torch.addcmul(
            self.bias.view(shape), F.layer_norm(x, x.shape[-1:], eps=self.eps), self.weight.view(shape)
        )


class StackedMlp(nn.Module):
    def __init__(self, G: int, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = StackedLinear(G, dim, hidden)
        self.act = nn.GELU()
        self.fc2 = StackedLinear(G, hidden, dim)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        y = self.fc2(self.act(self.fc1(x)))
        return self.drop(y) if residual is None else self.drop.residual(residual, y)


class StackedAttention(nn.Module):
    def __init__(self, G: int, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = StackedLinear(G, dim, 3 * dim)
        self.proj = StackedLinear(G, dim, dim)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``x [G, B, T, C]``, ``key_mask [B, T]`` (shared) or ``[G, B, T]`` (one per expert);
        ``residual`` given: ``residual + attention(x)``."""
        G, B, T, C = x.shape
        H = self.n_heads
        qkv = self.qkv(x).view(G * B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        mask = key_mask.expand(G, B, T).reshape(G * B, 1, 1, T)
        o = attention(q, k, v, mask)
        y = self.proj(o.transpose(1, 2).reshape(G, B, T, C))
        return self.drop(y) if residual is None else self.drop.residual(residual, y)


class StackedTransformerLayer(nn.Module):
    def __init__(self, G: int, dim: int, n_heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = StackedLayerNorm(G, dim)
        self.attn = StackedAttention(G, dim, n_heads, dropout)
        self.norm2 = StackedLayerNorm(G, dim)
        self.mlp = StackedMlp(G, dim, int(dim * mlp_ratio), dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = self.attn(self.norm1(x), key_mask, residual=x)  # residual adds fused with the dropouts
        return self.mlp(self.norm2(x), residual=x)


class StackedSGP(nn.Module):
    """G masked SGP blocks (stride 1) on channels-last ``[G, B, T, C]``; names/shapes = (G, *SGPBlock)."""

    def __init__(self, G: int, C: int, kernel_size: int, k: float, init_std: float) -> None:
        super().__init__()
        self.G, self.C, self.kernel_size = G, C, kernel_size
        self.window = W = sgp_window(kernel_size, k)
        hidden = 4 * C
        self.ln = _WB(weight=(G, 1, C, 1), bias=(G, 1, C, 1))
        self.gn = _WB(weight=(G, C), bias=(G, C))
        self.psi = _WB(weight=(G, C, 1, kernel_size), bias=(G, C))
        self.fc = _WB(weight=(G, C, 1, 1), bias=(G, C))
        self.convw = _WB(weight=(G, C, 1, kernel_size), bias=(G, C))
        self.convkw = _WB(weight=(G, C, 1, W), bias=(G, C))
        self.global_fc = _WB(weight=(G, C, 1, 1), bias=(G, C))
        self.mlp = nn.Sequential(
            _WB(weight=(G, hidden, C, 1), bias=(G, hidden)), nn.GELU(), _WB(weight=(G, C, hidden, 1), bias=(G, C))
        )
        with torch.no_grad():
            self.ln.weight.fill_(1.0)
            self.ln.bias.zero_()
            self.gn.weight.fill_(1.0)
            self.gn.bias.zero_()
            for p in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
                p.weight.normal_(0.0, init_std)
                p.bias.zero_()
            for layer, fan_in in ((self._mlp(0), C), (self._mlp(2), hidden)):  # Conv1d's default init
                bound = 1.0 / math.sqrt(fan_in)
                layer.weight.uniform_(-bound, bound)
                layer.bias.uniform_(-bound, bound)

    def _mlp(self, i: int) -> _WB:
        return cast(_WB, self.mlp[i])

    def _mlp_forward(self, z: torch.Tensor) -> torch.Tensor:
        fc1, fc2 = self._mlp(0), self._mlp(2)
        z = F.gelu(stacked_linear(z, fc1.weight.squeeze(-1), fc1.bias))
        return stacked_linear(z, fc2.weight.squeeze(-1), fc2.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x [G, B, T, C]`` with padded steps zero, ``mask [B, T]`` or ``[G, B, T]`` bool → same shape, pads zero."""
        G, C = self.G, self.C
        params = SGPParams(
            self.ln.weight.view(G, C),
            self.ln.bias.view(G, C),
            self.psi.weight.view(G, C, -1),
            self.psi.bias,
            self.fc.weight.view(G, C),
            self.fc.bias,
            self.convw.weight.view(G, C, -1),
            self.convw.bias,
            self.convkw.weight.view(G, C, -1),
            self.convkw.bias,
            self.global_fc.weight.view(G, C),
            self.global_fc.bias,
            self.gn.weight,
            self.gn.bias,
            None,
            None,
        )
        return sgp_core(x, mask, params, self._mlp_forward)
