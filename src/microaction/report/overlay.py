"""Per-video explanation: the clip with its region boxes drawn by routing weight and the top
predictions in a caption (``mar predict VIDEO --overlay OUT.mp4 [--overlay-gif]``).

Colour and thickness of a region's box both follow its routing weight against the uniform share
``1/R`` (``relative_weight``: blue = 0, green = ``1/R``, red = ``2/R`` or more; thin … thick), so
a router that spreads its weight evenly shows no false favourite; the legend (top left) gives each
region's colour, absolute weight and a bar, and the colour key; it sits in the corner that hides
least of the region boxes. The whole-person box (the last row of
``boxes``) is drawn thin and grey; a region with zero routing weight (masked as not visible) gets
no box, only its legend row. Decoding and H.264 encoding use PyAV; the GIF (downscaled,
subsampled in time) uses Pillow. Text is drawn with OpenCV's Hershey font (ASCII).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OverlayStream", "relative_weight", "weight_color", "write_overlay"]

# blue → cyan → yellow → red, RGB
_ANCHORS = np.array([[40, 90, 255], [0, 210, 255], [255, 230, 0], [255, 40, 20]], dtype=np.float64)
_PERSON_RGB = (200, 200, 200)
MIN_SIDE = 480  # videos with a shorter side are upscaled to it before drawing


def weight_color(rel: float) -> tuple[int, int, int]:
    """RGB colour of a relative weight in [0, 1] (0 blue, 1/3 cyan, 2/3 yellow, 1 red)."""
    t = float(np.clip(rel, 0.0, 1.0)) * (len(_ANCHORS) - 1)
    i = min(int(t), len(_ANCHORS) - 2)
    c = _ANCHORS[i] + (t - i) * (_ANCHORS[i + 1] - _ANCHORS[i])
    return (round(c[0]), round(c[1]), round(c[2]))


def _ascii(s: str) -> str:
    return s.encode("ascii", "replace").decode("ascii")


def _per_frame(a: np.ndarray, n_frames: int, f: int) -> np.ndarray:
    """Row of a per-time array ``[T, ...]`` for video frame ``f`` of ``n_frames`` (nearest)."""
    t = a.shape[0]
    return a[min(t - 1, f * t // max(n_frames, 1))]


def _count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if s.frames:
            return int(s.frames)
        return sum(1 for _ in c.decode(s))


def relative_weight(weights: np.ndarray) -> np.ndarray:
    """Colour/thickness scale of routing weights: ``w · R / 2`` clipped to [0, 1], so 0 is the
    bottom, the uniform share ``1/R`` the middle and ``2/R`` or more the top."""
    w = np.asarray(weights, dtype=np.float64)
    return np.clip(w * len(w) / 2.0, 0.0, 1.0)


def _place_label(
    taken: list[tuple[int, int, int, int]], box: tuple[int, int, int, int], tw: int, th_: int, pad: int, w: int, h: int
) -> tuple[int, int]:
    """Top-left of a label for ``box``: above it or inside its top, left or right, first free spot."""
    x0, y0, x1, y1 = box
    cands = [(x0, y0 - th_ - pad), (x0 + pad, y0 + pad), (x1 - tw, y0 - th_ - pad), (x1 - tw - pad, y0 + pad),
             (x0 + pad, y1 - th_ - pad)]  # fmt: skip
    cands = [(min(max(x, 0), w - tw), min(max(y, 0), h - th_)) for x, y in cands]
    for x, y in cands:
        if all(x + tw <= a or x >= c or y + th_ <= b or y >= d for a, b, c, d in taken):
            return x, y
    return cands[0]


@dataclass
class _Layout:
    """Sizes and places fixed for a whole video: text scale, legend box and corner, caption band."""

    unit: float
    fs: float
    th: int
    lpad: int
    row_h: int
    sw: int
    name_w: int
    bar_w: int
    lw: int
    lh: int
    ox: int
    oy: int
    ch: int


def _layout(w: int, h: int, boxes: np.ndarray, names: Sequence[str], has_weights: bool, n_caption: int) -> _Layout:
    """Legend in the corner that covers least of the region boxes (``boxes`` ``[T, R+1, 4]``)."""
    import cv2

    unit = max(min(h, w) / 720.0, 0.5)
    fs, th = 0.6 * unit, max(1, round(1.5 * unit))
    lpad, row_h, sw, bar_w = int(10 * unit), int(28 * unit), int(18 * unit), int(90 * unit)
    name_w = max((cv2.getTextSize(_ascii(n), cv2.FONT_HERSHEY_SIMPLEX, fs, th)[0][0] for n in names), default=0)
    lw = lpad * 4 + sw + name_w + int(60 * unit) + bar_w
    lh = lpad * 2 + row_h * (len(names) + (3 if has_weights else 1))
    ch = lpad * 2 + int(32 * unit) * n_caption if n_caption else 0
    with np.errstate(invalid="ignore"):
        regions = np.nanmean(boxes[:, : len(names)], axis=0) if np.isfinite(boxes).any() else np.zeros((0, 4))
    regions = regions[np.isfinite(regions).all(axis=1)]

    def covered(x: int, y: int) -> float:
        ix = np.clip(np.minimum(regions[:, 2], x + lw) - np.maximum(regions[:, 0], x), 0, None)
        iy = np.clip(np.minimum(regions[:, 3], y + lh) - np.maximum(regions[:, 1], y), 0, None)
        return float((ix * iy).sum())

    corners = [(0, 0), (max(w - lw, 0), 0), (0, max(h - ch - lh, 0)), (max(w - lw, 0), max(h - ch - lh, 0))]
    ox, oy = min(corners, key=lambda c: covered(*c))  # first (top left) on ties
    return _Layout(unit, fs, th, lpad, row_h, sw, name_w, bar_w, lw, lh, ox, oy, ch)


def _draw(
    frame: np.ndarray,
    boxes: np.ndarray,
    names: Sequence[str],
    weights: np.ndarray | None,
    caption: Sequence[str],
    lay: _Layout,
) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(frame)
    h, w = img.shape[:2]
    unit, fs, th = lay.unit, lay.fs, lay.th
    font = cv2.FONT_HERSHEY_SIMPLEX
    white = (255, 255, 255)
    r = len(names)
    rel = relative_weight(weights) if weights is not None else np.full(r, 0.5)
    # whole-person box, thin grey
    if boxes.shape[0] > r and np.isfinite(boxes[r]).all():
        x0, y0, x1, y1 = (round(v) for v in boxes[r])
        cv2.rectangle(img, (x0, y0), (x1, y1), _PERSON_RGB, max(1, int(unit)), cv2.LINE_AA)
    # regions, weakest first so the strongest is drawn on top; labels after all boxes
    drawn = []
    for j in np.argsort(rel, kind="stable"):
        b = boxes[j]
        if not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
            continue
        if weights is not None and weights[j] < 1e-4:
            continue  # a masked (not visible) region: the extractor gives it the person's box
        color = weight_color(rel[j])
        thick = max(1, round((1 + 9 * rel[j]) * unit))
        x0, y0, x1, y1 = (round(v) for v in b)
        cv2.rectangle(img, (x0, y0), (x1, y1), color, thick, cv2.LINE_AA)
        drawn.append((j, (x0, y0, x1, y1), color))
    ox, oy = lay.ox, lay.oy
    taken: list[tuple[int, int, int, int]] = [(ox, oy, ox + lay.lw, oy + lay.lh), (0, h - lay.ch, w, h)]
    pad = max(2, int(4 * unit))
    for j, box, color in reversed(drawn):  # the strongest region gets the first choice of place
        label = _ascii(names[j])
        (tw, tht), base = cv2.getTextSize(label, font, fs, th)
        lw_, lh_ = tw + 2 * pad, tht + base + 2 * pad
        x, y = _place_label(taken, box, lw_, lh_, pad, w, h)
        taken.append((x, y, x + lw_, y + lh_))
        cv2.rectangle(img, (x, y), (x + lw_, y + lh_), (0, 0, 0), -1)
        cv2.putText(img, label, (x + pad, y + pad + tht), font, fs, color, th, cv2.LINE_AA)
    # legend: swatch, name, weight, bar; then the colour key
    lp, sw, row_h = lay.lpad, lay.sw, lay.row_h
    _shade(img, ox, oy, min(ox + lay.lw, w), min(oy + lay.lh, h))
    cv2.putText(img, "routing weight", (ox + lp, oy + lp + int(18 * unit)), font, fs, white, th, cv2.LINE_AA)
    for j, n in enumerate(names):
        y = oy + lp + row_h * (j + 1)
        color = weight_color(rel[j])
        cv2.rectangle(img, (ox + lp, y + 4), (ox + lp + sw, y + 4 + sw), color, -1)
        cv2.putText(img, _ascii(n), (ox + lp * 2 + sw, y + sw), font, fs, white, th, cv2.LINE_AA)
        if weights is not None:
            x = ox + lp * 3 + sw + lay.name_w
            cv2.putText(img, f"{weights[j]:.2f}", (x, y + sw), font, fs, white, th, cv2.LINE_AA)
            bx = x + int(60 * unit)
            cv2.rectangle(img, (bx, y + 6), (bx + int(lay.bar_w * float(weights[j])), y + sw + 2), color, -1)
            cv2.rectangle(img, (bx, y + 6), (bx + lay.bar_w, y + sw + 2), (160, 160, 160), 1)
    if weights is not None:  # colour key: 0 … uniform share 1/R … 2/R and more
        y = oy + lp + row_h * (r + 1) + 4
        kx0, kx1 = ox + lp, ox + lay.lw - lp
        for x in range(kx0, kx1):
            cv2.line(img, (x, y), (x, y + sw // 2), weight_color((x - kx0) / max(kx1 - kx0 - 1, 1)), 1)
        ty = y + sw // 2 + int(22 * unit)
        for txt, frac in (("0", 0.0), (f"1/{r}", 0.5), (f"2/{r}+", 1.0)):
            tw = cv2.getTextSize(txt, font, fs * 0.85, th)[0][0]
            tx = min(max(int(kx0 + frac * (kx1 - kx0) - tw / 2), kx0), kx1 - tw)
            cv2.putText(img, txt, (tx, ty), font, fs * 0.85, white, th, cv2.LINE_AA)
    # caption band, bottom
    if caption:
        _shade(img, 0, h - lay.ch, w, h)
        for i, s in enumerate(caption):
            y = h - lay.ch + lp + int(32 * unit) * (i + 1) - int(8 * unit)
            cv2.putText(img, _ascii(s), (lp * 2, y), font, fs * 1.25, white, th + 1, cv2.LINE_AA)
    return img


def _shade(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    region = img[y0:y1, x0:x1]
    region[:] = (region.astype(np.float32) * (1 - alpha)).astype(np.uint8)


def _per_time(boxes: np.ndarray, routing: np.ndarray | None, r: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Boxes as ``[T, R(+1), 4]`` and routing as ``[T, R]`` (one row when clip-stable), checked."""
    bx = np.asarray(boxes, dtype=np.float64)
    if bx.ndim == 2:
        bx = bx[None]
    if bx.ndim != 3 or bx.shape[-1] != 4 or bx.shape[1] not in (r, r + 1):
        raise ValueError(f"boxes must be [R+1, 4] or [T, R+1, 4] with R={r} regions, got {np.shape(boxes)}")
    rw = None
    if routing is not None:
        rw = np.asarray(routing, dtype=np.float64)
        if rw.ndim == 1:
            rw = rw[None]
        if rw.ndim != 2 or rw.shape[1] != r:
            raise ValueError(f"routing must be [R] or [T, R] with R={r}, got {np.shape(routing)}")
    return bx, rw


