"""Checks every registered model passes, with its ``tiny`` preset, on the shared input contract."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from microaction.models import create_model, list_models, model_entry
from microaction.models.common import region_step_mask
from microaction.models.registry import UnknownModelError

B, R, T, D_R, D_G, C, C_BODY = 4, 4, 11, 24, 20, 7, 3
REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
ATOL = 1e-5
FACE = 16  # side of the face crops of the "+face" variants
# variants checked like registered models: "<name>+face" = the model with its head-texture branch
VARIANT_KWARGS = {
    "face": {"face_size": FACE, "face_patch": 8, "face_dim": 32, "face_depth": 1, "texture_frames": 8},
    # experts kept apart (routing as an attention bias), tokens that see the inputs' statistics
    "tokens": {"combine": "tokens", "pool": "mean+stats", "router_noise": 0.5, "readout_pooled": True},
    "stats": {"pool": "mean+stats"},
    # the demo configs' B-MoE: + the routed sum of the experts' pooled outputs straight to the head
    "demo": {"combine": "tokens", "pool": "mean+stats", "expert_sum": "regions"},
    "sumall": {"expert_sum": "all", "router_noise": 0.5},
    # pooled tokens that keep the time course (means over consecutive parts of the clip)
    "segments": {"pool": "mean+stats", "pool_segments": 3},
    # ... centred on the clip's mean, with element-wise dropout on them (the B-MoE demo configs)
    "centred": {"pool": "mean+stats", "pool_segments": 3, "segment_center": True, "segment_dropout": 0.5},
    # Micro-DualNet's fused entity features pooled with the ordered segment means too
    "ordered": {"pool_segments": 3},
    # M3E ablations: no SGP blocks / no self-attention layers
    "no_sgp": {"n_sgp": 0},
    "no_attn": {"n_attn": 0},
}


def make_batch(seed: int = 0, B: int = B, T: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    lengths = [T, T - 3, T - 1, 5][:B] + [T] * max(0, B - 4)
    for i, n in enumerate(lengths):
        mask[i, n:] = False
    valid = torch.ones(B, R, dtype=torch.bool)
    if B > 1:
        valid[1, 3] = False  # legs not visible
    if B > 2:
        valid[2, 0] = False
        valid[2, 2] = False
    regions = torch.randn(B, R, T, D_R, generator=g)
    glob = torch.randn(B, T, D_G, generator=g)
    # padded steps and invisible regions hold garbage, as a careless loader might leave
    regions = torch.where((valid[:, :, None] & mask[:, None, :]).unsqueeze(-1), regions, 7.0)
    glob = torch.where(mask.unsqueeze(-1), glob, -5.0)
    face_valid = torch.rand(B, T, generator=g) < 0.8
    face_valid[0, 0] = True
    return {
        "regions": regions,
        "global": glob,
        "mask": mask,
        "region_valid": valid,
        "action": torch.randint(0, C, (B,), generator=g),
        "body": torch.randint(0, C_BODY, (B,), generator=g),
        # head-box crops (used by the "+face" variants, ignored by the others)
        "face": torch.randint(0, 256, (B, T, FACE, FACE), generator=g, dtype=torch.uint8),
        "face_valid": face_valid,
    }


def build(name: str, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    base, *variants = name.split("+")
    for v in variants:
        kwargs = {**VARIANT_KWARGS[v], **kwargs}
    kwargs = {"num_classes": C, "num_body": C_BODY, "regions": REGIONS, "region_dim": D_R, "global_dim": D_G, **kwargs}
    torch.manual_seed(seed)
    model = create_model(base, preset="tiny", **kwargs)
    if "face" in variants:
        # the face projection starts at zero (no effect): give it weights so the face path is tested
        torch.nn.init.normal_(model.head_texture.proj.weight, std=0.5)
    return model


def per_sample(out: dict[str, Any], n: int) -> dict[str, torch.Tensor]:
    """The outputs that are per-sample tensors (leading dim = batch size)."""
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == n}


def aux(out: dict[str, Any]) -> dict[str, torch.Tensor]:
    return dict(out.get("aux_losses") or {})


def close(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(a, b, atol=ATOL, rtol=0, msg=lambda m: f"{what}: {m}")


# detectors (task "detection": per-step outputs on sequences) have their own generic tests: test_detectors.py
MODELS = [m for m in list_models() if getattr(model_entry(m).cls, "task", "classification") == "classification"]
VARIANTS = [
    *MODELS,
    "bmoe+face",
    "bmoe_concat+face",
    "bmoe+tokens",
    "bmoe+demo",
    "bmoe_uniform+demo",
    "bmoe+sumall",
    "m3e_global+stats",
    "bmoe+segments",
    "bmoe_uniform+segments",
    "m3e_global+segments",
    "bmoe+centred",
    "m3e_global+centred",
    "micro_dualnet+ordered",
    "bmoe+no_sgp",
    "bmoe+no_attn",
]


def test_registry_lists_builtins_and_names_unknown():
    for name in ("bmoe", "bmoe_uniform", "bmoe_concat", "m3e_global", "mean_mlp"):
        assert name in MODELS
    with pytest.raises(UnknownModelError, match="registered models"):
        create_model("no_such_model", num_classes=2, region_dim=4, global_dim=4)


@pytest.mark.parametrize("name", MODELS)
def test_presets_exist(name):
    entry = model_entry(name)
    assert "tiny" in entry.presets and "paper" in entry.presets
    assert entry.summary


@pytest.mark.parametrize("name", VARIANTS)
def test_output_shapes(name):
    model = build(name).eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
    assert out["action"].shape == (B, C)
    assert out["body"].shape == (B, C_BODY)
    if "features" in out:
        assert out["features"].dim() == 2 and out["features"].shape[0] == B
    if "routing" in out:
        r = out["routing"]
        assert r.shape == (B, R)
        assert (r >= 0).all()
        assert torch.all(r[~batch["region_valid"]] == 0), "invisible regions must get routing 0"
        torch.testing.assert_close(r.sum(1), torch.ones(B), atol=1e-5, rtol=0)
    if "saliency" in out:
        s = out["saliency"]
        assert s.shape == (B, T)
        assert torch.all(s[~batch["mask"]] == 0), "padded steps must get saliency 0"
        torch.testing.assert_close(s.sum(1), torch.ones(B), atol=1e-5, rtol=0)
    for k, v in aux(out).items():
        assert v.dim() == 0, k
    for k, v in per_sample(out, B).items():
        assert torch.isfinite(v).all(), k


@pytest.mark.parametrize("name", VARIANTS)
def test_no_body_head(name):
    model = build(name, num_body=0)
    with torch.no_grad():
        out = model.eval()(make_batch())
    assert out["action"].shape == (B, C)
    assert "body" not in out


@pytest.mark.parametrize("name", VARIANTS)
def test_backward_reaches_every_parameter(name):
    model = build(name).train()
    batch = make_batch()
    out = model(batch)
    loss = F.cross_entropy(out["action"], batch["action"]) + F.cross_entropy(out["body"], batch["body"])
    if "features" in out:
        loss = loss + out["features"].pow(2).mean()
    if "expert_tokens" in out:  # what L_emb on the experts (loss.emb_on: experts) trains
        valid = out.get("expert_valid", torch.ones(out["expert_tokens"].shape[:2], dtype=torch.bool))
        loss = loss + (out["expert_tokens"].pow(2).mean(-1) * valid).mean()
    for v in aux(out).values():
        loss = loss + v
    loss.backward()
    dead = []
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0:
            dead.append(pname)
    assert not dead, f"{name}: no gradient reaches {dead}"


@pytest.mark.parametrize("name", VARIANTS)
def test_deterministic_under_seed(name):
    batch = make_batch()
    outs = []
    for _ in range(2):
        model = build(name, seed=3).train()
        torch.manual_seed(11)  # dropout
        outs.append(model(batch))
    for k, v in per_sample(outs[0], B).items():
        assert torch.equal(v, outs[1][k]), k
    for k, v in aux(outs[0]).items():
        assert torch.equal(v, aux(outs[1])[k]), k


@pytest.mark.parametrize("name", VARIANTS)
def test_safetensors_round_trip(name, tmp_path):
    model = build(name, seed=1).eval()
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    other = build(name, seed=2).eval()
    other.load_state_dict(load_file(str(path)), strict=True)
    batch = make_batch()
    with torch.no_grad():
        a, b = model(batch), other(batch)
    for k, v in per_sample(a, B).items():
        assert torch.equal(v, b[k]), k


@pytest.mark.parametrize("name", [v for v in VARIANTS if "+face" in v])
def test_face_crops_reach_the_output(name):
    """The invariance checks below mean something for the face variants: valid crops do matter."""
    model = build(name).eval()
    batch = make_batch()
    other = dict(batch, face=255 - batch["face"])
    with torch.no_grad():
        a, b = model(batch), model(other)
    assert not torch.allclose(a["action"][0], b["action"][0], atol=1e-4)
    base = name.split("+")[0]
    fresh = create_model(
        base, preset="tiny", num_classes=C, regions=REGIONS, region_dim=D_R, global_dim=D_G, **VARIANT_KWARGS["face"]
    )  # as created, the face branch has no effect yet (zero projection): it starts as the model without it
    with torch.no_grad():
        close(fresh.eval()(batch)["action"], fresh(other)["action"], "zero projection")


@pytest.mark.parametrize("name", VARIANTS)
def test_padding_invariance(name):
    model = build(name).eval()
    batch = make_batch()
    extra = 6
    padded = dict(batch)
    g = torch.Generator().manual_seed(5)
    padded["regions"] = torch.cat([batch["regions"], 1e3 * torch.randn(B, R, extra, D_R, generator=g)], 2)
    padded["global"] = torch.cat([batch["global"], 1e3 * torch.randn(B, extra, D_G, generator=g)], 1)
    padded["mask"] = torch.cat([batch["mask"], torch.zeros(B, extra, dtype=torch.bool)], 1)
    # crops at padded steps are garbage and even claim to be valid: the mask must win
    junk = torch.randint(0, 256, (B, extra, FACE, FACE), generator=g, dtype=torch.uint8)
    padded["face"] = torch.cat([batch["face"], junk], 1)
    padded["face_valid"] = torch.cat([batch["face_valid"], torch.ones(B, extra, dtype=torch.bool)], 1)
    with torch.no_grad():
        a, b = model(batch), model(padded)
    for k, v in per_sample(a, B).items():
        w = b[k]
        if v.dim() >= 2 and v.shape[1] == T and w.shape[1] == T + extra:  # per-step outputs
            if k == "saliency":
                assert torch.all(w[:, T:] == 0), k
            w = w[:, :T]
        close(v, w, k)
    for k, v in aux(a).items():
        close(v, aux(b)[k], f"aux {k}")


@pytest.mark.parametrize("name", VARIANTS)
def test_invisible_region_invariance(name):
    model = build(name).eval()
    batch = make_batch()
    noisy = dict(batch)
    g = torch.Generator().manual_seed(9)
    noise = 1e3 * torch.randn(batch["regions"].shape, generator=g)
    invisible = ~batch["region_valid"]
    assert invisible.any()
    noisy["regions"] = torch.where(invisible[:, :, None, None], noise, batch["regions"])
    # the face crops of a clip whose head is invisible do not count either
    head_hidden = invisible[:, REGIONS.index("head")]
    assert head_hidden.any()
    junk = torch.randint(0, 256, batch["face"].shape, generator=g, dtype=torch.uint8)
    noisy["face"] = torch.where(head_hidden[:, None, None, None], junk, batch["face"])
    with torch.no_grad():
        a, b = model(batch), model(noisy)
    for k, v in per_sample(a, B).items():
        close(v, b[k], k)
    for k, v in aux(a).items():
        close(v, aux(b)[k], f"aux {k}")


def step_valid(batch: dict[str, torch.Tensor], seed: int = 3) -> torch.Tensor:
    """``region_valid_steps`` [B, R, T] for ``make_batch``: random holes in every visible region, one
    region of sample 0 seen at no step (then invisible), and True at padded steps (the mask wins)."""
    g = torch.Generator().manual_seed(seed)
    steps = torch.rand(batch["regions"].shape[:3], generator=g) < 0.6
    steps[:, :, 0] = True  # every visible region is seen at least once
    steps[0, 1] = False  # sample 0's body: valid for the clip, seen at no step
    steps |= ~batch["mask"][:, None, :]
    return steps


@pytest.mark.parametrize("name", VARIANTS)
def test_unseen_steps_invariance(name):
    """Features at the steps where a region is not seen do not change any output."""
    model = build(name).eval()
    batch = make_batch()
    batch["region_valid_steps"] = step_valid(batch)
    unseen = ~batch["region_valid_steps"] & batch["mask"][:, None, :] & batch["region_valid"][:, :, None]
    assert unseen.any(-1).sum() > 3
    noisy = dict(batch)
    g = torch.Generator().manual_seed(11)
    noise = 1e3 * torch.randn(batch["regions"].shape, generator=g)
    noisy["regions"] = torch.where(unseen[..., None], noise, batch["regions"])
    with torch.no_grad():
        a, b = model(batch), model(noisy)
    for k, v in per_sample(a, B).items():
        assert torch.isfinite(v).all(), k
        close(v, b[k], k)
    for k, v in aux(a).items():
        close(v, aux(b)[k], f"aux {k}")
    # a region seen at no step counts as invisible: routing (when reported) gives it nothing
    if "routing" in a:
        assert a["routing"][0, 1] == 0


@pytest.mark.parametrize("name", VARIANTS)
def test_step_validity_all_true_or_absent_is_the_same(name):
    """``region_valid_steps`` all True gives exactly the outputs of a batch without it; holes change them."""
    model = build(name).eval()
    batch = make_batch()
    full = {**batch, "region_valid_steps": torch.ones(B, R, T, dtype=torch.bool)}
    holes = {**batch, "region_valid_steps": step_valid(batch)}
    with torch.no_grad():
        a, b, c = model(batch), model(full), model(holes)
    for k, v in per_sample(a, B).items():
        torch.testing.assert_close(v, b[k], atol=0, rtol=0, msg=lambda m, k=k: f"{k}: {m}")
    if name.split("+")[0] != "m3e_global":  # its default stream is the global one, which has no regions
        key = "features" if "features" in a else "action"  # pooled_linear's heads start at zero
        assert not torch.allclose(a[key], c[key], atol=ATOL), "per-step validity must reach the outputs"


def test_region_stream_m3e_follows_step_validity():
    model = build("m3e_global", stream="region:upper_limbs").eval()
    batch = make_batch()
    batch["region_valid_steps"] = step_valid(batch)
    unseen = ~batch["region_valid_steps"]
    noisy = {**batch, "regions": torch.where(unseen[..., None], 1e3, batch["regions"])}
    with torch.no_grad():
        a, b, c = model(batch), model(noisy), model({k: v for k, v in batch.items() if k != "region_valid_steps"})
    close(a["action"], b["action"], "action")
    assert not torch.allclose(a["action"], c["action"], atol=ATOL)


def test_region_step_mask():
    batch = make_batch()
    seen = region_step_mask(batch)
    assert torch.equal(seen, batch["mask"][:, None, :] & batch["region_valid"][:, :, None])
    steps = step_valid(batch)
    seen = region_step_mask({**batch, "region_valid_steps": steps})
    assert torch.equal(seen, batch["mask"][:, None, :] & batch["region_valid"][:, :, None] & steps)
    assert not seen[0, 1].any() and seen[0, 0].any()
    with pytest.raises(ValueError, match="region_valid_steps"):
        region_step_mask({**batch, "region_valid_steps": torch.ones(B, R, T + 1, dtype=torch.bool)})


@pytest.mark.parametrize("name", VARIANTS)
def test_batch_of_one_equals_row_of_batch(name):
    model = build(name).eval()
    batch = make_batch()
    with torch.no_grad():
        full = per_sample(model(batch), B)
        for i in range(B):
            one = {k: v[i : i + 1] for k, v in batch.items()}
            row = per_sample(model(one), 1)
            for k, v in full.items():
                assert k in row, k
                close(row[k], v[i : i + 1], f"sample {i} {k}")
