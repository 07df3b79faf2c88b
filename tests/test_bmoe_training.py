"""B-MoE training details: weight decay and parameter groups, expert warm-up, stage-1 validation,
L_emb on the experts, routing as an attention bias."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from microaction.engine.optim import group_lr, param_groups
from microaction.engine.stages import Stage1Ensemble
from microaction.models import create_model
from microaction.models.bmoe import BMoE
from microaction.models.losses import LossComputer
from test_bmoe import KW, REGIONS
from test_bmoe import batch as bmoe_batch


def batch(B: int = 3, T: int = 9, seed: int = 0) -> dict[str, torch.Tensor]:
    """``test_bmoe.batch`` with action and body labels."""
    b = bmoe_batch(B, T, seed)
    g = torch.Generator().manual_seed(seed + 100)
    return {**b, "action": torch.randint(0, 6, (B,), generator=g), "body": torch.randint(0, 3, (B,), generator=g)}


def bmoe(seed: int = 0, **kw) -> BMoE:
    torch.manual_seed(seed)
    return create_model("bmoe", preset="tiny", **{**KW, "dropout": 0.0, **kw})  # type: ignore[return-value]


def _decay_of(groups: list[dict], p: torch.nn.Parameter) -> float:
    return next(g["weight_decay"] for g in groups if any(q is p for q in g["params"]))


@pytest.mark.parametrize("combine,pool,readout", [("mix", "mean", False), ("tokens", "mean+stats", True)])
def test_one_step_gives_the_same_parameters_for_loop_and_batched(combine, pool, readout):
    loop = bmoe(seed=1, expert_impl="loop", combine=combine, pool=pool, readout_pooled=readout).train()
    fast = bmoe(seed=2, expert_impl="batched", combine=combine, pool=pool, readout_pooled=readout).train()
    fast.load_state_dict({k: v for k, v in loop.state_dict().items() if not k.startswith("experts.")}, strict=False)
    fast.load_experts({r: loop.expert_state_dict(r) for r in REGIONS})
    # weight decay judged per expert: a norm gain [C] (loop) and its stack [G, C] (batched) agree
    gl, gf = param_groups(loop, 0.3), param_groups(fast, 0.3)
    assert _decay_of(gl, loop.experts[0].norm.weight) == _decay_of(gf, fast.experts.norm.weight) == 0.0
    assert _decay_of(gl, loop.experts[0].in_proj.weight) == _decay_of(gf, fast.experts.in_proj.weight) == 0.3
    b = batch()
    for model, groups in ((loop, gl), (fast, gf)):
        opt = torch.optim.AdamW(groups, lr=1e-2, eps=1e-3)  # eps: float noise in tiny gradients stays tiny
        out = model(b)
        (F.cross_entropy(out["action"], b["action"]) + out["features"].pow(2).mean()).backward()
        opt.step()
    for r in REGIONS:
        a, c = loop.expert_state_dict(r), fast.expert_state_dict(r)
        for k in a:
            torch.testing.assert_close(a[k], c[k], atol=2e-6, rtol=0, msg=f"{r} {k}")
    rest = {k: v for k, v in fast.state_dict().items() if not k.startswith("experts.")}
    for k, v in rest.items():
        torch.testing.assert_close(loop.state_dict()[k], v, atol=2e-6, rtol=0, msg=k)


def test_expert_parameter_group_and_warm_up():
    model = bmoe()
    groups = param_groups(model, 0.05, experts=model.expert_parameters(), expert_lr_scale=0.1)
    names = [(g["name"], g["weight_decay"]) for g in groups]
    assert names == [("main", 0.05), ("main", 0.0), ("experts", 0.05), ("experts", 0.0)]
    ids = {id(p) for g in groups if g["name"] == "experts" for p in g["params"]}
    assert ids == {id(p) for p in model.expert_parameters()}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    exp = groups[2]
    # frozen until step 10, then a linear ramp over 4 steps to 0.1 × the schedule's rate
    assert group_lr(exp, 1.0, 9, unfreeze_step=10, warmup_steps=4) == 0.0
    assert [group_lr(exp, 1.0, s, unfreeze_step=10, warmup_steps=4) for s in (10, 11, 13, 20)] == pytest.approx(
        [0.025, 0.05, 0.1, 0.1]
    )
    assert group_lr(groups[0], 1.0, 0, unfreeze_step=10, warmup_steps=4) == 1.0


def test_router_parameters():
    model = bmoe()
    router = {id(p) for p in model.router_parameters()}
    assert id(model.router_q.weight) in router and id(model.region_embed) in router
    assert not router & {id(p) for p in model.expert_parameters()}
    assert id(bmoe(combine="tokens").region_embed) not in {id(p) for p in bmoe(combine="tokens").router_parameters()}
    assert list(bmoe(routing="uniform").router_parameters()) == []


def test_stage1_validation_averages_probabilities_of_the_streams_that_see_the_clip():
    model = bmoe()
    ens = Stage1Ensemble({s: model.stage1_kwargs(s) for s in model.stage1_streams()}).eval()
    b = batch()
    with torch.no_grad():
        out = ens(b)
    probs = {s: torch.softmax(o["action"], -1) for s, o in out["streams"].items()}
    for i in range(3):
        seen = ["global"] + [f"region:{r}" for j, r in enumerate(REGIONS) if b["region_valid"][i, j]]
        want = torch.stack([probs[s][i] for s in seen]).mean(0)
        torch.testing.assert_close(torch.softmax(out["action"][i], -1), want, atol=1e-6, rtol=0)
    assert not b["region_valid"][1, 3]  # clip 1 does not see the legs: 4 voters, not 5
    body = torch.softmax(out["body"], -1)
    torch.testing.assert_close(body.sum(-1), torch.ones(3))


def test_expert_emb_loss_shares_one_projection():
    emb = torch.randn(6, 5)
    lc = LossComputer(num_classes=6, emb_weight=1.0, label_embeddings=emb, feature_dim=32, emb_on="experts")
    model = bmoe(combine="tokens")
    b = batch()
    out = model(b)
    assert out["expert_tokens"].shape == (3, len(REGIONS) + 1, 32)
    assert out["expert_valid"].tolist()[1] == [True, True, True, False, True]
    total, parts = lc(out, b)
    tok, valid = out["expert_tokens"], out["expert_valid"]
    z = F.normalize(lc.proj(tok[valid]), dim=-1)
    e = F.normalize(emb, dim=-1)[b["action"][:, None].expand(3, 5)[valid]]
    assert parts["emb"] == pytest.approx(float((1 - (z * e).sum(-1)).mean().detach()), abs=1e-5)
    total.backward()
    assert model.experts.in_proj.weight.grad is not None  # L_emb reaches the experts
    with pytest.raises(ValueError, match="emb_on"):
        LossComputer(num_classes=6, emb_weight=1.0, label_embeddings=emb, feature_dim=32, emb_on="nowhere")


def test_tokens_combine_routing_is_an_attention_bias():
    model = bmoe(combine="tokens").eval()
    b = batch()
    with torch.no_grad():
        base = model(b)
        # routing weights enter as log-weights: forcing one region's weight to ~0 removes its tokens
        w = base["routing"]
        assert torch.allclose(w.sum(1), torch.ones(3)) and float(w[1, 3]) == 0.0
        orig = model.route

        def one_hot(tokens: torch.Tensor, gtok: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
            return torch.zeros_like(orig(tokens, gtok, valid)).index_fill_(1, torch.tensor([0]), 1.0)

        model.route = one_hot  # type: ignore[method-assign]
        forced = model(b)
        x = dict(b)
        x["regions"] = b["regions"].clone()
        x["regions"][:, 1:] += 5.0  # other regions' inputs no longer matter
        torch.testing.assert_close(model(x)["action"], forced["action"], atol=1e-5, rtol=0)
        assert not torch.allclose(forced["action"], base["action"], atol=1e-4)


def test_router_noise_only_in_training():
    model = bmoe(router_noise=1.0)
    b = batch()
    model.eval()
    with torch.no_grad():
        a, c = model(b)["routing"], model(b)["routing"]
    assert torch.equal(a, c)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        assert not torch.allclose(model(b)["routing"], a)
    with pytest.raises(ValueError, match="router_noise"):
        bmoe(router_noise=-1.0)
    with pytest.raises(ValueError, match="combine"):
        bmoe(combine="avg")
    assert math.isfinite(float(model(b)["action"].sum()))
