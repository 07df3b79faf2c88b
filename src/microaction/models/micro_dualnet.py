"""Micro-DualNet: dual-path (Spatial→Temporal / Temporal→Spatial) entity network with entity-level
adaptive routing and the Mutual Action Consistency (MAC) loss (arXiv 2604.21011, IEEE FG 2026).

The paper has no public code. What it states, implemented here:

* Entities are anatomically grounded body parts (on MA-52: head, face, left hand, right hand, torso,
  lower body; on iMiGUE the lower body is dropped: ``microaction.skeleton.ENTITY_SETS``). Each is
  encoded per frame to ``D`` (256) with learnable position embeddings.
* ST path: ``X_ST = Temporal-T(Spatial-T(X) + MLP_s(X))``; TS path:
  ``X_TS = Spatial-T(Temporal-T(X) + MLP_t(X))``. The spatial transformer attends across the K
  entities of one frame, the temporal one across the T frames of one entity. 3 layers, 8 heads.
* Entity-level routing: ``[α_ST, α_TS] = softmax(R_i([X_ST ; X_TS]) / τ)`` for entity ``i``,
  ``X_fused = α_ST·X_ST + α_TS·X_TS``.
* MAC: entity-aware contrastive learning between the two paths' features before routing;
  ``L = L_CE + 0.1·L_MAC`` (``aux_losses["mac"]`` is unweighted; the model's
  ``aux_loss_weights = {"mac": 0.1}`` is the weight a run uses unless ``loss.aux_weights`` names one).
* Classifier: fused entity features concatenated with the global feature, then an MLP.

Choices where the paper is silent (ours):

* Entities are the feature store's regions ``[B, K, T, D_r]`` (whatever region set the store was
  extracted with); the global stream ``[B, T, D_g]`` is *not* an entity: it is projected to ``D``,
  mean-pooled over the valid frames and concatenated at the classifier, as the paper describes.
* Entity encoding: one linear projection per entity (``D_r → D``, after a shared LayerNorm), plus a
  learnable per-entity embedding and a learnable temporal position embedding indexed by the absolute
  frame index (``max_steps`` positions; a longer input is an error, never silently interpolated,
  so that padding a batch never moves the embeddings of the valid frames).
* Transformers are pre-norm blocks (attention + GELU MLP ×4); ``MLP_s`` / ``MLP_t`` are
  two-layer GELU MLPs shared across entities.
* Masks: the entity x frame mask is ``common.region_step_mask`` (per-step region validity when the
  batch has ``region_valid_steps``; an entity seen at no frame is invisible). Padded steps and unseen
  entity-frames are replaced by zeros at the input (so even non-finite values there cannot reach
  anything), and every attention takes a key mask. Spatial attention at a frame never attends to an
  entity not seen in it; temporal attention of an entity never attends to a frame it is not seen in
  (nor to a padded frame). Pooling and path weights run over the frames each entity is seen in. A query with no valid key (e.g. a padded frame where
  no entity is visible) attends to all keys of its row instead of producing NaN; such rows are
  themselves invalid and never reach a valid output. Invisible entities are zeroed in the
  classifier concatenation, excluded from MAC, and get the fixed path weights ``[0.5, 0.5]``;
  hence the outputs do not depend on their features.
* Router: per entity a small MLP (its own weights for every entity: ``2D → router_hidden → 2``) on
  the concatenated path outputs, applied per frame; softmax with a learnable temperature
  ``τ = exp(log_tau)`` clamped to ``[tau_min, tau_max]`` (init 1). ``path_weights`` ``[B, K, 2]``
  is the mean of the per-frame ``[α_ST, α_TS]`` over the valid frames.
* Fused entity features are mean-pooled over the valid frames before the classifier MLP.
  Departure (off by default, on in ``configs/demo_micro_dualnet.yaml``): with ``pool_segments=S``
  each entity's pooled feature also gets a linear map (``S·D → D``, shared by the entities) of the
  fused feature's means over ``S`` consecutive equal parts of the frames the entity is seen in, in
  order (``common.segment_means``, as M3E's ``pool_segments``). A mean over frames is the same for
  every order of the frames, so without it the classifier cannot tell "A then B" from "B then A"
  unless the temporal attention happens to write the order into every frame's feature (on the
  diagnostic preset it does not: docs/synthetic.md).
* MAC (``mac_loss``): symmetric InfoNCE between projected (per path: ``D → D → mac_dim`` MLP),
  L2-normalised ST and TS features of the same (sample, entity), pooled over the valid frames; the
  negatives of an anchor are the *same entity* in the other samples of the batch where it is visible
  (never another entity type), temperature 0.1. The mean is over all (sample, entity) anchors whose
  entity is visible in at least two samples; with fewer the loss is an exact (graph-connected) 0.
  ``mac_per_frame=True`` contrasts per frame instead: anchor (b, k, t), negatives the same entity at
  the same frame index in the other samples where that frame is valid and the entity visible.
* When MAC is computed: whenever both paths exist, ``mac`` is on and the model is in training mode
  (a batch without two samples sharing a visible entity gets a 0). Batch-level, it is the one
  output that depends on the other samples of the batch, so it is a training objective only: in
  eval mode there is no ``"mac"`` key, and a loss over eval-mode outputs (validation) is the same
  whatever the batch size (``mac_loss`` stays callable on eval features).

Ablation switches: ``paths="both"|"st"|"ts"`` (a single path builds only that path, has no router and
no MAC, and reports path weights ``[1, 0]`` / ``[0, 1]``); ``fusion="routing"|"fixed"`` (``fixed``
averages the paths with ``fixed_weight`` for ST, no router); ``mac=False`` skips the MAC computation;
``pool_segments`` (0: the paper's mean pooling) adds the ordered segment means above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from microaction.data.store import DEFAULT_REGIONS
from microaction.models.common import ClassifierHeads, masked_mean, region_step_mask, segment_means
from microaction.models.registry import register_model

__all__ = ["MicroDualNet", "mac_loss"]

MAC_TEMPERATURE = 0.1


# ----------------------------------------------------------------------------------------------
# MAC loss


def _info_nce_sym(
    a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE over groups.

    ``a``, ``b``: ``[G, N, d]`` L2-normalised features of the two views for ``G`` independent
    groups of ``N`` candidates; ``valid``: ``[G, N]``. Within a group, ``a[g, i]`` and ``b[g, i]``
    are a positive pair and the other valid ``b[g, j]`` (resp. ``a[g, j]``) its negatives.
    Returns (sum of per-anchor losses over both directions, number of anchors per direction).
    """
    logits = torch.einsum("gid,gjd->gij", a, b) / temperature  # [G, N, N]
    pair_ok = valid[:, :, None] & valid[:, None, :]
    logits = logits.masked_fill(~pair_ok, float("-inf"))
    # a row needs its positive and at least one negative
    rows = valid & (valid.sum(-1, keepdim=True) >= 2)  # [G, N]
    diag = torch.diagonal(logits, dim1=1, dim2=2)  # [G, N]
    # replace -inf rows (invalid anchors) by zeros before logsumexp to keep the graph finite
    safe = torch.where(rows[:, :, None], logits, torch.zeros_like(logits))
    safe_t = torch.where(rows[:, :, None], logits.transpose(1, 2), torch.zeros_like(logits))
    diag_safe = torch.where(rows, diag, torch.zeros_like(diag))
    l_ab = torch.logsumexp(safe, dim=-1) - diag_safe
    l_ba = torch.logsumexp(safe_t, dim=-1) - diag_safe
    r = rows.to(a.dtype)
    return ((l_ab + l_ba) * r).sum(), r.sum()


