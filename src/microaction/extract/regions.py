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

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from microaction.extract.parsers.base import VISIBLE, ParseResult
from microaction.skeleton import LANDMARKS, MASK_PARENT, REGION_LANDMARKS, REGION_MARGIN

__all__ = [
    "FILL",
    "GLOBAL",
    "RegionLayout",
    "crop_clips",
    "crop_frame",
    "landmark_counts",
    "region_layout",
    "region_report",
    "unseen_lines",
]

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
    track: np.ndarray | None = None  # [R+1, T, 4] per-frame boxes following the person (None: ``boxes``)

    def scaled(self, factor: float) -> np.ndarray:
        """Boxes in another pixel unit (e.g. native video pixels)."""
        return (self.boxes * factor).astype(np.float32)

    def box(self, i: int, t: int) -> np.ndarray:
        """Box of region ``i`` (``R``: the person) in frame ``t``."""
        return self.boxes[i] if self.track is None else self.track[i, t]

    def take(self, idx: np.ndarray) -> RegionLayout:
        """The layout of a subset of the frames (the clip boxes and validity unchanged)."""
        track = None if self.track is None else self.track[:, idx]
        return RegionLayout(self.regions, self.boxes, self.valid, self.visible[idx], track)

    def frame_boxes(self) -> np.ndarray:
        """``[R+1, T, 4]`` per-frame boxes (the clip boxes repeated when they do not move)."""
        if self.track is not None:
            return self.track
        return np.repeat(self.boxes[:, None], len(self.visible), axis=1)


def _torso_scale(kp: np.ndarray, thr: float) -> float:
    """Clip median of the shoulder-centre to hip-centre distance (fallbacks: 1.4 × shoulder width,
    0.4 × the landmarks' extent)."""
    vals = torso_lengths(kp, thr)
    vals = vals[np.isfinite(vals)]
    return float(np.median(vals)) if len(vals) else 0.0


def torso_lengths(kp: np.ndarray, thr: float) -> np.ndarray:
    """``[T]`` per frame, what ``_torso_scale`` takes the median of (NaN where nothing tells)."""
    c = kp[..., 2] >= thr
    xy = kp[..., :2]
    sh_ok = c[:, _LS] & c[:, _RS]
    hip_ok = sh_ok & c[:, _LH] & c[:, _RH]
    sh = (xy[:, _LS] + xy[:, _RS]) / 2
    torso = np.linalg.norm(sh - (xy[:, _LH] + xy[:, _RH]) / 2, axis=-1)
    width = 1.4 * np.linalg.norm(xy[:, _LS] - xy[:, _RS], axis=-1)
    lo = np.where(c[..., None], xy, np.inf).min(1)
    hi = np.where(c[..., None], xy, -np.inf).max(1)
    extent = 0.4 * (hi - lo).max(-1)
    return np.where(hip_ok, torso, np.where(sh_ok, width, np.where(c.sum(1) >= 2, extent, np.nan)))


