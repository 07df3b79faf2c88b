"""L-SSAT model: shapes, masking, losses for every target, backward through the shared encoder."""

from __future__ import annotations

import pytest
import torch

from microaction.models.face_vit import (
    PRESETS,
    FaceViT,
    TextureMAELoss,
    build_lssat,
    patchify,
    primary_loss,
    random_masking,
    sincos_pos_embed,
)


def _batch(b: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    grey = torch.randint(0, 256, (b, size, size), dtype=torch.uint8)
    return grey, grey.unsqueeze(1).float() / 127.5 - 1


def test_masking_and_patchify() -> None:
    g = torch.Generator().manual_seed(0)
    ids_keep, mask, ids_restore = random_masking(4, 16, 0.75, generator=g)
    assert ids_keep.shape == (4, 4) and mask.shape == (4, 16)
    assert bool((mask.sum(1) == 12).all())
    for i in range(4):  # kept patches are exactly the unmasked ones
        assert set(ids_keep[i].tolist()) == set((mask[i] == 0).nonzero().flatten().tolist())
    assert bool((ids_restore.argsort(1)[:, :4] == ids_keep).all())
    x = torch.arange(2 * 1 * 4 * 4).reshape(2, 1, 4, 4).float()
    p = patchify(x, 2)
    assert p.shape == (2, 4, 4)
    assert p[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]  # second patch: top-right 2x2
    assert sincos_pos_embed(8, (2, 2)).shape == (4, 8)


@pytest.mark.parametrize(
    ("target", "loss"),
    [("none", "bits"), ("pixel", "bits"), ("ldp", "bits"), ("ldp", "code"), ("lbp", "bits"), ("lbp_uniform", "code")],
)
def test_losses_and_backward(target: str, loss: str) -> None:
    torch.manual_seed(0)
    grey, x = _batch()
    model = build_lssat(
        "micro", num_outputs=5, img_size=32, patch_size=16, dim=32, depth=2, heads=2, aux_target=target, aux_loss=loss,
        decoder_dim=32, decoder_depth=1, decoder_heads=2,
    )  # fmt: skip
    out = model(x)
    assert out["logits"].shape == (3, 5) and out["features"].shape == (3, 32)
    losses = model.losses(x, torch.tensor([0, 4, 2]), grey=grey, aux_weight=0.5)
    if target == "none":
        assert "texture" not in losses and torch.equal(losses["loss"], losses["primary"])
    else:
        assert torch.allclose(losses["loss"], losses["primary"] + 0.5 * losses["texture"])
    losses["loss"].backward()
    enc = model.encoder
    assert enc.patch_embed.weight.grad is not None and enc.blocks[0].attn.qkv.weight.grad is not None
    if model.aux is not None:
        assert model.aux.pred.weight.grad is not None and model.aux.mask_token.grad is not None


def test_texture_loss_shapes_and_reuse_with_another_encoder() -> None:
    grey, x = _batch(2, 32)
    enc = FaceViT(num_outputs=2, img_size=32, patch_size=8, dim=32, depth=1, heads=2)
    aux = TextureMAELoss(
        encoder_dim=32, grid=enc.grid, patch_size=8, target="ldp", decoder_dim=32, decoder_depth=1, decoder_heads=2
    )
    out = aux(enc, x, grey, generator=torch.Generator().manual_seed(1))
    assert out["mask"].shape == (2, 16) and out["ids_masked"].shape == (2, 12)
    assert out["pred"].shape == (2, 12, 8 * 8 * 8) == out["target"].shape
    # targets of the masked patches are the LDP bit-planes of those patches
    assert bool(((out["target"].reshape(2, 12, 64, 8).sum(-1)) == 3).all())
    out["loss"].backward()
    assert enc.patch_embed.weight.grad is not None
    with pytest.raises(ValueError, match="grey uint8"):
        aux(enc, x)
    bad = TextureMAELoss(encoder_dim=32, grid=(2, 2), patch_size=16)
    with pytest.raises(ValueError, match="grid"):
        bad(enc, x, grey)


def test_heads_and_presets() -> None:
    assert set(PRESETS) >= {"tiny", "small", "base"}
    logits = torch.randn(4, 3)
    assert primary_loss(logits, torch.tensor([0, 1, 2, 0]), "multiclass").ndim == 0
    assert primary_loss(logits, torch.randint(0, 2, (4, 3)), "multilabel").ndim == 0
    assert primary_loss(logits[:, :1], torch.tensor([0, 1, 1, 0]), "binary").ndim == 0
    with pytest.raises(ValueError, match="one output"):
        build_lssat("micro", num_outputs=2, task="binary", img_size=32)
    with pytest.raises(ValueError, match="not bit patterns"):
        build_lssat("micro", num_outputs=2, img_size=32, aux_target="lbp_uniform", aux_loss="bits")
    tiny = build_lssat("tiny", num_outputs=2, img_size=32, aux_target="none")
    assert tiny.encoder.dim == 192 and len(tiny.encoder.blocks) == 12


def test_batch_forward_gives_the_texture_loss_in_training_only() -> None:
    from microaction.models.face_vit import normalise_images

    torch.manual_seed(0)
    m = build_lssat("micro", num_outputs=3, img_size=32, patch_size=16, aux_target="ldp", decoder_dim=32)
    g = torch.Generator().manual_seed(1)
    image = torch.randint(0, 256, (2, 1, 32, 32), dtype=torch.uint8, generator=g)
    batch = {"image": image, "grey": image[:, 0]}
    m.train()
    out = m(batch)
    assert out["aux_losses"]["texture"].item() > 0
    out["aux_losses"]["texture"].backward()  # the loss trains the shared encoder
    assert m.encoder.patch_embed.weight.grad is not None
    m.eval()
    with torch.no_grad():
        plain = m(batch)
        assert "aux_losses" not in plain
        assert torch.equal(plain["logits"], m(normalise_images(image))["logits"])
