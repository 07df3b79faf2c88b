"""TriDet's Scalable-Granularity Perception (SGP) block, checkpoint-compatible, plus a masked variant.

``SGPBlock(n_embd, kernel_size=3, n_ds_stride=1, k=1.5, group=1, n_out=None, n_hidden=None,
path_pdrop=0.0, downsample_type="max", init_conv_vars=0.1)``;
``forward(x [B, C, T], mask [B, 1, T] bool) -> (out [B, C, T'], out_mask [B, 1, T'] bool)``.

With ``masked=False`` (the default) the forward is TriDet's ``libs/modeling/blocks.py::SGPBlock``
operation for operation::

    x ← downsample(x);  h ← ln(x);  φ ← ReLU(global_fc(mean_t h))
    u ← fc(h)·φ + (convw(h) + convkw(h))·psi(h) + h
    y ← x·mask + drop_path_out(u);  out ← y + drop_path_mlp(mlp(gn(y)))

and the ``state_dict`` has TriDet's names and shapes (``ln.weight`` ``[1, C, 1]``, ``gn``,
``psi``/``fc``/``convw``/``convkw``/``global_fc`` depthwise convs, ``mlp.0``/``mlp.2``,
``drop_path_*.scale`` when ``path_pdrop > 0``, ``downsample.1`` for ``"avg"``), so TriDet
checkpoints load unchanged.

Choices TriDet leaves to its configs, made here:

- ``init_conv_vars`` (the std of the five depthwise convs' normal init) defaults to 0.1, not
  TriDet's 0: with std 0 every weight of the branch is zero, ``u = h``, and since each of the five
  convs' weight gradients is a product with another zero weight (``fc·φ``, ``(convw+convkw)·psi``)
  the branch never leaves zero. ``init_conv_vars=0`` stays possible (``test_sgp.py`` checks the
  dead branch).
- ``masked=True`` (what our models use): padded steps cannot leak into valid ones. Padded inputs
  are zeroed before the convolutions (so the "same" zero padding sees the sequence end exactly as
  an unpadded clip), the global mean and the GroupNorm statistics use valid steps only, and padded
  outputs are zeroed. The parameters are the same, so a TriDet checkpoint loads into either path.
  With ``"max"`` downsampling padded steps are ignored by the pooling; ``"avg"`` is padding
  invariant when valid lengths are multiples of the stride.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AffineDropPath", "ChannelLayerNorm", "SGPBlock", "drop_path", "masked_group_norm", "sgp_window"]


def sgp_window(kernel_size: int, k: float) -> int:
    """TriDet's long window ``W = round((w + 1) * k)``, plus 1 if even (Python rounding)."""
    up = round((kernel_size + 1) * k)
    return up + 1 if up % 2 == 0 else up


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Per-sample stochastic depth (SlowFast / TriDet)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    m = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * m


class AffineDropPath(nn.Module):
    """Stochastic depth with a learnable per-channel scale ``[1, C, 1]`` (init 1e-4) applied first."""

    def __init__(self, num_dim: int, drop_prob: float = 0.0, init_scale_value: float = 1e-4) -> None:
        super().__init__()
        self.scale = nn.Parameter(init_scale_value * torch.ones((1, num_dim, 1)))
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(self.scale * x, self.drop_prob, self.training)


