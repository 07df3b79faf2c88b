"""Overlay video on a real MA-52 clip: decoded back, frame count kept, boxes coloured by routing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from microaction.report.overlay import relative_weight, weight_color, write_overlay

REGIONS = ["head", "body", "upper_limbs", "lower_limbs"]
# xyxy pixel boxes in the 1080x1296 clip (person seated, full body), person box last
BOXES = np.array(
    [[440, 150, 700, 420], [380, 420, 760, 800], [250, 400, 900, 900], [330, 800, 800, 1250], [240, 120, 920, 1280]],
    dtype=np.float64,
)


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def _near(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 60) -> np.ndarray:
    return np.abs(img.astype(np.int32) - np.array(rgb)).max(axis=-1) < tol


def test_relative_weight_scale() -> None:
    # the uniform share is the middle of the scale: an even router shows no favourite
    assert relative_weight(np.full(4, 0.25)) == pytest.approx([0.5] * 4)
    assert relative_weight(np.array([0.7, 0.2, 0.1, 0.0])) == pytest.approx([1.0, 0.4, 0.2, 0.0])
    assert weight_color(0.0) == (40, 90, 255) and weight_color(1.0) == (255, 40, 20)


def test_overlay_on_real_clip(ma52_dir: Path, tmp_path: Path) -> None:
    clip = ma52_dir / "demo_clips" / "B1_nodding.mp4"
    src = _frames(clip)
    lines = ["nodding 62%", "shaking head 21%", "turning head 9%", "body: head 93%"]  # as mar predict writes them
    routing = np.array([0.7, 0.1, 0.15, 0.05])
    written = write_overlay(clip, tmp_path / "ov.mp4", boxes=BOXES, region_names=REGIONS, routing=routing,
                            caption_lines=lines, gif=True)  # fmt: skip
    assert written == [tmp_path / "ov.mp4", tmp_path / "ov.gif"]
    with av.open(str(written[0])) as c:
        assert c.streams.video[0].codec_context.name == "h264"
    out = _frames(written[0])
    assert len(out) == len(src) and out[0].shape == src[0].shape
    mid = out[len(out) // 2]
    Image.fromarray(mid).save(tmp_path / "mid.png")
    x0, _y0, _x1, y1 = BOXES[0].astype(int)
    # head (strongest: red, thick): its left edge is red in the overlay and not in the source
    ym = y1 - 70  # the lower part of the edge: clear of the legend (top left) and labels
    edge = mid[ym : y1 - 20, x0 - 3 : x0 + 4]
    assert _near(edge, weight_color(1.0)).mean() > 0.5
    assert _near(src[len(out) // 2][ym : y1 - 20, x0 - 3 : x0 + 4], weight_color(1.0)).mean() < 0.05
    # lower limbs (weakest: blue, thin): its right edge is blue
    lx1, ly0, ly1 = int(BOXES[3, 2]), int(BOXES[3, 1]), int(BOXES[3, 3])
    weak = weight_color(relative_weight(routing)[3])
    assert _near(mid[ly0 + 60 : ly1 - 200, lx1 - 2 : lx1 + 3], weak).mean() > 0.3
    # thickness follows weight: the head's edge is wider than the lower limbs' edge
    row_h = _near(mid[y1 - 45, x0 - 15 : x0 + 15], weight_color(1.0)).sum()
    row_l = _near(mid[(ly0 + ly1) // 2, lx1 - 15 : lx1 + 15], weak).sum()
    assert row_h >= 2 * row_l > 0
    # caption band at the bottom is darkened; the legend at the top left too
    assert mid[-60:, :300].mean() < src[len(out) // 2][-60:, :300].mean() * 0.7
    gif = Image.open(written[1])
    assert gif.n_frames >= len(src) // 4 and gif.size[0] == 480


def test_overlay_per_frame_and_errors(ma52_dir: Path, tmp_path: Path) -> None:
    clip = ma52_dir / "demo_clips" / "B2_shaking_head.mp4"
    n = len(_frames(clip))
    t = 8
    boxes = np.repeat(BOXES[None], t, axis=0)
    boxes[:, 0] += np.linspace(0, 80, t)[:, None]  # the head box moves right over time
    routing = np.tile([0.25, 0.25, 0.25, 0.25], (t, 1))
    boxes[t // 2 :, 1] = np.nan  # body region invalid in the second half: not drawn
    (gif,) = write_overlay(clip, tmp_path / "ov.gif", boxes=boxes, region_names=REGIONS, routing=routing)
    assert gif.suffix == ".gif" and Image.open(gif).n_frames >= n // 4
    with pytest.raises(ValueError, match="boxes must be"):
        write_overlay(clip, tmp_path / "x.mp4", boxes=BOXES[:, :3], region_names=REGIONS, routing=None)
    with pytest.raises(ValueError, match="routing must be"):
        write_overlay(clip, tmp_path / "x.mp4", boxes=BOXES, region_names=REGIONS, routing=np.ones(3))
    with pytest.raises(FileNotFoundError):
        write_overlay(tmp_path / "none.mp4", tmp_path / "x.mp4", boxes=BOXES, region_names=REGIONS, routing=None)


def test_small_video_is_upscaled(tmp_path: Path) -> None:
    clip = tmp_path / "small.mp4"
    with av.open(str(clip), "w") as c:
        s = c.add_stream("libx264" if "libx264" in av.codecs_available else "h264", rate=10)
        s.width, s.height, s.pix_fmt = 96, 120, "yuv420p"
        for i in range(12):
            img = np.full((120, 96, 3), 90 + 5 * i, dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    boxes = np.array([[30, 10, 66, 46], [25, 40, 70, 80], [15, 40, 80, 90], [20, 70, 75, 118], [10, 5, 86, 118]], float)
    (out,) = write_overlay(clip, tmp_path / "ov.mp4", boxes=boxes, region_names=REGIONS,
                           routing=np.array([0.1, 0.1, 0.7, 0.1]), caption_lines=["waving 40%"])  # fmt: skip
    frames = _frames(out)
    assert len(frames) == 12 and frames[0].shape == (600, 480, 3)  # shorter side 96 -> 480, x5
    x0, y1 = 15 * 5, 90 * 5  # upper limbs (strongest): left edge, scaled with the frame
    assert _near(frames[6][y1 - 60 : y1 - 10, x0 - 2 : x0 + 3], weight_color(1.0)).mean() > 0.5
