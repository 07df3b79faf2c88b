"""Losses: CE + body, long-tail options, semantic alignment (MiniLM / given vectors), regularisers, aux."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from microaction.models import losses
from microaction.models.losses import LossComputer, class_weights_from_counts, load_label_embeddings
from microaction.taxonomy import load_taxonomy


def outputs(B: int = 6, C: int = 5, CB: int = 3, d: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "action": torch.randn(B, C, generator=g, requires_grad=True),
        "body": torch.randn(B, CB, generator=g, requires_grad=True),
        "features": torch.randn(B, d, generator=g, requires_grad=True),
    }


def labels(B: int = 6, C: int = 5, CB: int = 3) -> dict[str, torch.Tensor]:
    return {"action": torch.arange(B) % C, "body": torch.arange(B) % CB}


def test_action_and_body_cross_entropy():
    out, b = outputs(), labels()
    total, parts = LossComputer(num_classes=5, num_body=3, lambda_body=0.3)(out, b)
    ce_a = F.cross_entropy(out["action"], b["action"])
    ce_b = F.cross_entropy(out["body"], b["body"])
    torch.testing.assert_close(total, ce_a + 0.3 * ce_b)
    assert parts["action"] == pytest.approx(ce_a.item()) and parts["body"] == pytest.approx(ce_b.item())
    assert parts["total"] == pytest.approx(total.item())
    total.backward()
    assert out["action"].grad is not None and out["body"].grad is not None


def test_unknown_labels_are_ignored():
    out, b = outputs(), labels()
    b["action"][:2] = -1
    b["body"][:2] = -1
    total, _ = LossComputer(num_classes=5, num_body=3, lambda_body=1.0)(out, b)
    ref = F.cross_entropy(out["action"][2:], b["action"][2:]) + F.cross_entropy(out["body"][2:], b["body"][2:])
    torch.testing.assert_close(total, ref)
    b["action"][:] = -1
    b["body"][:] = -1
    total, _ = LossComputer(num_classes=5, num_body=3)(out, b)
    assert total.item() == 0.0 and total.requires_grad


def test_label_smoothing():
    out, b = outputs(), labels()
    total, _ = LossComputer(num_classes=5, label_smoothing=0.1, lambda_body=0.0)(out, b)
    torch.testing.assert_close(total, F.cross_entropy(out["action"], b["action"], label_smoothing=0.1))


def test_class_weights_by_hand():
    counts = [100, 10, 1]
    inv = class_weights_from_counts(counts, "inverse")
    raw = torch.tensor([0.01, 0.1, 1.0])
    torch.testing.assert_close(inv, raw / raw.mean())
    eff = class_weights_from_counts(counts, "effective", beta=0.9)
    raw = torch.tensor([(1 - 0.9) / (1 - 0.9**n) for n in counts])
    torch.testing.assert_close(eff, raw / raw.mean())
    assert eff.mean().item() == pytest.approx(1.0)
    sq = class_weights_from_counts(counts, "sqrt_inverse")
    raw = torch.tensor([0.1, 1 / math.sqrt(10), 1.0])
    torch.testing.assert_close(sq, raw / raw.mean())
    zero = class_weights_from_counts([4, 0, 1], "inverse")
    assert zero[1] == zero.max()
    with pytest.raises(ValueError):
        class_weights_from_counts([1, 2], "bogus")


def test_class_balanced_ce_and_logit_adjustment():
    out, b = outputs(), labels()
    counts = [50, 20, 10, 5, 1]
    lc = LossComputer(num_classes=5, class_weights="inverse", train_counts=counts, lambda_body=0.0)
    total, _ = lc(out, b)
    w = class_weights_from_counts(counts, "inverse")
    torch.testing.assert_close(total, F.cross_entropy(out["action"], b["action"], weight=w))
    la = LossComputer(num_classes=5, logit_adjust_tau=1.0, train_counts=counts, lambda_body=0.0)
    total, _ = la(out, b)
    prior = torch.tensor(counts, dtype=torch.float32) / sum(counts)
    torch.testing.assert_close(total, F.cross_entropy(out["action"] + prior.log(), b["action"]))
    with pytest.raises(ValueError, match="train_counts"):
        LossComputer(num_classes=5, class_weights="effective")


def test_from_taxonomy_ma52_long_tail():
    tax = load_taxonomy("ma52")
    lc = LossComputer.from_taxonomy(tax, class_weights="effective", logit_adjust_tau=1.0)
    assert lc.num_classes == 52 and lc.num_body == 7
    assert lc.class_weight is not None and lc.class_weight.shape == (52,)
    counts = torch.tensor(tax.train_counts)
    assert lc.class_weight[counts.argmin()] > lc.class_weight[counts.argmax()]


@pytest.mark.parametrize("distance", ["cosine", "mse"])
def test_semantic_alignment_by_hand(distance):
    E = torch.eye(5, 8)  # label embeddings
    lc = LossComputer(
        num_classes=5, lambda_body=0.0, emb_weight=2.0, label_embeddings=E, feature_dim=8, emb_distance=distance
    )
    assert lc.proj is not None
    with torch.no_grad():
        lc.proj.weight.copy_(torch.eye(8))
        lc.proj.bias.zero_()
    y = torch.tensor([0, 1, 2])
    out = {"action": torch.zeros(3, 5), "features": E[y].clone()}
    _, parts = lc(out, {"action": y})
    assert parts["emb"] == pytest.approx(0.0, abs=1e-6)
    out["features"] = E[(y + 1) % 5].clone()  # orthogonal to the true class
    total, parts = lc(out, {"action": y})
    expected = 1.0 if distance == "cosine" else 2.0 / 8
    assert parts["emb"] == pytest.approx(expected, abs=1e-6)
    assert total.item() == pytest.approx(math.log(5) + 2.0 * expected, abs=1e-5)


def test_semantic_alignment_trains_its_projection():
    lc = LossComputer(num_classes=5, emb_weight=1.0, label_embeddings=torch.randn(5, 7), feature_dim=8)
    out, b = outputs(), labels()
    total, _ = lc(out, b)
    total.backward()
    assert lc.proj is not None and lc.proj.weight.grad is not None and lc.proj.weight.grad.abs().sum() > 0
    assert out["features"].grad is not None
    assert set(lc.state_dict()) == {"proj.weight", "proj.bias"}
    scores = lc.embedding_scores(out["features"].detach())
    assert scores.shape == (6, 5)


def test_label_vectors_from_shared_file(ma52_dir):
    path = ma52_dir / "manet_label_vectors_52x300.npy"
    emb = load_label_embeddings(path, load_taxonomy("ma52").names)
    assert emb.shape == (52, 300) and emb.dtype == torch.float32
    lc = LossComputer.from_taxonomy(load_taxonomy("ma52"), emb_weight=0.5, label_embeddings=path, feature_dim=16)
    assert lc.label_emb is not None
    torch.testing.assert_close(lc.label_emb.norm(dim=1), torch.ones(52))
    with pytest.raises(ValueError, match="rows"):
        load_label_embeddings(path, ["a", "b"])
    with pytest.raises(FileNotFoundError):
        load_label_embeddings(ma52_dir / "missing.npy")


def test_label_embeddings_need_feature_dim_and_source():
    with pytest.raises(ValueError, match="label_embeddings"):
        LossComputer(num_classes=3, emb_weight=1.0, feature_dim=4)
    with pytest.raises(ValueError, match="feature_dim"):
        LossComputer(num_classes=3, emb_weight=1.0, label_embeddings=np.ones((3, 4)))


def test_minilm_label_embeddings_offline_and_cached(tmp_path, monkeypatch):
    names = ["nodding", "shaking head", "crossing legs", "nodding_head"]
    emb = losses.minilm_label_embeddings(names, cache_dir=tmp_path)
    assert emb.shape == (4, 384)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4), atol=1e-5, rtol=0)
    assert emb[0] @ emb[3] > emb[0] @ emb[2], "nodding is nearer to 'nodding head' than to 'crossing legs'"
    assert len(list(tmp_path.glob("minilm_*.npy"))) == 1
    # a second call reads the cache: the model is never loaded again
    import sentence_transformers

    def boom(*a, **k):
        raise AssertionError("model loaded although cached")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", boom)
    again = load_label_embeddings("minilm", names, cache_dir=tmp_path)
    assert torch.equal(again, emb)
    monkeypatch.setenv("MAR_CACHE_DIR", str(tmp_path / "c"))
    assert losses.label_cache_dir() == tmp_path / "c" / "label_embeddings"


def test_router_regularisers_off_by_default_and_by_hand():
    out, b = outputs(), labels()
    out["routing"] = torch.full((6, 4), 0.25)
    _, parts = LossComputer(num_classes=5)(out, b)
    assert "router_entropy" not in parts and "load_balance" not in parts
    lc = LossComputer(num_classes=5, lambda_body=0.0, router_entropy_weight=0.1, load_balance_weight=0.2)
    _, parts = lc(out, b)
    assert parts["router_entropy"] == pytest.approx(1.0) and parts["load_balance"] == pytest.approx(1.0)
    out["routing"] = F.one_hot(torch.zeros(6, dtype=torch.long), 4).float()
    total, parts = lc(out, b)
    assert parts["router_entropy"] == pytest.approx(0.0, abs=1e-6) and parts["load_balance"] == pytest.approx(4.0)
    ce = F.cross_entropy(out["action"], b["action"]).item()
    assert total.item() == pytest.approx(ce + 0.2 * 4.0, abs=1e-5)
    # balance counts only regions visible somewhere in the batch
    b["region_valid"] = torch.tensor([[True, True, True, False]] * 6)
    out["routing"] = torch.tensor([[1 / 3, 1 / 3, 1 / 3, 0.0]] * 6)
    _, parts = lc(out, b)
    assert parts["load_balance"] == pytest.approx(1.0)


def test_routing_supervision_by_hand():
    from microaction.engine.stages import routing_targets

    tax = load_taxonomy("ma52")
    regions = ["head", "body", "upper_limbs", "lower_limbs"]
    t = routing_targets(tax, regions)
    assert t.shape == (7, 4)
    assert t[tax.body_names.index("head_hand")].tolist() == [1, 0, 1, 0]
    assert t[tax.body_names.index("lower_limb")].tolist() == [0, 0, 0, 1]
    lc = LossComputer(num_classes=52, num_body=7, lambda_body=0.0, routing_weight=0.5, routing_targets=t)
    w = torch.tensor([[0.4, 0.1, 0.4, 0.1], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    batch = {
        "action": torch.tensor([0, 1, 2, 3]),
        "body": torch.tensor([tax.body_names.index(n) for n in ("head_hand", "head_hand", "lower_limb", "body")]),
        "region_valid": torch.tensor([[True] * 4, [True, True, False, True], [True] * 4, [True] * 4]),
    }
    batch["body"][3] = -1  # unknown body group: does not count
    out = {"action": torch.zeros(4, 52), "routing": w}
    total, parts = lc(out, batch)
    # sample 0: half on head, half on upper limbs; sample 1: upper limbs hidden -> all on head
    want = (-(0.5 * math.log(0.4) + 0.5 * math.log(0.4)) - math.log(0.7) - math.log(0.25)) / 3
    assert parts["routing"] == pytest.approx(want, rel=1e-5)
    assert total.item() == pytest.approx(math.log(52) + 0.5 * want, rel=1e-5)
    # the gradient moves the routing logits towards the body group's regions
    logits = torch.zeros(1, 4, requires_grad=True)
    one = {"action": torch.tensor([0]), "body": torch.tensor([tax.body_names.index("lower_limb")])}
    lc({"action": torch.zeros(1, 52), "routing": torch.softmax(logits, 1)}, one)[0].backward()
    assert logits.grad is not None and logits.grad[0].argmin().item() == 3
    with pytest.raises(ValueError, match="needs routing_targets"):
        LossComputer(num_classes=52, num_body=7, routing_weight=0.5)
    with pytest.raises(ValueError, match="label set 'imigue' has no body groups"):
        routing_targets(load_taxonomy("imigue"), regions)  # iMiGUE has no body level


def test_aux_losses_are_weighted():
    out, b = outputs(), labels()
    mac = torch.tensor(2.0, requires_grad=True)
    out["aux_losses"] = {"mac": mac, "other": torch.tensor(1.0)}
    lc = LossComputer(num_classes=5, lambda_body=0.0, aux_weights={"mac": 0.1}, aux_default_weight=0.5)
    total, parts = lc(out, b)
    ce = F.cross_entropy(out["action"], b["action"]).item()
    assert total.item() == pytest.approx(ce + 0.1 * 2.0 + 0.5 * 1.0, abs=1e-5)
    assert parts["aux/mac"] == pytest.approx(2.0) and parts["aux/other"] == pytest.approx(1.0)
    total.backward()
    assert mac.grad is not None and mac.grad.item() == pytest.approx(0.1)


def test_loss_runs_on_a_real_model_output():
    from microaction.models import create_model

    torch.manual_seed(0)
    m = create_model("bmoe", preset="tiny", num_classes=5, num_body=3, region_dim=6, global_dim=6)
    batch = {
        "regions": torch.randn(2, 4, 5, 6),
        "global": torch.randn(2, 5, 6),
        "mask": torch.ones(2, 5, dtype=torch.bool),
        "region_valid": torch.ones(2, 4, dtype=torch.bool),
        **labels(2),
    }
    lc = LossComputer(
        num_classes=5,
        num_body=3,
        emb_weight=0.1,
        label_embeddings=torch.randn(5, 4),
        feature_dim=32,
        load_balance_weight=0.01,
    )
    total, parts = lc(m(batch), batch)
    total.backward()
    assert set(parts) == {"action", "body", "emb", "load_balance", "total"}
    assert all(math.isfinite(v) for v in parts.values())
