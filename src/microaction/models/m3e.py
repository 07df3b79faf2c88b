"""M3E, the Macro-Micro Motion Encoder: one expert of B-MoE, also usable alone (``m3e_global``).

``M3E(in_dim, ...)``: ``forward(x [B, T, D_in], mask [B, T]) -> M3EOutput(seq [B, T, d],
pooled [B, d], pool_weights [B, T] | None)``::

    x (padded steps zeroed) → LayerNorm(D_in) → Linear(D_in → d) + learned position embedding
      → n_attn pre-LN transformer layers (masked multi-head self-attention + MLP): macro motion,
        long range
      → n_sgp masked SGP blocks (``sgp.SGPBlock(masked=True)``, stride 1): micro motion, local
      → LayerNorm → seq (padded steps zeroed); pooled = masked mean and/or attention pooling

``StackedM3E(G, in_dim, ...)`` computes G independent M3Es at once (B-MoE's per-region experts):
every parameter is the single M3E's parameter with a leading ``[G]`` axis and the same name, the
linear layers are batched matrix products (``baddbmm``), the depthwise convolutions one grouped
convolution over ``G·C`` channels. ``load_expert(g, m3e_state_dict)`` / ``expert_state_dict(g)``
convert between the two (they are what ``BMoE.load_experts`` uses), and both compute the same
function (``tests/test_bmoe.py``).

Registered: ``m3e_global`` (``M3EClassifier``): one M3E over one stream, then an MLP and the heads.
``stream="global"`` (default) reads ``batch["global"]``; ``stream="region:<name>"`` reads one
region stream (``batch["regions"][:, i]``, zeroed where that region is invisible): that is stage 1
of the two-stage B-MoE recipe (``bmoe.stage1_kwargs`` builds matching kwargs).

Choices the paper leaves open, made here: the input is layer-normalised before the projection
(feature sets differ in scale); learned absolute positions (``max_len`` 64 ≥ the recipe's T = 16);
each attention layer is a full pre-LN transformer layer (MLP ratio 4); SGP blocks keep the length
(stride 1, window k = 1.5, depthwise init std 0.1, GELU MLP 4d) so the sequence can be fused per
time step; pooling defaults to the masked mean (``pool="attn"`` learns a softmax over valid steps,
``"mean+attn"`` averages the two; ``"mean+stats"`` adds a linear map of the *input's* pooled mean /
std / mean |Δ| per feature, the statistics a linear probe classifies well from, which a mean of
layer-normalised steps cannot express); dropout 0.1 on residual branches at paper scale (not on the
4×-wide MLP hidden; ``common.fast_dropout`` draws the masks). ``pool_segments`` K adds a linear
map of the output's means over K consecutive parts of the clip (order); ``segment_center`` takes
the clip's mean from each (the time course only: the level is in the pooled mean already);
``segment_dropout`` p is element-wise dropout on the K means in training; ``segment_drop`` p drops
the whole term per sample in training with probability p (stochastic depth on the branch), so the
order-free pooled token must classify on its own as well (docs/synthetic.md, the pixel path).

Speed (CPU): the stacked layers live in ``models/stacked.py``: ``stacked_linear`` (a batched matmul
whose backward writes the weight gradient in the weight's own layout, no transposed copies); the SGP
blocks run ``sgp.sgp_core`` channels-last with the depthwise convolutions as banded matrix products.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import nn
from torch.func import functional_call

from microaction.data.store import DEFAULT_REGIONS
from microaction.models.common import (
    ClassifierHeads,
    Dropout,
    TransformerLayer,
    init_linear_layernorm,
    masked_mean,
    masked_softmax,
    pooled_stats,
    region_step_mask,
    segment_means,
)
from microaction.models.registry import register_model
from microaction.models.sgp import SGPBlock
from microaction.models.stacked import StackedLayerNorm, StackedLinear, StackedSGP, StackedTransformerLayer

__all__ = ["EXPERT_KWARGS", "M3E", "M3EClassifier", "M3EOutput", "StackedM3E"]

# constructor arguments that define one expert (shared by M3E, StackedM3E, m3e_global and bmoe)
EXPERT_KWARGS = (
    "d_model",
    "n_heads",
    "n_attn",
    "n_sgp",
    "mlp_ratio",
    "sgp_kernel",
    "sgp_k",
    "sgp_init_std",
    "dropout",
    "max_len",
    "pool",
    "pool_segments",
    "segment_drop",
    "segment_dropout",
    "segment_center",
)
_POOLS = ("mean", "attn", "mean+attn", "mean+stats")


def path_drop(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """``x [..., d]`` zeroed per sample with probability ``p`` in training, the kept ones scaled by
    1 / (1 - p) (stochastic depth on one branch); unchanged in eval or with ``p`` 0."""
    if not training or p <= 0.0:
        return x
    keep = torch.rand((*x.shape[:-1], 1), device=x.device) >= p
    return x * keep.to(x.dtype) / (1.0 - p)


class M3EOutput(NamedTuple):
    seq: torch.Tensor  # [B, T, d] ([G, B, T, d] stacked), padded steps zero
    pooled: torch.Tensor  # [B, d] ([G, B, d])
    pool_weights: torch.Tensor | None  # [B, T] ([G, B, T]) attention-pooling weights, if any


def _check(
    d_model: int,
    n_heads: int,
    pool: str,
    pool_segments: int = 0,
    segment_drop: float = 0.0,
    segment_dropout: float = 0.0,
) -> None:
    if pool_segments < 0:
        raise ValueError(f"pool_segments must be >= 0, got {pool_segments}")
    if not 0.0 <= segment_drop < 1.0:
        raise ValueError(f"segment_drop must be in [0, 1), got {segment_drop}")
    if not 0.0 <= segment_dropout < 1.0:
        raise ValueError(f"segment_dropout must be in [0, 1), got {segment_dropout}")
    if d_model % n_heads:
        raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
    if d_model % 16:
        raise ValueError(f"d_model {d_model} must be a multiple of 16 (SGP GroupNorm has 16 groups)")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {_POOLS}, got {pool!r}")


def _pool(
    seq: torch.Tensor, mask: torch.Tensor, pool: str, score: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``seq [..., T, d]``, ``mask`` broadcastable to ``[..., T]``; ``score [..., T]`` for attention."""
    mean = masked_mean(seq, mask.expand(seq.shape[:-1]), dim=-2) if pool != "attn" else None
    if score is None:
        assert mean is not None
        return mean, None
    w = masked_softmax(score, mask.expand(score.shape))
    att = (w.unsqueeze(-1) * seq).sum(-2)
    return (att if mean is None else 0.5 * (mean + att)), w