def _mask_boxes(masks: np.ndarray, sx: float, sy: float, q: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame boxes of boolean masks ``[T, h, w]`` in image units, 0.5 % of the pixels trimmed
    on each side against strays -> (boxes ``[T, 4]``, area fraction ``[T]``)."""
    cols = np.count_nonzero(masks, axis=1).astype(np.float64)  # [T, w]
    rows = np.count_nonzero(masks, axis=2).astype(np.float64)  # [T, h]
    total = cols.sum(1)

    def rng(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = np.cumsum(counts, axis=1)
        first = np.argmax(c > (q * total)[:, None], axis=1)
        last = np.argmax(c >= ((1 - q) * total)[:, None], axis=1)
        return first, last

    x0, x1 = rng(cols)
    y0, y1 = rng(rows)
    boxes = np.stack([x0 / sx, y0 / sy, (x1 + 1) / sx, (y1 + 1) / sy], 1).astype(np.float32)
    boxes[total < 4] = np.nan
    return boxes, total / (masks.shape[1] * masks.shape[2])


def _landmark_boxes(kp: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Per-frame box of the seen landmarks ``[T, K, 3]`` -> ``[T, 4]`` (NaN where none is seen)."""
    xy = kp[..., :2]
    lo = np.where(seen[..., None], xy, np.inf).min(1)
    hi = np.where(seen[..., None], xy, -np.inf).max(1)
    out = np.concatenate([lo, hi], 1).astype(np.float32)
    out[~seen.any(1)] = np.nan
    return out


def _expand(box: np.ndarray, margin: float, min_side: float) -> np.ndarray:
    """Boxes ``[..., 4]`` grown to at least ``min_side`` and padded by ``margin`` × the longer side."""
    cx, cy = (box[..., 0] + box[..., 2]) / 2, (box[..., 1] + box[..., 3]) / 2
    w = np.maximum(box[..., 2] - box[..., 0], min_side)
    h = np.maximum(box[..., 3] - box[..., 1], min_side)
    pad = margin * np.maximum(w, h)
    return np.stack([cx - w / 2 - pad, cy - h / 2 - pad, cx + w / 2 + pad, cy + h / 2 + pad], -1).astype(np.float32)


def _union_all(boxes: np.ndarray) -> np.ndarray | None:
    """Union of the finite boxes ``[N, 4]`` (None when there is none)."""
    ok = np.isfinite(boxes).all(-1)
    if not ok.any():
        return None
    b = boxes[ok]
    return np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()], dtype=np.float32)


def _square(box: np.ndarray) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = max(box[2] - box[0], box[3] - box[1], 2.0) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], dtype=np.float32)


