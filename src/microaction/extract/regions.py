"""Region clips: clip-stable boxes per region, masked crops, resized to an encoder's input.

A region's box in one frame surrounds its visible landmarks (``REGION_LANDMARKS``) with a margin
(``REGION_MARGIN``; at least ``MIN_SIDE`` × the person's torso scale), united with the box of its
mask pixels when the parser gives region masks. The clip box is the union over the frames where
the region is visible, made square (crops keep their aspect; what falls outside the image is
filled). The global stream uses the whole-person box. A region seen in fewer than
``min_visible_fraction`` of the frames is invalid (``region_valid`` False): its box falls back to
the person box and its features are zeros.

Masking: pixels outside the region's mask (its ``MASK_PARENT`` mask region, slightly dilated) are
set to ``FILL``, the ImageNet mean colour, which normalises to zero for pretrained backbones and
carries no gradient or motion for the hand-crafted descriptors.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from microaction.extract.parsers.base import VISIBLE, ParseResult
from microaction.extract.skeleton import LANDMARKS, MASK_PARENT, REGION_LANDMARKS, REGION_MARGIN

__all__ = ["FILL", "GLOBAL", "RegionLayout", "crop_clips", "crop_frame", "region_layout"]

FILL = (124, 116, 104)  # ImageNet mean, RGB
GLOBAL = "global"
MIN_SIDE = 0.35  # smallest box side, × torso scale
PERSON_MARGIN = 0.1
_LS, _RS, _LH, _RH = (LANDMARKS.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))


@dataclass
class RegionLayout:
    regions: tuple[str, ...]
    boxes: np.ndarray  # [R+1, 4] float32 square xyxy boxes in parse pixels, whole person last
    valid: np.ndarray  # [R] bool
    visible: np.ndarray  # [T, R] bool: region seen in that frame

    def scaled(self, factor: float) -> np.ndarray:
        """Boxes in another pixel unit (e.g. native video pixels)."""
        return (self.boxes * factor).astype(np.float32)


def _torso_scale(kp: np.ndarray, thr: float) -> float:
    """Clip median of the shoulder-centre to hip-centre distance (fallbacks: shoulder width, extent)."""
    c = kp[..., 2] >= thr
    vals: list[float] = []
    for t in range(len(kp)):
        if c[t, [_LS, _RS]].all():
            sh = (kp[t, _LS, :2] + kp[t, _RS, :2]) / 2
            if c[t, [_LH, _RH]].all():
                vals.append(float(np.linalg.norm(sh - (kp[t, _LH, :2] + kp[t, _RH, :2]) / 2)))
            else:
                vals.append(1.4 * float(np.linalg.norm(kp[t, _LS, :2] - kp[t, _RS, :2])))
        elif c[t].sum() >= 2:
            p = kp[t, c[t], :2]
            vals.append(0.4 * float((p.max(0) - p.min(0)).max()))
    return float(np.median(vals)) if vals else 0.0


def _robust_range(counts: np.ndarray, q: float = 0.005) -> tuple[int, int]:
    """First and last index holding the central ``1 - 2q`` of the mass of a histogram."""
    c = np.cumsum(counts)
    total = c[-1]
    return int(np.searchsorted(c, q * total, side="right")), int(np.searchsorted(c, (1 - q) * total, side="left"))


def _mask_box(mask: np.ndarray, sx: float, sy: float) -> np.ndarray | None:
    """Box of a mask's pixels (0.5 % trimmed on each side against stray pixels), image units."""
    cols = np.count_nonzero(mask, axis=0)
    if cols.sum() < 4:
        return None
    rows = np.count_nonzero(mask, axis=1)
    x0, x1 = _robust_range(cols)
    y0, y1 = _robust_range(rows)
    return np.array([x0 / sx, y0 / sy, (x1 + 1) / sx, (y1 + 1) / sy], dtype=np.float32)


def _union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], dtype=np.float32)


def _square(box: np.ndarray) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1], 2.0) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def _expand(box: np.ndarray, margin: float, min_side: float) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = max(box[2] - box[0], min_side), max(box[3] - box[1], min_side)
    pad = margin * max(w, h)
    return np.array([cx - w / 2 - pad, cy - h / 2 - pad, cx + w / 2 + pad, cy + h / 2 + pad], dtype=np.float32)


