"""Sliding-window detection: a clip classifier over windows, scores merged into segments, NMS.

The baseline every user tries first. ``SlidingWindow(classifier="m3e_global", window=16, stride=4)``
wraps any registered clip model (``classifier.*`` are its parameters, so a trained clip run's
weights load into it: ``engine.detection.sliding_window_from_run``)::

    sequence [B, T] ── windows of ``window`` steps every ``stride`` steps (the last one flush with the end)
                    ── clip classifier per window (a window's regions are visible if seen at any of its steps)
                    ──▶ window_logits [B, W, C]
    per-step scores [B, T, C] = mean over the windows covering the step of sigmoid (or softmax) scores
    segments: for each class and each fraction in ``thresholds`` of the class's best step score in
    the recording (at least ``min_score``), every run of steps scoring above it is a candidate
    (score = its mean step score; a multi-threshold grouping as in SSN's TAG proposals);
    multi-class NMS keeps the best.

Multi-label by construction: each class has its own runs, overlapping runs of different classes
are separate detections. Trained as a detector (``loss``) each window is a multi-label example:
class c is positive when a ground-truth segment of c covers at least ``label_fraction`` of the
window or lies in it for at least ``label_fraction`` of its own length (binary cross-entropy); a
clip run's classifier (trained with softmax cross-entropy) is used with ``score="softmax"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from microaction.data.store import DEFAULT_REGIONS
from microaction.models.detect_ops import NMS_BLOCK, nms_blockwise
from microaction.models.registry import create_model, register_model

__all__ = ["SlidingWindow", "runs_to_segments"]

_TINY = {"classifier": "m3e_global", "classifier_preset": "tiny", "window": 16, "stride": 4}
_PAPER = {"classifier": "bmoe", "classifier_preset": "paper", "window": 16, "stride": 4}


def runs_to_segments(scores: torch.Tensor, thresholds: Sequence[float] | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Runs of steps at or above each threshold, per class: ``scores [T, C]``, ``thresholds`` floats
    or ``[K, C]`` (one per class) → (segments ``[N, 2]`` in steps, step a..b as ``[a - 0.5, b + 0.5]``;
    mean scores ``[N]``; classes ``[N]``)."""
    sc = scores.float().t()  # [C, T]
    cs = F.pad(sc.cumsum(1), (1, 0))
    segs, means, labels = [], [], []
    for th in thresholds:
        th_c = th[:, None] if isinstance(th, torch.Tensor) else th
        on = F.pad((sc >= th_c).to(torch.int8), (1, 1))
        d = on[:, 1:] - on[:, :-1]  # +1 at a run's first step, -1 after its last
        c0, a = (d == 1).nonzero(as_tuple=True)
        _, b = (d == -1).nonzero(as_tuple=True)
        if len(a) == 0:
            continue
        segs.append(torch.stack([a.float() - 0.5, b.float() - 0.5], -1))
        means.append((cs[c0, b] - cs[c0, a]) / (b - a).float())
        labels.append(c0)
    if not segs:
        return scores.new_zeros(0, 2), scores.new_zeros(0), torch.zeros(0, dtype=torch.long, device=scores.device)
    return torch.cat(segs), torch.cat(means), torch.cat(labels)