def _follow(per_frame: np.ndarray, clip_box: np.ndarray, window: int) -> np.ndarray:
    """Boxes that follow a region over time: per frame, the union of its boxes ``[T, 4]`` (NaN:
    not seen) over the ``window`` frames around it, made square and smoothed (a moving average
    of centre and side over half a window); frames with nothing seen nearby take ``clip_box``."""
    from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

    T = len(per_frame)
    ok = np.isfinite(per_frame).all(1)
    lo = np.where(ok[:, None], per_frame[:, :2], np.inf)
    hi = np.where(ok[:, None], per_frame[:, 2:], -np.inf)
    lo = minimum_filter1d(lo, size=window, axis=0, mode="nearest")
    hi = maximum_filter1d(hi, size=window, axis=0, mode="nearest")
    box = np.concatenate([lo, hi], 1)
    box[~np.isfinite(box).all(1)] = clip_box
    c = (box[:, :2] + box[:, 2:]) / 2
    half = np.maximum(np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]), 2.0) / 2
    k = max(1, window // 2)
    c = uniform_filter1d(c, size=k, axis=0, mode="nearest")
    half = uniform_filter1d(half, size=k, mode="nearest")
    out = np.concatenate([c - half[:, None], c + half[:, None]], 1).astype(np.float32)
    assert out.shape == (T, 4)
    return out


def step_validity(
    layout: RegionLayout, times: np.ndarray, steps: np.ndarray, min_fraction: float, half: float | None = None
) -> np.ndarray:
    """Per-step region validity ``[R, len(steps)]``: the region is valid for the clip and seen in
    at least ``min_fraction`` of the frames within ``half`` a step of the step's time (the nearest
    frame when none is; default: half the steps' spacing)."""
    R = len(layout.regions)
    out = np.zeros((R, len(steps)), dtype=bool)
    if len(times) == 0 or len(steps) == 0:
        return out
    if half is None:
        half = float(np.median(np.diff(steps))) / 2 if len(steps) > 1 else float(times[-1] - times[0]) / 2 + 1e-6
    lo = np.searchsorted(times, steps - half, side="left")
    hi = np.searchsorted(times, steps + half, side="right")
    near = np.clip(np.searchsorted(times, steps), 0, len(times) - 1)
    cum = np.concatenate([np.zeros((1, R)), np.cumsum(layout.visible, axis=0)])
    for j in range(len(steps)):
        a, b = int(lo[j]), int(hi[j])
        frac = (cum[b] - cum[a]) / (b - a) if b > a else layout.visible[near[j]].astype(float)
        out[:, j] = frac >= min_fraction
    return out & layout.valid[:, None]


def region_layout(
    parse: ParseResult,
    regions: tuple[str, ...],
    *,
    min_visible_fraction: float = 0.2,
    thr: float = VISIBLE,
    window: int | None = None,
) -> RegionLayout:
    """Clip-stable boxes and validity of ``regions`` (plus the whole person) for a parsed clip;
    with ``window`` (frames) shorter than the clip, also boxes that follow the person over time
    (``RegionLayout.track``: per frame, the union over the window around it, smoothed)."""
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
    parts = [_landmark_boxes(kp, conf)]
    pm = parse.person_mask if parse.person_mask is not None else (None if masks is None else (masks > 0))
    if pm is not None:
        pmsx, pmsy = pm.shape[2] / W, pm.shape[1] / H
        parts.append(_mask_boxes(pm > 0, pmsx, pmsy)[0])
    person = _union_all(np.concatenate(parts))
    person_box = np.array([0, 0, W, H], np.float32) if person is None else _expand(person, PERSON_MARGIN, min_side)
    boxes[R] = _square(person_box)
    follow = window is not None and 0 < window < T
    track = np.zeros((R + 1, T, 4), np.float32) if follow else None
    if track is not None:
        stacked = np.stack(parts)  # [P, T, 4]
        seen = np.isfinite(stacked).all(-1)
        lo = np.where(seen[..., None], stacked[..., :2], np.inf).min(0)
        hi = np.where(seen[..., None], stacked[..., 2:], -np.inf).max(0)
        per = np.concatenate([lo, hi], 1)
        per[~seen.any(0)] = np.nan
        per[seen.any(0)] = _expand(per[seen.any(0)], PERSON_MARGIN, min_side)
        track[R] = _follow(per, boxes[R], window)  # type: ignore[arg-type]

    provided = parse.info.get("provided")  # [33] bool: landmarks the keypoint source has
    mask_boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for ri, r in enumerate(regions):
        ids = np.asarray(REGION_LANDMARKS[r])
        # half of the region's landmarks; of those the source has at all when it says (a COCO-17
        # head is its nose, eyes and ears: 5 of the 11 MediaPipe head landmarks)
        have = len(ids) if provided is None else int(provided[ids].sum())
        need = max(1, int(np.ceil(0.5 * have)))
        seen = conf[:, ids]
        vis = seen.sum(1) >= need  # [T]
        box = _expand(
            _torso_down(_landmark_boxes(kp[:, ids], seen), kp, conf, ids, scale, H),
            REGION_MARGIN.get(r, 0.15),
            min_side,
        )
        box[~vis] = np.nan
        parent = MASK_PARENT.get(r)
        if masks is not None and parent in parse.mask_regions and _region_mask_name(r) is not None:
            label = parse.mask_regions.index(parent) + 1
            if label not in mask_boxes:
                mask_boxes[label] = _mask_boxes(masks == label, msx, msy)
            mb, area = mask_boxes[label]
            if not has_kp:  # segmentation only: a region is seen where its mask is
                vis = area > 1e-3
                box = mb.copy()
            else:  # the mask widens the landmark box (hair, clothes) where the region is seen
                both = vis & np.isfinite(mb).all(1)
                box[both] = np.concatenate(
                    [np.minimum(box[both, :2], mb[both, :2]), np.maximum(box[both, 2:], mb[both, 2:])], 1
                )
            box[~vis] = np.nan
        visible[:, ri] = vis
        clip_box = _union_all(box)
        valid[ri] = T > 0 and vis.mean() >= min_visible_fraction and clip_box is not None
        boxes[ri] = _square(clip_box) if (valid[ri] and clip_box is not None) else boxes[R]
        if track is not None:
            track[ri] = _follow(box, boxes[ri], window) if valid[ri] else track[R]  # type: ignore[arg-type]
    return RegionLayout(tuple(regions), boxes, valid, visible, track)


def _torso_down(box: np.ndarray, kp: np.ndarray, conf: np.ndarray, ids: np.ndarray, scale: float, H: int) -> np.ndarray:
    """Upper-body framing (press conferences, video calls: hips out of frame): a torso region
    seen by both shoulders and neither hip reaches one torso length (``scale``) below the
    shoulders, within the image, instead of being a thin band along the shoulder line."""
    if not {_LS, _RS, _LH, _RH} <= set(ids.tolist()):
        return box
    up = conf[:, _LS] & conf[:, _RS] & ~conf[:, _LH] & ~conf[:, _RH]
    if up.any():
        box = box.copy()
        below = np.minimum((kp[up, _LS, 1] + kp[up, _RS, 1]) / 2 + scale, H)
        box[up, 3] = np.maximum(box[up, 3], below)
    return box


def _region_mask_name(r: str) -> str | None:
    """The mask region a region *is* (head, body/torso, ...), None for entities inside one (face, hands)."""
    return {"torso": "body", "lower_body": "lower_limbs"}.get(
        r, r if r in ("head", "body", "upper_limbs", "lower_limbs") else None
    )


def _level(side: float, size: int, H: int, W: int) -> int:
    """Pyramid level to crop a box of ``side`` pixels to ``size`` from (halving while it stays larger)."""
    level = max(0, int(np.floor(np.log2(max(side, 1.0) / size))))
    return min(level, int(np.floor(np.log2(max(min(H, W), 1) / 16))) if min(H, W) >= 32 else 0)


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
    frames: np.ndarray | Sequence[np.ndarray],
    parse: ParseResult,
    layout: RegionLayout,
    size: int,
    *,
    masked: bool = True,
    fill: tuple[int, int, int] = FILL,
) -> dict[str, np.ndarray]:
    """Region clips and the global clip: ``{name: [T, size, size, 3] uint8}`` (regions, then
    ``GLOBAL``), from ``frames`` ``[T, H, W, 3]`` (or a list of ``[H, W, 3]`` frames)."""
    T = len(frames)
    H, W = frames[0].shape[:2] if T else (1, 1)
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
        # a loop, not recursion: a function that calls itself through its closure is a reference
        # cycle, which kept every chunk's frames alive until the cyclic collector ran
        img = frames[t]
        for lv in range(1, level + 1):
            key = (lv, t)
            if key not in pyramid:
                pyramid[key] = cv2.pyrDown(img)
            img = pyramid[key]
        return img

    for i, n in enumerate(names):
        # crop big boxes from a downscaled frame (cheaper, and area-averaged all the same): the
        # level is set by the clip box, or by the frame's box when boxes follow the person (a box
        # smoothed over seconds, so a recording's chunks crop as one pass would)
        sides = [float(layout.box(i, t)[2] - layout.box(i, t)[0]) for t in range(T)] if layout.track is not None else []
        level0 = _level(float(layout.boxes[i][2] - layout.boxes[i][0]), size, H, W)
        label = 0
        if n != GLOBAL and masks is not None and MASK_PARENT.get(n) in parse.mask_regions:
            label = parse.mask_regions.index(MASK_PARENT[n]) + 1
        for t in range(T):
            box = layout.box(i, t)
            level = _level(sides[t], size, H, W) if sides else level0
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