def region_layout(
    parse: ParseResult,
    regions: tuple[str, ...],
    *,
    min_visible_fraction: float = 0.2,
    thr: float = VISIBLE,
) -> RegionLayout:
    """Clip-stable boxes and validity of ``regions`` (plus the whole person) for a parsed clip."""
    kp = parse.keypoints
    T = parse.num_frames
    H, W = parse.image_size
    conf = kp[..., 2] >= thr
    has_kp = bool(conf.any())
    scale = _torso_scale(kp, thr) or 0.25 * max(H, W)
    min_side = MIN_SIDE * scale
    masks = parse.region_masks
    msx = msy = 1.0
    if masks is not None:
        msx, msy = masks.shape[2] / W, masks.shape[1] / H
    R = len(regions)
    boxes = np.zeros((R + 1, 4), dtype=np.float32)
    visible = np.zeros((T, R), dtype=bool)
    valid = np.zeros(R, dtype=bool)

    # whole person: every visible landmark, and the person mask
    person: np.ndarray | None = None
    if has_kp:
        p = kp[conf][:, :2]
        person = np.array([*p.min(0), *p.max(0)], dtype=np.float32)
    pm = parse.person_mask if parse.person_mask is not None else (None if masks is None else (masks > 0))
    if pm is not None:
        for t in range(T):
            person = _union(person, _mask_box(pm[t], msx, msy))
    if person is None:
        person_box = np.array([0, 0, W, H], dtype=np.float32)
    else:
        person_box = _expand(person, PERSON_MARGIN, min_side)
    boxes[R] = _square(person_box)

    for ri, r in enumerate(regions):
        ids = np.asarray(REGION_LANDMARKS[r])
        need = max(1, int(np.ceil(0.5 * len(ids))))
        parent = MASK_PARENT.get(r)
        label = parse.mask_regions.index(parent) + 1 if (masks is not None and parent in parse.mask_regions) else 0
        use_mask_box = bool(label) and _region_mask_name(r) is not None
        clip_box: np.ndarray | None = None
        for t in range(T):
            if has_kp:
                seen = conf[t, ids]
                vis = int(seen.sum()) >= need
                box = None
                if vis:
                    p = kp[t, ids[seen], :2]
                    box = _expand(
                        np.array([*p.min(0), *p.max(0)], dtype=np.float32), REGION_MARGIN.get(r, 0.15), min_side
                    )
            else:
                vis, box = False, None
            if label and (vis or not has_kp):
                m = masks[t] == label  # type: ignore[index]
                if use_mask_box:
                    mb = _mask_box(m, msx, msy)
                    if not has_kp and mb is not None and m.mean() > 1e-3:
                        vis = True
                    box = _union(box, mb) if vis else box
            visible[t, ri] = vis
            if vis:
                clip_box = _union(clip_box, box)
        valid[ri] = T > 0 and visible[:, ri].mean() >= min_visible_fraction and clip_box is not None
        boxes[ri] = _square(clip_box) if (valid[ri] and clip_box is not None) else boxes[R]
    return RegionLayout(tuple(regions), boxes, valid, visible)


def _region_mask_name(r: str) -> str | None:
    """The mask region a region *is* (head, body/torso, ...), None for entities inside one (face, hands)."""
    return {"torso": "body", "lower_body": "lower_limbs"}.get(
        r, r if r in ("head", "body", "upper_limbs", "lower_limbs") else None
    )


