"""Building blocks shared by the model families (masking helpers, attention, heads).

Conventions: sequences are ``[B, L, C]`` (channels last); boolean masks are True where a position
is valid. Attention uses ``F.scaled_dot_product_attention`` with a key mask, so masked keys never
contribute; callers zero padded positions of their inputs so nothing non-finite can enter.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Attention",
    "ClassifierHeads",
    "CrossAttention",
    "Dropout",
    "Mlp",
    "TransformerLayer",
    "attention",
    "fast_dropout",
    "init_linear_layernorm",
    "masked_mean",
    "masked_softmax",
    "nonempty_mask",
    "pooled_stats",
    "region_step_mask",
    "scaled_dot_logits",
    "segment_means",
]


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` counting only positions where ``mask`` (broadcastable) is True."""
    m = mask.to(x.dtype)
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over positions where ``mask`` is True; masked positions get exactly 0.

    A row with no valid position gives all zeros (not NaN).
    """
    neg = torch.finfo(logits.dtype).min
    z = logits.masked_fill(~mask, neg)
    p = torch.softmax(z, dim=dim)
    return torch.where(mask, p, p.new_zeros(()))


def init_linear_layernorm(module: nn.Module, std: float = 0.02) -> None:
    """ViT-style init: truncated-normal Linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _keep(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """A boolean keep mask shaped like ``x`` and the inverted-dropout scale ``1 / (1 - p)``.

    ``F.dropout`` draws one Bernoulli sample per element, which on CPU costs ~100 elementwise
    multiplications (most of a training step's non-matmul time here). This draws 48 random bits
    per three elements (``Tensor.random_`` on int64, uniform lower 63 bits) and compares 16-bit
    slices to a threshold: the drop probability is ``p`` rounded to a multiple of 1/65536.
    Deterministic under ``torch.manual_seed``.
    """
    n = x.numel()
    k = (n + 2) // 3
    words = torch.empty(k, dtype=torch.int64, device=x.device).random_()
    lo = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)
    bits = words.view(torch.int16).view(k, 4)[:, lo].reshape(-1)[:n].view(x.shape)
    drop = round(p * 65536)
    return bits >= drop - 32768, 65536.0 / (65536 - drop)


def _scaled_mask(x: torch.Tensor, p: float) -> torch.Tensor | None:
    """The keep mask times the scale, in ``x``'s dtype (values 0 and ``1 / (1 - p)``), for fp32 /
    fp64 tensors on CPU with ``0 < p < 1``; None otherwise (the scale would round in bf16)."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or not 0.0 < p < 1.0:
        return None
    keep, scale = _keep(x, p)
    s = torch.tensor(scale, dtype=x.dtype)
    return torch.where(keep, s, s.new_zeros(()))


def fast_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout whose keep mask costs a third of a random 64-bit draw per element on CPU
    (``_keep``); for fp32 one product with the scaled mask (so the backward pass is one product
    too). Other devices use ``F.dropout``."""
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return x * 0.0
    if x.device.type != "cpu":
        return F.dropout(x, p, True)
    mask = _scaled_mask(x, p)
    if mask is not None:
        return x * mask
    keep, scale = _keep(x, p)
    return x * keep * scale


