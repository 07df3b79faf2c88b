"""The stages of a run and their losses: the plain one-stage recipe, and B-MoE's two stages.

Two-stage recipe (``stages.pretrain_epochs`` > 0, models with ``stage1_streams``: ``bmoe``,
``bmoe_uniform``, ``bmoe_concat``):

- stage ``pretrain``: one ``m3e_global`` classifier per stream (each region, and the global
  stream) with the encoder sizes of the B-MoE experts (``model.stage1_kwargs(stream)``), trained
  together in one loop — they share no parameter, so one AdamW over all of them is the same as
  one per stream (up to the joint gradient clipping). Each stream has its own loss (CE + L_emb);
  a clip whose region is invisible gives no loss to that region's classifier. Validation scores
  the mean of the streams' probabilities. The weights go to ``pretrain.safetensors``.
- stage ``main``: the B-MoE model, its region experts and global encoder loaded from stage 1
  (``BMoE.load_experts``), trained whole; with ``stages.freeze_experts_epochs`` = N the experts
  (and the router, unless ``stages.router_trains_frozen``) get no update in the first N epochs
  (their gradients are dropped, so DDP needs no special case). The experts are their own AdamW
  group (``stages.expert_lr_scale``, ``stages.expert_warmup_epochs`` from the epoch they unfreeze).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from microaction.engine.config import ExperimentConfig, check_routing_supervision
from microaction.engine.yamlconfig import ConfigError
from microaction.models.common import region_step_mask
from microaction.taxonomy import Taxonomy

if TYPE_CHECKING:
    from microaction.engine.experiment import Experiment, Stage

__all__ = ["Stage1Ensemble", "make_loss", "plan_stages"]


class MultiLabelLoss:
    """BCE on the action head for multi-label taxonomies (MPII-GI), plus the model's
    ``aux_losses`` weighted by ``aux_weights``; single-label runs use ``models.losses.LossComputer``."""

    def __init__(self, *, aux_weights: dict[str, float] | None = None) -> None:
        self.aux_weights = dict(aux_weights or {})

    def __call__(
        self, outputs: dict[str, Any], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        action = nn.functional.binary_cross_entropy_with_logits(outputs["action"].float(), batch["labels"].float())
        total = action
        parts = {"action": float(action.detach())}
        for k, v in (outputs.get("aux_losses") or {}).items():
            w = self.aux_weights.get(k, 1.0)
            if w:
                total = total + w * v
                parts[k] = float(v.detach())
        return total, parts


def routing_targets(taxonomy: Taxonomy, regions: Sequence[str], routing_weight: float = 1.0) -> np.ndarray:
    """``[num_body, R]``: for each body group, 1 on the regions it moves (the label set's
    ``body_regions``), so routing can be supervised towards them."""
    check_routing_supervision(routing_weight, taxonomy)
    t = np.zeros((taxonomy.num_body, len(regions)), dtype=np.float32)
    for b in range(taxonomy.num_body):
        for r in taxonomy.regions_of_body(b):
            if r in regions:
                t[b, list(regions).index(r)] = 1.0
    if not t.any():
        raise ConfigError(f"loss.routing_weight: no body group of {taxonomy.name} maps to the regions {list(regions)}")
    return t


def default_aux_weights(model_name: str) -> dict[str, float]:
    """The weights a model declares for its own ``aux_losses`` (``aux_loss_weights``, e.g.
    Micro-DualNet's paper λ ``{"mac": 0.1}``); ``loss.aux_weights`` overrides them."""
    from microaction.models import model_entry

    return dict(getattr(model_entry(model_name).cls, "aux_loss_weights", {}))


def make_loss(
    cfg: ExperimentConfig,
    taxonomy: Taxonomy,
    train_labels: np.ndarray,
    *,
    features_dim: int | None = None,
    regions: Sequence[str] = (),
) -> Any:
    """The loss object ``loss(outputs, batch) -> (total, parts)`` for ``cfg.loss``: the models'
    ``LossComputer`` (an ``nn.Module``; its L_emb projection trains with the model), or
    ``MultiLabelLoss`` (BCE) for multi-label taxonomies."""
    lc = cfg.loss
    aux_weights = {**default_aux_weights(cfg.model.name), **lc.aux_weights}
    if taxonomy.multi_label:
        if lc.emb_weight > 0 or lc.class_weights != "none" or lc.logit_adjust_tau:
            raise ConfigError("multi-label taxonomies support only the plain loss (BCE)")
        return MultiLabelLoss(aux_weights=aux_weights)
    from microaction.models.losses import LossComputer, load_label_embeddings

    emb = None
    if lc.emb_weight > 0:
        # loading the text model (when its cache is cold) draws from the global RNG; keep that
        # from shifting the seeded initialisation of everything after it
        with torch.random.fork_rng(devices=[]):
            emb = load_label_embeddings(lc.label_embeddings, list(taxonomy.names))
    counts = list(taxonomy.train_counts)
    if not counts or len(counts) != taxonomy.num_classes:  # a label set without counts: count the training clips
        counts = np.bincount(train_labels[train_labels >= 0], minlength=taxonomy.num_classes).tolist()
    return LossComputer.from_taxonomy(
        taxonomy,
        lambda_body=lc.body_weight,
        label_smoothing=lc.label_smoothing,
        class_weights=lc.class_weights,
        cb_beta=lc.cb_beta,
        logit_adjust_tau=lc.logit_adjust_tau,
        train_counts=counts,
        emb_weight=lc.emb_weight,
        label_embeddings=emb,
        emb_distance=lc.emb_distance,
        emb_on=lc.emb_on,
        feature_dim=features_dim,
        router_entropy_weight=lc.router_entropy_weight,
        load_balance_weight=lc.load_balance_weight,
        # stage-1 stream models have no router: their losses are built without regions
        routing_weight=lc.routing_weight if regions else 0.0,
        routing_targets=routing_targets(taxonomy, regions, lc.routing_weight)
        if lc.routing_weight > 0 and regions
        else None,
        aux_weights=aux_weights,
        aux_default_weight=lc.aux_default_weight,
    )


class Stage1Ensemble(nn.Module):
    """Stage 1 of the B-MoE recipe: one ``m3e_global`` classifier per stream, side by side.

    ``forward(batch)`` returns ``streams`` (each stream's own outputs) and, for validation,
    ``action`` / ``body``: the log of the mean of the streams' probabilities, over the streams that
    see the clip (a region stream whose region is invisible in it does not vote; the global stream
    always does), so a softmax of them is that mean.
    """

    def __init__(self, stream_kwargs: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        from microaction.models import create_model

        self.streams = list(stream_kwargs)
        self.stream_kwargs = stream_kwargs
        self.models = nn.ModuleDict({_key(s): create_model("m3e_global", **kw) for s, kw in stream_kwargs.items()})

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        outs = {s: self.models[_key(s)](batch) for s in self.streams}
        result: dict[str, Any] = {"streams": outs}
        seen = torch.stack([self._sees(s, batch) for s in self.streams], 0).to(torch.float32)  # [S, B]
        result["action"] = _mean_probs([o["action"] for o in outs.values()], seen)
        if all("body" in o for o in outs.values()):
            result["body"] = _mean_probs([o["body"] for o in outs.values()], seen)
        return result

    def _sees(self, stream: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B]`` bool: the clips in which ``stream`` has input (its region is seen at some step)."""
        m = self.models[_key(stream)]
        index = getattr(m, "region_index", None)
        if index is None:
            return torch.ones_like(batch["region_valid"][:, 0], dtype=torch.bool)
        return region_step_mask(batch)[:, index].any(-1)


def _mean_probs(logits: list[torch.Tensor], seen: torch.Tensor) -> torch.Tensor:
    """log of the ``seen``-weighted mean over streams of softmax(logits) (``seen [S, B]``)."""
    p = torch.stack([torch.softmax(x.float(), -1) for x in logits], 0)  # [S, B, C]
    w = seen / seen.sum(0, keepdim=True).clamp_min(1.0)
    return (w.unsqueeze(-1) * p).sum(0).clamp_min(1e-12).log()


def _key(stream: str) -> str:
    return stream.replace(":", "__")


class Stage1Loss(nn.Module):
    """Sum over streams of each stream's loss; a region stream ignores clips where it is invisible."""

    def __init__(self, losses: dict[str, Any], regions: list[str]) -> None:
        super().__init__()
        self.regions = regions
        self.streams = list(losses)
        self.losses = nn.ModuleDict({_key(s): fn for s, fn in losses.items() if isinstance(fn, nn.Module)})
        self._plain = {s: fn for s, fn in losses.items() if not isinstance(fn, nn.Module)}

    def forward(self, outputs: dict[str, Any], batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        total: torch.Tensor | None = None
        parts: dict[str, float] = {}
        for stream, out in outputs["streams"].items():
            b = batch
            if stream.startswith("region:"):
                seen = region_step_mask(batch)[:, self.regions.index(stream[7:])].any(-1)  # seen at some step
                if not bool(seen.any()):
                    continue
                b = dict(batch)
                b["action"] = torch.where(seen, batch["action"], torch.full_like(batch["action"], -1))
                b["body"] = torch.where(seen, batch["body"], torch.full_like(batch["body"], -1))
            fn = self.losses[_key(stream)] if _key(stream) in self.losses else self._plain[stream]
            loss, _ = fn(out, b)
            total = loss if total is None else total + loss
            parts[stream] = float(loss.detach())
        if total is None:  # cannot happen: the global stream always contributes
            total = torch.zeros((), requires_grad=True)
        return total, parts


def plan_stages(exp: Experiment) -> list[Stage]:
    """The stages of ``exp``'s config, in order. Models and losses are made by factories that the
    training loop calls right after seeding, so their initial weights depend on the seed only."""
    from microaction.engine.experiment import Stage, model_kwargs
    from microaction.models import create_model

    cfg, tax = exp.cfg, exp.taxonomy
    labels = exp.train_ds.action
    kwargs = model_kwargs(cfg, tax, exp.store)
    meta = {**exp.base_meta(), "model": cfg.model.name, "model_kwargs": kwargs}
    pre_path = exp.run_dir / "pretrain.safetensors"
    need_dim = cfg.loss.emb_weight > 0

    def build_main() -> nn.Module:
        return create_model(cfg.model.name, **kwargs)

    def main_loss(model: nn.Module) -> Any:
        return make_loss(
            cfg, tax, labels, features_dim=features_dim(model, exp) if need_dim else None, regions=kwargs["regions"]
        )

    if cfg.stages.pretrain_epochs <= 0:
        return [Stage("main", cfg.run.epochs, cfg.optim.lr, build_main, main_loss, meta)]

    probe = build_main()
    if not hasattr(probe, "stage1_streams"):
        raise ConfigError(f"stages.pretrain_epochs > 0 needs a two-stage model (bmoe*), not {cfg.model.name!r}")
    streams: list[str] = probe.stage1_streams()  # type: ignore[operator]
    stream_kwargs = {s: {**probe.stage1_kwargs(s), **cfg.stages.pretrain_kwargs} for s in streams}  # type: ignore[operator]
    del probe
    regions = list(exp.store.manifest.regions)
    stage1_meta = {**exp.base_meta(), "model": "stage1", "streams": stream_kwargs}

    def build_stage1() -> nn.Module:
        return Stage1Ensemble(stream_kwargs)

    def stage1_loss(model: nn.Module) -> Any:
        ens: Stage1Ensemble = model  # type: ignore[assignment]
        losses = {
            s: make_loss(cfg, tax, labels, features_dim=features_dim(ens.models[_key(s)], exp) if need_dim else None)
            for s in stream_kwargs
        }
        if cfg.loss.emb_on == "experts":  # Fig. 4: one projection of the M3E outputs for every stream
            shared = next(iter(losses.values())).proj
            for fn in losses.values():
                fn.proj = shared
        return Stage1Loss(losses, regions)

    def save_stage1(model: nn.Module) -> None:
        from microaction.engine.checkpoint import save_weights

        save_weights(pre_path, model.state_dict(), stage1_meta)

    def build_stage2() -> nn.Module:
        from microaction.engine.checkpoint import load_weights

        model = build_main()
        state, _ = load_weights(pre_path)
        by_stream = {}
        for s in stream_kwargs:
            prefix = f"models.{_key(s)}."
            by_stream[s] = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        model.load_experts(  # type: ignore[operator]
            {s[len("region:") :]: sd for s, sd in by_stream.items() if s.startswith("region:")},
            global_state=by_stream.get("global"),
        )
        return model

    def experts(model: nn.Module) -> list[nn.Parameter]:
        return list(model.expert_parameters())  # type: ignore[operator]

    def frozen(model: nn.Module) -> list[nn.Parameter]:
        """What stays fixed in the first epochs: the experts, and the router with them (a router
        trained on frozen experts settles on whichever expert is best before they adapt)."""
        if cfg.stages.router_trains_frozen:
            return experts(model)
        return experts(model) + list(model.router_parameters())  # type: ignore[operator]

    lr1 = cfg.stages.pretrain_lr or cfg.optim.lr
    return [
        Stage("pretrain", cfg.stages.pretrain_epochs, lr1, build_stage1, stage1_loss, stage1_meta, on_done=save_stage1),
        Stage(
            "main",
            cfg.run.epochs,
            cfg.optim.lr,
            build_stage2,
            main_loss,
            meta,
            freeze=frozen,
            freeze_epochs=cfg.stages.freeze_experts_epochs,
            experts=experts,
            expert_lr_scale=cfg.stages.expert_lr_scale,
            expert_warmup_epochs=cfg.stages.expert_warmup_epochs,
        ),
    ]


@torch.no_grad()
def features_dim(model: nn.Module, exp: Experiment) -> int:
    """Width of a model's pooled ``features`` output (for the L_emb projection), from one training
    clip (a real batch carries whatever the model needs: face crops too)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in exp.train_ds.__getitems__([0]).items()}
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(batch)
    model.train(was)
    key = "expert_tokens" if exp.cfg.loss.emb_on == "experts" else "features"
    if key not in out:
        raise ConfigError(f"loss.emb_weight > 0 (emb_on {exp.cfg.loss.emb_on}) needs a model that outputs {key!r}")
    return int(out[key].shape[-1])
