"""L-SSAT: a ViT trained on a primary face task with an MAE-style auxiliary task that reconstructs
the *texture map* (LDP or LBP codes) of masked patches instead of their pixels.

After "Self-supervised Auxiliary Learning for Texture and Model-based Hybrid Robust and Fair
Featuring in Face Analysis" (arXiv 2409.19582; no public code). Read top to bottom:

* ``FaceViT``: a plain ViT encoder (patch 16 by default, fixed 2-D sin-cos position embeddings,
  pre-norm blocks, a class token) with a primary head. ``encode_visible(images, ids_keep)``
  encodes only the kept patches (the MAE pass); ``forward(images)`` encodes all of them (the
  primary pass). Both passes use the same weights.
* ``TextureMAELoss``: random patch masking (ratio 0.75 by default), a light transformer decoder
  (2 blocks of width 128 by default) that predicts, for every masked patch, its texture map:
  the 8 LDP/LBP bit-planes (BCE, ``loss="bits"``), the code as a class (softmax, ``loss="code"``),
  or, for the ablation, the patch's pixels (MSE on per-patch normalised pixels as in MAE,
  ``target="pixel"``). The loss is averaged over masked patches only. It works with any encoder
  that has ``encode_visible(images, ids_keep) -> [B, n_keep, D]``, ``patch_size`` and
  ``grid`` (``(H / p, W / p)``): this is how another model (e.g. a head-region expert over face
  crops) takes the same auxiliary loss (see docs/face.md).
* ``LSSAT``: encoder + primary head + optional auxiliary branch; ``losses(...)`` returns
  ``L = L_primary + λ · L_texture`` and its parts.

Choices the paper leaves open (and the defaults here): texture targets are computed on the full
grey image (so patch-border pixels see their real neighbours) and then cut into patches; the
decoder is MAE's (mask tokens, unshuffle, position embeddings) at width 128 / depth 2; λ = 1.0.
Primary tasks: ``"multiclass"`` (cross-entropy), ``"multilabel"`` (BCE over attributes) and
``"binary"`` (one logit, BCE; e.g. real / fake). The model is not in the action-model registry:
it eats images, not feature-store batches.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from microaction.models.texture import bit_planes, code_count, ldp_code_index, texture_map, to_grey

__all__ = [
    "LSSAT",
    "PRESETS",
    "FaceViT",
    "PatchEncoder",
    "TextureMAELoss",
    "build_lssat",
    "count_parameters",
    "normalise_images",
    "patchify",
    "primary_loss",
    "random_masking",
    "sincos_pos_embed",
]

Task = Literal["multiclass", "multilabel", "binary"]
AuxTarget = Literal["none", "pixel", "ldp", "lbp", "lbp_uniform"]

# encoder sizes; "micro" is for CPU tests and the synthetic comparison, the rest are ViT-Ti/S/B
PRESETS: dict[str, dict[str, int]] = {
    "micro": {"dim": 64, "depth": 3, "heads": 4},
    "tiny": {"dim": 192, "depth": 12, "heads": 3},
    "small": {"dim": 384, "depth": 12, "heads": 6},
    "base": {"dim": 768, "depth": 12, "heads": 12},
}


def sincos_pos_embed(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings ``[gh * gw, dim]`` (MAE's; ``dim`` divisible by 4)."""
    if dim % 4:
        raise ValueError(f"embedding width {dim} must be divisible by 4 for 2-D sin-cos embeddings")
    gh, gw = grid
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))

    def enc(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    return torch.cat([enc(ys), enc(xs)], dim=1).float()


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, L, p * p * C]`` (row-major patches; within a patch: row, column, channel)."""
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
    x = x.reshape(b, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * c)


def random_masking(
    batch: int,
    length: int,
    ratio: float,
    *,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking: ``ids_keep [B, n_keep]``, ``mask [B, L]`` (1 = masked, in the
    original patch order) and ``ids_restore [B, L]``. At least one patch is kept and one masked."""
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask ratio must be in (0, 1), got {ratio}")
    n_keep = min(max(1, round(length * (1 - ratio))), length - 1)
    noise = torch.rand(batch, length, generator=generator, device=generator.device if generator else device)
    noise = noise.to(device)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :n_keep]
    mask = torch.ones(batch, length, device=device)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class ViTBlock(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ViTAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class PatchEncoder(Protocol):
    """What ``TextureMAELoss`` needs from an encoder."""

    patch_size: int
    grid: tuple[int, int]
    dim: int

    def encode_visible(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor: ...


class FaceViT(nn.Module):
    """ViT encoder over face images with a primary head (``num_outputs`` logits)."""

    pos_embed: torch.Tensor

    def __init__(
        self,
        *,
        num_outputs: int,
        img_size: int = 112,
        patch_size: int = 16,
        in_chans: int = 1,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        pool: Literal["mean", "cls"] = "mean",
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        if pool not in ("mean", "cls"):
            raise ValueError(f"pool must be 'mean' or 'cls', got {pool!r}")
        self.patch_size = patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.dim = dim
        self.pool = pool
        self.patch_embed = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed(dim, self.grid).unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList([ViTBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head_drop = nn.Dropout(head_dropout)
        self.head = nn.Linear(dim, num_outputs)
        self.apply(_init_weights)
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.head.weight, std=0.01)  # start near uniform predictions

    def forward_features(self, images: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised tokens ``[B, 1 + n, D]`` (class token first); ``ids_keep`` keeps only those patches."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2) + self.pos_embed
        if ids_keep is not None:
            x = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def encode_visible(self, images: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """The MAE pass: tokens of the kept patches only ``[B, n_keep, D]``."""
        return self.forward_features(images, ids_keep)[:, 1:]

    def forward_head(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = tokens[:, 1:].mean(1) if self.pool == "mean" else tokens[:, 0]
        return self.head(self.head_drop(feats)), feats

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        logits, feats = self.forward_head(self.forward_features(images))
        return {"logits": logits, "features": feats}


class TextureMAELoss(nn.Module):
    """MAE-style auxiliary loss: mask patches, encode the visible ones with a (shared) encoder and
    reconstruct the texture map (or pixels) of the masked ones with a light decoder."""

    pos_embed: torch.Tensor

    def __init__(
        self,
        *,
        encoder_dim: int,
        grid: tuple[int, int],
        patch_size: int,
        target: AuxTarget = "ldp",
        loss: Literal["bits", "code"] = "bits",
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        in_chans: int = 1,
        ldp_k: int = 3,
        norm_pix: bool = True,
    ) -> None:
        super().__init__()
        if target not in ("pixel", "ldp", "lbp", "lbp_uniform"):
            raise ValueError(f"unknown auxiliary target {target!r} (known: pixel, ldp, lbp, lbp_uniform)")
        if loss not in ("bits", "code"):
            raise ValueError(f"unknown texture loss {loss!r} (known: bits, code)")
        if target == "lbp_uniform" and loss == "bits":
            raise ValueError("uniform LBP codes (0..9) are not bit patterns: use loss: code")
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask ratio must be in (0, 1), got {mask_ratio}")
        self.target, self.loss_kind, self.mask_ratio = target, loss, mask_ratio
        self.grid = (int(grid[0]), int(grid[1]))
        self.patch_size, self.ldp_k, self.norm_pix = patch_size, ldp_k, norm_pix
        pp = patch_size * patch_size
        if target == "pixel":
            self.out_per_pixel = in_chans
        elif loss == "bits":
            self.out_per_pixel = 8
        else:
            self.out_per_pixel = code_count(target, ldp_k)
        self.decoder_embed = nn.Linear(encoder_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("pos_embed", sincos_pos_embed(decoder_dim, self.grid).unsqueeze(0), persistent=False)
        self.blocks = nn.ModuleList([ViTBlock(decoder_dim, decoder_heads) for _ in range(decoder_depth)])
        self.norm = nn.LayerNorm(decoder_dim)
        self.pred = nn.Linear(decoder_dim, pp * self.out_per_pixel)
        self.apply(_init_weights)
        nn.init.normal_(self.mask_token, std=0.02)

    def decode(
        self, tokens: torch.Tensor, ids_restore: torch.Tensor, ids_out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Visible tokens ``[B, n_keep, D]`` -> predictions ``[B, L, p*p*out]`` for every patch, or
        ``[B, n, p*p*out]`` for the patches ``ids_out [B, n]`` only (the prediction layer is the
        costly part for texture targets, so the loss asks for the masked patches only)."""
        x = self.decoder_embed(tokens)
        b, n_keep, d = x.shape
        length = ids_restore.shape[1]
        x = torch.cat([x, self.mask_token.expand(b, length - n_keep, -1)], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d)) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        if ids_out is not None:
            x = torch.gather(x, 1, ids_out.unsqueeze(-1).expand(-1, -1, d))
        return self.pred(self.norm(x))

    @torch.no_grad()
    def targets(self, images: torch.Tensor, grey: torch.Tensor | None = None) -> torch.Tensor:
        """Per-patch targets: pixel ``[B, L, p*p*C]`` float; bits ``[B, L, p*p*8]`` float;
        code ``[B, L, p*p]`` long. Texture maps come from ``grey`` (uint8 ``[B, H, W]`` preferred:
        the codes are exact there); without it, from ``images`` when they are uint8."""
        p = self.patch_size
        if self.target == "pixel":
            t = patchify(images.float(), p)
            if self.norm_pix:
                mean, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True)
                t = (t - mean) / (var + 1e-6).sqrt()
            return t
        if grey is None:
            if images.dtype != torch.uint8:
                raise ValueError("texture targets need the grey uint8 image: pass grey= (normalised floats are lossy)")
            grey = to_grey(images)
        codes = texture_map(grey, self.target, k=self.ldp_k)  # type: ignore[arg-type]
        if self.loss_kind == "bits":
            return patchify(bit_planes(codes), p)
        idx = ldp_code_index(codes, self.ldp_k) if self.target == "ldp" else codes.long()
        return patchify(idx.unsqueeze(1), p)

    def patch_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss per patch ``[B, L]``."""
        if self.target == "pixel":
            return (pred - target).pow(2).mean(-1)
        if self.loss_kind == "bits":
            return F.binary_cross_entropy_with_logits(pred, target, reduction="none").mean(-1)
        b, length, _ = pred.shape
        logits = pred.reshape(b, length, self.patch_size * self.patch_size, self.out_per_pixel)
        ce = F.cross_entropy(logits.permute(0, 3, 1, 2), target.long(), reduction="none")  # [B, L, p*p]
        return ce.mean(-1)

    def forward(
        self,
        encoder: PatchEncoder,
        images: torch.Tensor,
        grey: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss`` (scalar, mean over masked patches), ``pred [B, n_masked, ...]`` and
        ``target`` (same layout) for the masked patches ``ids_masked [B, n_masked]``, and
        ``mask [B, L]`` (1 = masked, in patch order)."""
        length = self.grid[0] * self.grid[1]
        if tuple(encoder.grid) != self.grid or encoder.patch_size != self.patch_size:
            raise ValueError(
                f"encoder grid {encoder.grid}/patch {encoder.patch_size} != loss {self.grid}/{self.patch_size}"
            )
        target = self.targets(images, grey)
        ids_keep, mask, ids_restore = random_masking(
            images.shape[0], length, self.mask_ratio, device=images.device, generator=generator
        )
        ids_masked = ids_restore.argsort(dim=1)[:, ids_keep.shape[1] :]
        pred = self.decode(encoder.encode_visible(images, ids_keep), ids_restore, ids_masked)
        idx = ids_masked.unsqueeze(-1).expand(-1, -1, target.shape[-1])
        target = torch.gather(target, 1, idx)
        loss = self.patch_loss(pred, target).mean()
        return {"loss": loss, "pred": pred, "target": target, "ids_masked": ids_masked, "mask": mask}


def normalise_images(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1], what the face models eat."""
    return images_u8.float().div(127.5).sub(1.0)


def primary_loss(logits: torch.Tensor, labels: torch.Tensor, task: Task) -> torch.Tensor:
    """Cross-entropy (multiclass, labels long ``[B]``), BCE (multilabel, labels 0/1 ``[B, K]``) or
    BCE on one logit (binary, labels 0/1 ``[B]``)."""
    if task == "multiclass":
        return F.cross_entropy(logits, labels.long())
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    if task == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.float().reshape(-1))
    raise ValueError(f"unknown task {task!r} (known: multiclass, multilabel, binary)")


class LSSAT(nn.Module):
    """ViT face model with a primary head and a texture-MAE auxiliary branch (L-SSAT)."""

    def __init__(
        self,
        *,
        num_outputs: int,
        task: Task = "multiclass",
        img_size: int = 112,
        patch_size: int = 16,
        in_chans: int = 1,
        dim: int = 192,
        depth: int = 12,
        heads: int = 3,
        mlp_ratio: float = 4.0,
        pool: Literal["mean", "cls"] = "mean",
        head_dropout: float = 0.0,
        aux_target: AuxTarget = "ldp",
        aux_loss: Literal["bits", "code"] = "bits",
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        ldp_k: int = 3,
    ) -> None:
        super().__init__()
        if task not in ("multiclass", "multilabel", "binary"):
            raise ValueError(f"unknown task {task!r} (known: multiclass, multilabel, binary)")
        if task == "binary" and num_outputs != 1:
            raise ValueError("a binary task has one output logit (num_outputs: 1)")
        self.task: Task = task
        self.encoder = FaceViT(
            num_outputs=num_outputs,
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            pool=pool,
            head_dropout=head_dropout,
        )
        self.aux: TextureMAELoss | None = None
        if aux_target != "none":
            self.aux = TextureMAELoss(
                encoder_dim=dim,
                grid=self.encoder.grid,
                patch_size=patch_size,
                target=aux_target,
                loss=aux_loss,
                mask_ratio=mask_ratio,
                decoder_dim=decoder_dim,
                decoder_depth=decoder_depth,
                decoder_heads=decoder_heads,
                in_chans=in_chans,
                ldp_k=ldp_k,
            )

    def forward(self, x: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, Any]:
        """Images ``[B, C, H, W]`` scaled to [-1, 1] -> ``{"logits", "features"}``. Or a batch dict
        (how the training loop calls it) with uint8 ``image`` ``[B, C, H, W]`` (scaled here) and
        ``grey`` uint8 ``[B, H, W]`` (the texture targets' source): in training mode a model with an
        auxiliary branch adds ``aux_losses = {"texture": unweighted loss}`` (masking draws from the
        global torch RNG), as the action models do; the run weighs it (λ)."""
        if not isinstance(x, dict):
            return self.encoder(x)
        images = normalise_images(x["image"])
        out: dict[str, Any] = dict(self.encoder(images))
        if self.training and self.aux is not None:
            out["aux_losses"] = {"texture": self.aux(self.encoder, images, x.get("grey"))["loss"]}
        return out

    def losses(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        grey: torch.Tensor | None = None,
        aux_weight: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """``loss = primary + aux_weight · texture``; both encoder passes share weights."""
        out = self.encoder(images)
        primary = primary_loss(out["logits"], labels, self.task)
        result = {"primary": primary, "logits": out["logits"]}
        if self.aux is not None and aux_weight > 0:
            texture = self.aux(self.encoder, images, grey, generator=generator)["loss"]
            result["texture"] = texture
            result["loss"] = primary + aux_weight * texture
        else:
            result["loss"] = primary
        return result


def build_lssat(preset: str = "tiny", **overrides: Any) -> LSSAT:
    """``LSSAT`` from an encoder size preset (``PRESETS``) plus keyword overrides."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    kwargs: dict[str, Any] = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return LSSAT(**kwargs)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