def residual_dropout(x: torch.Tensor, branch: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``x + fast_dropout(branch)``; in training on CPU in fp32 one pass (``addcmul`` with the scaled
    keep mask) instead of three, and one product in the backward pass instead of two."""
    mask = _scaled_mask(branch, p) if training else None
    if mask is None:
        return x + fast_dropout(branch, p, training)
    return torch.addcmul(x, branch, mask)


class Dropout(nn.Module):
    """``nn.Dropout`` with :func:`fast_dropout` (same semantics, faster keep masks on CPU)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fast_dropout(x, self.p, self.training)

    def residual(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """``x + self(branch)`` in one pass on CPU (:func:`residual_dropout`)."""
        return residual_dropout(x, branch, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """``fc1 → GELU → fc2 → dropout`` (dropout on the output only: the 4×-wide hidden is where a
    dropout mask costs most)."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """``residual`` given: ``residual + mlp(x)`` (the residual add fused with the dropout)."""
        y = self.fc2(self.act(self.fc1(x)))
        return self.drop(y) if residual is None else self.drop.residual(residual, y)


# score entries per head up to which bf16 CPU training runs a key-masked attention as explicit products
EXPLICIT_ATTENTION_MAX = 256 * 256


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None, dropout: float = 0.0
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)``; ``mask`` bool
    (True: attend) or an additive float bias.

    bf16 on CPU with gradients runs as two matrix products around an fp32 softmax
    (:func:`_explicit_attention`) when the mask is a float bias that needs a gradient (B-MoE's
    routing bias: PyTorch then takes its unfused math path, which upcasts to fp32) or the scores
    are short (``Lq·Lk ≤ EXPLICIT_ATTENTION_MAX``): PyTorch's CPU flash-attention backward in bf16
    took 4× its fp32 time on an AMD EPYC with AVX-512 BF16. Forward + backward, one thread
    (``benchmarks/bench_demo_step.py``): B-MoE's demo read-out (130 tokens, routing bias) 1.2-1.8×
    faster than the kernel, key-masked clips of 32 steps 7× faster; from about 384 key-masked
    steps on the kernel is faster again. Everything else (GPUs, fp32, inference) keeps PyTorch's
    kernels.
    """
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    # a float bias with a gradient sends PyTorch to its unfused math path, which materialises the scores too
    math_path = mask is not None and mask.dtype != torch.bool and mask.requires_grad
    short = q.shape[-2] * k.shape[-2] <= EXPLICIT_ATTENTION_MAX
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or not grad or not (math_path or short):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
    return _explicit_attention(q, k, v, mask, dropout)


def _explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, dropout: float = 0.0
) -> torch.Tensor:
    """Attention as ``softmax(q kᵀ · scale + bias) v``, products in ``q``'s dtype, softmax in fp32; the
    scale and a float bias folded into one ``baddbmm``. A query whose keys are all masked gets zeros,
    as PyTorch's kernels give (and no NaN in any gradient)."""
    *lead, Lq, dh = q.shape
    Lk = k.shape[-2]
    n = q.numel() // (Lq * dh)
    qq, kt = q.reshape(n, Lq, dh), k.reshape(n, Lk, dh).transpose(1, 2)
    scale = dh**-0.5
    dead: torch.Tensor | None = None
    if mask is None:
        s = torch.bmm(qq, kt) * scale
    elif mask.dtype == torch.bool:
        s = (torch.bmm(qq, kt) * scale).view(*lead, Lq, Lk).masked_fill(~mask, float("-inf"))
        dead = ~mask.any(-1, keepdim=True)
    else:
        bias = mask.to(q.dtype)
        s = torch.baddbmm(bias.expand(*lead, Lq, Lk).reshape(n, Lq, Lk), qq, kt, alpha=scale)
        dead = bias.isneginf().all(-1, keepdim=True)
    s = s.view(*lead, Lq, Lk)
    if dead is not None and not bool(dead.any()):
        dead = None
    if dead is not None:  # an all -inf row: softmax over zeros instead, then zeros
        s = s.masked_fill(dead, 0.0)
    p = torch.softmax(s, -1, dtype=torch.float32).to(v.dtype)
    if dead is not None:
        p = p.masked_fill(dead, 0.0)
    if dropout > 0.0:
        p = F.dropout(p, dropout)
    return torch.matmul(p, v)


class Attention(nn.Module):
    """Multi-head self-attention over ``[B, L, C]`` with an optional key mask ``[B, L]``."""

    def __init__(self, dim: int, n_heads: int, attn_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.drop = Dropout(dropout)

    def forward(
        self, x: torch.Tensor, key_mask: torch.Tensor | None = None, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``residual`` given: ``residual + attention(x)`` (the residual add fused with the dropout)."""
        B, L, C = x.shape
        H = self.n_heads
        q, k, v = self.qkv(x).view(B, L, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        o = attention(q, k, v, mask, self.attn_dropout if self.training else 0.0)
        y = self.proj(o.transpose(1, 2).reshape(B, L, C))
        return self.drop(y) if residual is None else self.drop.residual(residual, y)


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``[B, Lq, C]`` to a context ``[B, Lk, C]``.

    ``bias`` ``[B, Lk]`` (float, added to the logits, -inf where masked) or ``key_mask`` (bool).
    """

    def __init__(self, dim: int, n_heads: int, attn_dropout: float = 0.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim {dim} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.drop = Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        ctx: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, Lq, C = x.shape
        Lk = ctx.shape[1]
        H = self.n_heads
        q = self.q(x).view(B, Lq, H, C // H).transpose(1, 2)
        k, v = self.kv(ctx).view(B, Lk, 2, H, C // H).permute(2, 0, 3, 1, 4).unbind(0)
        mask: torch.Tensor | None
        if bias is not None:
            mask = bias[:, None, None, :].to(q.dtype)
        elif key_mask is not None:
            mask = key_mask[:, None, None, :]
        else:
            mask = None
        o = attention(q, k, v, mask, self.attn_dropout if self.training else 0.0)
        return self.drop(self.proj(o.transpose(1, 2).reshape(B, Lq, C)))


class TransformerLayer(nn.Module):
    """Pre-LN transformer encoder layer: ``x + attn(norm1 x)``, then ``x + mlp(norm2 x)``."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, n_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn(self.norm1(x), key_mask, residual=x)
        return self.mlp(self.norm2(x), residual=x)


class ClassifierHeads(nn.Module):
    """Action head and (when ``num_body`` > 0) body head over one pooled feature."""

    def __init__(self, *, in_dim: int, num_classes: int, num_body: int = 0, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = Dropout(dropout)
        self.action = nn.Linear(in_dim, num_classes)
        self.body = nn.Linear(in_dim, num_body) if num_body > 0 else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.drop(x)
        out = {"action": self.action(x)}
        if self.body is not None:
            out["body"] = self.body(x)
        return out


def scaled_dot_logits(q: torch.Tensor, k: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Head-averaged scaled dot products: ``q [B, C]``, ``k [B, L, C]`` → ``[B, L]``."""
    B, L, C = k.shape
    dh = C // n_heads
    qh = q.view(B, 1, n_heads, dh)
    kh = k.view(B, L, n_heads, dh)
    return (qh * kh).sum(-1).mean(-1) / math.sqrt(dh)


def nonempty_mask(mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``mask`` with all-False rows (along ``dim``) turned all-True, so attention never sees an empty
    key set (which gives NaN); the rows' outputs are meaningless and callers mask them out."""
    return mask | ~mask.any(dim=dim, keepdim=True)


def region_step_mask(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Where each region stream is seen, ``[B, R, T]`` bool: ``mask[:, None] & region_valid[:, :, None]``
    ``& region_valid_steps`` (the last only when the batch has it; older stores have none, so their
    regions are seen at every valid step of the clip, as their clip-level flag says).

    A region seen at no step of its clip counts as invisible (``.any(-1)`` is its visibility); an
    encoder that runs every region stream gives an invisible one the clip's ``mask`` over its zeroed
    features (so its key set is never empty) and drops its outputs.
    """
    mask = batch["mask"].bool()
    seen = mask[:, None, :] & batch["region_valid"].bool()[:, :, None]
    steps = batch.get("region_valid_steps")
    if steps is not None:
        if steps.shape != seen.shape:
            raise ValueError(
                f"region_valid_steps {tuple(steps.shape)} does not fit mask {tuple(mask.shape)} "
                f"and region_valid {tuple(batch['region_valid'].shape)}"
            )
        seen = seen & steps.bool()
    return seen


def segment_means(x: torch.Tensor, mask: torch.Tensor, segments: int) -> torch.Tensor:
    """``x [..., T, D]``, ``mask [..., T]`` → ``[..., segments·D]``: the means over ``segments``
    consecutive equal parts of the valid steps, in time order (a step's part is its rank among the
    valid steps, so padding and unseen steps move no boundary); zeros for an empty part."""
    m = mask.to(x.dtype)
    n = m.sum(-1, keepdim=True).clamp_min(1.0)
    rank = m.cumsum(-1) - 1.0
    part = (rank * segments / n).floor().clamp(0, segments - 1).long()
    w = F.one_hot(part, segments).to(x.dtype) * m.unsqueeze(-1)  # [..., T, K]
    means = w.transpose(-1, -2) @ x / w.sum(-2).clamp_min(1.0).unsqueeze(-1)  # [..., K, D]
    return means.flatten(-2)


def pooled_stats(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x [..., T, D]``, ``mask [..., T]`` → ``[..., 3·D]``: mean, std and mean |Δ| (between
    consecutive valid steps) over the valid steps; zeros where nothing is valid."""
    m = mask.to(x.dtype).unsqueeze(-1)
    n = m.sum(-2).clamp_min(1.0)
    mean = (x * m).sum(-2) / n
    var = (((x - mean.unsqueeze(-2)) ** 2) * m).sum(-2) / n
    std = (var + 1e-8).sqrt() * (m.sum(-2) > 0).to(x.dtype)
    pair = m[..., 1:, :] * m[..., :-1, :]
    delta = ((x[..., 1:, :] - x[..., :-1, :]).abs() * pair).sum(-2) / pair.sum(-2).clamp_min(1.0)
    return torch.cat([mean, std, delta], -1)