# -- why a region is unseen ----------------------------------------------------------------------
NEARLY_ALL = 0.9  # a region invalid in this share of a run's items is reported with its reasons


def landmark_counts(keypoints: np.ndarray, thresholds: np.ndarray | None) -> np.ndarray:
    """``[3, 33]`` per landmark over frames ``[T, 33, 3]``: frames it was given in (confidence >
    0), frames it was seen in (``VISIBLE`` on the toolkit's scale), and the sum of its confidence
    on the source's own scale (``thresholds``, ``ParseResult.info["thresholds"]``) where given."""
    from microaction.extract.parsers.base import from_seen_scale

    c = keypoints[..., 2]
    thr = np.asarray(np.full(c.shape[-1], VISIBLE) if thresholds is None else thresholds, np.float32)
    given = c > 0
    raw = np.where(given, from_seen_scale(c, thr), 0.0)
    return np.stack([given.sum(0), (c >= VISIBLE).sum(0), raw.sum(0)]).astype(np.float64)


def region_report(
    regions: Sequence[str],
    visible: np.ndarray,
    valid: np.ndarray,
    counts: np.ndarray,
    frames: int,
    thresholds: np.ndarray | None,
    provided: np.ndarray | None,
) -> dict[str, object]:
    """What an item's status records about its regions: ``seen`` (share of frames each region
    was seen in) and, per invalid region, ``unseen``: ``{landmark: [share of frames given,
    share seen, mean confidence where given (the source's scale), the source's threshold]}``
    over the landmarks the source has. ``visible`` ``[R]``: frames each region was seen in;
    ``counts``: ``landmark_counts`` (summed over chunks)."""
    n = max(int(frames), 1)
    thr = np.full(counts.shape[1], VISIBLE) if thresholds is None else np.asarray(thresholds)
    out: dict[str, object] = {"seen": {r: round(float(v) / n, 4) for r, v in zip(regions, visible)}}
    unseen: dict[str, dict[str, list[float]]] = {}
    for r, ok in zip(regions, valid):
        if ok:
            continue
        ids = [i for i in REGION_LANDMARKS[r] if provided is None or provided[i]]
        unseen[r] = {
            LANDMARKS[i]: [round(counts[0, i] / n, 4), round(counts[1, i] / n, 4),
                           round(counts[2, i] / max(counts[0, i], 1), 3), round(float(thr[i]), 3)]
            for i in ids
        }  # fmt: skip
    out["unseen"] = unseen
    return out


