"""Pooled tokens that keep the time course: ``segment_means`` and the ``pool_segments`` of M3E and
Micro-DualNet."""

from __future__ import annotations

import pytest
import torch

from microaction.models import create_model
from microaction.models.common import masked_mean, segment_means
from microaction.models.m3e import M3E, StackedM3E

REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
KW = {"num_classes": 6, "num_body": 3, "regions": REGIONS, "region_dim": 20, "global_dim": 12}


def test_segment_means_follow_the_valid_steps_in_order() -> None:
    x = torch.arange(8.0).view(1, 8, 1)
    mask = torch.ones(1, 8, dtype=torch.bool)
    assert segment_means(x, mask, 4)[0].tolist() == pytest.approx([0.5, 2.5, 4.5, 6.5])
    # padding and unseen steps move no boundary: parts are ranks among the valid steps
    mask2 = torch.tensor([[True, False, True, True, False, True, True, True]])
    assert segment_means(x, mask2, 2)[0].tolist() == pytest.approx([(0 + 2 + 3) / 3, (5 + 6 + 7) / 3])
    assert segment_means(x, torch.zeros(1, 8, dtype=torch.bool), 2).tolist() == [[0.0, 0.0]]
    # the mean is the same for a sequence and its reverse; the segment means are not
    r = x.flip(1)
    assert torch.equal(masked_mean(x, mask, 1), masked_mean(r, mask, 1))
    assert not torch.equal(segment_means(x, mask, 2), segment_means(r, mask, 2))


def test_stacked_experts_equal_single_ones_with_segments() -> None:
    torch.manual_seed(0)
    kw = {"d_model": 32, "n_heads": 2, "n_attn": 1, "n_sgp": 1, "max_len": 16, "pool": "mean+stats", "pool_segments": 3}
    singles = [M3E(20, **kw).eval() for _ in range(2)]
    stacked = StackedM3E(2, 20, **kw).eval()
    for g, m in enumerate(singles):
        stacked.load_expert(g, m.state_dict())
    x = torch.randn(2, 3, 9, 20)
    mask = torch.ones(2, 3, 9, dtype=torch.bool)
    mask[0, 1, 6:] = False
    mask[1, 2, :2] = False
    x = x * mask[..., None]
    with torch.no_grad():
        out = stacked(x, mask)
        for g, m in enumerate(singles):
            torch.testing.assert_close(out.pooled[g], m(x[g], mask[g]).pooled, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["m3e_global", "bmoe"])
def test_pool_segments_make_the_pooled_token_order_aware(name: str) -> None:
    """With SGP and attention off and mean pooling, only the segment means see the order of the
    steps: reversing the clip changes the output with ``pool_segments`` and not without."""
    kw = {**KW, "n_attn": 0, "n_sgp": 0, "pool": "mean", "dropout": 0.0}
    if name == "bmoe":
        kw["expert_sum"] = "regions"
    g = torch.Generator().manual_seed(1)
    b = {"regions": torch.randn(2, 4, 9, 20, generator=g), "global": torch.randn(2, 9, 12, generator=g),
         "mask": torch.ones(2, 9, dtype=torch.bool), "region_valid": torch.ones(2, 4, dtype=torch.bool)}  # fmt: skip
    rev = {**b, "regions": b["regions"].flip(2), "global": b["global"].flip(1)}
    outs = {}
    for k in (0, 4):
        torch.manual_seed(0)
        model = create_model(name, preset="tiny", **{**kw, "max_len": 9, "pool_segments": k}).eval()
        with torch.no_grad():
            model.get_parameter("global_encoder.pos" if name == "bmoe" else "encoder.pos").zero_()  # no positions
            if name == "bmoe":
                model.experts.pos.zero_()
            outs[k] = (model(b)["action"], model(rev)["action"])
    if name == "m3e_global":  # a bag of steps without segments
        torch.testing.assert_close(outs[0][0], outs[0][1], atol=1e-5, rtol=0)
    assert not torch.allclose(outs[4][0], outs[4][1], atol=1e-3)


def test_micro_dualnet_pool_segments_see_the_order_of_the_frames() -> None:
    """Without temporal positions Micro-DualNet is a function of the bag of frames (attention over
    frames, per-frame routing, mean pooling): a reversed clip gives the same scores. With
    ``pool_segments`` the entity features keep the order, and the scores differ."""
    g = torch.Generator().manual_seed(2)
    b = {"regions": torch.randn(3, 4, 9, 20, generator=g), "global": torch.randn(3, 9, 12, generator=g),
         "mask": torch.ones(3, 9, dtype=torch.bool), "region_valid": torch.ones(3, 4, dtype=torch.bool)}  # fmt: skip
    b["mask"][1, 7:] = False  # a padded clip: reverse its valid frames only
    rev = {**b, "regions": b["regions"].flip(2), "global": b["global"].flip(1)}
    rev["regions"][1, :, :7] = b["regions"][1, :, :7].flip(1)
    rev["global"][1, :7] = b["global"][1, :7].flip(0)
    outs = {}
    for k in (0, 4):
        torch.manual_seed(0)
        model = create_model("micro_dualnet", preset="tiny", **{**KW, "dropout": 0.0, "pool_segments": k}).eval()
        with torch.no_grad():
            model.time_embed.zero_()
            outs[k] = (model(b)["action"], model(rev)["action"])
    torch.testing.assert_close(outs[0][0], outs[0][1], atol=1e-5, rtol=0)
    assert (outs[4][0] - outs[4][1]).abs().amax(-1).min() > 1e-3  # every clip, the padded one too


