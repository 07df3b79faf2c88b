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
  invariant when valid lengths are multiples of the stride. The masked path runs ``sgp_core``
  (channels-last; psi and convw + convkw as banded matrix products for T ≤ 64), which B-MoE's
  stacked experts share; the TriDet path stays literal (``nn.Conv1d`` calls).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "AffineDropPath",
    "ChannelLayerNorm",
    "SGPBlock",
    "SGPParams",
    "banded_matrices",
    "depthwise_banded",
    "drop_path",
    "sgp_core",
    "sgp_window",
]


def sgp_window(kernel_size: int, k: float) -> int:
    """TriDet's long window ``W = round((w + 1) * k)``, plus 1 if even (Python rounding)."""
    up = round((kernel_size + 1) * k)
    return up + 1 if up % 2 == 0 else up


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Per-sample stochastic depth (SlowFast / TriDet)."""
    return _drop_samples(x, drop_prob, training, (x.shape[0],) + (1,) * (x.ndim - 1))


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


class SGPParams(NamedTuple):
    """The parameters of G SGP blocks in the channels-last core's layout (leading axis G)."""

    ln_w: torch.Tensor  # [G, C]
    ln_b: torch.Tensor
    psi_w: torch.Tensor  # [G, C, w]
    psi_b: torch.Tensor  # [G, C]
    fc_w: torch.Tensor  # [G, C]
    fc_b: torch.Tensor
    convw_w: torch.Tensor  # [G, C, w]
    convw_b: torch.Tensor
    convkw_w: torch.Tensor  # [G, C, W]
    convkw_b: torch.Tensor
    gfc_w: torch.Tensor  # [G, C]
    gfc_b: torch.Tensor
    gn_w: torch.Tensor  # [G, C]
    gn_b: torch.Tensor
    scale_out: torch.Tensor | None  # [G, C] (AffineDropPath scales) or None
    scale_mlp: torch.Tensor | None


BANDED_MAX_T = 64  # up to this length the depthwise convolutions run as banded matrix products


def banded_matrices(weight: torch.Tensor, T: int) -> torch.Tensor:
    """The ``[T, T]`` banded (Toeplitz) matrix of each depthwise "same" kernel ``weight [..., W]`` (odd
    W, zero padding): ``out[t] = Σ_s M[t, s] x[s]`` → ``[..., T, T]``."""
    W = weight.shape[-1]
    ar = torch.arange(T, device=weight.device)
    tap = ar[None, :] - ar[:, None] + W // 2  # [t, s]: the tap that reads input s for output t
    shifts = (tap[None] == torch.arange(W, device=weight.device)[:, None, None]).to(weight.dtype)  # [W, T, T]
    return torch.mm(weight.reshape(-1, W), shifts.view(W, T * T)).view(*weight.shape[:-1], T, T)


