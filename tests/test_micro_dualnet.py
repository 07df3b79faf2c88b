"""Micro-DualNet and its MAC loss (the generic model tests also run over ``micro_dualnet``)."""

from __future__ import annotations

import pytest
import torch

from microaction.models import create_model
from microaction.models.micro_dualnet import MicroDualNet, mac_loss
from microaction.skeleton import ENTITY_SETS

ENTITIES = list(ENTITY_SETS["ma52"])
B, T, DR, DG = 4, 8, 12, 10


def make_batch(seed: int = 0, b: int = B, t: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = len(ENTITIES)
    batch = {
        "regions": torch.randn(b, k, t, DR, generator=g),
        "global": torch.randn(b, t, DG, generator=g),
        "mask": torch.ones(b, t, dtype=torch.bool),
        "region_valid": torch.ones(b, k, dtype=torch.bool),
    }
    if b > 1:
        batch["mask"][1, t // 2 :] = False
        batch["region_valid"][b - 1, 2] = False
    return batch


def make_model(seed: int = 0, **kw) -> MicroDualNet:
    torch.manual_seed(seed)
    m = create_model(
        "micro_dualnet", preset="tiny", num_classes=5, num_body=3, regions=ENTITIES, region_dim=DR, global_dim=DG, **kw
    )
    assert isinstance(m, MicroDualNet)
    return m


# --------------------------------------------------------------------------------------------- MAC


def _paths(seed: int = 0, b: int = 8, k: int = 5, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z_st = torch.randn(b, k, d, generator=g)
    z_ts = z_st + 0.1 * torch.randn(b, k, d, generator=g)
    return z_st, z_ts


def test_mac_lower_for_aligned_than_shuffled_paths():
    z_st, z_ts = _paths()
    valid = torch.ones(z_st.shape[:2], dtype=torch.bool)
    aligned = mac_loss(z_st, z_ts, valid)
    shuffled = mac_loss(z_st, z_ts[torch.roll(torch.arange(z_st.shape[0]), 1)], valid)
    assert aligned < shuffled
    assert aligned < 0.1 < shuffled  # near-identical pairs at temperature 0.1: near zero
    # per-frame variant too
    zf_st = z_st[:, :, None, :].expand(-1, -1, 3, -1) + 0.05 * torch.randn(8, 5, 3, 16)
    zf_ts = zf_st + 0.05 * torch.randn_like(zf_st)
    assert mac_loss(zf_st, zf_ts, valid) < mac_loss(zf_st, zf_ts.roll(1, dims=0), valid)


def test_mac_negatives_are_same_entity_only():
    # with every entity visible, the loss is the mean of the per-entity losses: other entity types
    # of the same (or another) sample are never negatives
    z_st, z_ts = _paths(k=3)
    valid = torch.ones(z_st.shape[:2], dtype=torch.bool)
    per_entity = [mac_loss(z_st[:, i : i + 1], z_ts[:, i : i + 1], valid[:, :1]) for i in range(3)]
    assert torch.allclose(mac_loss(z_st, z_ts, valid), torch.stack(per_entity).mean(), atol=1e-6)
    # making the other entities' TS features copies of entity 0's ST anchors (perfect impostors
    # if they were negatives) leaves entity 0's part unchanged
    z_ts2 = z_ts.clone()
    z_ts2[:, 1] = z_st[:, 0]
    z_ts2[:, 2] = z_st[:, 0]
    rest = [mac_loss(z_st[:, i : i + 1], z_ts2[:, i : i + 1], valid[:, :1]) for i in (1, 2)]
    expected = torch.stack([per_entity[0], *rest]).mean()
    assert torch.allclose(mac_loss(z_st, z_ts2, valid), expected, atol=1e-6)


def test_mac_gradients_reach_both_paths():
    z_st, z_ts = _paths()
    z_st.requires_grad_(True)
    z_ts.requires_grad_(True)
    mac_loss(z_st, z_ts, torch.ones(z_st.shape[:2], dtype=torch.bool)).backward()
    assert z_st.grad is not None and z_st.grad.abs().sum() > 0
    assert z_ts.grad is not None and z_ts.grad.abs().sum() > 0


def test_model_mac_gradients_reach_both_paths():
    m = make_model()
    m.train()
    out = m(make_batch())
    out["aux_losses"]["mac"].backward()
    for name in ("st", "ts", "mac_st", "mac_ts", "in_w", "entity_embed"):
        grads = [p.grad for n, p in m.named_parameters() if n == name or n.startswith(name + ".")]
        assert grads and all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name


@pytest.mark.parametrize("per_frame", [False, True])
def test_mac_invariant_to_entity_permutation(per_frame: bool):
    g = torch.Generator().manual_seed(3)
    shape = (6, 5, 4, 8) if per_frame else (6, 5, 8)
    z_st, z_ts = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    valid = torch.rand(6, 5, generator=g) > 0.3
    fm = torch.rand(6, 4, generator=g) > 0.2 if per_frame else None
    perm = torch.tensor([3, 0, 4, 1, 2])
    a = mac_loss(z_st, z_ts, valid, frame_mask=fm)
    b = mac_loss(z_st[:, perm], z_ts[:, perm], valid[:, perm], frame_mask=fm)
    assert torch.allclose(a, b, atol=1e-6)


def test_mac_ignores_invisible_entities_and_padded_frames():
    g = torch.Generator().manual_seed(4)
    z_st, z_ts = torch.randn(5, 3, 4, 8, generator=g), torch.randn(5, 3, 4, 8, generator=g)
    valid = torch.ones(5, 3, dtype=torch.bool)
    valid[2, 1] = False
    fm = torch.ones(5, 4, dtype=torch.bool)
    fm[0, 3] = False
    ref = mac_loss(z_st, z_ts, valid, frame_mask=fm)
    z2, w2 = z_st.clone(), z_ts.clone()
    z2[2, 1] = 1e3
    w2[0, :, 3] = -7.0
    assert torch.allclose(ref, mac_loss(z2, w2, valid, frame_mask=fm), atol=1e-6)
    pooled = mac_loss(z_st[:, :, 0], z_ts[:, :, 0], valid)
    z3 = z_st[:, :, 0].clone()
    z3[2, 1] = 1e3
    assert torch.allclose(pooled, mac_loss(z3, z_ts[:, :, 0], valid), atol=1e-6)


def test_mac_without_negatives_is_a_connected_zero():
    z = torch.randn(1, 3, 8, requires_grad=True)
    loss = mac_loss(z, z.detach() + 1, torch.ones(1, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()  # still part of the graph
    valid = torch.tensor([[True, False], [False, True]])  # no entity visible twice
    assert float(mac_loss(torch.randn(2, 2, 4), torch.randn(2, 2, 4), valid)) == 0.0


def test_mac_rejects_bad_shapes():
    with pytest.raises(ValueError):
        mac_loss(torch.randn(2, 3, 4), torch.randn(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError):
        mac_loss(torch.randn(2, 4), torch.randn(2, 4), torch.ones(2, 3, dtype=torch.bool))


def test_mac_is_a_training_objective_only():
    m = make_model()
    m.eval()
    with torch.no_grad():
        assert "mac" not in m(make_batch())["aux_losses"]
        assert "mac" not in m(make_batch(b=1))["aux_losses"]
    m.train()
    assert m(make_batch())["aux_losses"]["mac"].item() > 0.0
    assert m(make_batch(b=1))["aux_losses"]["mac"].item() == 0.0
    assert "mac" not in make_model(mac=False)(make_batch())["aux_losses"]
    assert "mac" not in make_model(paths="st")(make_batch())["aux_losses"]


# ----------------------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "kw", [{}, {"fusion": "fixed"}, {"paths": "st"}, {"paths": "ts"}, {"fusion": "fixed", "fixed_weight": 0.25}]
)
def test_path_weights_shape_and_sum(kw):
    m = make_model(**kw).eval()
    batch = make_batch()
    with torch.no_grad():
        pw = m(batch)["path_weights"]
    assert pw.shape == (B, len(ENTITIES), 2)
    assert torch.allclose(pw.sum(-1), torch.ones(B, len(ENTITIES)), atol=1e-6)
    assert (pw >= 0).all()
    assert torch.equal(pw[B - 1, 2], torch.tensor([0.5, 0.5]))  # invisible entity: fixed
    visible = batch["region_valid"]
    if kw.get("paths") == "st":
        assert torch.equal(pw[visible], torch.tensor([1.0, 0.0]).expand(int(visible.sum()), 2))
    elif kw.get("paths") == "ts":
        assert torch.equal(pw[visible], torch.tensor([0.0, 1.0]).expand(int(visible.sum()), 2))
    elif kw.get("fusion") == "fixed":
        w = kw.get("fixed_weight", 0.5)
        assert torch.allclose(pw[visible], torch.tensor([w, 1 - w]).expand(int(visible.sum()), 2))
    else:
        assert not torch.allclose(pw[visible], torch.full_like(pw[visible], 0.5), atol=1e-4)


def test_path_weights_are_the_mean_over_valid_frames():
    m = make_model().eval()
    batch = make_batch()
    captured = {}
    m.router.register_forward_hook(lambda mod, inp, out: captured.__setitem__("alpha", out))
    with torch.no_grad():
        pw = m(batch)["path_weights"]
    alpha = captured["alpha"]  # [B, K, T, 2]
    assert torch.allclose(pw[1], alpha[1, :, : T // 2].mean(1), atol=1e-6)
    assert torch.allclose(pw[0, :2], alpha[0, :2].mean(1), atol=1e-6)


def test_router_temperature_is_clamped():
    m = make_model(tau_min=0.5, tau_max=2.0)
    with torch.no_grad():
        m.router.log_tau.fill_(10.0)
        assert float(m.router.tau()) == pytest.approx(2.0)
        m.router.log_tau.fill_(-10.0)
        assert float(m.router.tau()) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- ablations


def _param_names(m: torch.nn.Module) -> set[str]:
    return {n.split(".")[0] for n, _ in m.named_parameters()}


def test_ablation_switches_change_the_computation():
    full = _param_names(make_model())
    assert {"st", "ts", "router", "mac_st", "mac_ts"} <= full
    assert "ts" not in _param_names(make_model(paths="st")) and "router" not in _param_names(make_model(paths="st"))
    assert "st" not in _param_names(make_model(paths="ts"))
    assert "router" not in _param_names(make_model(fusion="fixed"))
    assert "mac_st" not in _param_names(make_model(mac=False))

    # same weights, different switch: different outputs
    ref = make_model().eval()
    batch = make_batch()
    with torch.no_grad():
        base = ref(batch)
        for kw in ({"paths": "st"}, {"paths": "ts"}, {"fusion": "fixed"}):
            other = make_model(**kw).eval()
            missing, _ = other.load_state_dict(ref.state_dict(), strict=False)
            assert not missing, missing
            got = other(batch)
            assert not torch.allclose(got["action"], base["action"], atol=1e-4), kw
    ref = make_model(dropout=0.0).train()  # MAC is computed in training mode only
    with torch.no_grad():
        pooled = ref(batch)["aux_losses"]["mac"]
        ref.mac_per_frame = True
        assert not torch.allclose(ref(batch)["aux_losses"]["mac"], pooled)


def test_bad_options_are_refused():
    for kw in ({"paths": "sts"}, {"fusion": "moe"}, {"fixed_weight": 1.5}):
        with pytest.raises((ValueError, TypeError)):
            make_model(**kw)
    m = make_model()
    with pytest.raises(ValueError, match="max_steps"):
        m(make_batch(t=300))
    bad = make_batch()
    bad["regions"] = bad["regions"][:, :4]
    bad["region_valid"] = bad["region_valid"][:, :4]
    with pytest.raises(ValueError, match="regions"):
        m(bad)


# ------------------------------------------------------------------------------------------ masking


@pytest.mark.parametrize("kw", [{}, {"paths": "st"}, {"paths": "ts"}, {"mac_per_frame": True}])
def test_invisible_entities_and_padding_do_not_leak(kw):
    m = make_model(dropout=0.0, **kw).train()  # training mode: MAC is computed too (no dropout: deterministic)
    batch = make_batch()
    other = {k: v.clone() for k, v in batch.items()}
    other["regions"][B - 1, 2] = 50 * torch.randn(T, DR)  # invisible entity
    other["regions"][1, :, T // 2 :] = -9.0  # padded frames
    other["global"][1, T // 2 :] = 3.0
    nan = {k: v.clone() for k, v in batch.items()}
    nan["regions"][B - 1, 2] = float("nan")
    nan["regions"][1, :, T // 2 :] = float("inf")
    nan["global"][1, T // 2 :] = float("nan")
    with torch.no_grad():
        a, b, c = m(batch), m(other), m(nan)
    for key in ("action", "body", "features", "path_weights"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key
        assert torch.allclose(a[key], c[key], atol=1e-5), key
    if kw.get("paths") is None:
        assert torch.allclose(a["aux_losses"]["mac"], b["aux_losses"]["mac"], atol=1e-5)
        assert torch.allclose(a["aux_losses"]["mac"], c["aux_losses"]["mac"], atol=1e-5)


def test_no_visible_entity_and_empty_clip_stay_finite():
    m = make_model().eval()
    batch = make_batch()
    batch["region_valid"][0] = False
    batch["mask"][2] = False
    with torch.no_grad():
        out = m(batch)
    for key in ("action", "body", "features", "path_weights"):
        assert torch.isfinite(out[key]).all(), key
    assert torch.equal(out["path_weights"][0], torch.full((len(ENTITIES), 2), 0.5))
    assert torch.isfinite(make_model(dropout=0.0).train()(batch)["aux_losses"]["mac"])


# ------------------------------------------------------------------------------------------ learning


def test_paper_preset_sizes():
    m = create_model(
        "micro_dualnet", preset="paper", num_classes=52, num_body=7, regions=ENTITIES, region_dim=32, global_dim=32
    )
    assert isinstance(m, MicroDualNet)
    assert m.dim == 256 and len(m.st.first.blocks) == 3 and m.st.first.blocks[0].heads == 8


def test_tiny_model_fits_a_small_batch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only contend (minutes on a loaded machine)
    try:
        m = make_model(dropout=0.0)
        m.train()
        batch = make_batch(b=8)
        y = torch.arange(8) % 5
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        first = None
        for _ in range(40):
            out = m(batch)
            loss = torch.nn.functional.cross_entropy(out["action"], y) + 0.1 * out["aux_losses"]["mac"]
            first = loss.item() if first is None else first
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.3 * first


# ------------------------------------------------------------------------------ loss weights and validation


def _loss_for(aux_weights: dict[str, float], body_weight: float = 0.5):
    from microaction.engine.config import experiment_from_dict
    from microaction.engine.stages import make_loss
    from microaction.taxonomy import load_taxonomy

    cfg = experiment_from_dict(
        {
            "data": {"store": "unused", "manifest": "unused.csv"},
            "model": {"name": "micro_dualnet", "preset": "tiny"},
            "loss": {"aux_weights": aux_weights, "body_weight": body_weight},
        }
    )
    tax = load_taxonomy("ma52")
    return make_loss(cfg, tax, torch.arange(tax.num_classes).numpy(), regions=ENTITIES), tax


def _dualnet_for(tax, **kw) -> MicroDualNet:
    torch.manual_seed(0)
    m = create_model(
        "micro_dualnet",
        preset="tiny",
        num_classes=tax.num_classes,
        num_body=tax.num_body,
        regions=ENTITIES,
        region_dim=DR,
        global_dim=DG,
        **kw,
    )
    assert isinstance(m, MicroDualNet)
    return m


def _labelled(tax, b: int = B, seed: int = 0) -> dict[str, torch.Tensor]:
    batch = make_batch(seed, b=b)
    g = torch.Generator().manual_seed(seed + 1)
    action = torch.randint(0, tax.num_classes, (b,), generator=g)
    batch.update(action=action, body=torch.as_tensor(tax.body_map)[action].long(), index=torch.arange(b))
    return batch


def test_mac_weight_defaults_to_the_papers_lambda():
    loss, tax = _loss_for({})
    assert loss.aux_weights == {"mac": 0.1}
    m = _dualnet_for(tax, dropout=0.0).train()
    batch = _labelled(tax)
    out = m(batch)
    total, parts = loss(out, batch)
    assert parts["aux/mac"] > 0
    expected = parts["action"] + 0.5 * parts["body"] + 0.1 * parts["aux/mac"]
    assert abs(total.item() - expected) < 1e-4, (total.item(), parts)
    # a config that names the weight wins, 0 included
    assert _loss_for({"mac": 0.0})[0].aux_weights == {"mac": 0.0}
    assert _loss_for({"mac": 1.0})[0].aux_weights == {"mac": 1.0}


def test_validation_loss_does_not_depend_on_batch_size():
    """Eval-mode outputs carry no batch-level term: the loss over a split is the same in batches
    of 1 and of N (sample-weighted mean of the batch losses)."""
    loss, tax = _loss_for({})
    m = _dualnet_for(tax).eval()
    data = _labelled(tax, b=6, seed=3)

    def split_loss(bs: int) -> float:
        total, n = 0.0, 0
        with torch.no_grad():
            for i in range(0, 6, bs):
                part = {k: v[i : i + bs] for k, v in data.items()}
                value, _ = loss(m(part), part)
                total, n = total + float(value) * len(part["index"]), n + len(part["index"])
        return total / n

    one, six, three = split_loss(1), split_loss(6), split_loss(3)
    assert abs(one - six) < 1e-5 and abs(three - six) < 1e-5, (one, three, six)
