"""The training step's fast paths compute what the reference formulation computes.

Fast: batched experts (``bmm`` or per-expert products), the explicit bf16 attention on CPU, the
fused AdamW (``engine.optim.adamw``), the multi-tensor EMA. Reference: the Python loop over
separate experts, PyTorch's attention kernel, the for-loop AdamW, the per-tensor EMA formula.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from microaction.engine.optim import EMA, adamw, adamw_impl, load_optimizer_state, param_groups
from microaction.models import create_model
from microaction.models import stacked as stacked_mod
from microaction.models.common import attention
from microaction.models.losses import LossComputer
from test_bmoe import KW as BMOE_KW
from test_bmoe import REGIONS
from test_bmoe import batch as bmoe_batch

KW = {**BMOE_KW, "dropout": 0.0}


def _batch(B: int = 4, T: int = 9) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    labels = {"action": torch.randint(0, 6, (B,), generator=g), "body": torch.randint(0, 3, (B,), generator=g)}
    return {**bmoe_batch(B, T, seed=3), **labels}


def _losses(impl: str, fast_opt: bool, bf16: bool, steps: int = 4) -> list[float]:
    """Losses of ``steps`` training steps of a tiny B-MoE (no dropout: no random draws)."""
    torch.manual_seed(0)
    ref = create_model("bmoe", preset="tiny", **KW, expert_impl="loop")
    model = ref
    if impl == "batched":
        torch.manual_seed(0)
        model = create_model("bmoe", preset="tiny", **KW, expert_impl="batched")
        shared = {k: v for k, v in ref.state_dict().items() if not k.startswith("experts.")}
        model.load_state_dict(shared, strict=False)
        model.load_experts({r: ref.expert_state_dict(r) for r in REGIONS})
    model.train()
    loss_fn = LossComputer(num_classes=6, num_body=3)
    groups = param_groups(model, 0.05)
    opt = adamw(groups, lr=3e-3, betas=(0.9, 0.999), eps=1e-8) if fast_opt else torch.optim.AdamW(groups, lr=3e-3)
    batch, out = _batch(), []
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = loss_fn(model(batch), batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        out.append(float(loss.detach()))
    return out


@pytest.mark.parametrize("loop_min", [0, 1 << 40])  # per-expert products / one bmm
def test_fast_step_losses_equal_the_reference(monkeypatch, loop_min):
    monkeypatch.setattr(stacked_mod, "GMM_LOOP_MIN", loop_min)
    reference = _losses("loop", fast_opt=False, bf16=False)
    assert reference[-1] < reference[0]  # it trains: the comparison is over changing weights
    fast = _losses("batched", fast_opt=True, bf16=False)
    assert fast == pytest.approx(reference, rel=1e-4, abs=1e-5)
    # bf16 autocast (explicit attention on CPU, bf16 products): the same within bf16's precision
    half = _losses("batched", fast_opt=True, bf16=True)
    assert half == pytest.approx(reference, rel=3e-2, abs=3e-2)


@pytest.mark.parametrize(
    "kind,L", [("bool", 7), ("bias", 7), ("bias_grad", 7), ("bias_grad", 272), ("bool_dead", 7), ("bias_dead", 7)]
)
def test_cpu_bf16_attention_equals_the_kernel(kind, L):
    """The explicit bf16 path (short scores; or a float bias with a gradient, B-MoE's routing bias,
    at any length) against PyTorch's fp32 kernel: outputs and every gradient. ``_dead``: a sample
    whose keys are all masked gets zeros, and no NaN reaches any gradient."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(6, 2, L, 16, generator=g) for _ in range(3))
    keep = torch.ones(6, 1, 1, L, dtype=torch.bool)
    keep[:3, ..., L - 2 :] = False
    if kind.endswith("_dead"):
        keep[4] = False
    bias = torch.randn(keep.shape, generator=g).masked_fill(~keep, float("-inf"))
    if kind.startswith("bool"):
        mask32 = mask16 = keep
    else:
        mask32 = bias.clone().requires_grad_(kind == "bias_grad")
        mask16 = bias.to(torch.bfloat16).requires_grad_(kind == "bias_grad")
    go = torch.randn(6, 2, L, 16, generator=g)
    leaves32 = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = F.scaled_dot_product_attention(*leaves32, attn_mask=mask32)
    ref.backward(go)
    leaves16 = [t.to(torch.bfloat16).requires_grad_() for t in (q, k, v)]
    out = attention(*leaves16, mask16)
    out.backward(go.to(torch.bfloat16))
    if kind.endswith("_dead"):
        assert torch.equal(ref[4], torch.zeros_like(ref[4])) and torch.equal(out[4], torch.zeros_like(out[4]))
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    grads = [(a, b) for a, b in zip(leaves16, leaves32, strict=True)]
    if kind == "bias_grad":
        grads.append((mask16, mask32))
    for a, b in grads:
        assert a.grad is not None and b.grad is not None and torch.isfinite(a.grad).all()
        fin = torch.isfinite(b.grad)
        torch.testing.assert_close(a.grad.float()[fin], b.grad[fin], atol=5e-2, rtol=5e-2)
    # fp32 and inference keep PyTorch's kernel (bit for bit)
    with torch.no_grad():
        torch.testing.assert_close(
            attention(q, k, v, mask32), F.scaled_dot_product_attention(q, k, v, attn_mask=mask32)
        )