def depthwise_banded(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Depthwise "same" cross-correlation of ``x [G, C, T, N]`` with ``weight [G, C, W]`` (odd W,
    zero padding, no bias) → ``[G, C, T, N]``.

    For short sequences the convolution is a ``[T, T]`` banded (Toeplitz) matrix per channel applied
    with one batched matmul: ~6× faster on CPU than a grouped ``conv1d`` with G·C groups.
    """
    G, C, T, N = x.shape
    W = weight.shape[-1]
    if T <= BANDED_MAX_T:
        M = banded_matrices(weight, T)
        return torch.bmm(M.view(G * C, T, T), x.reshape(G * C, T, N)).view(G, C, T, N)
    xx = x.permute(3, 0, 1, 2).reshape(N, G * C, T)
    out = F.conv1d(xx, weight.reshape(G * C, 1, W), padding=W // 2, groups=G * C)
    return out.view(N, G, C, T).permute(1, 2, 3, 0)


def _drop_samples(x: torch.Tensor, drop_prob: float, training: bool, shape: tuple[int, ...]) -> torch.Tensor:
    """Stochastic depth with one keep/drop draw per entry of ``shape`` (broadcast over ``x``)."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    m = (keep + torch.rand(shape, dtype=x.dtype, device=x.device)).floor_()
    return x.div(keep) * m


def _branch_convs(hT: torch.Tensor, p: SGPParams) -> tuple[torch.Tensor, torch.Tensor]:
    """psi(h) and convw(h) + convkw(h) (one centred window, the sum of the two kernels) of
    ``hT [G, C, T, N]``, with their biases."""
    G, C, T, N = hT.shape
    pad = (p.convkw_w.shape[-1] - p.convw_w.shape[-1]) // 2
    w_win = F.pad(p.convw_w, (pad, pad)) + p.convkw_w  # [G, C, W]
    if T > BANDED_MAX_T:
        psi = depthwise_banded(hT, p.psi_w) + p.psi_b[..., None, None]
        return psi, depthwise_banded(hT, w_win) + (p.convw_b + p.convkw_b)[..., None, None]
    # both banded operators stacked: one [2T, T] matrix per channel, biases added by the product
    M = torch.cat([banded_matrices(p.psi_w, T), banded_matrices(w_win, T)], 2)  # [G, C, 2T, T]
    bias = torch.stack([p.psi_b, p.convw_b + p.convkw_b], 2)  # [G, C, 2]
    bias = bias.view(G * C, 2, 1, 1).expand(G * C, 2, T, 1).reshape(G * C, 2 * T, 1)
    out = torch.baddbmm(bias, M.view(G * C, 2 * T, T), hT.reshape(G * C, T, N)).view(G, C, 2, T, N)
    psi, win = out.unbind(2)  # (unbind's backward is one stack; two selects' would be two zero-filled copies)
    return psi, win


def _masked_group_norm(
    y: torch.Tensor, n: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, groups: int, eps: float
) -> torch.Tensor:
    """GroupNorm of channels-last ``y [G, B, T, C]`` (zero at padded steps) with statistics over the
    ``n [1 or G, B, 1]`` valid steps, then the affine ``weight``/``bias [G, C]``. Sums over time come
    first (a contiguous reduction), then over each group's channels; normalisation and affine are one
    ``addcmul`` with per-clip coefficients (padded outputs are not zero: callers mask them)."""
    G, B, _, C = y.shape
    cg = C // groups
    cnt = n * cg  # [1 or G, B, 1]
    mean = y.sum(2).view(G, B, groups, cg).sum(-1) / cnt  # [G, B, groups]
    var = ((y * y).sum(2).view(G, B, groups, cg).sum(-1) / cnt - mean * mean).clamp_min(0.0)
    rstd = torch.rsqrt(var + eps)
    scale = rstd.unsqueeze(-1).expand(G, B, groups, cg).reshape(G, B, C) * weight.unsqueeze(1)  # [G, B, C]
    shift = bias.unsqueeze(1) - mean.unsqueeze(-1).expand(G, B, groups, cg).reshape(G, B, C) * scale
    return torch.addcmul(shift.unsqueeze(2), y, scale.unsqueeze(2))


def sgp_core(
    x: torch.Tensor,
    mask: torch.Tensor,
    p: SGPParams,
    mlp: Callable[[torch.Tensor], torch.Tensor],
    *,
    ln_eps: float = 1e-5,
    gn_groups: int = 16,
    gn_eps: float = 1e-5,
    drop_prob: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """G masked stride-1 SGP blocks on channels-last ``x [G, B, T, C]`` (padded steps zero),
    ``mask [B, T]`` bool (or ``[G, B, T]``: one per block); ``mlp`` maps ``[G, B, T, C]`` to the same shape. Padded outputs are zero.

    The same math as ``SGPBlock(masked=True)`` (which calls it with G = 1) and B-MoE's stacked
    experts: LN over channels, φ from the masked time mean, psi and convw + convkw as one depthwise
    operator with two output maps, GroupNorm statistics over valid steps only.

    ``x`` must be zero at padded steps (every caller zeroes it there, through a mask product or
    ``where`` that also stops the gradient): the residual adds ``x`` unmasked, so the gradient at
    padded steps of ``x`` is not zero, and only the caller's mask keeps it from the parameters.
    """
    G, B, T, C = x.shape
    mf = mask.to(x.dtype).view(-1, B, T, 1)
    h = F.layer_norm(x, (C,), eps=ln_eps)
    h = torch.addcmul(p.ln_b.view(G, 1, 1, C), h, p.ln_w.view(G, 1, 1, C)) * mf
    n = mf.sum(2).clamp_min(1.0)  # [1 or G, B, 1] valid steps per clip
    phi = torch.relu(torch.addcmul(p.gfc_b.unsqueeze(1), h.sum(2) / n, p.gfc_w.unsqueeze(1)))  # [G, B, C]
    hT = h.permute(0, 3, 2, 1).contiguous()  # [G, C, T, B]
    psi, win = _branch_convs(hT, p)
    # u = fc(h)·φ + win·psi + h, with fc(h)·φ + h = h·(fc_w·φ + 1) + fc_b·φ: two passes over [G, C, T, B]
    phiT = phi.transpose(1, 2).unsqueeze(2)  # [G, C, 1, B]
    gain = torch.addcmul(phiT.new_ones(()), p.fc_w[..., None, None], phiT)
    u = torch.addcmul(torch.addcmul(p.fc_b[..., None, None] * phiT, hT, gain), win, psi)
    if p.scale_out is not None:
        u = _drop_samples(u * p.scale_out[..., None, None], drop_prob, training, (G, 1, 1, B))
    y = torch.addcmul(x, u.permute(0, 3, 2, 1), mf)  # [G, B, T, C]; x is zero at padded steps
    z = mlp(_masked_group_norm(y, n, p.gn_w, p.gn_b, gn_groups, gn_eps))
    if p.scale_mlp is not None:
        z = _drop_samples(z * p.scale_mlp.view(G, 1, 1, C), drop_prob, training, (G, B, 1, 1))
    return torch.addcmul(y, z, mf)


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

    def core_params(self) -> SGPParams:
        """This block's parameters in ``sgp_core``'s layout (views, G = 1)."""
        C = self.ln.num_channels
        dp_out = self.drop_path_out.scale.view(1, C) if isinstance(self.drop_path_out, AffineDropPath) else None
        dp_mlp = self.drop_path_mlp.scale.view(1, -1) if isinstance(self.drop_path_mlp, AffineDropPath) else None
        assert self.ln.weight is not None and self.ln.bias is not None
        return SGPParams(
            self.ln.weight.view(1, C),
            self.ln.bias.view(1, C),
            self.psi.weight.view(1, C, -1),
            _bias(self.psi).view(1, C),
            self.fc.weight.view(1, C),
            _bias(self.fc).view(1, C),
            self.convw.weight.view(1, C, -1),
            _bias(self.convw).view(1, C),
            self.convkw.weight.view(1, C, -1),
            _bias(self.convkw).view(1, C),
            self.global_fc.weight.view(1, C),
            _bias(self.global_fc).view(1, C),
            self.gn.weight.view(1, C),
            self.gn.bias.view(1, C),
            dp_out,
            dp_mlp,
        )

    def _mlp_channels_last(self, z: torch.Tensor) -> torch.Tensor:
        fc1, act, fc2 = self.mlp[0], self.mlp[1], self.mlp[2]
        assert isinstance(fc1, nn.Conv1d) and isinstance(fc2, nn.Conv1d)
        if fc1.groups == 1 and fc2.groups == 1:
            return F.linear(act(F.linear(z, fc1.weight.squeeze(-1), fc1.bias)), fc2.weight.squeeze(-1), fc2.bias)
        G, B, T, C = z.shape
        return self.mlp(z.reshape(G * B, T, C).transpose(1, 2)).transpose(1, 2).reshape(G, B, T, -1)

    def _forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        T = x.shape[-1]
        mask = mask.bool()
        if self.stride > 1:
            fill = float("-inf") if self.downsample_type == "max" else 0.0
            x = self.downsample(x.masked_fill(~mask, fill))
        m = self._out_mask(mask, T, x.dtype).bool()  # [B, 1, T']
        xl = x.transpose(1, 2)  # [B, T', C]
        xl = torch.where(m.transpose(1, 2), xl, xl.new_zeros(()))
        drop = self.drop_path_out.drop_prob if isinstance(self.drop_path_out, AffineDropPath) else 0.0
        out = sgp_core(
            xl.unsqueeze(0),
            m[:, 0],
            self.core_params(),
            self._mlp_channels_last,
            ln_eps=self.ln.eps,
            gn_groups=self.gn.num_groups,
            gn_eps=self.gn.eps,
            drop_prob=drop,
            training=self.training,
        )
        return out[0].transpose(1, 2), m


def _bias(conv: nn.Conv1d) -> torch.Tensor:
    assert conv.bias is not None
    return conv.bias
