"""Files of a synthetic dataset (the format the ``groundtruth`` / ``keypoints`` parsers read)::

DIR/manifest.csv           video,label,body,split   (video = videos/<stem>.mp4)
DIR/keypoints/<stem>.npz   keypoints f32 [T,33,3] pixel x, y, confidence (what a parser would
                           see: jittered, dropped points have confidence 0 and x = y = 0);
                           keypoints_clean f32 [T,33,3] (exact projection, confidence 1 inside
                           the image); fps f64; size i64 [2] = H, W; label, body (ints);
                           moving_regions str [k] (the class's ground-truth regions);
                           action_window i64 [2] (frames [start, end)); meta (JSON string:
                           class name, distractor, occlusion, camera, gain, ...)
DIR/videos/<stem>.mp4      with --render: H.264 (yuv420p) of the shaded mannequin
DIR/masks/<stem>.npz       with --render: masks u8 [T,H,W], 0 background, 1 + i for region i
                           of ``regions`` = (head, body, upper_limbs, lower_limbs)
DIR/dataset.json           seed, preset, taxonomy, counts per split and class, parameters
DIR/README.md              the same for people
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.store import atomic_write_bytes
from microaction.data.synth.render import MASK_REGIONS

__all__ = ["GENERATOR", "read_clip", "synthetic_dataset_of", "write_clip", "write_manifest", "write_mp4"]

GENERATOR = "microaction.data.synth"  # dataset.json's "generator": a dataset this package generated


def synthetic_dataset_of(path: str | os.PathLike[str]) -> Path | None:
    """The synthetic dataset folder a video or keypoint file belongs to (``DIR/videos/<stem>.mp4``,
    ``DIR/keypoints/<stem>.npz``, or ``DIR/manifest.csv`` itself), or None for any other file."""
    p = Path(path)
    for root in (p.parent, p.parent.parent):
        rec = root / "dataset.json"
        if rec.is_file():
            try:
                doc = json.loads(rec.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and doc.get("generator") == GENERATOR:
                return root
    return None


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``arrays`` as a compressed ``.npz``, written atomically (its folder made)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())  # makes the folder


def write_csv(path: Path, header: list[str], rows: Iterable[list[Any]]) -> None:
    """A CSV (``\\n`` line ends), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def write_mp4(path: Path, frames: np.ndarray, fps: float, *, crf: int = 23) -> None:
    """H.264 yuv420p with PyAV (frame size must be even), written atomically."""
    import av

    _T, H, W, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "animation"}
        for img in frames:
            for pkt in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(pkt)
        for pkt in stream.encode():
            out.mux(pkt)
    os.replace(tmp, path)


def write_clip(root: Path, stem: str, clip: dict[str, Any]) -> None:
    """Write one generated clip's sidecars (and video + masks when it was rendered)."""
    meta = dict(clip["meta"])
    kp = {
        "keypoints": clip["keypoints"].astype(np.float32),
        "keypoints_clean": clip["keypoints_clean"].astype(np.float32),
        "fps": np.float64(clip["fps"]),
        "size": np.asarray(clip["size"], np.int64),
        "label": np.int64(meta["label"]),
        "body": np.int64(meta["body"]),
        "moving_regions": np.asarray(meta["moving_regions"], dtype=str),
        "action_window": np.asarray(meta["action_window"], np.int64),
        "meta": np.asarray(json.dumps(meta)),
    }
    write_npz(root / "keypoints" / f"{stem}.npz", kp)
    if clip.get("frames") is not None:
        write_mp4(root / "videos" / f"{stem}.mp4", clip["frames"], clip["fps"])
        masks = {"masks": clip["masks"].astype(np.uint8), "regions": np.asarray(MASK_REGIONS, dtype=str)}
        write_npz(root / "masks" / f"{stem}.npz", masks)


def read_clip(root: str | os.PathLike[str], stem: str) -> dict[str, Any]:
    """Read a clip's keypoint sidecar back (``meta`` parsed from JSON)."""
    with np.load(Path(root) / "keypoints" / f"{stem}.npz", allow_pickle=False) as z:
        out: dict[str, Any] = {k: z[k] for k in z.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


def write_manifest(root: Path, rows: list[tuple[str, int, int, str]]) -> None:
    """``manifest.csv``: video,label,body,split (video = ``videos/<stem>.mp4``)."""
    lines = ([f"videos/{stem}.mp4", label, body, split] for stem, label, body, split in rows)
    write_csv(root / "manifest.csv", ["video", "label", "body", "split"], lines)
