"""The head expert's face branch: L-SSAT's texture-MAE auxiliary task inside B-MoE.

A feature store holds fixed features, and a texture-reconstruction loss needs pixels. So a store
extracted with ``face_size = S`` (``mar extract --face-size S``) also keeps a grey crop of the
clip's head box at every feature step. The loader passes these on as ``batch["face"] [B, T, S, S]``
uint8 and ``batch["face_valid"] [B, T]``, and ``HeadTexture``:

* encodes every valid crop with a small ViT (``FaceViT``, patch ``patch_size``, mean-pooled patch
  tokens) into ``[B, T, dim]``;
* projects that to the head expert's width and hands it back, to be *added* to the expert's
  projected input, before its attention and SGP layers. The projection starts at zero, so a
  model starts out as the one without the branch and learns how much of the face stream to use;
* in training, runs ``TextureMAELoss`` on up to ``max_frames`` valid crops of the batch, drawn at
  random: mask 75 % of the patches and reconstruct the LDP (or LBP, or pixel) map of the masked
  ones through the *same* ViT. The unweighted loss is returned for ``aux_losses["texture"]``, and
  the run config weights it (``loss.aux_weights: {texture: λ}``, L-SSAT's λ).

Choices the papers leave open, made here: the crop is the parser's head box, not an aligned face
crop (it exists for every parser, and the box is fixed over the clip, so a nod or a glance shows as
motion inside the crop); the face features join the head stream by addition after the expert's input
LayerNorm and projection (the expert's temporal layers see them; added before that LayerNorm, as
first tried, they swamped the pose features: on the synthetic benchmark, seed 0, F1_mean fell
from 44.9 to 29.7 without and 35.8 with the texture loss), not as an extra expert; the texture loss takes a
random subset of frames because neighbouring steps are nearly identical crops.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from microaction.models.face_vit import AuxTarget, FaceViT, TextureMAELoss

__all__ = ["HeadTexture"]


class HeadTexture(nn.Module):
    """Face crops ``[B, T, S, S]`` → features ``[B, T, out_dim]`` (+ the texture-MAE loss in training)."""

    def __init__(
        self,
        *,
        out_dim: int,
        img_size: int = 32,
        patch_size: int = 8,
        dim: int = 64,
        depth: int = 2,
        heads: int = 2,
        target: AuxTarget = "ldp",
        loss: Literal["bits", "code"] = "bits",
        mask_ratio: float = 0.75,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        max_frames: int = 32,
    ) -> None:
        super().__init__()
        if max_frames < 0:
            raise ValueError(f"max_frames must be >= 0, got {max_frames}")
        self.img_size, self.max_frames = img_size, max_frames
        # num_outputs=1: FaceViT's own head is not used here (its features are)
        self.encoder = FaceViT(
            num_outputs=1, img_size=img_size, patch_size=patch_size, in_chans=1, dim=dim, depth=depth, heads=heads
        )
        self.encoder.head.requires_grad_(False)
        self.texture: TextureMAELoss | None = None
        if target != "none" and max_frames > 0:
            self.texture = TextureMAELoss(
                encoder_dim=dim,
                grid=self.encoder.grid,
                patch_size=patch_size,
                target=target,
                loss=loss,
                mask_ratio=mask_ratio,
                decoder_dim=decoder_dim,
                decoder_depth=decoder_depth,
                decoder_heads=max(1, decoder_dim // 32),
            )
        self.proj = nn.Linear(dim, out_dim)  # the pooled tokens are layer-normed already
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    @staticmethod
    def normalise(grey: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, S, S]`` → float ``[N, 1, S, S]`` in [-1, 1]."""
        return (grey.float() / 127.5 - 1.0).unsqueeze(1)

    def forward(self, face: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``face [B, T, S, S]`` uint8, ``valid [B, T]`` → (features ``[B, T, out_dim]``, zero where not
        valid; the texture loss (a scalar) in training when any crop is valid, else None)."""
        if face.dim() != 4 or face.shape[-1] != self.img_size or face.shape[-2] != self.img_size:
            raise ValueError(f"face crops must be [B, T, {self.img_size}, {self.img_size}], got {tuple(face.shape)}")
        if face.dtype != torch.uint8:
            raise ValueError(f"face crops must be uint8 grey images, got {face.dtype}")
        B, T = face.shape[:2]
        out_dim = self.proj.out_features
        feats = face.new_zeros((B, T, out_dim), dtype=self.proj.weight.dtype)
        flat = valid.reshape(-1).nonzero().squeeze(1)
        if flat.numel() == 0:
            return feats, None
        grey = face.reshape(B * T, *face.shape[2:])[flat]
        _, pooled = self.encoder.forward_head(self.encoder.forward_features(self.normalise(grey)))
        feats = feats.reshape(B * T, out_dim).index_copy(0, flat, self.proj(pooled).to(feats.dtype))
        aux = None
        if self.training and self.texture is not None:
            pick = torch.randperm(grey.shape[0], device=grey.device)[: self.max_frames]
            sub = grey[pick]
            aux = self.texture(self.encoder, self.normalise(sub), sub)["loss"]
        return feats.reshape(B, T, out_dim), aux