def _segment_term(enc: M3E | StackedM3E, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The pooled token's ordered part: ``segment_proj`` of the means of ``h [..., T, d]`` over
    ``pool_segments`` consecutive parts of the valid steps (minus the clip's mean with
    ``segment_center``; element-wise ``segment_dropout``), dropped per sample with ``segment_drop``
    in training."""
    seg = segment_means(h, mask, enc.pool_segments)
    if enc.segment_center:  # each part's mean minus the clip's mean: the time course only
        parts = seg.unflatten(-1, (enc.pool_segments, -1))
        seg = (parts - masked_mean(h, mask, dim=-2).unsqueeze(-2)).flatten(-2)
    seg = enc.segment_dropout(seg)
    assert enc.segment_proj is not None
    return path_drop(enc.segment_proj(seg), enc.segment_drop, enc.training)


class M3E(nn.Module):
    """One Macro-Micro Motion Encoder: projection, masked self-attention layers, masked SGP blocks."""

    def __init__(
        self,
        in_dim: int,
        *,
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
    ) -> None:
        super().__init__()
        _check(d_model, n_heads, pool, pool_segments, segment_drop, segment_dropout)
        self.pool = pool
        self.pool_segments = pool_segments
        self.segment_drop = float(segment_drop)
        self.in_norm = nn.LayerNorm(in_dim)
        self.in_proj = nn.Linear(in_dim, d_model)
        self.pos = nn.Parameter(torch.zeros(max_len, d_model))
        self.drop = Dropout(dropout)
        self.attn_layers = nn.ModuleList(
            TransformerLayer(d_model, n_heads, mlp_ratio, dropout=dropout) for _ in range(n_attn)
        )
        self.sgp = nn.ModuleList(
            SGPBlock(d_model, sgp_kernel, 1, sgp_k, init_conv_vars=sgp_init_std, masked=True) for _ in range(n_sgp)
        )
        self.norm = nn.LayerNorm(d_model)
        # no bias: a constant added to every step's score leaves the softmax unchanged (and unlearnable)
        self.pool_score = nn.Linear(d_model, 1, bias=False) if "attn" in pool else None
        # "+stats": the pooled token also gets a linear map of the input's mean / std / mean |Δ|
        self.stats_proj = nn.Linear(3 * in_dim, d_model) if pool.endswith("+stats") else None
        # the pooled token also gets a linear map of the output's means over consecutive parts of
        # the clip, in order: a mean (or any pooling above) is the same for every order of the steps
        self.segment_proj = nn.Linear(pool_segments * d_model, d_model) if pool_segments else None
        # segment_center: the means minus the clip's mean (the time course only); segment_dropout:
        # element-wise dropout on them in training (docs/synthetic.md, the pixel path)
        self.segment_center = bool(segment_center)
        self.segment_dropout = Dropout(segment_dropout)
        init_linear_layernorm(self)
        nn.init.trunc_normal_(self.pos, std=0.02, a=-0.04, b=0.04)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None) -> M3EOutput:
        """``x [B, T, D]``, ``mask [B, T]``; ``extra [B, T, d_model]`` is added to the projected input
        (another input stream joining this one in the expert's own width, e.g. face features)."""
        T = x.shape[1]
        if T > self.pos.shape[0]:
            raise ValueError(f"sequence length {T} exceeds M3E max_len {self.pos.shape[0]}")
        m = mask.bool()
        x = torch.where(m.unsqueeze(-1), x, x.new_zeros(()))
        h = self.in_proj(self.in_norm(x)) + self.pos[:T]
        if extra is not None:
            h = h + extra.to(h.dtype)
        h = self.drop(h)
        for layer in self.attn_layers:
            h = layer(h, m)
        if len(self.sgp):
            hc = h.transpose(1, 2)
            mc = m.unsqueeze(1)
            for blk in self.sgp:
                hc, _ = blk(hc, mc)
            h = hc.transpose(1, 2)
        h = torch.where(m.unsqueeze(-1), self.norm(h), h.new_zeros(()))
        score = self.pool_score(h).squeeze(-1) if self.pool_score is not None else None
        pooled, w = _pool(h, m, self.pool, score)
        if self.stats_proj is not None:
            pooled = pooled + self.stats_proj(pooled_stats(x, m))
        if self.segment_proj is not None:
            pooled = pooled + _segment_term(self, h, m)
        return M3EOutput(h, pooled, w)


# ---------------------------------------------------------------------------------------------
# G experts at once. Parameter names equal M3E's; shapes are (G, *M3E shape).


class StackedM3E(nn.Module):
    """G independent M3E experts computed together; ``forward(x [G, B, T, D], mask [B, T])``."""

    def __init__(
        self,
        G: int,
        in_dim: int,
        *,
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
    ) -> None:
        super().__init__()
        _check(d_model, n_heads, pool, pool_segments, segment_drop, segment_dropout)
        self.G = G
        self.in_dim = in_dim
        self.kwargs: dict[str, Any] = {  # one expert's constructor arguments (forward_with's template)
            "d_model": d_model, "n_heads": n_heads, "n_attn": n_attn, "n_sgp": n_sgp, "mlp_ratio": mlp_ratio,
            "sgp_kernel": sgp_kernel, "sgp_k": sgp_k, "sgp_init_std": sgp_init_std, "dropout": dropout,
            "max_len": max_len, "pool": pool, "pool_segments": pool_segments, "segment_drop": segment_drop,
            "segment_dropout": segment_dropout, "segment_center": segment_center,
        }  # fmt: skip
        self.pool = pool
        self.pool_segments = pool_segments
        self.segment_drop = float(segment_drop)
        self.in_norm = StackedLayerNorm(G, in_dim)
        self.in_proj = StackedLinear(G, in_dim, d_model)
        self.pos = nn.Parameter(torch.zeros(G, max_len, d_model))
        nn.init.trunc_normal_(self.pos, std=0.02, a=-0.04, b=0.04)
        self.drop = Dropout(dropout)
        self.attn_layers = nn.ModuleList(
            StackedTransformerLayer(G, d_model, n_heads, mlp_ratio, dropout) for _ in range(n_attn)
        )
        self.sgp = nn.ModuleList(StackedSGP(G, d_model, sgp_kernel, sgp_k, sgp_init_std) for _ in range(n_sgp))
        self.norm = StackedLayerNorm(G, d_model)
        self.pool_score = StackedLinear(G, d_model, 1, bias=False) if "attn" in pool else None
        self.stats_proj = StackedLinear(G, 3 * in_dim, d_model) if pool.endswith("+stats") else None
        self.segment_proj = StackedLinear(G, pool_segments * d_model, d_model) if pool_segments else None
        self.segment_dropout = Dropout(segment_dropout)
        self.segment_center = bool(segment_center)
        for p in self.parameters():  # one leading [G] axis: weight decay judges the per-expert shape
            p.stack_dims = 1  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None) -> M3EOutput:
        """``x [G, B, T, D]`` (padded steps already zero), ``mask [B, T]`` (shared) or ``[G, B, T]``
        (one per expert: B-MoE's per-step region validity) → stacked M3EOutput;
        ``extra [G, B, T, d_model]`` is added to the projected inputs (as in ``M3E``)."""
        _, B, T, _ = x.shape
        if T > self.pos.shape[1]:
            raise ValueError(f"sequence length {T} exceeds M3E max_len {self.pos.shape[1]}")
        m = mask.bool()
        stats = None
        if self.stats_proj is not None:
            stats = self.stats_proj(pooled_stats(x, m.view(-1, B, T).expand(x.shape[0], B, T)))
        return self.encode(self._embed(x, extra), m, stats)

    def _embed(self, x: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The projected input with positions (and ``extra``) added: ``x [G, B, T, D]`` → ``[G, B, T, d]``."""
        h = self.in_proj(self.in_norm(x)) + self.pos[:, None, : x.shape[2]]
        return h if extra is None else h + extra.to(h.dtype)

    def encode(self, h: torch.Tensor, m: torch.Tensor, stats: torch.Tensor | None) -> M3EOutput:
        """Everything after the input projection: ``h [G, B, T, d]`` (projected, positions added),
        ``m`` the bool mask of ``forward``, ``stats [G, B, d]`` the input statistics' term (with
        ``pool="mean+stats"``)."""
        _, B, T, _ = h.shape
        mf = m.to(h.dtype).view(-1, B, T, 1)
        h = self.drop(h)
        for layer in self.attn_layers:
            h = layer(h, m)
        if len(self.sgp):
            h = h * mf
            for blk in self.sgp:
                h = blk(h, m)
        h = self.norm(h) * mf
        score = self.pool_score(h).squeeze(-1) if self.pool_score is not None else None
        mm = m.view(-1, B, T)
        pooled, w = _pool(h, mm, self.pool, score)
        if stats is not None:
            pooled = pooled + stats
        if self.segment_proj is not None:
            pooled = pooled + _segment_term(self, h, mm.expand(h.shape[0], B, T))
        return M3EOutput(h, pooled, w)

    def forward_with(
        self,
        single: M3E,
        x: torch.Tensor,
        mask: torch.Tensor,
        y: torch.Tensor,
        ymask: torch.Tensor,
        extra: torch.Tensor | None = None,
    ) -> tuple[M3EOutput, M3EOutput]:
        """These G experts on ``x [G, B, T, D]`` / ``mask [G, B, T]`` (as ``forward``) and one more
        single ``M3E`` (B-MoE's global encoder) on ``y [B, T, D_y]`` / ``ymask [B, T]`` (padded
        steps zero) → (stacked output, single output). The same function as ``forward`` and
        ``single(y, ymask)`` (``tests/test_bmoe.py``). Each projects its own input; everything after
        the projection (the attention layers, SGP blocks, norm and pooling: all but a few of an
        expert's operations) runs once, as G + 1 stacked experts, instead of twice. Its parameters
        are concatenated each call, a copy of their size: worth it for narrow experts only, where
        the cost is per operation (``bmoe.JOINT_MAX_WIDTH``)."""
        G, _, T, _ = x.shape
        if T > self.pos.shape[1]:
            raise ValueError(f"sequence length {T} exceeds M3E max_len {self.pos.shape[1]}")
        joint = self.__dict__.get("_joint")
        if joint is None:  # parameter-less: functional_call lends it the concatenated parameters
            with torch.device("meta"):
                joint = _Encode(StackedM3E(G + 1, self.in_dim, **self.kwargs))
            self.__dict__["_joint"] = joint  # not a submodule: no parameters, state or device of its own
        own = dict(single.named_parameters())
        params = {f"m.{n}": torch.cat([p, own[n].unsqueeze(0)]) for n, p in self.named_parameters() if n not in _INPUT}
        m, ym = mask.bool(), ymask.bool()
        h = self._embed(x, extra)
        hy = single.in_proj(single.in_norm(y)) + single.pos[:T]
        stats = None
        if self.stats_proj is not None:
            assert single.stats_proj is not None
            stats = torch.cat([self.stats_proj(pooled_stats(x, m)), single.stats_proj(pooled_stats(y, ym))[None]])
        joint.train(self.training)
        out = cast(
            M3EOutput, functional_call(joint, params, (torch.cat([h, hy[None]]), torch.cat([m, ym[None]]), stats))
        )
        w = out.pool_weights
        return (
            M3EOutput(out.seq[:G], out.pooled[:G], None if w is None else w[:G]),
            M3EOutput(out.seq[G], out.pooled[G], None if w is None else w[G]),
        )

    def joins(self, single: nn.Module) -> bool:
        """Whether ``forward_with(single, ...)`` applies: ``single`` is an M3E of these experts' shape
        after the input projection."""
        if not isinstance(single, M3E):
            return False
        own = {n: p for n, p in single.named_parameters() if n not in _INPUT}
        mine = {n: p for n, p in self.named_parameters() if n not in _INPUT}
        return own.keys() == mine.keys() and all(own[n].shape == p.shape[1:] for n, p in mine.items())

    # -- conversion to and from single experts ------------------------------------------------
    @torch.no_grad()
    def load_expert(self, g: int, state: Mapping[str, torch.Tensor]) -> None:
        """Copy a single ``M3E`` state dict into expert slot ``g`` (names and shapes must match)."""
        own = dict(self.named_parameters())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"expert state does not match M3E: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for name, p in own.items():
            src = state[name]
            if tuple(src.shape) != tuple(p.shape[1:]):
                raise ValueError(f"expert parameter {name}: shape {tuple(src.shape)} != {tuple(p.shape[1:])}")
            p[g].copy_(src)

    def expert_state_dict(self, g: int) -> dict[str, torch.Tensor]:
        """Expert ``g`` as a single ``M3E`` state dict."""
        return {name: p.detach()[g].clone() for name, p in self.named_parameters()}


# the parameters before the projection to d_model (and of the input statistics' term): their shapes
# follow the input's width, so a joint run (``StackedM3E.forward_with``) keeps them apart
_INPUT = (
    "in_norm.weight",
    "in_norm.bias",
    "in_proj.weight",
    "in_proj.bias",
    "pos",
    "stats_proj.weight",
    "stats_proj.bias",
)


class _Encode(nn.Module):
    """``StackedM3E.encode`` as a module's forward (for ``functional_call``)."""

    def __init__(self, m: StackedM3E) -> None:
        super().__init__()
        self.m = m

    def forward(self, h: torch.Tensor, mask: torch.Tensor, stats: torch.Tensor | None) -> M3EOutput:
        return self.m.encode(h, mask, stats)


# ---------------------------------------------------------------------------------------------


def _stream_input(
    batch: Mapping[str, torch.Tensor], stream: str, region_index: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    mask = batch["mask"].bool()
    if region_index is None:
        return batch["global"], mask
    x = batch["regions"][:, region_index]
    seen = region_step_mask(batch)[:, region_index]  # the steps where the region is seen
    mask = torch.where(seen.any(-1, keepdim=True), seen, mask)  # invisible: zeros over the clip's steps
    return torch.where(seen[..., None], x, x.new_zeros(())), mask


@register_model(
    "m3e_global",
    presets={
        "tiny": {"d_model": 32, "n_heads": 2, "n_attn": 1, "n_sgp": 1, "max_len": 32, "pool": "attn"},
        "paper": {"d_model": 512, "n_heads": 8, "n_attn": 2, "n_sgp": 2, "max_len": 64},
    },
)
class M3EClassifier(nn.Module):
    """One M3E over one stream (global by default, or ``stream="region:<name>"``) + MLP head."""

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        stream: str = "global",
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
    ) -> None:
        super().__init__()
        self.regions = tuple(regions)
        self.stream = stream
        self.region_index: int | None
        if stream == "global":
            self.region_index, in_dim = None, global_dim
        elif stream.startswith("region:") and stream[7:] in self.regions:
            self.region_index, in_dim = self.regions.index(stream[7:]), region_dim
        else:
            raise ValueError(f"stream must be 'global' or 'region:<name>' with name in {self.regions}, got {stream!r}")
        self.encoder = M3E(
            in_dim,
            d_model=d_model,
            n_heads=n_heads,
            n_attn=n_attn,
            n_sgp=n_sgp,
            mlp_ratio=mlp_ratio,
            sgp_kernel=sgp_kernel,
            sgp_k=sgp_k,
            sgp_init_std=sgp_init_std,
            dropout=dropout,
            max_len=max_len,
            pool=pool,
            pool_segments=pool_segments,
            segment_drop=segment_drop,
            segment_dropout=segment_dropout,
            segment_center=segment_center,
        )
        self.pre_logits = nn.Sequential(nn.Linear(d_model, d_model), nn.GELU(), Dropout(dropout))
        self.heads = ClassifierHeads(in_dim=d_model, num_classes=num_classes, num_body=num_body)
        init_linear_layernorm(self.pre_logits)
        init_linear_layernorm(self.heads)

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, mask = _stream_input(batch, self.stream, self.region_index)
        enc = self.encoder(x, mask)
        # expert_tokens: the M3E output itself, where B-MoE's L_emb applies (loss.emb_on: experts)
        out = {"features": self.pre_logits(enc.pooled), "expert_tokens": enc.pooled.unsqueeze(1)}
        if enc.pool_weights is not None:
            out["saliency"] = enc.pool_weights
        return out

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {**feats, **self.heads(feats["features"])}

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.forward_head(self.forward_features(batch))
