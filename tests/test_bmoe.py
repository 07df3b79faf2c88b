"""B-MoE specifics: batched experts = loop, stage-1 loading, routing variants, M3E stacking."""

from __future__ import annotations

import pytest
import torch

from microaction.models import create_model
from microaction.models.bmoe import BMoE
from microaction.models.m3e import M3E, StackedM3E
from microaction.models.sgp import SGPBlock

REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
KW = {"num_classes": 6, "num_body": 3, "regions": REGIONS, "region_dim": 20, "global_dim": 12}


def batch(B: int = 3, T: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 6:] = False
    valid = torch.ones(B, len(REGIONS), dtype=torch.bool)
    valid[1, 3] = False
    return {
        "regions": torch.randn(B, len(REGIONS), T, 20, generator=g),
        "global": torch.randn(B, T, 12, generator=g),
        "mask": mask,
        "region_valid": valid,
    }


def bmoe(seed: int = 0, **kw) -> BMoE:
    torch.manual_seed(seed)
    return create_model("bmoe", preset="tiny", **{**KW, **kw}).eval()  # type: ignore[return-value]


def test_stacked_sgp_equals_masked_sgp_blocks():
    torch.manual_seed(0)
    singles = [M3E(20, d_model=32, n_heads=2, n_attn=0, n_sgp=1, pool="attn", sgp_init_std=0.3) for _ in range(3)]
    stacked = StackedM3E(3, 20, d_model=32, n_heads=2, n_attn=0, n_sgp=1, pool="attn")
    for g, m in enumerate(singles):
        assert isinstance(m.sgp[0], SGPBlock) and m.sgp[0].masked
        stacked.load_expert(g, m.state_dict())
    x = torch.randn(3, 2, 9, 20)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    x = torch.where(mask[None, :, :, None], x, torch.zeros(()))
    out = stacked.eval()(x, mask)
    for g, m in enumerate(singles):
        ref = m.eval()(x[g], mask)
        torch.testing.assert_close(out.seq[g], ref.seq, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.pooled[g], ref.pooled, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.pool_weights[g], ref.pool_weights, atol=1e-6, rtol=0)


def test_stacked_experts_with_their_own_masks_equal_single_ones():
    """Per-step region validity: every stacked expert attends and pools over its own steps."""
    torch.manual_seed(0)
    singles = [M3E(20, d_model=32, n_heads=2, n_attn=1, n_sgp=1, pool="attn", sgp_init_std=0.3) for _ in range(3)]
    stacked = StackedM3E(3, 20, d_model=32, n_heads=2, n_attn=1, n_sgp=1, pool="attn")
    for g, m in enumerate(singles):
        stacked.load_expert(g, m.state_dict())
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(3, 2, 9, generator=g) < 0.6
    mask[:, :, 0] = True
    mask[:, 1, 6:] = False  # the clip's padding, the same for every expert
    x = torch.where(mask[..., None], torch.randn(3, 2, 9, 20, generator=g), torch.zeros(()))
    out = stacked.eval()(x, mask)
    for e, m in enumerate(singles):
        ref = m.eval()(x[e], mask[e])
        torch.testing.assert_close(out.seq[e], ref.seq, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.pooled[e], ref.pooled, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.pool_weights[e], ref.pool_weights, atol=1e-6, rtol=0)
    shared = stacked(x, mask[0])  # a [B, T] mask is every expert's
    torch.testing.assert_close(shared.seq, stacked(x, mask[0].expand(3, 2, 9)).seq, atol=0, rtol=0)


def test_expert_state_dict_round_trip():
    torch.manual_seed(0)
    single = M3E(20, d_model=32, n_heads=2, n_attn=1, n_sgp=1)
    stacked = StackedM3E(4, 20, d_model=32, n_heads=2, n_attn=1, n_sgp=1)
    stacked.load_expert(2, single.state_dict())
    back = stacked.expert_state_dict(2)
    assert set(back) == set(single.state_dict())
    for k, v in single.state_dict().items():
        assert torch.equal(back[k], v), k
    with pytest.raises(KeyError):
        stacked.load_expert(0, {k: v for k, v in single.state_dict().items() if k != "pos"})
    wrong = M3E(20, d_model=48, n_heads=2, n_attn=1, n_sgp=1)
    with pytest.raises(ValueError, match="shape"):
        stacked.load_expert(0, wrong.state_dict())


