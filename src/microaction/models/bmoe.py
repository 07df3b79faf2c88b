"""B-MoE: body-part mixture of M3E experts with cross-attention routing and fusion.

Forward (``batch`` as in ``microaction.models``; R regions, T steps, d = ``d_model``)::

    regions [B, R, T, D_r] ── one M3E expert per region (StackedM3E: batched) ──▶ seq [B, R, T, d],
                                                                                 token [B, R, d]
    global  [B, T, D_g]    ── global M3E ──▶ gseq [B, T, d]
        saliency [B, T] = softmax over valid steps of MLP(gseq)       (motion saliency)
        gtok [B, d]     = Σ_t saliency_t · gseq_t                     (saliency-pooled global token)
    router:  token + region embedding → ``router_layers`` transformer layers over the visible regions
             (inter-region relations) → the global token queries them: head-averaged scaled dot
             products / temperature → softmax over visible regions (optional top-k) = routing [B, R]
    fusion (``combine="mix"``): mixture m_t = Σ_r routing_r · seq_{r,t}  [B, T, d]  attends to gseq
             with the attention logits biased by log saliency (the "saliency-weighted global
             sequence") (``fusion_layers`` pre-LN cross-attention + MLP layers)
    fusion (``combine="tokens"``): the experts kept apart: all R·T steps seq_{r,t} + region
             embedding_r attend to gseq the same way
    classifier: [CLS, gtok + type embedding, fused tokens] → ``cls_layers`` transformer layers
             (masked; with ``combine="tokens"`` the attention logits of region r's tokens get
             + log routing_r: routing as a log-weight bias) → LayerNorm(CLS) → Linear-GELU
             (``features``) → action / body heads

Outputs: ``action``, ``body`` (num_body > 0), ``features`` [B, d], ``routing`` [B, R] (not for
``routing="concat"``), ``saliency`` [B, T], ``expert_tokens`` [B, R+1, d] / ``expert_valid``
[B, R+1] (every M3E's pooled output, regions then global: L_emb on the experts, ``loss.emb_on``).
``router_noise`` > 0 adds Gaussian noise of that std to the routing logits in training.
``readout_pooled``: the read-out also attends to every expert's pooled token (+ region embedding;
with ``combine="tokens"`` biased by log routing) and the global M3E's pooled token, so what the
experts pool (``pool="mean+stats"``: their inputs' statistics) reaches the classifier.
``expert_sum="all"``: the classic mixture-of-experts output, Σ_r routing_r · token_r (every region
expert's pooled output) + the global M3E's pooled output, is added to the read-out's normalised CLS
before the MLP (``"regions"``: without the global M3E's, so only routed experts take this path): a direct path from every expert to the classifier, through which the router learns
which expert helps (without it the experts reach the head only through two attention layers over
R·T + 2 tokens; with ``"regions"`` only the routed experts take the direct path, so the router
must find the part that moved). Padded steps and invisible regions are zeroed on
entry, excluded from every softmax / attention, and get routing 0, so they cannot change outputs.

Head texture branch (``face_size > 0``; ``models.head_texture``): the batch also carries head-box
face crops ``face [B, T, S, S]`` / ``face_valid [B, T]``; a small ViT encodes them, a zero-initialised
projection adds them to the head expert's projected input (its own width, before its temporal
layers), and in training L-SSAT's texture-MAE loss on
the crops comes back as ``aux_losses["texture"]`` (weighted by ``loss.aux_weights.texture``).

Registered: ``bmoe`` (soft routing), ``bmoe_uniform`` (routing fixed to uniform over the visible
regions), ``bmoe_concat`` (no routing: the region sequences, each with a region embedding, are
concatenated into R·T fusion queries). ``expert_impl="loop"`` runs the region experts as a Python
loop over separate ``M3E`` modules (same function; for the benchmark and for checking).

Choices the paper leaves open, made here (see also ``m3e``): the expert is M3E with 2 attention
layers and 2 SGP blocks at paper scale; the router's keys are the expert tokens (masked-mean
pooled) after one transformer layer over regions, its query the saliency-pooled global token
(8 heads averaged, temperature 1, dense soft routing by default: hand-contact classes need two
regions at once); routing weights mix the region sequences (a classic MoE convex combination;
weighting each region separately before a LayerNorm would be undone by the norm), and the fused
sequence is the cross-attention query with the global sequence as context (one layer); the
classifier is one transformer layer over [CLS, global token, fused steps] and a d→d GELU MLP.

Two-stage recipe (stage 1: per-region and global M3E classifiers; stage 2: B-MoE initialised
from them)::

    model = create_model("bmoe", preset="paper", num_classes=52, num_body=7, regions=regions,
                         region_dim=1408, global_dim=1408)
    stage1 = {s: create_model("m3e_global", **model.stage1_kwargs(s)) for s in model.stage1_streams()}
    # ... train each stage-1 model on its stream (CE + L_emb) ...
    model.load_experts({r: stage1[f"region:{r}"].state_dict() for r in model.regions},
                       global_state=stage1["global"].state_dict())
    model.set_experts_trainable(False)  # optional: frozen experts for the first stage-2 epochs

``stage1_streams()`` is ``["region:<name>" for each region] + ["global"]``; ``load_experts``
accepts ``M3EClassifier`` state dicts (their ``encoder.*`` part is used) or bare ``M3E`` ones, for
any subset of regions. ``expert_parameters()`` yields the experts' and the global encoder's
parameters (their own AdamW group in stage 2), ``router_parameters()`` the router's (frozen with
the experts unless ``stages.router_trains_frozen``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import torch
from torch import nn

from microaction.data.store import DEFAULT_REGIONS, FACE_REGION
from microaction.models.common import (
    ClassifierHeads,
    CrossAttention,
    Dropout,
    Mlp,
    TransformerLayer,
    init_linear_layernorm,
    masked_softmax,
    nonempty_mask,
    region_step_mask,
    scaled_dot_logits,
)
from microaction.models.face_vit import AuxTarget
from microaction.models.head_texture import HeadTexture
from microaction.models.m3e import EXPERT_KWARGS, M3E, M3EOutput, StackedM3E
from microaction.models.registry import register_model

__all__ = ["BMoE", "BMoEConcat", "BMoEUniform", "FusionLayer", "encoder_state"]

_TINY = {"d_model": 32, "n_heads": 2, "n_attn": 1, "n_sgp": 1, "max_len": 32}
_PAPER = {"d_model": 512, "n_heads": 8, "n_attn": 2, "n_sgp": 2, "max_len": 64}
ROUTINGS = ("soft", "uniform", "concat")
COMBINES = ("mix", "tokens")
EXPERT_SUMS = ("none", "regions", "all")
# the widest experts whose global M3E runs with the batched ones (``StackedM3E.forward_with``): one
# thread, train step, bf16 / fp32: d 32 1.05× / 1.02× faster; d 128 and 256 within ±1 % (fp32 d 128
# 3 % slower); paper size (d 512) 9 % slower in fp32, where the parameters' copies cost more than
# the ops saved (AMD EPYC, benchmarks/bench_demo_step.py and docs/models.md); GPUs not measured
JOINT_MAX_WIDTH = 64


def encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The M3E part of a state dict: ``encoder.*`` of an ``M3EClassifier``, or the dict itself."""
    if any(k.startswith("encoder.") for k in state):
        return {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    return dict(state)


class FusionLayer(nn.Module):
    """Pre-LN cross-attention of a query sequence to a context sequence, then an MLP."""

    def __init__(self, dim: int, n_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, n_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout=dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_ctx(ctx), bias=bias)
        return x + self.mlp(self.norm2(x))


def _check_options(
    regions: Sequence[str],
    routing: str,
    expert_impl: str,
    router_temperature: float,
    router_top_k: int | None,
    combine: str,
    router_noise: float,
    expert_sum: str,
) -> None:
    """``ValueError`` for an option B-MoE does not have."""
    if routing not in ROUTINGS:
        raise ValueError(f"routing must be one of {ROUTINGS}, got {routing!r}")
    if expert_impl not in ("batched", "loop"):
        raise ValueError(f"expert_impl must be 'batched' or 'loop', got {expert_impl!r}")
    if router_temperature <= 0:
        raise ValueError(f"router_temperature must be > 0, got {router_temperature}")
    if router_top_k is not None and router_top_k < 1:
        raise ValueError(f"router_top_k must be >= 1 or None, got {router_top_k}")
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    if router_noise < 0:
        raise ValueError(f"router_noise must be >= 0, got {router_noise}")
    if not regions:
        raise ValueError("B-MoE needs at least one region")
    if expert_sum not in EXPERT_SUMS:
        raise ValueError(f"expert_sum must be one of {EXPERT_SUMS}, got {expert_sum!r}")


@register_model("bmoe", presets={"tiny": dict(_TINY), "paper": dict(_PAPER)})
class BMoE(nn.Module):
    """B-MoE: per-region M3E experts, saliency-pooled global M3E, cross-attention routing + fusion."""

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        d_model: int = 512,
        n_heads: int = 8,
        n_attn: int = 2,
        n_sgp: int = 2,
        mlp_ratio: float = 4.0,
        sgp_kernel: int = 3,
        sgp_k: float = 1.5,
        sgp_init_std: float = 0.1,
        dropout: float = 0.1,
        max_len: int = 64,
        pool: str = "mean",
        pool_segments: int = 0,
        segment_drop: float = 0.0,
        segment_dropout: float = 0.0,
        segment_center: bool = False,
        routing: str = "soft",
        router_temperature: float = 1.0,
        router_top_k: int | None = None,
        router_layers: int = 1,
        router_noise: float = 0.0,
        combine: str = "mix",
        readout_pooled: bool = False,
        expert_sum: str = "none",
        fusion_layers: int = 1,
        cls_layers: int = 1,
        expert_impl: str = "batched",
        face_size: int = 0,
        face_patch: int = 8,
        face_dim: int = 64,
        face_depth: int = 2,
        texture_target: str = "ldp",
        texture_mask_ratio: float = 0.75,
        texture_frames: int = 32,
    ) -> None:
        super().__init__()
        _check_options(
            regions, routing, expert_impl, router_temperature, router_top_k, combine, router_noise, expert_sum
        )
        self.regions = tuple(regions)
        R = len(self.regions)
        self.routing = routing
        self.router_temperature = float(router_temperature)
        self.router_top_k = router_top_k
        self.router_noise = float(router_noise)
        self.combine = combine if routing != "concat" else "tokens"
        self.readout_pooled = bool(readout_pooled)
        self.expert_sum = expert_sum
        self.n_heads = n_heads
        self.expert_impl = expert_impl
        self.expert_kwargs: dict[str, Any] = {
            "d_model": d_model,
            "n_heads": n_heads,
            "n_attn": n_attn,
            "n_sgp": n_sgp,
            "mlp_ratio": mlp_ratio,
            "sgp_kernel": sgp_kernel,
            "sgp_k": sgp_k,
            "sgp_init_std": sgp_init_std,
            "dropout": dropout,
            "max_len": max_len,
            "pool": pool,
            "pool_segments": pool_segments,
            "segment_drop": segment_drop,
            "segment_dropout": segment_dropout,
            "segment_center": segment_center,
        }
        assert tuple(self.expert_kwargs) == EXPERT_KWARGS
        self._common = {
            "num_classes": num_classes,
            "num_body": num_body,
            "regions": self.regions,
            "region_dim": region_dim,
            "global_dim": global_dim,
        }
        # modules in this order: seeded initialisation (and so every saved result) depends on it
        self._build_experts(R, region_dim, global_dim, d_model)
        self._build_router(R, d_model, n_heads, mlp_ratio, dropout, router_layers)
        self._build_fusion(d_model, n_heads, mlp_ratio, dropout, fusion_layers, cls_layers, num_classes, num_body)
        for name, child in self.named_children():
            if name not in ("experts", "global_encoder"):  # the experts initialise themselves
                init_linear_layernorm(child)
        for p in (self.cls_token, self.global_type, self.region_embed):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        self.head_texture: HeadTexture | None = None
        self.face_index = -1
        if face_size:
            self._build_head_texture(
                d_model, face_size, face_patch, face_dim, face_depth, texture_target, texture_mask_ratio, texture_frames
            )

    def _build_experts(self, R: int, region_dim: int, global_dim: int, d: int) -> None:
        """The region experts, the global M3E and the saliency scorer."""
        self.experts: nn.Module
        if self.expert_impl == "batched":
            self.experts = StackedM3E(R, region_dim, **self.expert_kwargs)
        else:
            self.experts = nn.ModuleList(M3E(region_dim, **self.expert_kwargs) for _ in range(R))
        self.global_encoder = M3E(global_dim, **self.expert_kwargs)
        # narrow experts: the global M3E runs as one more batched expert after its own input projection
        self._joint_global = (
            isinstance(self.experts, StackedM3E) and d <= JOINT_MAX_WIDTH and self.experts.joins(self.global_encoder)
        )
        # saliency scores: LN → Linear → GELU → Linear (no final bias: softmax is shift invariant)
        self.saliency = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, max(d // 4, 8)), nn.GELU(), nn.Linear(max(d // 4, 8), 1, bias=False)
        )

    def _build_router(self, R: int, d: int, n_heads: int, mlp_ratio: float, dropout: float, layers: int) -> None:
        """Region embeddings and, for soft routing, the relating layers and the query / key maps."""
        self.region_embed: nn.Parameter | None = None
        if self.routing in ("soft", "concat") or self.combine == "tokens" or self.readout_pooled:
            self.region_embed = nn.Parameter(torch.zeros(R, d))
        if self.routing == "soft":
            self.relate = nn.ModuleList(TransformerLayer(d, n_heads, mlp_ratio, dropout=dropout) for _ in range(layers))
            self.router_norm_q = nn.LayerNorm(d)
            self.router_norm_k = nn.LayerNorm(d)
            self.router_q = nn.Linear(d, d)
            self.router_k = nn.Linear(d, d)

    def _build_fusion(
        self,
        d: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        fusion_layers: int,
        cls_layers: int,
        num_classes: int,
        num_body: int,
    ) -> None:
        """Fusion of the global tokens with the experts, the class-token readout and the heads."""
        self.fusion = nn.ModuleList(FusionLayer(d, n_heads, mlp_ratio, dropout) for _ in range(fusion_layers))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.global_type = nn.Parameter(torch.zeros(1, 1, d))
        self.cls_layers = nn.ModuleList(
            TransformerLayer(d, n_heads, mlp_ratio, dropout=dropout) for _ in range(cls_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.pre_logits = nn.Sequential(nn.Linear(d, d), nn.GELU(), Dropout(dropout))
        self.heads = ClassifierHeads(in_dim=d, num_classes=num_classes, num_body=num_body)

    def _build_head_texture(
        self,
        d_model: int,
        face_size: int,
        face_patch: int,
        face_dim: int,
        face_depth: int,
        texture_target: str,
        texture_mask_ratio: float,
        texture_frames: int,
    ) -> None:
        """The head-texture branch (face crops of ``face_size`` pixels), joining the head expert."""
        if FACE_REGION not in self.regions:
            raise ValueError(f"face_size needs a {FACE_REGION!r} region; regions: {self.regions}")
        self.face_index = self.regions.index(FACE_REGION)
        self.head_texture = HeadTexture(
            out_dim=d_model,  # joins the head expert after its input projection
            img_size=face_size,
            patch_size=face_patch,
            dim=face_dim,
            depth=face_depth,
            heads=max(1, face_dim // 32),
            target=cast(AuxTarget, texture_target),
            mask_ratio=texture_mask_ratio,
            max_frames=texture_frames,
        )

    # -- encoders ---------------------------------------------------------------------------
    def _run_experts(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        glob: torch.Tensor,
        gmask: torch.Tensor,
        extra: tuple[int, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, M3EOutput]:
        """The region experts and the global M3E: ``x [B, R, T, D]`` → seq ``[B, R, T, d]``, tokens
        ``[B, R, d]``; ``mask [B, R, T]``: each expert's own temporal mask (the steps its region is
        seen); ``glob [B, T, D_g]`` (padded steps zero) with ``gmask [B, T]`` → the global M3E's
        output; ``extra = (r, [B, T, d])`` joins region ``r``'s expert after its input projection
        (the face branch). Batched experts of the global encoder's shape run it as one more stacked
        expert (``StackedM3E.forward_with``)."""
        if isinstance(self.experts, StackedM3E):
            stacked = None
            if extra is not None:
                r, e = extra
                stacked = e.new_zeros((x.shape[1], *e.shape)).index_copy(0, torch.tensor([r], device=x.device), e[None])
            xs, ms = x.transpose(0, 1), mask.transpose(0, 1)
            if self._joint_global:
                out, genc = self.experts.forward_with(cast(M3E, self.global_encoder), xs, ms, glob, gmask, stacked)
            else:
                out, genc = self.experts(xs, ms, stacked), self.global_encoder(glob, gmask)
            return out.seq.transpose(0, 1), out.pooled.transpose(0, 1), genc
        outs = [
            expert(x[:, r], mask[:, r], extra[1] if extra is not None and extra[0] == r else None)
            for r, expert in enumerate(cast(nn.ModuleList, self.experts))
        ]
        genc = self.global_encoder(glob, gmask)
        return torch.stack([o.seq for o in outs], 1), torch.stack([o.pooled for o in outs], 1), genc

    def route(self, tokens: torch.Tensor, gtok: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Routing ``[B, R]`` from region tokens ``[B, R, d]`` and the global token ``[B, d]``."""
        vf = valid.to(tokens.dtype)
        if self.routing == "uniform":
            return vf / vf.sum(1, keepdim=True).clamp_min(1.0)
        assert self.region_embed is not None
        z = tokens + self.region_embed
        key_mask = nonempty_mask(valid)
        for layer in self.relate:
            z = layer(z, key_mask)
        logits = scaled_dot_logits(
            self.router_q(self.router_norm_q(gtok)), self.router_k(self.router_norm_k(z)), self.n_heads
        )
        logits = logits / self.router_temperature
        if self.training and self.router_noise > 0:  # exploration: every expert gets tried early on
            logits = logits + self.router_noise * torch.randn_like(logits)
        keep = valid
        if self.router_top_k is not None and self.router_top_k < valid.shape[1]:
            z_l = logits.masked_fill(~valid, float("-inf"))
            idx = z_l.topk(self.router_top_k, dim=1).indices
            keep = valid & torch.zeros_like(valid).scatter(1, idx, True)
        return masked_softmax(logits, keep)

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        regions, glob = batch["regions"], batch["global"]
        B, R, T, _ = regions.shape
        if R != len(self.regions):
            raise ValueError(f"batch has {R} region streams, model was built for {len(self.regions)} {self.regions}")
        mask = nonempty_mask(batch["mask"].bool())
        # per-step region validity: each expert's temporal mask is the steps its region is seen
        seen = region_step_mask({**batch, "mask": mask})  # [B, R, T]
        valid = seen.any(-1)  # a region seen at no step is invisible
        zero = regions.new_zeros(())
        x = torch.where(seen.unsqueeze(-1), regions, zero)
        texture_loss, extra = None, None
        if self.head_texture is not None:
            if "face" not in batch:
                raise ValueError(
                    "this model was built with face_size > 0: batches need 'face' crops "
                    "(a store extracted with mar extract --face-size)"
                )
            h = self.face_index
            fvalid = batch["face_valid"].bool() & seen[:, h]
            face_feats, texture_loss = self.head_texture(batch["face"], fvalid)
            extra = (h, face_feats)
        emask = torch.where(valid[..., None], seen, mask[:, None, :])  # invisible: zeros over the clip
        seq, tokens, genc = self._run_experts(x, emask, torch.where(mask.unsqueeze(-1), glob, zero), mask, extra)
        gseq = genc.seq

        sal = masked_softmax(self.saliency(gseq).squeeze(-1), mask)  # [B, T]
        gtok = (sal.unsqueeze(-1) * gseq).sum(1)
        sal_bias = sal.clamp_min(1e-30).log().masked_fill(~mask, float("-inf"))  # log-saliency attention bias

        out: dict[str, torch.Tensor] = {"saliency": sal}
        # the M3E outputs (regions, then global) in one list, for L_emb on the experts (loss.emb_on)
        out["expert_tokens"] = torch.cat([tokens, genc.pooled.unsqueeze(1)], 1)
        out["expert_valid"] = torch.cat([valid, valid.new_ones(B, 1)], 1)
        w = None
        if self.routing != "concat":
            w = self.route(tokens, gtok, valid)
            out["routing"] = w
        if self.combine == "tokens":  # experts kept apart: R·T tokens, each with its region embedding
            assert self.region_embed is not None
            q = (seq + self.region_embed[None, :, None, :]).reshape(B, R * T, -1)
            qmask = seen.reshape(B, R * T)
        else:  # routing-weighted mixture of the region sequences
            assert w is not None
            q = torch.einsum("br,brtd->btd", w, seq)
            qmask = mask
        for layer in self.fusion:
            q = layer(q, gseq, sal_bias)
        q = torch.where(qmask.unsqueeze(-1), q, q.new_zeros(()))
        head = torch.cat([self.cls_token.expand(B, -1, -1), (gtok.unsqueeze(1) + self.global_type)], 1)
        tok = torch.cat([head, q], 1)
        tmask: torch.Tensor = torch.cat([qmask.new_ones(B, 2), qmask], 1)
        if self.combine == "tokens" and w is not None:
            # routing as a log-weight bias on the attention over every expert's tokens
            lw = w.clamp_min(1e-30).log()[:, :, None].expand(B, R, T).reshape(B, R * T)
            tmask = torch.cat([lw.new_zeros(B, 2), lw.masked_fill(~qmask, float("-inf"))], 1)
        if self.readout_pooled:  # the experts' pooled tokens (and the global M3E's) join the read-out
            assert self.region_embed is not None
            ptok = torch.cat([tokens + self.region_embed, genc.pooled.unsqueeze(1) + self.global_type], 1)
            pvalid = torch.cat([valid, valid.new_ones(B, 1)], 1)
            pbias = ptok.new_zeros(B, R + 1)
            if w is not None and self.combine == "tokens":
                pbias = torch.cat([w.clamp_min(1e-30).log(), w.new_zeros(B, 1)], 1)
            if tmask.dtype == torch.bool:
                tmask = tok.new_zeros(tmask.shape).masked_fill(~tmask, float("-inf"))
            tok = torch.cat([tok, ptok], 1)
            tmask = torch.cat([tmask, pbias.masked_fill(~pvalid, float("-inf"))], 1)
        for layer in self.cls_layers:
            tok = layer(tok, tmask)
        cls = self.norm(tok[:, 0])
        if self.expert_sum != "none":  # Σ_r routing_r · expert_r (+ global expert): the MoE output, to the head
            wr = w if w is not None else valid.to(tokens.dtype) / valid.sum(1, keepdim=True).clamp_min(1)
            cls = cls + torch.einsum("br,brd->bd", wr, tokens)
            if self.expert_sum == "all":
                cls = cls + genc.pooled
        out["features"] = self.pre_logits(cls)
        if texture_loss is not None:
            out["aux_losses"] = {"texture": texture_loss}  # type: ignore[assignment]
        return out

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**feats, **self.heads(feats["features"])}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))

    # -- two-stage recipe ---------------------------------------------------------------------
    def stage1_streams(self) -> list[str]:
        return [f"region:{r}" for r in self.regions] + ["global"]

    def stage1_kwargs(self, stream: str) -> dict[str, Any]:
        """Keyword arguments for ``create_model("m3e_global", **kw)`` whose encoder matches this model's
        expert for ``stream`` (``"region:<name>"`` or ``"global"``)."""
        if stream not in self.stage1_streams():
            raise ValueError(f"stream must be one of {self.stage1_streams()}, got {stream!r}")
        return {**self._common, "regions": list(self.regions), **self.expert_kwargs, "stream": stream}

    @torch.no_grad()
    def load_experts(
        self,
        state_dicts_by_region: Mapping[str, Mapping[str, torch.Tensor]],
        global_state: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Initialise region experts (any subset, by region name) and the global encoder from
        stage-1 ``m3e_global`` (or bare ``M3E``) state dicts."""
        for name, state in state_dicts_by_region.items():
            if name not in self.regions:
                raise KeyError(f"unknown region {name!r}; regions: {self.regions}")
            r = self.regions.index(name)
            sd = encoder_state(state)
            if isinstance(self.experts, StackedM3E):
                self.experts.load_expert(r, sd)
            else:
                cast(nn.ModuleList, self.experts)[r].load_state_dict(sd)
        if global_state is not None:
            self.global_encoder.load_state_dict(encoder_state(global_state))

    def expert_state_dict(self, region: str) -> dict[str, torch.Tensor]:
        """One region expert as a bare ``M3E`` state dict."""
        r = self.regions.index(region)
        if isinstance(self.experts, StackedM3E):
            return self.experts.expert_state_dict(r)
        expert = cast(nn.ModuleList, self.experts)[r]
        return {k: v.detach().clone() for k, v in expert.state_dict().items()}

    def expert_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.experts.parameters()
        yield from self.global_encoder.parameters()

    def router_parameters(self) -> Iterator[nn.Parameter]:
        """The router's own parameters (none for fixed or no routing)."""
        if self.routing != "soft":
            return
        for m in (self.relate, self.router_norm_q, self.router_norm_k, self.router_q, self.router_k):
            yield from m.parameters()
        if self.combine == "mix" and not self.readout_pooled:  # else it also labels the read-out tokens
            assert self.region_embed is not None
            yield self.region_embed

    def set_experts_trainable(self, trainable: bool) -> None:
        for p in self.expert_parameters():
            p.requires_grad_(trainable)


@register_model("bmoe_uniform", presets={"tiny": dict(_TINY), "paper": dict(_PAPER)})
class BMoEUniform(BMoE):
    """B-MoE with routing fixed to uniform over the visible regions (ablation)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(routing="uniform", **kwargs)


@register_model("bmoe_concat", presets={"tiny": dict(_TINY), "paper": dict(_PAPER)})
class BMoEConcat(BMoE):
    """B-MoE without routing: region sequences concatenated as fusion queries (ablation)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(routing="concat", **kwargs)