def mac_loss(
    z_st: torch.Tensor,
    z_ts: torch.Tensor,
    entity_valid: torch.Tensor,
    *,
    frame_mask: torch.Tensor | None = None,
    temperature: float = MAC_TEMPERATURE,
) -> torch.Tensor:
    """Mutual Action Consistency loss: symmetric, entity-aware InfoNCE between two paths.

    ``z_st``, ``z_ts``: ``[B, K, d]`` (pooled) or ``[B, K, T, d]`` (per frame) features of the two
    paths, projected but not necessarily normalised (they are L2-normalised here).
    ``entity_valid``: ``[B, K]`` bool (per frame also ``[B, K, T]``: the entity seen at that frame).
    ``frame_mask``: ``[B, T]`` bool, for per-frame features.

    For every entity type ``k`` (and, per frame, every frame index ``t``) the positive of
    ``z_st[b, k]`` is ``z_ts[b, k]`` and its negatives are ``z_ts[b', k]`` for the other samples
    ``b'`` where entity ``k`` is visible (and frame ``t`` valid); never another entity type. Both
    directions (ST→TS and TS→ST) are averaged. The result is the mean over the anchors that have at
    least one negative; 0 (graph-connected) when there is none. Invariant to a permutation of the
    entity axis applied to both paths and the validity mask.
    """
    if z_st.shape != z_ts.shape:
        raise ValueError(f"mac_loss: path shapes differ: {tuple(z_st.shape)} vs {tuple(z_ts.shape)}")
    a = F.normalize(z_st, dim=-1)
    b = F.normalize(z_ts, dim=-1)
    valid = entity_valid.bool()
    if a.dim() == 3:  # [B, K, d] -> groups over entities: [K, B, d]
        total, n = _info_nce_sym(a.transpose(0, 1), b.transpose(0, 1), valid.transpose(0, 1), temperature)
    elif a.dim() == 4:  # [B, K, T, d] -> groups over (entity, frame): [K*T, B, d]
        B, K, T, d = a.shape
        if frame_mask is None:
            frame_mask = torch.ones(B, T, dtype=torch.bool, device=a.device)
        v = (valid if valid.dim() == 3 else valid[:, :, None]) & frame_mask.bool()[:, None, :]  # [B, K, T]
        ga = a.permute(1, 2, 0, 3).reshape(K * T, B, d)
        gb = b.permute(1, 2, 0, 3).reshape(K * T, B, d)
        total, n = _info_nce_sym(ga, gb, v.permute(1, 2, 0).reshape(K * T, B), temperature)
    else:
        raise ValueError(f"mac_loss: expected [B, K, d] or [B, K, T, d] features, got {tuple(z_st.shape)}")
    return total / (2.0 * n.clamp_min(1.0))


