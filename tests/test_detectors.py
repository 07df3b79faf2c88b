"""Checks every registered detector (``task = "detection"``) with its ``tiny`` preset on sequence batches,
and TriDet's checkpoint compatibility."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from microaction.models import create_model, list_models, model_entry
from microaction.models.detect_ops import segment_routing
from microaction.models.sliding_window import runs_to_segments
from microaction.models.tridet import load_tridet_state

B, R, T, D_R, D_G, C = 3, 4, 45, 24, 20, 7
REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
DETECTORS = [m for m in list_models() if getattr(model_entry(m).cls, "task", "") == "detection"]
CLASS_REGIONS = [["head"], ["body"], ["upper_limbs"], ["lower_limbs"], ["head", "upper_limbs"], ["body"], ["head"]]


# tiny convolutions on a loaded 2-core machine run far faster on one thread (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def make_batch(seed: int = 0, B: int = B, T: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    for i, n in enumerate([T, T - 7, 30][:B]):
        mask[i, n:] = False
    valid = torch.ones(B, R, dtype=torch.bool)
    valid[1, 3] = False
    valid[2, 0] = False
    regions = torch.randn(B, R, T, D_R, generator=g)
    glob = torch.randn(B, T, D_G, generator=g)
    regions = torch.where((valid[:, :, None] & mask[:, None, :]).unsqueeze(-1), regions, 7.0)
    glob = torch.where(mask.unsqueeze(-1), glob, -5.0)
    # segments (steps) of every length the levels regress: short, medium and long
    segs = torch.tensor(
        [[[2.0, 6.0], [4.0, 15.0], [5.0, 40.0]], [[10.0, 14.0], [0.0, 30.0], [0, 0]], [[1.0, 3.5], [0, 0], [0, 0]]]
    )
    labels = torch.tensor([[1, 4, 2], [3, 0, -1], [6, -1, -1]])
    return {"regions": regions, "global": glob, "mask": mask, "region_valid": valid,
            "gt_segments": segs[:B], "gt_labels": labels[:B]}  # fmt: skip


def build(name: str, seed: int = 0, **kwargs: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    extra: dict[str, Any] = {"routing_weight": 1.0, "class_regions": CLASS_REGIONS} if name == "bmoe_tridet" else {}
    return create_model(
        name, preset="tiny", num_classes=C, num_body=0, regions=REGIONS, region_dim=D_R, global_dim=D_G,
        **{**extra, **kwargs},
    )  # fmt: skip


def dets_close(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        n = min(len(x["scores"]), len(y["scores"]), 20)  # the best ones (ties at the tail may reorder)
        for k in x:
            torch.testing.assert_close(x[k][:n], y[k][:n], atol=1e-4, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


def test_detectors_registered():
    assert {"tridet", "bmoe_tridet", "sliding_window"} <= set(DETECTORS)
    for name in DETECTORS:
        assert {"tiny", "paper"} <= set(model_entry(name).presets)


@pytest.mark.parametrize("name", DETECTORS)
def test_outputs_and_detections(name):
    model = build(name).eval()
    batch = make_batch()
    with torch.no_grad():
        out = model(batch)
        dets = model.detect(out)
    s = out["scores"]
    assert s.shape == (B, T, C) and torch.isfinite(s).all()
    assert (s >= 0).all() and (s <= 1).all()
    assert torch.all(s[~batch["mask"]] == 0), "padded steps must score 0"
    assert len(dets) == B
    for d in dets:
        assert d["segments"].shape == (len(d["scores"]), 2) and d["labels"].shape == d["scores"].shape
        assert (d["segments"][:, 1] > d["segments"][:, 0]).all()
        assert ((d["labels"] >= 0) & (d["labels"] < C)).all()
        assert torch.all(d["scores"][:-1] >= d["scores"][1:] - 1e-9), "detections are sorted best first"
    if "routing" in out:
        w = out["routing"]
        assert w.shape == (B, T, R)
        visible = batch["region_valid"][:, None, :] & batch["mask"][:, :, None]
        assert torch.all(w[~visible] == 0), "invisible regions and padded steps get routing 0"
        torch.testing.assert_close(w.sum(-1)[batch["mask"]], torch.ones(int(batch["mask"].sum())))
        for d in dets:
            assert d["routing"].shape == (len(d["scores"]), R)


@pytest.mark.parametrize("name", DETECTORS)
def test_loss_reaches_every_parameter(name):
    model = build(name).train()
    batch = make_batch()
    losses = model.loss(model(batch), batch)
    assert losses["loss"].dim() == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    dead = [
        n
        for n, p in model.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert not dead, f"{name}: no gradient reaches {dead}"


@pytest.mark.parametrize("name", DETECTORS)
def test_training_fits_a_batch(name):
    """A few optimizer steps on one batch lower the loss (targets and loss are wired to the heads)."""
    model = build(name).train()
    batch = make_batch()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        loss = model.loss(model(batch), batch)["loss"]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.7 * first


@pytest.mark.parametrize("name", DETECTORS)
def test_deterministic_and_round_trip(name, tmp_path):
    batch = make_batch()
    a, b = build(name, seed=3).eval(), build(name, seed=3).eval()
    with torch.no_grad():
        assert torch.equal(a(batch)["scores"], b(batch)["scores"])
    path = tmp_path / "m.safetensors"
    save_file(a.state_dict(), str(path))
    c = build(name, seed=4).eval()
    c.load_state_dict(load_file(str(path)), strict=True)
    with torch.no_grad():
        oa, oc = a(batch), c(batch)
        assert torch.equal(oa["scores"], oc["scores"])
        dets_close(a.detect(oa), c.detect(oc))


@pytest.mark.parametrize("name", DETECTORS)
def test_padding_invariance(name):
    model = build(name).eval()
    batch = make_batch()
    extra = 11
    g = torch.Generator().manual_seed(5)
    padded = dict(batch)
    padded["regions"] = torch.cat([batch["regions"], 1e3 * torch.randn(B, R, extra, D_R, generator=g)], 2)
    padded["global"] = torch.cat([batch["global"], 1e3 * torch.randn(B, extra, D_G, generator=g)], 1)
    padded["mask"] = torch.cat([batch["mask"], torch.zeros(B, extra, dtype=torch.bool)], 1)
    with torch.no_grad():
        a, b = model(batch), model(padded)
        torch.testing.assert_close(a["scores"], b["scores"][:, :T], atol=1e-5, rtol=0)
        assert torch.all(b["scores"][:, T:] == 0)
        dets_close(model.detect(a), model.detect(b))


@pytest.mark.parametrize("name", DETECTORS)
def test_invisible_region_invariance(name):
    model = build(name).eval()
    batch = make_batch()
    noisy = dict(batch)
    noise = 1e3 * torch.randn(batch["regions"].shape, generator=torch.Generator().manual_seed(9))
    noisy["regions"] = torch.where((~batch["region_valid"])[:, :, None, None], noise, batch["regions"])
    with torch.no_grad():
        torch.testing.assert_close(model(batch)["scores"], model(noisy)["scores"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", DETECTORS)
def test_batch_of_one_equals_row(name):
    model = build(name).eval()
    batch = make_batch()
    with torch.no_grad():
        full = model(batch)
        dets = model.detect(full)
        for i in range(B):
            n = int(batch["mask"][i].sum())
            one = {k: v[i : i + 1] for k, v in batch.items()}
            one = {
                **one,
                "regions": one["regions"][:, :, :n],
                "global": one["global"][:, :n],
                "mask": one["mask"][:, :n],
            }
            row = model(one)
            torch.testing.assert_close(row["scores"][0], full["scores"][i, :n], atol=1e-5, rtol=0)
            dets_close(model.detect(row), [dets[i]])


def test_per_step_region_validity():
    """bmoe_tridet takes region validity per step ([B, R, T]): a region hidden for a while gets no routing then."""
    model = build("bmoe_tridet").eval()
    batch = make_batch()
    per_step = batch["region_valid"][:, :, None].repeat(1, 1, T)
    per_step[0, 2, 10:20] = False
    with torch.no_grad():
        w = model(dict(batch, region_valid=per_step))["routing"]
    assert torch.all(w[0, 10:20, 2] == 0) and torch.all(w[0, 20:, 2] > 0)


def test_runs_to_segments_and_segment_routing():
    s = torch.zeros(10, 2)
    s[2:5, 0] = 0.8
    s[7:10, 0] = 0.4
    segs, means, labels = runs_to_segments(s, (0.3, 0.5))
    got = sorted(zip(labels.tolist(), segs.tolist(), [round(m, 4) for m in means.tolist()]))
    assert got == [(0, [1.5, 4.5], 0.8), (0, [1.5, 4.5], 0.8), (0, [6.5, 9.5], 0.4)]
    routing = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5)
    r = segment_routing(routing, torch.tensor([[0.0, 5.0], [3.0, 7.0]]))
    torch.testing.assert_close(r, torch.tensor([[1.0, 0.0], [0.5, 0.5]]))


def tridet_reference_shapes(cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter names and shapes of TriDet's own ``TriDet`` model (libs/modeling: SGPBackbone,
    FPNIdentity, ClsHead, RegHead) for a configuration, written out from its code."""
    C, D, H, K, nb, M = (
        cfg["embd_dim"],
        cfg["input_dim"],
        cfg["head_dim"],
        cfg["num_classes"],
        cfg["num_bins"],
        cfg["sgp_mlp_dim"],
    )
    n_embd, n_stem, n_branch = cfg["backbone_arch"]
    up = round(2 * cfg["k"])  # the long window of a kernel-1 SGP block: round((1 + 1) * k), odd
    up = up + 1 if up % 2 == 0 else up
    out: dict[str, tuple[int, ...]] = {}
    for i in range(n_embd):
        out[f"backbone.embd.{i}.conv.weight"] = (C, D if i == 0 else C, 3)  # no bias: embd_with_ln
        out[f"backbone.embd_norm.{i}.weight"] = out[f"backbone.embd_norm.{i}.bias"] = (1, C, 1)

    def sgp(prefix: str, drop: bool) -> None:
        out.update({f"{prefix}.ln.weight": (1, C, 1), f"{prefix}.ln.bias": (1, C, 1), f"{prefix}.gn.weight": (C,),
                    f"{prefix}.gn.bias": (C,), f"{prefix}.mlp.0.weight": (M, C, 1), f"{prefix}.mlp.0.bias": (M,),
                    f"{prefix}.mlp.2.weight": (C, M, 1), f"{prefix}.mlp.2.bias": (C,)})  # fmt: skip
        for conv, width in (("psi", 1), ("fc", 1), ("convw", 1), ("convkw", up), ("global_fc", 1)):
            out[f"{prefix}.{conv}.weight"] = (C, 1, width)
            out[f"{prefix}.{conv}.bias"] = (C,)
        if drop:
            out[f"{prefix}.drop_path_out.scale"] = out[f"{prefix}.drop_path_mlp.scale"] = (1, C, 1)

    for i in range(n_stem):
        sgp(f"backbone.stem.{i}", False)  # the stem has no drop path
    for i in range(n_branch):
        sgp(f"backbone.branch.{i}", True)
    for lvl in range(n_branch + 1):
        out[f"neck.fpn_norms.{lvl}.weight"] = out[f"neck.fpn_norms.{lvl}.bias"] = (1, C, 1)
    for head, n_out in (("cls_head", K), ("start_head", K), ("end_head", K), ("reg_head", 2 * (nb + 1))):
        for i in range(2):
            out[f"{head}.head.{i}.conv.weight"] = (H, C if i == 0 else H, 3)
            out[f"{head}.norm.{i}.weight"] = out[f"{head}.norm.{i}.bias"] = (1, H, 1)
        last = "offset_head" if head == "reg_head" else "cls_head"
        out[f"{head}.{last}.conv.weight"] = (n_out, H, 3)
        out[f"{head}.{last}.conv.bias"] = (n_out,)
    for lvl in range(n_branch + 1):
        out[f"reg_head.scale.{lvl}.scale"] = ()
    return out


def test_tridet_checkpoint_loads_strict():
    cfg = {"embd_dim": 64, "input_dim": 96, "head_dim": 48, "num_classes": 20, "num_bins": 16, "sgp_mlp_dim": 80,
           "backbone_arch": (2, 2, 5), "k": 5.0}  # fmt: skip
    ref = tridet_reference_shapes(cfg)
    model = create_model(
        "tridet", preset="paper", num_classes=20, region_dim=8, global_dim=96, embd_dim=64, fpn_dim=64,
        head_dim=48, sgp_mlp_dim=80,
    )  # fmt: skip
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert have == ref
    g = torch.Generator().manual_seed(0)
    # as TriDet's train.py saves it: a DataParallel model, so every key starts with "module."
    ckpt = {f"module.{k}": torch.randn(s, generator=g) * 0.05 for k, s in ref.items()}
    load_tridet_state(model, ckpt, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt[f"module.{k}"]), k