FACE = {"face_size": 16, "face_patch": 8, "face_dim": 32, "face_depth": 1}


@pytest.mark.parametrize("routing,face", [("soft", False), ("uniform", False), ("concat", False), ("soft", True)])
def test_batched_experts_equal_the_loop(routing, face):
    loop = bmoe(seed=1, expert_impl="loop", routing=routing, **(FACE if face else {}))
    fast = bmoe(seed=2, expert_impl="batched", routing=routing, **(FACE if face else {}))
    if face:  # the face features join the head expert in both: give them an effect to compare
        torch.nn.init.normal_(loop.head_texture.proj.weight, std=0.5)
    shared = {k: v for k, v in loop.state_dict().items() if not k.startswith("experts.")}
    missing, unexpected = fast.load_state_dict(shared, strict=False)
    assert unexpected == [] and all(k.startswith("experts.") for k in missing)
    fast.load_experts({r: loop.expert_state_dict(r) for r in REGIONS})
    b = batch()
    if face:
        g = torch.Generator().manual_seed(4)
        b["face"] = torch.randint(0, 256, (3, 9, 16, 16), generator=g, dtype=torch.uint8)
        b["face_valid"] = torch.ones(3, 9, dtype=torch.bool)
        with torch.no_grad():
            plain = loop({k: v for k, v in b.items()})["action"]
            loop.head_texture.proj.weight.zero_()
            assert not torch.allclose(plain, loop(b)["action"], atol=1e-4)  # the faces do change the output
        torch.nn.init.normal_(loop.head_texture.proj.weight, std=0.5)
        fast.head_texture.load_state_dict(loop.head_texture.state_dict())
    with torch.no_grad():
        a, c = loop(b), fast(b)
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=1e-5, rtol=0, msg=k)
    # and the gradients agree (eval mode: the two draw dropout masks in different orders)
    la = loop(b)["action"].logsumexp(1).sum()
    lc = fast(b)["action"].logsumexp(1).sum()
    la.backward()
    lc.backward()
    ga = loop.global_encoder.in_proj.weight.grad
    gc = fast.global_encoder.in_proj.weight.grad
    assert ga is not None and gc is not None
    torch.testing.assert_close(ga, gc, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"pool": "mean+stats", "pool_segments": 4, "segment_center": True, "expert_sum": "all"},
        {"pool": "attn", "readout_pooled": True},
        FACE,
    ],
)
def test_the_global_m3e_run_with_the_batched_experts_is_the_same_function(kw):
    """``StackedM3E.forward_with``: the global M3E as one more stacked expert after its own input
    projection (its input width differs from the regions'): the same outputs and gradients."""
    model = bmoe(seed=0, **kw)
    assert model._joint_global
    b = batch()
    if "face_size" in kw:
        torch.nn.init.normal_(model.head_texture.proj.weight, std=0.5)
        b["face"] = torch.randint(0, 256, (3, 9, 16, 16), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
        b["face_valid"] = torch.ones(3, 9, dtype=torch.bool)
    outs, grads = [], []
    for joint in (True, False):
        model._joint_global = joint
        model.zero_grad()
        out = model(b)
        (out["action"].logsumexp(1).sum() + out["expert_tokens"].square().sum()).backward()
        outs.append(out)
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for k, v in outs[1].items():
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            torch.testing.assert_close(outs[0][k], v, atol=1e-5, rtol=0, msg=k)
    assert grads[0].keys() == grads[1].keys() and any(n.startswith("global_encoder.sgp") for n in grads[0])
    for n, g in grads[1].items():
        torch.testing.assert_close(grads[0][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_only_narrow_experts_run_the_global_m3e_with_them():
    """At paper width the parameters' copies cost more than the ops saved (docs/models.md)."""
    from microaction.models.bmoe import JOINT_MAX_WIDTH

    assert bmoe()._joint_global and 32 <= JOINT_MAX_WIDTH < 512
    wide = create_model("bmoe", **KW, d_model=512, n_heads=8, n_attn=1, n_sgp=1)
    assert not wide._joint_global  # type: ignore[union-attr]
    assert not bmoe(expert_impl="loop")._joint_global


def test_stage1_classifiers_initialise_the_experts():
    model = bmoe(seed=0)
    assert model.stage1_streams() == [f"region:{r}" for r in REGIONS] + ["global"]
    stage1 = {}
    for i, s in enumerate(model.stage1_streams()):
        torch.manual_seed(100 + i)
        stage1[s] = create_model("m3e_global", **model.stage1_kwargs(s)).eval()
    model.load_experts(
        {r: stage1[f"region:{r}"].state_dict() for r in REGIONS}, global_state=stage1["global"].state_dict()
    )
    for r in REGIONS:
        enc = stage1[f"region:{r}"].encoder.state_dict()
        got = model.expert_state_dict(r)
        for k, v in enc.items():
            assert torch.equal(got[k], v), (r, k)
    for k, v in stage1["global"].encoder.state_dict().items():
        assert torch.equal(model.global_encoder.state_dict()[k], v)
    # the loaded expert computes what the stage-1 encoder computed on its stream
    b = batch()
    with torch.no_grad():
        x = b["regions"].transpose(0, 1)
        x = torch.where(b["mask"][None, :, :, None], x, torch.zeros(()))
        seq = model.experts(x, b["mask"]).seq[0]  # head
        ref = stage1["region:head"].encoder(b["regions"][:, 0], b["mask"]).seq
    torch.testing.assert_close(seq, ref, atol=1e-5, rtol=0)
    with pytest.raises(KeyError, match="unknown region"):
        model.load_experts({"tail": stage1["global"].state_dict()})
    with pytest.raises(ValueError, match="stream"):
        model.stage1_kwargs("region:tail")


def test_stage1_region_stream_reads_its_region():
    torch.manual_seed(0)
    m = create_model("m3e_global", preset="tiny", stream="region:body", **KW).eval()
    b = batch()
    b2 = dict(b)
    b2["regions"] = b["regions"].clone()
    b2["regions"][:, [0, 2, 3]] = 5.0  # other regions do not matter
    b2["global"] = torch.zeros_like(b["global"])
    with torch.no_grad():
        torch.testing.assert_close(m(b)["action"], m(b2)["action"])
        b2["regions"][:, 1] = torch.randn(b2["regions"][:, 1].shape)
        assert not torch.allclose(m(b)["action"], m(b2)["action"])
    with pytest.raises(ValueError, match="stream"):
        create_model("m3e_global", preset="tiny", stream="region:tail", **KW)


def test_routing_softmax_over_visible_regions_and_top_k():
    b = batch()
    with torch.no_grad():
        r = bmoe()(b)["routing"]
        torch.testing.assert_close(r.sum(1), torch.ones(3))
        assert r[1, 3] == 0 and (r[~b["region_valid"]] == 0).all()
        assert (r[b["region_valid"]] > 0).all(), "dense soft routing by default"
        top1 = bmoe(router_top_k=1)(b)["routing"]
        assert ((top1 > 0).sum(1) == 1).all() and torch.allclose(top1.sum(1), torch.ones(3))
        top2 = bmoe(router_top_k=2)(b)["routing"]
        assert ((top2 > 0).sum(1) == 2).all()
        hot = bmoe(router_temperature=1e4)(b)["routing"]  # high temperature → uniform over visible
        vis = b["region_valid"].float()
        torch.testing.assert_close(hot, vis / vis.sum(1, keepdim=True), atol=1e-3, rtol=0)


def test_uniform_and_concat_variants():
    b = batch()
    torch.manual_seed(0)
    uni = create_model("bmoe_uniform", preset="tiny", **KW).eval()
    with torch.no_grad():
        r = uni(b)["routing"]
    vis = b["region_valid"].float()
    torch.testing.assert_close(r, vis / vis.sum(1, keepdim=True))
    assert not any(k.startswith(("router", "relate")) for k, _ in uni.named_parameters())
    torch.manual_seed(0)
    cat = create_model("bmoe_concat", preset="tiny", **KW).eval()
    with torch.no_grad():
        out = cat(b)
    assert "routing" not in out and out["action"].shape == (3, 6)
    with pytest.raises(TypeError):
        create_model("bmoe_uniform", preset="tiny", routing="soft", **KW)


def test_no_visible_region_and_empty_clip_stay_finite():
    b = batch()
    b["region_valid"][0] = False
    b["mask"][2] = False
    model = bmoe().train()
    out = model(b)
    assert torch.all(out["routing"][0] == 0)
    for k, v in out.items():
        assert torch.isfinite(v).all(), k
    out["action"].sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


def test_freeze_experts():
    model = bmoe()
    model.set_experts_trainable(False)
    frozen = {id(p) for p in model.expert_parameters()}
    assert all(not p.requires_grad for p in model.expert_parameters())
    assert all(p.requires_grad for p in model.parameters() if id(p) not in frozen)
    model.set_experts_trainable(True)
    assert all(p.requires_grad for p in model.parameters())


def test_bad_arguments():
    with pytest.raises(ValueError, match="routing"):
        bmoe(routing="hard")
    with pytest.raises(ValueError, match="expert_impl"):
        bmoe(expert_impl="threads")
    with pytest.raises(ValueError, match="temperature"):
        bmoe(router_temperature=0.0)
    with pytest.raises(ValueError, match="region streams"):
        bmoe()({**batch(), "regions": batch()["regions"][:, :3]})
    with pytest.raises(ValueError, match="max_len"):
        bmoe()(batch(T=40))
    with pytest.raises(ValueError, match="expert_sum"):
        bmoe(expert_sum="global")


def test_expert_sum_is_the_routed_mixture_of_the_experts_pooled_outputs():
    b = batch()
    feats = {}
    for mode in ("none", "regions", "all"):
        model = bmoe(seed=3, expert_sum=mode, pool="mean+stats")
        captured: list[torch.Tensor] = []
        model.pre_logits.register_forward_hook(lambda m, i, o, seen=captured: seen.append(i[0]))
        with torch.no_grad():
            out = model(b)
        feats[mode] = (captured[0], out)
    base, out = feats["none"]
    tokens, w = out["expert_tokens"], out["routing"]  # [B, R+1, d] (regions, then global), [B, R]
    mix = torch.einsum("br,brd->bd", w, tokens[:, :-1])
    torch.testing.assert_close(feats["regions"][0], base + mix)
    torch.testing.assert_close(feats["all"][0], base + mix + tokens[:, -1])
    assert torch.all(w[1, 3] == 0)  # an invisible region adds nothing


def test_paper_preset_dimensions():
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = create_model("bmoe", preset="paper", num_classes=52, num_body=7, region_dim=1408, global_dim=1408)
    assert isinstance(model, BMoE)
    assert model.expert_kwargs["d_model"] == 512 and model.n_heads == 8
    experts = model.experts
    assert isinstance(experts, StackedM3E) and experts.in_proj.weight.shape == (4, 512, 1408)
    n = sum(p.numel() for p in model.parameters())
    assert 40e6 < n < 100e6


def test_stacked_linear_gradients_and_autocast():
    from microaction.models.stacked import stacked_linear

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stacked_linear, (x, w, b))
    assert torch.autograd.gradcheck(lambda x, w: stacked_linear(x, w, None), (x, w))
    torch.testing.assert_close(stacked_linear(x, w, b), torch.einsum("gni,goi->gno", x, w) + b[:, None])
    xf, wf, bf = (t.detach().float().requires_grad_() for t in (x, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stacked_linear(xf, wf, bf)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert xf.grad is not None and wf.grad is not None and bf.grad is not None
    assert xf.grad.dtype == wf.grad.dtype == bf.grad.dtype == torch.float32


def test_fast_dropout():
    from microaction.models.common import Dropout, fast_dropout

    x = torch.ones(200, 1000)
    assert fast_dropout(x, 0.1, False) is x
    torch.manual_seed(0)
    a = fast_dropout(x, 0.1, True)
    torch.manual_seed(0)
    b = fast_dropout(x, 0.1, True)
    assert torch.equal(a, b)
    dropped = (a == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.005
    assert a.mean().item() == pytest.approx(1.0, abs=0.01)  # inverted scaling keeps the mean
    assert torch.all(fast_dropout(x, 1.0, True) == 0)
    odd = torch.randn(7, 11, requires_grad=True)  # sizes not divisible by 3
    out = Dropout(0.5).train()(odd)
    out.sum().backward()
    assert odd.grad is not None and set(odd.grad.unique().tolist()) <= {0.0, 2.0}
    with pytest.raises(ValueError):
        Dropout(1.5)
