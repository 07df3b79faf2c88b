"""Per-video explanation: the clip with its region boxes drawn by routing weight and the top
predictions in a caption (``mar predict VIDEO --overlay OUT.mp4 [--overlay-gif]``).

Colour and thickness of a region's box both follow its routing weight relative to the strongest
region of that frame (blue = weakest … red = strongest; thin … thick); the legend (top left) gives
each region's colour and absolute weight with a bar. The whole-person box (the last row of
``boxes``) is drawn thin and grey; a region with zero routing weight (masked as not visible) gets
no box, only its legend row. Decoding and H.264 encoding use PyAV; the GIF (downscaled,
subsampled in time) uses Pillow. Text is drawn with OpenCV's Hershey font (ASCII).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["weight_color", "write_overlay"]

# blue → cyan → yellow → red, RGB
_ANCHORS = np.array([[40, 90, 255], [0, 210, 255], [255, 230, 0], [255, 40, 20]], dtype=np.float64)
_PERSON_RGB = (200, 200, 200)


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


def _draw(
    frame: np.ndarray,
    boxes: np.ndarray,
    names: Sequence[str],
    weights: np.ndarray | None,
    caption: Sequence[str],
) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(frame)
    h, w = img.shape[:2]
    unit = max(min(h, w) / 720.0, 0.5)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = 0.6 * unit
    th = max(1, round(1.5 * unit))
    r = len(names)
    rel = weights / max(float(weights.max()), 1e-9) if weights is not None else np.ones(r)
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
        drawn.append((j, x0, y0, thick, color))
    for j, x0, y0, thick, color in drawn:
        label = _ascii(names[j])
        (tw, tht), _ = cv2.getTextSize(label, font, fs, th)
        ty = max(y0 - thick - 4, tht + 2)
        cv2.rectangle(img, (x0, ty - tht - 4), (x0 + tw + 6, ty + 4), (0, 0, 0), -1)
        cv2.putText(img, label, (x0 + 3, ty), font, fs, color, th, cv2.LINE_AA)
    # legend, top left: swatch, name, weight, bar
    pad = int(10 * unit)
    row_h = int(28 * unit)
    name_w = max((cv2.getTextSize(_ascii(n), font, fs, th)[0][0] for n in names), default=0)
    bar_w = int(90 * unit)
    lw = pad * 4 + int(18 * unit) + name_w + int(60 * unit) + bar_w
    lh = pad * 2 + row_h * (r + 1)
    _shade(img, 0, 0, min(lw, w), min(lh, h))
    cv2.putText(img, "routing weight", (pad, pad + int(18 * unit)), font, fs, (255, 255, 255), th, cv2.LINE_AA)
    for j, n in enumerate(names):
        y = pad + row_h * (j + 1)
        color = weight_color(rel[j])
        sw = int(18 * unit)
        cv2.rectangle(img, (pad, y + 4), (pad + sw, y + 4 + sw), color, -1)
        cv2.putText(img, _ascii(n), (pad * 2 + sw, y + sw), font, fs, (255, 255, 255), th, cv2.LINE_AA)
        if weights is not None:
            x = pad * 3 + sw + name_w
            cv2.putText(img, f"{weights[j]:.2f}", (x, y + sw), font, fs, (255, 255, 255), th, cv2.LINE_AA)
            bx = x + int(60 * unit)
            cv2.rectangle(img, (bx, y + 6), (bx + int(bar_w * float(weights[j])), y + sw + 2), color, -1)
            cv2.rectangle(img, (bx, y + 6), (bx + bar_w, y + sw + 2), (160, 160, 160), 1)
    # caption band, bottom
    if caption:
        lines = [_ascii(s) for s in caption]
        ch = pad * 2 + int(32 * unit) * len(lines)
        _shade(img, 0, h - ch, w, h)
        for i, s in enumerate(lines):
            y = h - ch + pad + int(32 * unit) * (i + 1) - int(8 * unit)
            cv2.putText(img, s, (pad * 2, y), font, fs * 1.25, (255, 255, 255), th + 1, cv2.LINE_AA)
    return img


def _shade(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.6) -> None:
    region = img[y0:y1, x0:x1]
    region[:] = (region.astype(np.float32) * (1 - alpha)).astype(np.uint8)


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
) -> list[Path]:
    """Write the explained video; returns the files written.

    ``boxes``: ``[R+1, 4]`` (clip-stable) or ``[T, R+1, 4]`` (per time step) xyxy pixel boxes of
    the ``R`` regions plus the whole person last; NaN rows are skipped. ``routing``: ``[R]`` or
    ``[T, R]`` routing weights (None: all regions drawn alike). Per-time arrays are matched to
    video frames by nearest relative position. ``out_path`` ending in ``.gif`` writes only a GIF;
    otherwise an H.264 MP4 is written there and, with ``gif=True``, a GIF beside it (same stem).
    """
    import av

    video_path, out_path = Path(video_path), Path(out_path)
    if not video_path.is_file():
        raise FileNotFoundError(f"{video_path}: no such video")
    names = list(region_names)
    r = len(names)
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
        enc = stream = None
        if want_mp4:
            enc = av.open(str(out_path), "w")
        try:
            for f, frame in enumerate(src.decode(vs)):
                if enc is None and f % step:
                    continue  # GIF only: frames it skips are not drawn
                img = frame.to_ndarray(format="rgb24")
                h, w = img.shape[:2]
                weights = _per_frame(rw, n_frames, f) if rw is not None else None
                drawn = _draw(img, _per_frame(bx, n_frames, f), names, weights, caption_lines)
                if enc is not None:
                    if stream is None:
                        stream = _h264_stream(enc, rate, w + w % 2, h + h % 2)
                    if w % 2 or h % 2:
                        drawn = np.pad(drawn, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
                    for pkt in stream.encode(av.VideoFrame.from_ndarray(drawn, format="rgb24")):
                        enc.mux(pkt)
                if gif_path is not None and f % step == 0:
                    gif_frames.append(_gif_frame(drawn, gif_width))
            if enc is not None and stream is not None:
                for pkt in stream.encode():
                    enc.mux(pkt)
        finally:
            if enc is not None:
                enc.close()
    if want_mp4:
        if stream is None:
            raise RuntimeError(f"{video_path}: no frames decoded")
        written.append(out_path)
    if gif_path is not None:
        if not gif_frames:
            raise RuntimeError(f"{video_path}: no frames decoded")
        gif_frames[0].save(gif_path, save_all=True, append_images=gif_frames[1:], loop=0,
                           duration=round(1000 * step / float(rate)), optimize=False)  # fmt: skip
        written.append(gif_path)
    return written


def _h264_stream(container, rate: Fraction, width: int, height: int):  # type: ignore[no-untyped-def]
    import av

    codec = "libx264" if "libx264" in av.codecs_available else "h264"
    s = container.add_stream(codec, rate=Fraction(rate).limit_denominator(1001))
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    s.options = {"crf": "20", "preset": "veryfast"}
    return s


def _gif_frame(img: np.ndarray, width: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    im = Image.fromarray(img)
    if im.width > width:
        im = im.resize((width, max(1, round(im.height * width / im.width))), Image.Resampling.LANCZOS)
    return im.quantize(colors=192, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
