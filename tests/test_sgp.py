"""SGP block: TriDet's math, names and shapes; the masked variant; the dead branch at std 0."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from microaction.models.sgp import SGPBlock, sgp_window


@pytest.mark.parametrize(
    ("w", "k", "W"),
    [(3, 1.5, 7), (1, 1.5, 3), (1, 5, 11), (1, 4, 9), (5, 2, 13), (15, 1.3, 21), (15, 1.2, 19)],
)
def test_window_formula_table(w, k, W):
    assert sgp_window(w, k) == W
    assert SGPBlock(16, kernel_size=w, k=k).convkw.weight.shape == (16, 1, W)


def test_even_kernel_refused():
    with pytest.raises(ValueError, match="odd"):
        SGPBlock(16, kernel_size=4)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("downsample_type", ["max", "avg"])
@pytest.mark.parametrize("stride", [1, 2, 4])
def test_shapes_for_strides(stride, downsample_type, masked):
    blk = SGPBlock(32, n_ds_stride=stride, downsample_type=downsample_type, masked=masked)
    x = torch.randn(2, 32, 16)
    mask = torch.ones(2, 1, 16, dtype=torch.bool)
    out, out_mask = blk(x, mask)
    assert out.shape == (2, 32, 16 // stride)
    assert out_mask.shape == (2, 1, 16 // stride) and out_mask.dtype == torch.bool


# TriDet's libs/modeling/blocks.py SGPBlock(16, kernel_size=3, n_ds_stride=2, k=1.5, path_pdrop=0.1,
# downsample_type="avg"): every state_dict entry, in order, with its shape
TRIDET_KEYS = [
    ("ln.weight", (1, 16, 1)),
    ("ln.bias", (1, 16, 1)),
    ("gn.weight", (16,)),
    ("gn.bias", (16,)),
    ("psi.weight", (16, 1, 3)),
    ("psi.bias", (16,)),
    ("fc.weight", (16, 1, 1)),
    ("fc.bias", (16,)),
    ("convw.weight", (16, 1, 3)),
    ("convw.bias", (16,)),
    ("convkw.weight", (16, 1, 7)),
    ("convkw.bias", (16,)),
    ("global_fc.weight", (16, 1, 1)),
    ("global_fc.bias", (16,)),
    ("downsample.1.weight", (16, 16, 1)),
    ("downsample.1.bias", (16,)),
    ("mlp.0.weight", (64, 16, 1)),
    ("mlp.0.bias", (64,)),
    ("mlp.2.weight", (16, 64, 1)),
    ("mlp.2.bias", (16,)),
    ("drop_path_out.scale", (1, 16, 1)),
    ("drop_path_mlp.scale", (1, 16, 1)),
]


def test_tridet_state_dict_names_and_shapes():
    blk = SGPBlock(16, kernel_size=3, n_ds_stride=2, k=1.5, path_pdrop=0.1, downsample_type="avg")
    got = [(k, tuple(v.shape)) for k, v in blk.state_dict().items()]
    assert got == TRIDET_KEYS
    assert torch.all(blk.drop_path_out.scale == 1e-4)
    # the common TriDet configuration: max-pool, no drop path
    plain = SGPBlock(16, n_ds_stride=2)
    assert set(plain.state_dict()) == {k for k, _ in TRIDET_KEYS if not k.startswith(("downsample", "drop_path"))}


@pytest.mark.parametrize("masked", [False, True])
def test_loads_a_tridet_checkpoint_unchanged(masked):
    g = torch.Generator().manual_seed(0)
    ckpt = {k: torch.randn(s, generator=g) for k, s in TRIDET_KEYS}
    blk = SGPBlock(16, n_ds_stride=2, path_pdrop=0.1, downsample_type="avg", masked=masked)
    blk.load_state_dict(ckpt, strict=True)
    for k, v in blk.state_dict().items():
        assert torch.equal(v, ckpt[k])


def test_hand_computed_forward_dead_branch():
    """std 0 and a zero MLP: out = x + LN(x), with LN of ±a patterns known by hand."""
    blk = SGPBlock(16, init_conv_vars=0.0).eval()
    with torch.no_grad():
        for p in blk.mlp.parameters():
            p.zero_()
    sign = torch.tensor([(-1.0) ** c for c in range(16)])
    x = torch.stack([2.0 * sign, 3.0 + sign], dim=-1).unsqueeze(0)  # [1, 16, 2]
    out, m = blk(x, torch.ones(1, 1, 2, dtype=torch.bool))
    expected = torch.stack([2.0 * sign + sign * 2.0 / math.sqrt(4 + 1e-5), 3.0 + sign + sign / math.sqrt(1 + 1e-5)], -1)
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)
    assert m.all()


def test_hand_computed_forward_live_branch():
    """psi = convw = identity kernels, convkw = 0, fc = global_fc = 1: u = h·relu(mean h) + h·h + h."""
    blk = SGPBlock(16).eval()
    with torch.no_grad():
        for conv in (blk.psi, blk.convw, blk.convkw, blk.fc, blk.global_fc):
            conv.weight.zero_()
            conv.bias.zero_()
        blk.psi.weight[:, 0, 1] = 1.0
        blk.convw.weight[:, 0, 1] = 1.0
        blk.fc.weight.fill_(1.0)
        blk.global_fc.weight.fill_(1.0)
        for p in blk.mlp.parameters():
            p.zero_()
    sign = torch.tensor([(-1.0) ** c for c in range(16)])
    x = torch.stack([2.0 * sign, 3.0 + sign], dim=-1).unsqueeze(0)
    out, _ = blk(x, torch.ones(1, 1, 2, dtype=torch.bool))
    h = torch.stack([sign / math.sqrt(1 + 0.25e-5), sign / math.sqrt(1 + 1e-5)], -1)  # LN(x)
    phi = torch.relu(h.mean(-1, keepdim=True))  # +1-ish on even channels, 0 on odd ones
    expected = x[0] + h * phi + h * h + h
    torch.testing.assert_close(out[0], expected, atol=1e-6, rtol=0)
    assert torch.allclose(phi[0::2], torch.ones(8, 1), atol=1e-5) and torch.all(phi[1::2] == 0)


def _gelu(z: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * z * (1.0 + erf(z / math.sqrt(2.0)))


def reference_sgp(blk: SGPBlock, x_t: torch.Tensor, mask_t: torch.Tensor, stride: int) -> np.ndarray:
    """TriDet's forward written out with numpy loops (float64), max-pool downsampling."""
    P = {k: v.detach().double().numpy() for k, v in blk.state_dict().items()}
    x = x_t.double().numpy()
    B, C, T = x.shape
    if stride > 1:
        p, ks = (stride + 1) // 2, stride + 1
        To = (T + 2 * p - ks) // stride + 1
        xd = np.empty((B, C, To))
        for j in range(To):
            idx = [j * stride - p + i for i in range(ks) if 0 <= j * stride - p + i < T]
            xd[:, :, j] = x[:, :, idx].max(-1)
        x = xd
    T2 = T // stride
    mask = mask_t.double().numpy()[:, :, [int(j * T / T2) for j in range(T2)]]
    mu = x.mean(1, keepdims=True)
    var = ((x - mu) ** 2).mean(1, keepdims=True)
    h = (x - mu) / np.sqrt(var + 1e-5) * P["ln.weight"] + P["ln.bias"]

    def dwconv(name: str, z: np.ndarray) -> np.ndarray:
        w, b = P[f"{name}.weight"][:, 0, :], P[f"{name}.bias"]
        K = w.shape[1]
        zp = np.pad(z, ((0, 0), (0, 0), (K // 2, K // 2)))
        out = np.zeros_like(z)
        for t in range(z.shape[2]):
            for i in range(K):
                out[:, :, t] += w[None, :, i] * zp[:, :, t + i]
        return out + b[None, :, None]

    phi = np.maximum(dwconv("global_fc", h.mean(-1, keepdims=True)), 0.0)
    u = dwconv("fc", h) * phi + (dwconv("convw", h) + dwconv("convkw", h)) * dwconv("psi", h) + h
    y = x * mask + u
    G = 16
    yg = y.reshape(B, G, C // G, -1)
    gm = yg.mean(axis=(2, 3), keepdims=True)
    gv = ((yg - gm) ** 2).mean(axis=(2, 3), keepdims=True)
    z = ((yg - gm) / np.sqrt(gv + 1e-5)).reshape(B, C, -1) * P["gn.weight"][None, :, None] + P["gn.bias"][None, :, None]
    w0, b0 = P["mlp.0.weight"][:, :, 0], P["mlp.0.bias"]
    w2, b2 = P["mlp.2.weight"][:, :, 0], P["mlp.2.bias"]
    hid = _gelu(np.einsum("hc,bct->bht", w0, z) + b0[None, :, None])
    return y + np.einsum("ch,bht->bct", w2, hid) + b2[None, :, None]


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_forward_matches_written_out_reference(stride):
    torch.manual_seed(0)
    blk = SGPBlock(32, kernel_size=3, n_ds_stride=stride, k=1.5, init_conv_vars=0.3).eval()
    with torch.no_grad():
        blk.ln.weight.normal_(1.0, 0.2)
        blk.ln.bias.normal_(0.0, 0.2)
        blk.gn.weight.normal_(1.0, 0.2)
        blk.gn.bias.normal_(0.0, 0.2)
        for conv in (blk.psi, blk.fc, blk.convw, blk.convkw, blk.global_fc):
            conv.bias.normal_(0.0, 0.2)
    x = torch.randn(2, 32, 16)
    mask = torch.ones(2, 1, 16, dtype=torch.bool)
    mask[1, :, 12:] = False
    out, _ = blk(x, mask)
    ref = reference_sgp(blk, x, mask, stride)
    np.testing.assert_allclose(out.detach().double().numpy(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("std", [0.0, 0.1])
def test_dead_branch_at_std_zero(std):
    torch.manual_seed(0)
    blk = SGPBlock(16, init_conv_vars=std)
    branch = [blk.psi, blk.fc, blk.convw, blk.convkw, blk.global_fc]
    opt = torch.optim.SGD(blk.parameters(), lr=0.5)
    for _ in range(3):
        x = torch.randn(4, 16, 12)
        out, _ = blk(x, torch.ones(4, 1, 12, dtype=torch.bool))
        loss = (out - torch.randn_like(out)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        grads = [p.grad.abs().sum().item() for conv in branch for p in conv.parameters()]
        if std == 0.0:
            assert grads == [0.0] * 10, "every gradient of the branch vanishes"
        else:
            assert all(g > 0 for g in grads)
        opt.step()
    weights = torch.cat([p.detach().flatten() for conv in branch for p in conv.parameters()])
    if std == 0.0:
        assert torch.all(weights == 0), "the branch stays zero forever"
    else:
        assert weights.abs().sum() > 0


def test_default_init_std_is_live():
    blk = SGPBlock(64)
    assert 0.05 < blk.psi.weight.std().item() < 0.2


@pytest.mark.parametrize("stride", [1, 2])
def test_masked_equals_tridet_when_nothing_is_padded(stride):
    torch.manual_seed(0)
    a = SGPBlock(32, n_ds_stride=stride).eval()
    b = SGPBlock(32, n_ds_stride=stride, masked=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 32, 16)
    mask = torch.ones(3, 1, 16, dtype=torch.bool)
    torch.testing.assert_close(a(x, mask)[0], b(x, mask)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("T", [16, 70])  # banded products, and the grouped-conv fallback past BANDED_MAX_T
def test_masked_equals_tridet_with_every_parameter_random(T):
    """Every bias, affine and drop-path scale non-zero (the default init zeroes the conv biases, so
    a bias lost by the masked path's fused products would go unseen): outputs and gradients agree."""
    torch.manual_seed(0)
    a = SGPBlock(32, path_pdrop=0.1).eval()
    with torch.no_grad():
        for prm in a.parameters():
            prm.normal_(0.0, 0.3).add_(0.1)
    b = SGPBlock(32, path_pdrop=0.1, masked=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 32, T)
    mask = torch.ones(3, 1, T, dtype=torch.bool)
    outs = [blk(x, mask)[0] for blk in (a, b)]
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=1e-5)
    w = torch.randn_like(outs[0])
    for out in outs:
        (out * w).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert pa.grad is not None and pb.grad is not None
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_masked_variant_is_padding_invariant(stride):
    torch.manual_seed(0)
    blk = SGPBlock(32, n_ds_stride=stride, masked=True).eval()
    x = torch.randn(2, 32, 8)
    short, _ = blk(x, torch.ones(2, 1, 8, dtype=torch.bool))
    padded_x = torch.cat([x, 100 * torch.randn(2, 32, 8)], -1)
    mask = torch.zeros(2, 1, 16, dtype=torch.bool)
    mask[..., :8] = True
    long, m = blk(padded_x, mask)
    n = 8 // stride
    torch.testing.assert_close(long[..., :n], short, atol=1e-5, rtol=0)
    assert torch.all(long[..., n:] == 0)
    assert m[..., :n].all() and not m[..., n:].any()


def test_tridet_path_leaks_padding():
    """Why the masked variant exists: TriDet's mean and GroupNorm see padded steps."""
    torch.manual_seed(0)
    blk = SGPBlock(32).eval()
    x = torch.randn(1, 32, 8)
    short, _ = blk(x, torch.ones(1, 1, 8, dtype=torch.bool))
    mask = torch.zeros(1, 1, 16, dtype=torch.bool)
    mask[..., :8] = True
    long, _ = blk(torch.cat([x, 10 * torch.randn(1, 32, 8)], -1), mask)
    assert (long[..., :8] - short).abs().max() > 1e-3


def test_drop_path_scale_and_stochastic_depth():
    torch.manual_seed(0)
    blk = SGPBlock(16, path_pdrop=0.5)
    x = torch.randn(8, 16, 10)
    mask = torch.ones(8, 1, 10, dtype=torch.bool)
    blk.eval()
    a, _ = blk(x, mask)
    b, _ = blk(x, mask)
    assert torch.equal(a, b)
    blk.train()
    torch.manual_seed(1)
    c, _ = blk(x, mask)
    # some samples dropped both residual branches: their output equals the input exactly
    dropped = [(c[i] == x[i]).all().item() for i in range(8)]
    assert any(dropped) and not all(dropped)


@pytest.mark.parametrize("T", [9, 80])  # banded-matrix path and grouped-conv fallback
def test_depthwise_banded_equals_conv1d(T):
    from microaction.models.sgp import depthwise_banded

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, T, 3, generator=g, dtype=torch.float64)  # [G, C, T, N]
    w = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    out = depthwise_banded(x, w)
    ref = torch.nn.functional.conv1d(
        x.permute(3, 0, 1, 2).reshape(3, 10, T), w.reshape(10, 1, 7), padding=3, groups=10
    ).view(3, 2, 5, T)
    torch.testing.assert_close(out, ref.permute(1, 2, 3, 0))
