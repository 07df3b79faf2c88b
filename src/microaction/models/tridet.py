"""TriDet: temporal action detection with a Trident head, checkpoint-compatible with TriDet's code.

``TriDet(num_classes, region_dim, global_dim, ...)``; ``forward(batch)`` on a sequence batch
(``global [B, T, D_g]``, ``mask [B, T]``; ``regions`` ``[B, R, T, D_r]`` for ``stream="concat"``)::

    x [B, D, T] ── backbone.embd (masked conv k=3 + LayerNorm + ReLU) × arch[0]
               ── backbone.stem (SGP blocks, stride 1) × arch[1]          → level 0 (stride 1)
               ── backbone.branch (SGP blocks, max-pool stride 2) × arch[2] → levels 1..L (stride 2^l)
               ── neck (FPN identity: LayerNorm per level)
               ── cls_head   (convs → C logits per step and level)
               ── start_head / end_head (convs on detached features → C boundary logits per step)
               ── reg_head   (convs → 2 × (num_bins + 1) centre-offset logits, × Scale per level, ReLU)

Trident head: the distance from a step to an action's start is a distribution over the
``num_bins + 1`` bins (0 … num_bins level strides) = softmax(start logits of the neighbouring steps
+ centre-offset logits); the offset is its expectation (the same for the end, to the right).

Training (``loss(out, batch)``; targets ``gt_segments [B, N, 2]`` in steps, ``gt_labels [B, N]``,
-1 = padding): every step of every level is assigned, per class, the shortest ground-truth segment
of that class whose centre region (± ``center_sample_radius`` level strides) holds it and whose
largest distance lies in the level's regression range; sigmoid focal loss on the class logits
(positives weighted by IoU^``iou_weight_power``), DIoU loss on the decoded offsets, normalised by
an EMA of the positive count. Inference (``detect(out)``): top scoring (step, class) pairs,
decoded segments, multi-class Soft-NMS (``metrics.detection.soft_nms``).

Parameter names and shapes are TriDet's (``libs/modeling``: ``backbone.embd.0.conv.weight``,
``backbone.embd_norm.0.weight`` [1, C, 1], ``backbone.stem.*`` / ``backbone.branch.*`` = the SGP
block, ``neck.fpn_norms.*``, ``cls_head.head.*.conv`` / ``norm.*`` / ``cls_head.cls_head.conv``,
``start_head.*``, ``end_head.*``, ``reg_head.head.*``, ``reg_head.scale.*.scale`` (scalar),
``reg_head.offset_head.conv``): a TriDet checkpoint of the same configuration loads with
``strict=True`` (``load_tridet_state`` strips DataParallel's ``module.`` prefix).

Where this departs from TriDet (the reasons in docs/models.md): the SGP blocks run masked
(``SGPBlock(masked=True)``: padded steps never reach valid ones, same parameters); the input is
padded inside the model to a multiple of the largest stride; no absolute position embedding (TriDet's
default is off too); labels are assigned per class (TriDet gives each step the single shortest
segment, which drops the longer of two overlapping actions of different classes: multi-label data
such as MMA-52 needs both); the IoU weight of the focal loss is detached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from microaction.data.store import DEFAULT_REGIONS
from microaction.models.detect_ops import NMS_BLOCK, nms_blockwise, offset_iou, segment_routing, sigmoid_focal_loss
from microaction.models.registry import register_model
from microaction.models.sgp import ChannelLayerNorm, SGPBlock

__all__ = [
    "ClsHead",
    "FPNIdentity",
    "MaskedConv1D",
    "RegHead",
    "SGPBackbone",
    "TriDet",
    "load_tridet_state",
]


class MaskedConv1D(nn.Module):
    """A "same" 1-D convolution (stride 1) whose input and output are zero at padded steps."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=bias)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.to(x.dtype)  # [B, 1, T]
        return self.conv(x * m) * m