class ChannelLayerNorm(nn.Module):
    """TriDet's ``LayerNorm``: normalise a ``[B, C, T]`` tensor over C; affine ``[1, C, 1]``."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones([1, num_channels, 1]))
            self.bias = nn.Parameter(torch.zeros([1, num_channels, 1]))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=1, keepdim=True)
        res = x - mu
        sigma = (res * res).mean(dim=1, keepdim=True)
        out = res / torch.sqrt(sigma + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out


def masked_group_norm(x: torch.Tensor, mask: torch.Tensor, gn: nn.GroupNorm) -> torch.Tensor:
    """``gn`` applied to ``x [B, C, T]`` with statistics over valid steps only (``mask [B, 1, T]``)."""
    B, C, T = x.shape
    G = gn.num_groups
    xg = x.reshape(B, G, C // G, T)
    m = mask.reshape(B, 1, 1, T).to(x.dtype)
    n = (m.sum(dim=-1, keepdim=True) * (C // G)).clamp_min(1.0)  # [B, 1, 1, 1]
    mean = (xg * m).sum(dim=(2, 3), keepdim=True) / n
    d = (xg - mean) * m
    var = (d * d).sum(dim=(2, 3), keepdim=True) / n
    out = ((xg - mean) * torch.rsqrt(var + gn.eps)).reshape(B, C, T)
    if gn.affine:
        out = out * gn.weight.view(1, C, 1) + gn.bias.view(1, C, 1)
    return out


class SGPBlock(nn.Module):
    """TriDet's SGP block (instant-level + window-level branches, then a GroupNorm-MLP)."""

    def __init__(
        self,
        n_embd: int,
        kernel_size: int = 3,
        n_ds_stride: int = 1,
        k: float = 1.5,
        group: int = 1,
        n_out: int | None = None,
        n_hidden: int | None = None,
        path_pdrop: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        downsample_type: str = "max",
        init_conv_vars: float = 0.1,
        *,
        masked: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SGPBlock kernel_size must be odd, got {kernel_size}")
        self.kernel_size = kernel_size
        self.masked = masked
        n_out = n_embd if n_out is None else n_out
        n_hidden = 4 * n_embd if n_hidden is None else n_hidden

        self.ln = ChannelLayerNorm(n_embd)
        self.gn = nn.GroupNorm(16, n_embd)
        up_size = sgp_window(kernel_size, k)
        self.window = up_size
        self.psi = nn.Conv1d(n_embd, n_embd, kernel_size, stride=1, padding=kernel_size // 2, groups=n_embd)
        self.fc = nn.Conv1d(n_embd, n_embd, 1, stride=1, padding=0, groups=n_embd)
        self.convw = nn.Conv1d(n_embd, n_embd, kernel_size, stride=1, padding=kernel_size // 2, groups=n_embd)
        self.convkw = nn.Conv1d(n_embd, n_embd, up_size, stride=1, padding=up_size // 2, groups=n_embd)
        self.global_fc = nn.Conv1d(n_embd, n_embd, 1, stride=1, padding=0, groups=n_embd)

        self.downsample_type = downsample_type
        self.downsample: nn.Module
        if n_ds_stride > 1:
            if downsample_type == "max":
                s = n_ds_stride
                self.downsample = nn.MaxPool1d(s + 1, stride=s, padding=(s + 1) // 2)
            elif downsample_type == "avg":
                self.downsample = nn.Sequential(
                    nn.AvgPool1d(n_ds_stride, stride=n_ds_stride, padding=0), nn.Conv1d(n_embd, n_embd, 1, 1, 0)
                )
            else:
                raise ValueError(f"downsample_type must be 'max' or 'avg', got {downsample_type!r}")
        else:
            self.downsample = nn.Identity()
        self.stride = max(1, n_ds_stride)

        self.mlp = nn.Sequential(
            nn.Conv1d(n_embd, n_hidden, 1, groups=group), act_layer(), nn.Conv1d(n_hidden, n_out, 1, groups=group)
        )
        self.drop_path_out: nn.Module
        self.drop_path_mlp: nn.Module
        if path_pdrop > 0.0:
            self.drop_path_out = AffineDropPath(n_embd, drop_prob=path_pdrop)
            self.drop_path_mlp = AffineDropPath(n_out, drop_prob=path_pdrop)
        else:
            self.drop_path_out = nn.Identity()
            self.drop_path_mlp = nn.Identity()
        self.act = act_layer()
        self.reset_params(init_conv_vars=init_conv_vars)

    def reset_params(self, init_conv_vars: float = 0.0) -> None:
        for conv in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
            nn.init.normal_(conv.weight, 0.0, init_conv_vars)
            assert conv.bias is not None
            nn.init.constant_(conv.bias, 0.0)

    def _out_mask(self, mask: torch.Tensor, T: int, dtype: torch.dtype) -> torch.Tensor:
        return F.interpolate(mask.to(dtype), size=T // self.stride, mode="nearest").detach()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.masked:
            return self._forward_masked(x, mask)
        T = x.shape[-1]
        x = self.downsample(x)
        out_mask = self._out_mask(mask, T, x.dtype)
        out = self.ln(x)
        psi = self.psi(out)
        fc = self.fc(out)
        convw = self.convw(out)
        convkw = self.convkw(out)
        phi = torch.relu(self.global_fc(out.mean(dim=-1, keepdim=True)))
        out = fc * phi + (convw + convkw) * psi + out
        out = x * out_mask + self.drop_path_out(out)
        out = out + self.drop_path_mlp(self.mlp(self.gn(out)))
        return out, out_mask.bool()

    def _forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = x.shape[-1]
        mask = mask.bool()
        if self.stride > 1:
            if self.downsample_type == "max":
                x = x.masked_fill(~mask, float("-inf"))
            else:
                x = x.masked_fill(~mask, 0.0)
        x = self.downsample(x)
        m = self._out_mask(mask, T, x.dtype).bool()
        x = torch.where(m, x, x.new_zeros(()))
        h = torch.where(m, self.ln(x), x.new_zeros(()))
        mf = m.to(x.dtype)
        h_mean = (h * mf).sum(-1, keepdim=True) / mf.sum(-1, keepdim=True).clamp_min(1.0)
        phi = torch.relu(self.global_fc(h_mean))
        u = self.fc(h) * phi + (self.convw(h) + self.convkw(h)) * self.psi(h) + h
        y = torch.where(m, x + self.drop_path_out(u), x.new_zeros(()))
        out = y + self.drop_path_mlp(self.mlp(masked_group_norm(y, m, self.gn)))
        return torch.where(m, out, out.new_zeros(())), m