def unseen_lines(reports: Sequence[dict[str, object]]) -> list[str]:
    """One line per region invalid in ``NEARLY_ALL`` of the items whose ``region_report`` is
    given (and in at least one): in how many, and why (its landmarks least seen: how often
    given and seen, at what mean confidence against which threshold)."""
    if not reports:
        return []
    names: list[str] = []
    for rep in reports:
        names += [r for r in rep.get("seen", {}) if r not in names]  # type: ignore[attr-defined]
    lines = []
    for r in names:
        why = [rep["unseen"][r] for rep in reports if r in rep.get("unseen", {})]  # type: ignore[index, operator]
        if not why or len(why) < NEARLY_ALL * len(reports):
            continue
        marks: dict[str, list[list[float]]] = {}
        for w in why:
            for lm, v in w.items():
                marks.setdefault(lm, []).append(v)
        mean = {lm: np.mean(np.asarray(v, np.float64), axis=0) for lm, v in marks.items()}
        worst = sorted(mean, key=lambda lm: (mean[lm][1], mean[lm][0]))[:4]
        parts = [
            f"{lm} given in {100 * mean[lm][0]:.0f}% of frames, seen in {100 * mean[lm][1]:.0f}% "
            f"(mean confidence {mean[lm][2]:.2f}, threshold {mean[lm][3]:.2f})"
            for lm in worst
        ]
        lines.append(
            f"region {r} invalid in {len(why)} of {len(reports)} items: " + ("; ".join(parts) or "no landmark of it given")
            + " (--min-confidence sets the threshold)"
        )  # fmt: skip
    return lines