def crop_frame(frame: np.ndarray, box: np.ndarray, size: int, fill: tuple[int, int, int] = FILL) -> np.ndarray:
    """Crop a square ``box`` (xyxy, may leave the image) and resize to ``size``², area-averaged."""
    H, W = frame.shape[:2]
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[:] = fill
    side = float(box[2] - box[0])
    s = size / max(side, 1e-6)
    ix0, iy0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    ix1, iy1 = min(W, int(np.ceil(box[2]))), min(H, int(np.ceil(box[3])))
    if ix1 <= ix0 or iy1 <= iy0:
        return out
    ox0, oy0 = max(0, round((ix0 - box[0]) * s)), max(0, round((iy0 - box[1]) * s))
    ox1, oy1 = min(size, round((ix1 - box[0]) * s)), min(size, round((iy1 - box[1]) * s))
    if ox1 <= ox0 or oy1 <= oy0:
        return out
    sub = frame[iy0:iy1, ix0:ix1]
    interp = cv2.INTER_AREA if (ox1 - ox0) < sub.shape[1] else cv2.INTER_LINEAR
    out[oy0:oy1, ox0:ox1] = cv2.resize(sub, (ox1 - ox0, oy1 - oy0), interpolation=interp)
    return out


def _crop_mask(mask: np.ndarray, box: np.ndarray, size: int, sx: float, sy: float) -> np.ndarray:
    """Binary mask (at mask resolution) cropped to ``box`` (image pixels) -> ``[size, size]`` bool."""
    s_img = size / max(float(box[2] - box[0]), 1e-6)
    M = np.array([[s_img / sx, 0, -box[0] * s_img], [0, s_img / sy, -box[1] * s_img]], dtype=np.float32)
    m = cv2.warpAffine(mask.astype(np.uint8), M, (size, size), flags=cv2.INTER_NEAREST, borderValue=(0,))
    k = max(1, size // 24)
    return cv2.dilate(m, np.ones((2 * k + 1, 2 * k + 1), np.uint8)) > 0


def crop_clips(
    frames: np.ndarray,
    parse: ParseResult,
    layout: RegionLayout,
    size: int,
    *,
    masked: bool = True,
    fill: tuple[int, int, int] = FILL,
) -> dict[str, np.ndarray]:
    """Region clips and the global clip: ``{name: [T, size, size, 3] uint8}`` (regions, then ``GLOBAL``)."""
    T, H, W = frames.shape[:3]
    masks = parse.region_masks
    msx = msy = 1.0
    if masks is not None:
        msx, msy = masks.shape[2] / W, masks.shape[1] / H
    elif parse.person_mask is not None:
        msx, msy = parse.person_mask.shape[2] / W, parse.person_mask.shape[1] / H
    names = [*layout.regions, GLOBAL]
    out = {n: np.empty((T, size, size, 3), dtype=np.uint8) for n in names}
    fill_arr = np.array(fill, dtype=np.uint8)
    pyramid: dict[tuple[int, int], np.ndarray] = {}  # (level, t) -> frame downscaled 2**level times

    def source(t: int, level: int) -> np.ndarray:
        if level == 0:
            return frames[t]
        key = (level, t)
        if key not in pyramid:
            pyramid[key] = cv2.pyrDown(source(t, level - 1))
        return pyramid[key]

    for i, n in enumerate(names):
        box = layout.boxes[i]
        # crop big boxes from a downscaled frame (cheaper, and area-averaged all the same)
        level = max(0, int(np.floor(np.log2(max(float(box[2] - box[0]), 1.0) / size))))
        level = min(level, int(np.floor(np.log2(max(min(H, W), 1) / 16))) if min(H, W) >= 32 else 0)
        label = 0
        if n != GLOBAL and masks is not None and MASK_PARENT.get(n) in parse.mask_regions:
            label = parse.mask_regions.index(MASK_PARENT[n]) + 1
        for t in range(T):
            src = source(t, level)
            f = src.shape[1] / W  # exact scale of this level (pyrDown rounds odd sizes up)
            crop = crop_frame(src, box * np.float32(f), size, fill)
            if masked:
                m = None
                if n == GLOBAL:
                    pm = parse.person_mask if parse.person_mask is not None else (None if masks is None else masks > 0)
                    if pm is not None and pm[t].any():
                        m = _crop_mask(pm[t] > 0, box, size, msx, msy)
                elif label:
                    lm = masks[t] == label  # type: ignore[index]
                    if lm.any():
                        m = _crop_mask(lm, box, size, msx, msy)
                if m is not None:
                    crop[~m] = fill_arr
            out[n][t] = crop
    return out