@register_model("sliding_window", presets={"tiny": dict(_TINY), "paper": dict(_PAPER)})
class SlidingWindow(nn.Module):
    """A clip classifier over sliding windows, step scores merged into segments (detector)."""

    task = "detection"

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        classifier: str = "m3e_global",
        classifier_preset: str | None = None,
        classifier_kwargs: dict[str, Any] | None = None,
        window: int = 16,
        stride: int = 4,
        score: str = "sigmoid",
        label_fraction: float = 0.5,
        thresholds: Sequence[float] = (0.2, 0.4, 0.6, 0.8),
        min_score: float = 0.01,
        iou_threshold: float = 0.5,
        max_seg_num: int = 200,
        pre_nms_topk: int = 2000,
        chunk: int = 512,
    ) -> None:
        super().__init__()
        if window < 1 or stride < 1:
            raise ValueError(f"window and stride must be >= 1, got {window}, {stride}")
        if score not in ("sigmoid", "softmax"):
            raise ValueError(f"score must be sigmoid or softmax, got {score!r}")
        self.num_classes = num_classes
        self.regions = tuple(regions)
        self.window, self.stride, self.score = window, stride, score
        self.label_fraction = label_fraction
        self.thresholds = tuple(float(t) for t in thresholds)
        self.min_score = float(min_score)
        self.iou_threshold, self.max_seg_num, self.pre_nms_topk, self.chunk = (
            iou_threshold,
            max_seg_num,
            pre_nms_topk,
            chunk,
        )
        self.classifier = create_model(
            classifier,
            preset=classifier_preset,
            num_classes=num_classes,
            num_body=num_body,
            regions=self.regions,
            region_dim=region_dim,
            global_dim=global_dim,
            **(classifier_kwargs or {}),
        )

    def starts(self, T: int) -> list[int]:
        """Window starts on a fixed grid (``0, stride, 2·stride, …`` below ``T``), the same whatever
        the padding; windows running past a sample's end see fewer valid steps (masked)."""
        return list(range(0, max(T, 1), self.stride))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        regions, glob, mask = batch["regions"], batch["global"], batch["mask"].bool()
        B, R, T, _ = regions.shape
        st = torch.tensor(self.starts(T), device=mask.device)
        L = int(st[-1]) + self.window
        if L > T:  # the last windows run past the end: pad (masked)
            regions, glob = F.pad(regions, (0, 0, 0, L - T)), F.pad(glob, (0, 0, 0, L - T))
            mask = F.pad(mask, (0, L - T))
        valid = batch["region_valid"].bool()
        valid = valid[:, :, None].expand(B, R, T) if valid.dim() == 2 else valid
        valid = F.pad(valid, (0, L - T))
        idx = st[:, None] + torch.arange(self.window, device=mask.device)  # [W, window]
        W = len(st)
        wmask = mask[:, idx]  # [B, W, window]
        wvalid = (valid[:, :, idx] & wmask[:, None]).any(-1)  # [B, R, W]
        # windows with at least half a window of valid steps (or the first one of a short sample)
        n_valid = wmask.sum(-1)
        live = ((n_valid >= max(1, self.window // 2)) | ((st == 0)[None] & (n_valid > 0))).flatten()
        logits = regions.new_zeros(B * W, self.num_classes)
        flat = live.nonzero(as_tuple=True)[0]
        for k in range(0, len(flat), self.chunk):
            sel = flat[k : k + self.chunk]
            bi, wi = sel // W, sel % W
            win = {
                "regions": regions[
                    bi[:, None, None], torch.arange(R, device=sel.device)[None, :, None], idx[wi][:, None, :]
                ],
                "global": glob[bi[:, None], idx[wi]],
                "mask": wmask[bi, wi],
                "region_valid": wvalid[bi, :, wi],
            }
            logits[sel] = self.classifier(win)["action"].to(logits.dtype)
        logits = logits.view(B, W, -1)
        wm = live.view(B, W)
        prob = torch.sigmoid(logits) if self.score == "sigmoid" else torch.softmax(logits, -1)
        prob = prob * wm[..., None]
        cover = torch.zeros(B, L, device=mask.device, dtype=prob.dtype)
        acc = torch.zeros(B, L, self.num_classes, device=mask.device, dtype=prob.dtype)
        wcount = (wmask & wm[..., None]).to(prob.dtype)  # [B, W, window]
        flat_idx = idx.flatten()
        cover.index_add_(1, flat_idx, wcount.flatten(1))
        acc.index_add_(1, flat_idx, (prob[:, :, None, :] * wcount[..., None]).flatten(1, 2))
        scores = acc / cover.clamp_min(1.0)[..., None]
        return {
            "window_logits": logits,
            "window_mask": wm,
            "window_starts": st,
            "scores": (scores * mask[..., None])[:, :T],
            "valid_steps": batch["mask"].bool().sum(1),
        }

    def loss(self, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        st = out["window_starts"].float()
        a, b = st, st + self.window  # windows [W] as step ranges [a, b)
        tgt = torch.zeros_like(out["window_logits"])
        for bi, (segs, labels) in enumerate(zip(batch["gt_segments"], batch["gt_labels"])):
            keep = labels >= 0
            segs, labels = segs[keep].float(), labels[keep]
            if len(labels) == 0:
                continue
            inter = (
                torch.minimum(b[:, None], segs[None, :, 1]) - torch.maximum(a[:, None], segs[None, :, 0])
            ).clamp_min(0)
            frac = torch.maximum(inter / self.window, inter / (segs[:, 1] - segs[:, 0]).clamp_min(1e-6)[None])
            pos = frac >= self.label_fraction  # [W, N]
            tgt[bi] = (pos.float() @ F.one_hot(labels, self.num_classes).float()).clamp_max(1.0)
        wm = out["window_mask"]
        if self.score == "softmax":  # a clip classifier: cross-entropy on windows with one label
            one = wm & (tgt.sum(-1) > 0)
            ce = F.cross_entropy(out["window_logits"][one], tgt[one].argmax(-1)) if one.any() else tgt.sum() * 0.0
            return {"loss": ce, "cls": ce.detach()}
        bce = F.binary_cross_entropy_with_logits(out["window_logits"][wm], tgt[wm])
        return {"loss": bce, "cls": bce.detach()}

    @torch.no_grad()
    def detect(self, out: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        from microaction.metrics.detection import nms

        def run(sg: torch.Tensor, sc: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            k = nms(sg, sc, lab, iou_threshold=self.iou_threshold, max_num=self.max_seg_num)
            return k, sc[k]

        results = []
        for sc, m in zip(out["scores"], out["valid_steps"]):
            blocks = max(1, math.ceil(float(m) / NMS_BLOCK))  # caps per NMS block, as tridet's
            # thresholds relative to each class's best step in the recording (never below min_score)
            top_c = sc.max(0).values.clamp_min(self.min_score)  # [C]
            ths = torch.tensor(self.thresholds, dtype=sc.dtype, device=sc.device)[:, None] * top_c[None]
            segs, means, labels = runs_to_segments(sc, ths.clamp_min(self.min_score))
            top = means.argsort(descending=True)[: self.pre_nms_topk * blocks]
            segs, means, labels = segs[top], means[top], labels[top]
            k, kept = nms_blockwise(segs, means, labels, run)
            results.append({"segments": segs[k], "scores": kept, "labels": labels[k]})
        return results