def test_adamw_is_fused_on_cpu_and_stays_fused_after_loading_an_older_state():
    model = torch.nn.Linear(4, 3)
    assert adamw_impl(model.parameters()) == "fused"
    opt = adamw(param_groups(model, 0.01), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    assert all(g["fused"] for g in opt.param_groups)
    old = torch.optim.AdamW(param_groups(model, 0.01), lr=1e-3)  # an older run's for-loop AdamW
    model(torch.randn(2, 4)).sum().backward()
    old.step()
    load_optimizer_state(opt, old.state_dict())
    assert all(g["fused"] and not g["foreach"] for g in opt.param_groups)
    opt.step()  # the loaded moments work with the fused kernel
    assert adamw_impl([torch.zeros(2, dtype=torch.long)]) == "for-loop"


def test_ema_update_is_the_weighted_average():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    ema = EMA(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.train()(torch.randn(5, 3))  # BatchNorm's counter (an integer buffer) moves
    ema.update(model)
    d = min(0.9, 2 / 11)
    src = model.state_dict()
    for k, v in ema.model.state_dict().items():
        want = before[k] * d + src[k] * (1 - d) if v.dtype.is_floating_point else src[k]
        torch.testing.assert_close(v, want)


def test_long_sequences_keep_the_kernel_in_bf16():
    """Whole recordings (detection) must not materialise ``[L, L]`` scores: PyTorch's kernel, bit for bit."""
    g = torch.Generator().manual_seed(1)
    L = 272  # Lq·Lk above EXPLICIT_ATTENTION_MAX
    q, k, v = (torch.randn(2, 2, L, 16, generator=g).to(torch.bfloat16).requires_grad_() for _ in range(3))
    keep = torch.ones(2, 1, 1, L, dtype=torch.bool)
    keep[0, ..., 200:] = False
    assert torch.equal(attention(q, k, v, keep), F.scaled_dot_product_attention(q, k, v, attn_mask=keep))
    # a float mask without a gradient: the kernel too
    bias = torch.zeros(keep.shape, dtype=torch.bfloat16).masked_fill(~keep, float("-inf"))
    assert torch.equal(attention(q, k, v, bias), F.scaled_dot_product_attention(q, k, v, attn_mask=bias))


def test_a_routing_bias_with_a_gradient_takes_the_explicit_path(monkeypatch):
    """PyTorch's kernel runs a float mask that needs a gradient on its slow math path (1.8× the
    explicit one for B-MoE's read-out): in bf16 CPU training it must not be called, at any length."""
    import microaction.models.common as common

    def kernel(*args, **kwargs):
        raise AssertionError("PyTorch's attention kernel was called")

    monkeypatch.setattr(common.F, "scaled_dot_product_attention", kernel)
    q, k, v = (torch.randn(2, 2, 300, 16).to(torch.bfloat16).requires_grad_() for _ in range(3))
    bias = torch.zeros(2, 1, 1, 300, dtype=torch.bfloat16, requires_grad=True)
    attention(q, k, v, bias).float().sum().backward()
    assert bias.grad is not None
    with pytest.raises(AssertionError, match="kernel"):  # long, no gradient on the mask: the kernel
        attention(q, k, v, bias.detach())