# ----------------------------------------------------------------------------------------------
# building blocks


def _any_key(key_valid: torch.Tensor) -> torch.Tensor:
    """Rows without a single valid key attend to all keys (their outputs are never used)."""
    return key_valid | ~key_valid.any(dim=-1, keepdim=True)


class Block(nn.Module):
    """Pre-norm transformer block whose attention takes a key mask (``True`` = attend).

    Dropout acts on the two residual branches only (none on the attention probabilities or inside
    the MLP: on CPU those cost more than the whole block)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
        N, L, D = x.shape
        h = self.norm1(x)
        q, k, v = self.qkv(h).view(N, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = _any_key(key_valid)[:, None, None, :]  # [N, 1, 1, L]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        x = x + self.drop(self.proj(o.transpose(1, 2).reshape(N, L, D)))
        return x + self.drop(self.mlp(self.norm2(x)))


class AxisTransformer(nn.Module):
    """A stack of blocks over one axis of ``[B, K, T, D]``: ``"spatial"`` (entities) or ``"temporal"``."""

    def __init__(self, axis: Literal["spatial", "temporal"], dim: int, depth: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.axis = axis
        self.blocks = nn.ModuleList(Block(dim, heads, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, spatial_keys: torch.Tensor, temporal_keys: torch.Tensor) -> torch.Tensor:
        """``spatial_keys [B, T, K]``: the entities each frame attends to; ``temporal_keys [B, K, T]``:
        the frames each entity attends to."""
        B, K, T, D = x.shape
        if self.axis == "spatial":  # sequences over K within each (b, t)
            seq = x.transpose(1, 2).reshape(B * T, K, D)
            kv = spatial_keys.reshape(B * T, K)
        else:  # sequences over T within each (b, k)
            seq = x.reshape(B * K, T, D)
            kv = temporal_keys.reshape(B * K, T)
        for blk in self.blocks:
            seq = blk(seq, kv)
        seq = self.norm(seq)
        if self.axis == "spatial":
            return seq.view(B, T, K, D).transpose(1, 2)
        return seq.view(B, K, T, D)


def _mlp(dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))


class DualPath(nn.Module):
    """One path: ``second(first(X) + MLP(X))``."""

    def __init__(self, order: Literal["st", "ts"], dim: int, depth: int, heads: int, dropout: float) -> None:
        super().__init__()
        first: Literal["spatial", "temporal"] = "spatial" if order == "st" else "temporal"
        second: Literal["spatial", "temporal"] = "temporal" if order == "st" else "spatial"
        self.first = AxisTransformer(first, dim, depth, heads, dropout)
        self.residual = _mlp(dim, dropout)
        self.second = AxisTransformer(second, dim, depth, heads, dropout)

    def forward(self, x: torch.Tensor, spatial_keys: torch.Tensor, temporal_keys: torch.Tensor) -> torch.Tensor:
        h = self.first(x, spatial_keys, temporal_keys) + self.residual(x)
        return self.second(h, spatial_keys, temporal_keys)


class EntityRouter(nn.Module):
    """Per-entity MLP on ``[X_ST ; X_TS]`` per frame → 2 logits; softmax with a learnable τ."""

    def __init__(self, num_entities: int, dim: int, hidden: int, tau_min: float, tau_max: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(2 * dim)
        self.w1 = nn.Parameter(torch.empty(num_entities, 2 * dim, hidden))
        self.b1 = nn.Parameter(torch.zeros(num_entities, hidden))
        self.w2 = nn.Parameter(torch.empty(num_entities, hidden, 2))
        self.b2 = nn.Parameter(torch.zeros(num_entities, 2))
        self.log_tau = nn.Parameter(torch.zeros(()))
        self.tau_min, self.tau_max = tau_min, tau_max
        nn.init.normal_(self.w1, std=1.0 / math.sqrt(2 * dim))
        nn.init.normal_(self.w2, std=0.02)

    def tau(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(self.tau_min, self.tau_max)

    def forward(self, x_st: torch.Tensor, x_ts: torch.Tensor) -> torch.Tensor:
        h = self.norm(torch.cat([x_st, x_ts], dim=-1))  # [B, K, T, 2D]
        h = F.gelu(torch.einsum("bktd,kdh->bkth", h, self.w1) + self.b1[None, :, None, :])
        logits = torch.einsum("bkth,khc->bktc", h, self.w2) + self.b2[None, :, None, :]
        return torch.softmax(logits / self.tau(), dim=-1)  # [B, K, T, 2]


# ----------------------------------------------------------------------------------------------
# the model


@register_model(
    "micro_dualnet",
    presets={
        "tiny": {"dim": 32, "depth": 1, "heads": 2, "hidden": 64, "router_hidden": 16, "mac_dim": 16, "max_steps": 256},
        "paper": {"dim": 256, "depth": 3, "heads": 8, "hidden": 512, "router_hidden": 64, "mac_dim": 128},
    },
)
class MicroDualNet(nn.Module):
    """Micro-DualNet: ST / TS entity transformers, entity-level routing, MAC loss."""

    # the paper's λ: L = L_CE + 0.1·L_MAC (a run's loss.aux_weights overrides it)
    aux_loss_weights: ClassVar[dict[str, float]] = {"mac": 0.1}

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        dim: int = 256,
        depth: int = 3,
        heads: int = 8,
        hidden: int = 512,
        dropout: float = 0.1,
        max_steps: int = 512,
        paths: Literal["both", "st", "ts"] = "both",
        fusion: Literal["routing", "fixed"] = "routing",
        fixed_weight: float = 0.5,
        router_hidden: int = 64,
        tau_min: float = 0.1,
        tau_max: float = 10.0,
        mac: bool = True,
        mac_dim: int = 128,
        mac_per_frame: bool = False,
        mac_temperature: float = MAC_TEMPERATURE,
        pool_segments: int = 0,
    ) -> None:
        super().__init__()
        if pool_segments < 0:
            raise ValueError(f"micro_dualnet: pool_segments must be >= 0, got {pool_segments}")
        if paths not in ("both", "st", "ts"):
            raise ValueError(f"micro_dualnet: paths must be 'both', 'st' or 'ts', got {paths!r}")
        if fusion not in ("routing", "fixed"):
            raise ValueError(f"micro_dualnet: fusion must be 'routing' or 'fixed', got {fusion!r}")
        if not 0.0 <= fixed_weight <= 1.0:
            raise ValueError(f"micro_dualnet: fixed_weight must be in [0, 1], got {fixed_weight}")
        self.regions = tuple(regions)
        K = len(self.regions)
        if K < 1:
            raise ValueError("micro_dualnet: needs at least one entity (region)")
        self.num_entities, self.dim, self.max_steps = K, dim, max_steps
        self.paths, self.fusion, self.fixed_weight = paths, fusion, float(fixed_weight)
        self.use_mac = bool(mac) and paths == "both"
        self.mac_per_frame, self.mac_temperature = mac_per_frame, float(mac_temperature)
        self.pool_segments = pool_segments

        # entity encoding: shared LayerNorm, one projection per entity, entity + time embeddings
        self.in_norm = nn.LayerNorm(region_dim)
        self.in_w = nn.Parameter(torch.empty(K, region_dim, dim))
        self.in_b = nn.Parameter(torch.zeros(K, dim))
        nn.init.normal_(self.in_w, std=1.0 / math.sqrt(region_dim))
        self.entity_embed = nn.Parameter(torch.randn(K, dim) * 0.02)
        self.time_embed = nn.Parameter(torch.randn(max_steps, dim) * 0.02)

        self.st = DualPath("st", dim, depth, heads, dropout) if paths in ("both", "st") else None
        self.ts = DualPath("ts", dim, depth, heads, dropout) if paths in ("both", "ts") else None
        self.router = (
            EntityRouter(K, dim, router_hidden, tau_min, tau_max) if paths == "both" and fusion == "routing" else None
        )
        if self.use_mac:
            self.mac_st = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, mac_dim))
            self.mac_ts = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, mac_dim))

        # a fused entity's pooled feature also gets a linear map of its means over consecutive parts
        # of the frames it is seen in, in order: the mean alone is the same for every order of frames
        self.segment_proj = nn.Linear(pool_segments * dim, dim) if pool_segments else None
        self.global_proj = nn.Sequential(nn.LayerNorm(global_dim), nn.Linear(global_dim, dim), nn.GELU())
        cls_in = (K + 1) * dim
        self.cls_norm = nn.LayerNorm(cls_in)
        self.cls_mlp = nn.Sequential(nn.Linear(cls_in, hidden), nn.GELU(), nn.Dropout(dropout))
        self.heads = ClassifierHeads(in_dim=hidden, num_classes=num_classes, num_body=num_body)

    # -- pieces ---------------------------------------------------------------------------------

    def embed_entities(self, regions: torch.Tensor) -> torch.Tensor:
        """``[B, K, T, D_r]`` → ``[B, K, T, dim]`` with entity and temporal position embeddings."""
        K, T = regions.shape[1], regions.shape[2]
        if K != self.num_entities:
            raise ValueError(f"micro_dualnet: batch has {K} regions, the model was built for {self.num_entities}")
        if T > self.max_steps:
            raise ValueError(f"micro_dualnet: {T} time steps exceed max_steps={self.max_steps}")
        x = torch.einsum("bktr,krd->bktd", self.in_norm(regions), self.in_w) + self.in_b[None, :, None, :]
        return x + self.entity_embed[None, :, None, :] + self.time_embed[None, None, :T, :]

    def forward_features(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        regions = batch["regions"]
        mask = batch["mask"].bool()  # [B, T]
        ev = batch["region_valid"].bool()  # [B, K]
        B, K, T, _ = regions.shape
        if ev.shape != (B, K) or mask.shape != (B, T):
            raise ValueError(
                f"micro_dualnet: mask {tuple(mask.shape)} / region_valid {tuple(ev.shape)} do not fit regions"
            )
        # the entity x frame mask (per-step region validity); an entity seen at no frame is invisible
        seen = region_step_mask(batch)  # [B, K, T]
        ev = seen.any(-1)
        # padded steps and unseen entity-frames enter as zeros (whatever they hold, even non-finite)
        x = self.embed_entities(
            torch.where(seen[..., None], regions, torch.zeros((), dtype=regions.dtype, device=regions.device))
        )
        # a frame attends to the entities seen in it (a padded frame: to the visible ones), an entity
        # to the frames it is seen in (an invisible one: to the valid frames; its outputs are dropped)
        spatial_keys = (seen | (ev[:, :, None] & ~mask[:, None, :])).transpose(1, 2)
        temporal_keys = seen | (mask[:, None, :] & ~ev[:, :, None])
        x_st = self.st(x, spatial_keys, temporal_keys) if self.st is not None else None
        x_ts = self.ts(x, spatial_keys, temporal_keys) if self.ts is not None else None
        if x_st is not None and x_ts is not None:
            if self.router is not None:
                alpha = self.router(x_st, x_ts)  # [B, K, T, 2]
            else:
                w = torch.tensor([self.fixed_weight, 1.0 - self.fixed_weight], dtype=x.dtype, device=x.device)
                alpha = w.expand(B, K, T, 2)
            fused = alpha[..., :1] * x_st + alpha[..., 1:] * x_ts
        else:
            fused = x_st if x_st is not None else x_ts
            assert fused is not None
            w = torch.tensor([1.0, 0.0] if x_st is not None else [0.0, 1.0], dtype=x.dtype, device=x.device)
            alpha = w.expand(B, K, T, 2)

        # path preference per entity: mean over the frames it is seen in; invisible entities / empty clips: 0.5
        has_frames = mask.any(dim=1)  # [B]
        pw = masked_mean(alpha, seen[..., None], dim=2)  # [B, K, 2]
        known = (ev & has_frames[:, None])[..., None]
        path_weights = torch.where(known, pw, torch.full_like(pw, 0.5))

        evf = ev[..., None].to(x.dtype)
        pooled = masked_mean(fused, seen[..., None], dim=2)  # [B, K, dim]
        if self.segment_proj is not None:
            pooled = pooled + self.segment_proj(segment_means(fused, seen, self.pool_segments))
        pooled = pooled * evf
        g_in = batch["global"]
        g_in = torch.where(mask[:, :, None], g_in, torch.zeros((), dtype=g_in.dtype, device=g_in.device))
        glob = masked_mean(self.global_proj(g_in), mask[:, :, None], dim=1)  # [B, dim]
        feats = self.cls_mlp(self.cls_norm(torch.cat([pooled.flatten(1), glob], dim=-1)))

        out: dict[str, torch.Tensor] = {"features": feats, "path_weights": path_weights}
        aux: dict[str, torch.Tensor] = {}
        if self.use_mac and x_st is not None and x_ts is not None and self.training:
            if self.mac_per_frame:
                aux["mac"] = mac_loss(
                    self.mac_st(x_st), self.mac_ts(x_ts), seen, frame_mask=mask, temperature=self.mac_temperature
                )
            else:
                p_st = masked_mean(x_st, seen[..., None], dim=2)
                p_ts = masked_mean(x_ts, seen[..., None], dim=2)
                ev_mac = ev & has_frames[:, None]
                aux["mac"] = mac_loss(self.mac_st(p_st), self.mac_ts(p_ts), ev_mac, temperature=self.mac_temperature)
        out["aux_losses"] = aux  # type: ignore[assignment]
        return out

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**feats, **self.heads(feats["features"])}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))