def _upscaled(img: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame and its scale: small videos are drawn upscaled, so the text stays legible."""
    scale = max(1.0, MIN_SIDE / min(img.shape[:2]))
    if scale > 1:
        import cv2

        size = (round(img.shape[1] * scale), round(img.shape[0] * scale))
        img = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    return img, scale


def write_overlay(
    video_path: str | Path,
    out_path: str | Path,
    *,
    boxes: np.ndarray,
    region_names: Sequence[str],
    routing: np.ndarray | None,
    caption_lines: Sequence[str] = (),
    gif: bool = False,
    gif_width: int = 480,
    gif_fps: float = 10.0,
    at_time: Callable[[float], tuple[Sequence[str], np.ndarray | None]] | None = None,
    caption_rows: int = 0,
) -> list[Path]:
    """Write the explained video; returns the files written.

        ``boxes``: ``[R+1, 4]`` (clip-stable) or ``[T, R+1, 4]`` (per time step) xyxy pixel boxes of
        the ``R`` regions plus the whole person last; NaN rows are skipped. ``routing``: ``[R]`` or
        ``[T, R]`` routing weights (None: all regions drawn alike). Per-time arrays are matched to
        video frames by nearest relative position. Videos whose shorter side is under ``MIN_SIDE`` are
    drawn (and written) upscaled to it, boxes scaled alike. ``out_path`` ending in ``.gif`` writes only a GIF;
        otherwise an H.264 MP4 is written there and, with ``gif=True``, a GIF beside it (same stem).
        ``at_time``: what changes over a recording (``mar timeline``): called with each frame's time
        in seconds, returns that frame's caption lines (at most ``caption_rows``) and routing ``[R]``
        (None: regions drawn alike); it replaces ``caption_lines`` and ``routing``.
    """
    import av

    video_path, out_path = Path(video_path), Path(out_path)
    if not video_path.is_file():
        raise FileNotFoundError(f"{video_path}: no such video")
    names = list(region_names)
    bx, rw = _per_time(boxes, routing, len(names))
    want_mp4 = out_path.suffix.lower() != ".gif"
    gif_path = out_path.with_suffix(".gif") if (gif or not want_mp4) else None
    n_frames = _count_frames(video_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    gif_frames = []
    with av.open(str(video_path)) as src:
        vs = src.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or Fraction(25)
        step = max(1, round(float(rate) / gif_fps))
        lay: _Layout | None = None
        enc = _H264(out_path, rate) if want_mp4 else None
        try:
            for f, frame in enumerate(src.decode(vs)):
                if enc is None and f % step:
                    continue  # GIF only: frames it skips are not drawn
                img, scale = _upscaled(frame.to_ndarray(format="rgb24"))
                h, w = img.shape[:2]
                weights = _per_frame(rw, n_frames, f) if rw is not None else None
                caption = caption_lines
                if at_time is not None:
                    caption, weights = at_time(float(frame.time) if frame.time is not None else f / float(rate))
                    caption = list(caption)[:caption_rows]
                if lay is None:
                    rows = caption_rows if at_time is not None else len(caption_lines)
                    lay = _layout(w, h, bx * scale, names, rw is not None or at_time is not None, rows)
                drawn = _draw(img, _per_frame(bx, n_frames, f) * scale, names, weights, caption, lay)
                if enc is not None:
                    enc.encode(drawn)
                if gif_path is not None and f % step == 0:
                    gif_frames.append(_gif_frame(drawn, gif_width))
            if enc is not None:
                enc.flush()
        finally:
            if enc is not None:
                enc.container.close()
    if enc is not None:
        if enc.stream is None:
            raise RuntimeError(f"{video_path}: no frames decoded")
        written.append(out_path)
    if gif_path is not None:
        if not gif_frames:
            raise RuntimeError(f"{video_path}: no frames decoded")
        gif_frames[0].save(gif_path, save_all=True, append_images=gif_frames[1:], loop=0,
                           duration=round(1000 * step / float(rate)), optimize=False)  # fmt: skip
        written.append(gif_path)
    return written


class _H264:
    """An H.264 MP4 written frame by frame; its stream takes the first frame's size (odd sides
    padded to even, as yuv420p needs)."""

    def __init__(self, path: Path, rate: Fraction) -> None:
        import av

        self.container = av.open(str(path), "w")
        self.rate = Fraction(rate).limit_denominator(1001)
        self.stream: Any = None

    def encode(self, img: np.ndarray) -> None:
        import av

        h, w = img.shape[:2]
        if self.stream is None:
            codec = "libx264" if "libx264" in av.codecs_available else "h264"
            self.stream = self.container.add_stream(codec, rate=self.rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
            self.stream.options = {"crf": "20", "preset": "veryfast"}
        if w % 2 or h % 2:
            img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for pkt in self.stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self.container.mux(pkt)

    def flush(self) -> None:
        if self.stream is not None:
            for pkt in self.stream.encode():
                self.container.mux(pkt)


def _gif_frame(img: np.ndarray, width: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    im = Image.fromarray(img)
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.LANCZOS)
    return im.quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


class OverlayStream:
    """An overlay written frame by frame as frames come (``mar live --overlay``): each ``write``
    draws one RGB frame with its boxes ``[R+1, 4]`` (pixels of that frame), routing ``[R]`` (None:
    regions alike) and caption, and encodes it at ``fps``; ``close`` finishes the file. The layout
    (legend corner, caption band) is fixed by the first frame."""

    def __init__(self, out_path: str | Path, region_names: Sequence[str], fps: float, caption_rows: int = 3) -> None:
        self.path = Path(out_path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.names, self.rows = list(region_names), caption_rows
        self.enc = _H264(self.path, Fraction(fps))
        self.lay: _Layout | None = None
        self.frames = 0

    def write(self, img: np.ndarray, boxes: np.ndarray, routing: np.ndarray | None, caption: Sequence[str]) -> None:
        img, scale = _upscaled(img)
        bx = np.asarray(boxes, np.float64) * scale
        if self.lay is None:
            self.lay = _layout(img.shape[1], img.shape[0], bx[None], self.names, True, self.rows)
        self.enc.encode(_draw(img, bx, self.names, routing, list(caption)[: self.rows], self.lay))
        self.frames += 1

    def close(self) -> None:
        self.enc.flush()
        self.enc.container.close()
