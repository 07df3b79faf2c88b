"""Operations the detectors share: their losses, block-wise NMS over long recordings, segment routing.

``sigmoid_focal_loss`` (RetinaNet) and ``offset_iou`` (IoU and DIoU loss of segments given as
distances from one point, as in ActionFormer / TriDet); ``nms_blockwise`` runs an NMS block by
block along a long recording; ``segment_routing`` averages per-step routing over segments.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["NMS_BLOCK", "nms_blockwise", "offset_iou", "segment_routing", "sigmoid_focal_loss"]


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return (alpha * targets + (1 - alpha) * (1 - targets)) * loss


def offset_iou(pred: torch.Tensor, gt: torch.Tensor, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU and DIoU loss of segments given as (left, right) distances from the same point, ``[N, 2]``."""
    lp, rp, lg, rg = pred[:, 0], pred[:, 1], gt[:, 0], gt[:, 1]
    inter = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = (lp + rp) + (lg + rg) - inter
    iou = inter / union.clamp(min=eps)
    enclose = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    rho = 0.5 * (rp - lp - rg + lg)
    return iou, 1.0 - iou + (rho / enclose.clamp(min=eps)) ** 2


NMS_BLOCK = 1000  # steps of recording per NMS block (about 2-3 minutes at 6-8 steps/s)


def nms_blockwise(
    segs: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    run: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    block: float = NMS_BLOCK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``run`` (an NMS returning kept indices and their scores) block by block along time.

    Each block keeps the results whose centre lies in it, computed with the candidates whose centre
    lies within the longest candidate's length of it (every segment that can overlap one of the
    block's); results are merged best first. Recordings shorter than one block are one call."""
    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device), scores
    centre = segs.mean(1)
    lo, hi = float(centre.min()), float(centre.max())
    if hi - lo < block:
        return run(segs, scores, labels)
    margin = float((segs[:, 1] - segs[:, 0]).max())
    idx_parts, sc_parts = [], []
    a = lo
    while a <= hi:
        core = (centre >= a) & (centre < a + block)
        if bool(core.any()):
            sel = ((centre >= a - margin) & (centre < a + block + margin)).nonzero(as_tuple=True)[0]
            k, sc = run(segs[sel], scores[sel], labels[sel])
            g = sel[k]
            inside = core[g]
            idx_parts.append(g[inside])
            sc_parts.append(sc[inside])
        a += block
    idx, sc = torch.cat(idx_parts), torch.cat(sc_parts)
    order = torch.argsort(sc, descending=True, stable=True)
    return idx[order], sc[order]


def segment_routing(routing: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Mean per-step routing ``[T, R]`` over each segment ``[K, 2]`` (steps) → ``[K, R]``."""
    T = routing.shape[0]
    if len(segments) == 0:
        return routing.new_zeros(0, routing.shape[1])
    cs = F.pad(routing.float().cumsum(0), (0, 0, 1, 0))  # [T + 1, R]
    a = segments[:, 0].floor().clamp(0, T - 1).long()
    b = torch.maximum(segments[:, 1].ceil().clamp(1, T).long(), a + 1)
    return (cs[b] - cs[a]) / (b - a).unsqueeze(-1).to(cs.dtype)