def test_bad_pool_segments() -> None:
    with pytest.raises(ValueError, match="pool_segments"):
        M3E(8, d_model=32, n_heads=2, pool_segments=-1)
    with pytest.raises(ValueError, match="pool_segments"):
        create_model("micro_dualnet", preset="tiny", **KW, pool_segments=-1)


@pytest.mark.parametrize("stacked", [False, True])
def test_segment_drop_drops_the_segment_branch_per_sample_in_training_only(stacked: bool) -> None:
    """``segment_drop``: in training each sample's segment term is either 0 or scaled by 1 / (1 - p)
    (the pooled token is the order-free pooling alone, or that plus the scaled term); in eval the
    model equals the one without dropping."""
    torch.manual_seed(0)
    kw = {"d_model": 32, "n_heads": 2, "n_attn": 1, "n_sgp": 1, "max_len": 16, "pool": "mean", "dropout": 0.0}
    p = 0.5
    make = (lambda **k: StackedM3E(1, 20, **k)) if stacked else (lambda **k: M3E(20, **k))
    drop, plain, nosegs = make(**kw, pool_segments=3, segment_drop=p), make(**kw, pool_segments=3), make(**kw)
    plain.load_state_dict(drop.state_dict())
    nosegs.load_state_dict({k: v for k, v in drop.state_dict().items() if not k.startswith("segment_proj")})
    x = torch.randn(64, 9, 20)
    mask = torch.ones(64, 9, dtype=torch.bool)
    if stacked:
        x, mask = x[None], mask[None]
    for m in (drop, plain, nosegs):
        m.train()
    with torch.no_grad():
        base, full, got = nosegs(x, mask).pooled, plain(x, mask).pooled, drop(x, mask).pooled
        seg = full - base
        dropped = torch.isclose(got, base, atol=1e-5).all(-1)
        kept = torch.isclose(got, base + seg / (1 - p), atol=1e-4).all(-1)
        assert bool((dropped | kept).all()) and 0 < int(dropped.sum()) < dropped.numel()
        for m in (drop, plain):
            m.eval()
        torch.testing.assert_close(drop(x, mask).pooled, plain(x, mask).pooled)
    with pytest.raises(ValueError, match="segment_drop"):
        make(**kw, pool_segments=3, segment_drop=1.0)


def _segment_inputs(module: torch.nn.Module) -> list[torch.Tensor]:
    """The inputs ``segment_proj`` receives (hooked), one per forward call."""
    seen: list[torch.Tensor] = []
    module.get_submodule("segment_proj").register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    return seen


@pytest.mark.parametrize("stacked", [False, True])
def test_segment_center_feeds_the_time_course_only(stacked: bool) -> None:
    """``segment_center``: ``segment_proj`` gets each part's mean minus the clip's mean over its
    valid steps (padding leaks into neither), so a model without centring whose ``segment_proj``
    weight is W·C (C: the centring matrix, equal parts) computes the same pooled token."""
    torch.manual_seed(0)
    K, d = 3, 32
    kw = {"d_model": d, "n_heads": 2, "n_attn": 1, "n_sgp": 1, "max_len": 16, "pool": "mean", "pool_segments": K}
    make = (lambda **k: StackedM3E(1, 20, **k)) if stacked else (lambda **k: M3E(20, **k))
    cen, plain = make(**kw, segment_center=True).eval(), make(**kw).eval()
    state = cen.state_dict()
    C = torch.kron(torch.eye(K) - torch.full((K, K), 1.0 / K), torch.eye(d))
    state["segment_proj.weight"] = state["segment_proj.weight"] @ C
    plain.load_state_dict(state)
    x = torch.randn(5, 12, 20)
    mask = torch.ones(5, 12, dtype=torch.bool)
    mask[2, 9:] = False  # 9 valid steps: three equal parts again
    x[2, 9:] = 100.0  # garbage at padded steps
    if stacked:
        x, mask = x[None], mask[None]
    seen = _segment_inputs(cen)
    with torch.no_grad():
        torch.testing.assert_close(cen(x, mask).pooled, plain(x, mask).pooled, atol=1e-5, rtol=1e-5)
    parts = seen[0].unflatten(-1, (K, d))
    torch.testing.assert_close(parts.sum(-2), torch.zeros_like(parts[..., 0, :]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stacked", [False, True])
def test_segment_dropout_drops_elements_of_the_means_in_training_only(stacked: bool) -> None:
    """``segment_dropout`` p: in training each element of ``segment_proj``'s input is 0 or the
    model's own segment mean scaled by 1 / (1 - p), some of each; in eval the model equals the
    one without it."""
    torch.manual_seed(0)
    p = 0.5
    kw = {"d_model": 32, "n_heads": 2, "n_attn": 1, "n_sgp": 1, "max_len": 16, "pool": "mean", "dropout": 0.0,
          "pool_segments": 3}  # fmt: skip
    make = (lambda **k: StackedM3E(1, 20, **k)) if stacked else (lambda **k: M3E(20, **k))
    drop, plain = make(**kw, segment_dropout=p), make(**kw)
    plain.load_state_dict(drop.state_dict())
    x = torch.randn(16, 9, 20)
    mask = torch.ones(16, 9, dtype=torch.bool)
    if stacked:
        x, mask = x[None], mask[None]
    got, want = _segment_inputs(drop), _segment_inputs(plain)
    with torch.no_grad():
        drop.train(), plain.train()
        drop(x, mask), plain(x, mask)
        zero = got[0] == 0
        torch.testing.assert_close(got[0][~zero], want[0][~zero] / (1 - p))
        assert 0.3 < float(zero.float().mean()) < 0.7
        drop.eval(), plain.eval()
        torch.testing.assert_close(drop(x, mask).pooled, plain(x, mask).pooled)
    with pytest.raises(ValueError, match="segment_dropout"):
        make(**kw, segment_dropout=1.0)