class Scale(nn.Module):
    """A learnable scalar (TriDet's per-level regression scale)."""

    def __init__(self, init_value: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(init_value, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _conv_stack(input_dim: int, feat_dim: int, num_layers: int, kernel_size: int, with_ln: bool):
    head, norm = nn.ModuleList(), nn.ModuleList()
    for i in range(num_layers - 1):
        head.append(MaskedConv1D(input_dim if i == 0 else feat_dim, feat_dim, kernel_size, bias=not with_ln))
        norm.append(ChannelLayerNorm(feat_dim) if with_ln else nn.Identity())
    return head, norm


class ClsHead(nn.Module):
    """Conv layers then a conv classifier, shared over levels (TriDet's ``ClsHead``)."""

    def __init__(
        self,
        input_dim: int,
        feat_dim: int,
        num_classes: int,
        prior_prob: float = 0.01,
        num_layers: int = 3,
        kernel_size: int = 3,
        with_ln: bool = False,
        detach_feat: bool = False,
    ) -> None:
        super().__init__()
        self.detach_feat = detach_feat
        self.head, self.norm = _conv_stack(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.cls_head = MaskedConv1D(feat_dim, num_classes, kernel_size)
        assert self.cls_head.conv.bias is not None
        nn.init.constant_(self.cls_head.conv.bias, -math.log((1 - prior_prob) / prior_prob))

    def forward(self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for x, m in zip(feats, masks):
            h = x.detach() if self.detach_feat else x
            for conv, norm in zip(self.head, self.norm):
                h = F.relu(norm(conv(h, m)))
            out.append(self.cls_head(h, m))
        return out


class RegHead(nn.Module):
    """Conv layers then the centre-offset logits ``2 × (num_bins + 1)``, scaled per level, ReLU."""

    def __init__(
        self,
        input_dim: int,
        feat_dim: int,
        fpn_levels: int,
        num_layers: int = 3,
        kernel_size: int = 3,
        with_ln: bool = False,
        num_bins: int = 16,
    ) -> None:
        super().__init__()
        self.head, self.norm = _conv_stack(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.scale = nn.ModuleList(Scale() for _ in range(fpn_levels))
        self.offset_head = MaskedConv1D(feat_dim, 2 * (num_bins + 1), kernel_size)

    def forward(self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for lvl, (x, m) in enumerate(zip(feats, masks)):
            h = x
            for conv, norm in zip(self.head, self.norm):
                h = F.relu(norm(conv(h, m)))
            out.append(F.relu(self.scale[lvl](self.offset_head(h, m))))
        return out


class SGPBackbone(nn.Module):
    """Embedding convs, stride-1 SGP stem, SGP branch with downsampling: one feature map per level."""

    def __init__(
        self,
        n_in: int,
        n_embd: int,
        sgp_mlp_dim: int,
        n_embd_ks: int = 3,
        arch: Sequence[int] = (2, 2, 5),
        scale_factor: int = 2,
        with_ln: bool = True,
        path_pdrop: float = 0.0,
        downsample_type: str = "max",
        sgp_win_size: Sequence[int] = (1,) * 6,
        k: float = 1.5,
        init_conv_vars: float = 0.1,
    ) -> None:
        super().__init__()
        if len(arch) != 3 or len(sgp_win_size) != arch[2] + 1:
            raise ValueError(f"arch must have 3 entries and sgp_win_size arch[2] + 1, got {arch}, {sgp_win_size}")
        self.embd = nn.ModuleList(
            MaskedConv1D(n_in if i == 0 else n_embd, n_embd, n_embd_ks, bias=not with_ln) for i in range(arch[0])
        )
        self.embd_norm = nn.ModuleList(ChannelLayerNorm(n_embd) if with_ln else nn.Identity() for _ in range(arch[0]))
        common: dict[str, Any] = {"k": k, "n_hidden": sgp_mlp_dim, "init_conv_vars": init_conv_vars, "masked": True}
        self.stem = nn.ModuleList(SGPBlock(n_embd, 1, 1, **common) for _ in range(arch[1]))
        self.branch = nn.ModuleList(
            SGPBlock(
                n_embd, sgp_win_size[1 + i], scale_factor, path_pdrop=path_pdrop, downsample_type=downsample_type,
                **common,
            )
            for i in range(arch[2])
        )  # fmt: skip

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        for conv, norm in zip(self.embd, self.embd_norm):
            x = F.relu(norm(conv(x, mask))) * mask.to(x.dtype)
        for blk in self.stem:
            x, mask = blk(x, mask)
        feats, masks = [x], [mask]
        for blk in self.branch:
            x, mask = blk(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks


class FPNIdentity(nn.Module):
    """TriDet's ``identity`` neck: a LayerNorm per level."""

    def __init__(self, levels: int, channels: int, with_ln: bool = True) -> None:
        super().__init__()
        self.fpn_norms = nn.ModuleList(ChannelLayerNorm(channels) if with_ln else nn.Identity() for _ in range(levels))

    def forward(self, feats: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [norm(x) * m.to(x.dtype) for norm, x, m in zip(self.fpn_norms, feats, masks)]


def load_tridet_state(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True) -> Any:
    """Load a TriDet checkpoint's ``state_dict`` (or ``state_dict_ema``), with or without ``module.``."""
    return model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=strict)


class DetectParams(NamedTuple):
    """Inference settings (TriDet's ``test_cfg``)."""

    pre_nms_thresh: float
    pre_nms_topk: int
    nms_method: str  # soft | hard | none
    iou_threshold: float
    nms_sigma: float
    min_score: float
    max_seg_num: int
    duration_thresh: float  # in steps


_TINY = {
    "embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "sgp_mlp_dim": 64, "backbone_arch": (1, 1, 3),
    "regression_range": ((0, 4), (4, 8), (8, 16), (16, 10000)), "num_bins": 8, "head_num_layers": 2,
    "init_loss_norm": 20.0, "pre_nms_topk": 500, "max_seg_num": 100,
}  # fmt: skip
# TriDet's THUMOS14 configuration (configs/thumos_i3d.yaml: k 5, 768-wide SGP MLP, 16 bins)
_PAPER = {
    "embd_dim": 512, "fpn_dim": 512, "head_dim": 512, "sgp_mlp_dim": 768, "backbone_arch": (2, 2, 5),
    "regression_range": ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)), "num_bins": 16, "k": 5.0,
    "iou_weight_power": 0.2, "path_pdrop": 0.1, "init_loss_norm": 100.0,
}  # fmt: skip


@register_model("tridet", presets={"tiny": dict(_TINY), "paper": dict(_PAPER)})
class TriDet(nn.Module):
    """TriDet: SGP backbone with downsampling, FPN, class + Trident boundary heads (detector)."""

    task = "detection"

    def __init__(
        self,
        *,
        num_classes: int,
        num_body: int = 0,
        regions: Sequence[str] = DEFAULT_REGIONS,
        region_dim: int,
        global_dim: int,
        stream: str = "global",
        embd_dim: int = 512,
        embd_kernel_size: int = 3,
        embd_with_ln: bool = True,
        fpn_dim: int = 512,
        fpn_with_ln: bool = True,
        head_dim: int = 512,
        sgp_mlp_dim: int = 768,
        backbone_arch: Sequence[int] = (2, 2, 5),
        scale_factor: int = 2,
        n_sgp_win_size: int = 1,
        k: float = 1.5,
        init_conv_vars: float = 0.1,
        downsample_type: str = "max",
        path_pdrop: float = 0.0,
        head_num_layers: int = 3,
        head_kernel_size: int = 3,
        boundary_kernel_size: int = 3,
        head_with_ln: bool = True,
        num_bins: int = 16,
        regression_range: Sequence[Sequence[float]] = ((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)),
        center_sample_radius: float = 1.5,
        iou_weight_power: float = 0.2,
        prior_prob: float = 0.01,
        init_loss_norm: float = 100.0,
        input_noise: float = 0.0,
        pre_nms_thresh: float = 0.001,
        pre_nms_topk: int = 2000,
        nms_method: str = "soft",
        iou_threshold: float = 0.1,
        nms_sigma: float = 0.5,
        min_score: float = 0.001,
        max_seg_num: int = 200,
        duration_thresh: float = 0.05,
    ) -> None:
        super().__init__()
        if stream not in ("global", "concat"):
            raise ValueError(f"stream must be 'global' or 'concat', got {stream!r}")
        if nms_method not in ("soft", "hard", "none"):
            raise ValueError(f"nms_method must be soft, hard or none, got {nms_method!r}")
        levels = backbone_arch[2] + 1
        if len(regression_range) != levels:
            raise ValueError(
                f"regression_range needs {levels} levels (backbone_arch[2] + 1), got {len(regression_range)}"
            )
        if embd_dim != fpn_dim:
            raise ValueError("the identity neck needs fpn_dim == embd_dim")
        self.num_classes = num_classes
        self.regions = tuple(regions)
        self.stream = stream
        self.num_bins = num_bins
        self.strides = [scale_factor**i for i in range(levels)]
        self.regression_range = [tuple(float(v) for v in r) for r in regression_range]
        self.center_sample_radius = center_sample_radius
        self.iou_weight_power = iou_weight_power
        self.input_noise = input_noise
        self.loss_normalizer = float(init_loss_norm)
        self.test = DetectParams(
            pre_nms_thresh, pre_nms_topk, nms_method, iou_threshold, nms_sigma, min_score, max_seg_num, duration_thresh
        )
        n_in = self.input_dim(region_dim, global_dim)
        self.build_input(region_dim=region_dim, global_dim=global_dim)
        self.backbone = SGPBackbone(
            n_in, embd_dim, sgp_mlp_dim, embd_kernel_size, backbone_arch, scale_factor, embd_with_ln, path_pdrop,
            downsample_type, [n_sgp_win_size] * levels, k, init_conv_vars,
        )  # fmt: skip
        self.neck = FPNIdentity(levels, fpn_dim, fpn_with_ln)
        head: dict[str, Any] = {"prior_prob": prior_prob, "with_ln": head_with_ln, "num_layers": head_num_layers}
        self.cls_head = ClsHead(fpn_dim, head_dim, num_classes, kernel_size=head_kernel_size, **head)
        self.start_head = ClsHead(
            fpn_dim, head_dim, num_classes, kernel_size=boundary_kernel_size, detach_feat=True, **head
        )
        self.end_head = ClsHead(
            fpn_dim, head_dim, num_classes, kernel_size=boundary_kernel_size, detach_feat=True, **head
        )
        self.reg_head = RegHead(fpn_dim, head_dim, levels, head_num_layers, head_kernel_size, head_with_ln, num_bins)

    # -- input (overridden by bmoe_tridet) ----------------------------------------------------
    def input_dim(self, region_dim: int, global_dim: int) -> int:
        return global_dim + (len(self.regions) * region_dim if self.stream == "concat" else 0)

    def build_input(self, *, region_dim: int, global_dim: int) -> None:
        """Modules of the input stage (none for TriDet itself)."""

    def input_features(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``[B, T, D]`` features into the backbone (padded steps zero) and extra outputs."""
        mask = batch["mask"].bool()
        x = batch["global"]
        if self.stream == "concat":
            reg = batch["regions"]
            valid = batch["region_valid"].bool()
            valid = valid[:, :, None] if valid.dim() == 2 else valid  # [B, R, 1|T]
            reg = torch.where((valid & mask[:, None, :]).unsqueeze(-1), reg, reg.new_zeros(()))
            x = torch.cat([x, reg.permute(0, 2, 1, 3).flatten(2)], -1)
        return torch.where(mask.unsqueeze(-1), x, x.new_zeros(())), {}

    # -- forward --------------------------------------------------------------------------------
    @property
    def max_stride(self) -> int:
        return self.strides[-1]

    def forward_features(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        mask = batch["mask"].bool()
        x, extra = self.input_features(batch)
        T = x.shape[1]
        Tp = max(self.max_stride, -(-T // self.max_stride) * self.max_stride)
        x = F.pad(x, (0, 0, 0, Tp - T)).transpose(1, 2)
        m = F.pad(mask, (0, Tp - T)).unsqueeze(1)
        if self.training and self.input_noise > 0:
            x = x + torch.randn_like(x) * self.input_noise * m.to(x.dtype)
        feats, masks = self.backbone(x, m)
        feats = self.neck(feats, masks)
        return {"fpn_feats": feats, "fpn_masks": masks, "length": T, "valid_steps": mask.sum(1), **extra}

    def forward_head(self, feats: dict[str, Any]) -> dict[str, Any]:
        f, m, T = feats["fpn_feats"], feats["fpn_masks"], feats["length"]

        def cat(xs: list[torch.Tensor]) -> torch.Tensor:  # levels [B, K, T_l] -> [B, ΣT_l, K]
            return torch.cat([x.transpose(1, 2) for x in xs], 1)

        cls = cat(self.cls_head(f, m))
        out = {
            "cls_logits": cls,
            "start_logits": cat(self.start_head(f, m)),
            "end_logits": cat(self.end_head(f, m)),
            "offset_logits": cat(self.reg_head(f, m)).unflatten(-1, (2, self.num_bins + 1)),
            "point_mask": torch.cat([x[:, 0] for x in m], 1),
            "points": self.points([x.shape[-1] for x in f], cls.device),
            "scores": torch.sigmoid(cls[:, :T]) * feats["fpn_masks"][0][:, 0, :T, None],  # [B, T, C] level 0
        }
        for k, v in feats.items():
            if k not in ("fpn_feats", "fpn_masks", "length"):
                out[k] = v
        return out

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        return self.forward_head(self.forward_features(batch))

    def points(self, lengths: Sequence[int], device: torch.device) -> torch.Tensor:
        """``[P, 6]``: position (steps), regression range min / max, stride, level index, level length."""
        rows = []
        for lvl, (n, s) in enumerate(zip(lengths, self.strides)):
            i = torch.arange(n, device=device, dtype=torch.float32)
            lo, hi = self.regression_range[lvl]
            cols = [
                i * s,
                torch.full_like(i, lo),
                torch.full_like(i, hi),
                torch.full_like(i, s),
                i,
                torch.full_like(i, n),
            ]
            rows.append(torch.stack(cols, 1))
        return torch.cat(rows, 0)

    # -- the Trident head ---------------------------------------------------------------------
    def decode_offsets(
        self, out: Mapping[str, torch.Tensor], b: torch.Tensor, p: torch.Tensor, c: torch.Tensor
    ) -> torch.Tensor:
        """Expected (left, right) distances in level strides ``[N, 2]`` for (sample, point, class)."""
        nb = self.num_bins
        pts = out["points"]
        local, n = pts[p, 4].long(), pts[p, 5].long()
        j = torch.arange(nb + 1, device=p.device)
        li = local[:, None] - nb + j  # left neighbours: distance nb - j
        ri = local[:, None] + j  # right neighbours: distance j
        lok, rok = li >= 0, ri < n[:, None]
        gl = (p[:, None] - nb + j).clamp(0, pts.shape[0] - 1)
        gr = (p[:, None] + j).clamp(0, pts.shape[0] - 1)
        sl = out["start_logits"][b[:, None], gl, c[:, None]] * lok  # TriDet pads the borders with 0
        sr = out["end_logits"][b[:, None], gr, c[:, None]] * rok
        off = out["offset_logits"][b, p]  # [N, 2, nb + 1]
        left = torch.softmax(sl + off[:, 0], -1) @ torch.arange(nb, -1, -1, device=p.device, dtype=sl.dtype)
        right = torch.softmax(sr + off[:, 1], -1) @ j.to(sr.dtype)
        return torch.stack([left, right], -1)

    # -- training -------------------------------------------------------------------------------
    @torch.no_grad()
    def assign(
        self, points: torch.Tensor, segs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-class targets of one sample: ``cls [P, C]`` (0/1) and ``reg [P, C, 2]`` (in level strides)."""
        P, C = points.shape[0], self.num_classes
        cls = points.new_zeros(P, C)
        reg = points.new_zeros(P, C, 2)
        keep = labels >= 0
        segs, labels = segs[keep], labels[keep]
        if len(segs) == 0:
            return cls, reg
        t, lo, hi, s = points[:, 0:1], points[:, 1:2], points[:, 2:3], points[:, 3:4]
        left, right = t - segs[None, :, 0], segs[None, :, 1] - t  # [P, N]
        centre = 0.5 * (segs[:, 0] + segs[:, 1])[None]
        rad = s * self.center_sample_radius
        inside = (
            (t - torch.maximum(centre - rad, segs[None, :, 0]) > 0) & (torch.minimum(centre + rad, segs[None, :, 1]) - t > 0)
        )  # fmt: skip
        far = torch.maximum(left, right)
        ok = inside & (far >= lo) & (far <= hi)
        lens = (segs[:, 1] - segs[:, 0])[None].expand(P, -1).masked_fill(~ok, float("inf"))
        for c in labels.unique().tolist():
            lc = lens.masked_fill((labels != c)[None], float("inf"))
            best, idx = lc.min(1)
            pos = torch.isfinite(best)
            cls[pos, c] = 1.0
            ar = torch.arange(P, device=points.device)
            reg[pos, c] = torch.stack([left[ar, idx], right[ar, idx]], -1)[pos] / s[pos]
        return cls, reg

    def loss(self, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{"loss", "cls", "reg"}`` from ``batch["gt_segments"]`` [B, N, 2] (steps), ``gt_labels`` [B, N]."""
        pts, valid = out["points"], out["point_mask"]
        targets = [self.assign(pts, s.float(), lab) for s, lab in zip(batch["gt_segments"], batch["gt_labels"])]
        gt_cls = torch.stack([t[0] for t in targets])  # [B, P, C]
        gt_reg = torch.stack([t[1] for t in targets])  # [B, P, C, 2]
        pos = (gt_cls > 0) & valid[..., None]
        b, p, c = pos.nonzero(as_tuple=True)
        num_pos = int(pos.any(-1).sum())
        self.loss_normalizer = 0.9 * self.loss_normalizer + 0.1 * max(num_pos, 1)
        cls_loss = sigmoid_focal_loss(out["cls_logits"][valid].float(), gt_cls[valid])
        if len(b):
            pred = self.decode_offsets(out, b, p, c).float()
            iou, diou = offset_iou(pred, gt_reg[b, p, c])
            weight = torch.ones_like(gt_cls)
            weight[b, p, c] = iou.detach().clamp_min(0) ** self.iou_weight_power
            cls_loss = cls_loss * weight[valid]
            reg_loss = diou.sum() / self.loss_normalizer
        else:
            reg_loss = out["offset_logits"].sum() * 0.0
        cls_loss = cls_loss.sum() / self.loss_normalizer
        return {"loss": cls_loss + reg_loss, "cls": cls_loss.detach(), "reg": reg_loss.detach()}

    # -- inference ------------------------------------------------------------------------------
    @torch.no_grad()
    def detect(self, out: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Per sample: ``segments [K, 2]`` (steps), ``scores [K]``, ``labels [K]`` (+ ``routing [K, R]``
        for models with per-step routing), best first, after multi-class (Soft-)NMS.

        ``pre_nms_topk`` and ``max_seg_num`` are per ``NMS_BLOCK`` steps of recording, and NMS runs
        block by block (``detect_ops.nms_blockwise``), so an hour-long recording costs an hour's worth of
        short ones instead of one quadratic NMS over all its candidates."""
        from microaction.metrics.detection import nms, soft_nms

        cfg = self.test
        pts, C = out["points"], self.num_classes
        results = []
        for bi in range(out["cls_logits"].shape[0]):
            n_valid = float(out["valid_steps"][bi])
            blocks = max(1, math.ceil(n_valid / NMS_BLOCK))
            prob = (torch.sigmoid(out["cls_logits"][bi].float()) * out["point_mask"][bi, :, None]).flatten()
            idx = (prob > cfg.pre_nms_thresh).nonzero(as_tuple=True)[0]
            sc, top = prob[idx].topk(min(len(idx), cfg.pre_nms_topk * blocks))
            idx = idx[top]
            p, c = idx // C, idx % C
            off = self.decode_offsets(out, torch.full_like(p, bi), p, c)
            t, s = pts[p, 0], pts[p, 3]
            segs = torch.stack([t - off[:, 0] * s, t + off[:, 1] * s], -1)
            # inside the recording: step i covers [i - 0.5, i + 0.5]
            segs = segs.clamp(-0.5, n_valid - 0.5)
            keep = (segs[:, 1] - segs[:, 0]) > cfg.duration_thresh
            segs, sc, c = segs[keep], sc[keep], c[keep]

            def run(sg: torch.Tensor, sco: torch.Tensor, lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                if cfg.nms_method == "soft":
                    k, new = soft_nms(sg, sco, lab, iou_threshold=cfg.iou_threshold, sigma=cfg.nms_sigma,
                                      min_score=cfg.min_score, max_num=cfg.max_seg_num)  # fmt: skip
                    return k, new.to(sco.dtype)
                if cfg.nms_method == "hard":
                    k = nms(sg, sco, lab, iou_threshold=cfg.iou_threshold, max_num=cfg.max_seg_num)
                    return k, sco[k]
                k = torch.arange(min(len(sco), cfg.max_seg_num))
                return k, sco[k]

            k, sc = nms_blockwise(segs, sc, c, run)
            res = {"segments": segs[k], "scores": sc, "labels": c[k]}
            if "routing" in out:
                res["routing"] = segment_routing(out["routing"][bi], res["segments"])
            results.append(res)
        return results
