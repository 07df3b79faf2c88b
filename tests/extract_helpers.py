"""Small synthetic inputs for the extraction tests: skeleton sidecars in the synthetic
generator's format, rendered as tiny videos with region masks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from microaction.skeleton import LANDMARKS, MASK_REGIONS, REGION_SEGMENTS

# a seated person facing the camera, in a 96 x 80 (H x W) image
_POSE = {
    "nose": (40, 14), "left_eye_inner": (42, 12), "left_eye": (43, 12), "left_eye_outer": (44, 12),
    "right_eye_inner": (38, 12), "right_eye": (37, 12), "right_eye_outer": (36, 12), "left_ear": (46, 13),
    "right_ear": (34, 13), "mouth_left": (42, 17), "mouth_right": (38, 17), "left_shoulder": (50, 26),
    "right_shoulder": (30, 26), "left_elbow": (54, 40), "right_elbow": (26, 40), "left_wrist": (52, 52),
    "right_wrist": (28, 52), "left_pinky": (52, 55), "right_pinky": (28, 55), "left_index": (51, 56),
    "right_index": (29, 56), "left_thumb": (50, 54), "right_thumb": (30, 54), "left_hip": (46, 52),
    "right_hip": (34, 52), "left_knee": (48, 68), "right_knee": (32, 68), "left_ankle": (48, 84),
    "right_ankle": (32, 84), "left_heel": (49, 86), "right_heel": (31, 86), "left_foot_index": (50, 88),
    "right_foot_index": (30, 88),
}  # fmt: skip
H, W = 96, 80


def skeleton_clip(T: int, seed: int, visible: bool = True) -> np.ndarray:
    """``[T, 33, 3]`` pixel keypoints: the template, a nod and a hand wave, a little noise."""
    rng = np.random.default_rng(seed)
    base = np.array([_POSE[n] for n in LANDMARKS], dtype=np.float32)
    t = np.arange(T, dtype=np.float32)[:, None]
    kp = np.repeat(base[None], T, 0)
    head = [i for i, n in enumerate(LANDMARKS) if i <= 10]
    kp[:, head, 1] += 2.0 * np.sin(t * (0.3 + 0.1 * seed))
    kp[:, LANDMARKS.index("right_wrist"), 0] += 4.0 * np.sin(t[:, 0] * 0.5)
    kp += rng.normal(0, 0.2, kp.shape).astype(np.float32)
    conf = np.full((T, 33, 1), 0.95 if visible else 0.0, np.float32)
    return np.concatenate([kp, conf], -1)


def render(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``[T, H, W, 3]`` and region masks ``[T, H, W]`` drawn from the skeleton."""
    T = len(kp)
    frames = np.full((T, H, W, 3), 40, np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    colors = [(220, 180, 150), (60, 90, 200), (200, 150, 120), (50, 50, 60)]
    for t in range(T):
        for ri, r in enumerate(MASK_REGIONS):
            for a, b in REGION_SEGMENTS[r]:
                pa, pb = tuple(int(v) for v in kp[t, a, :2]), tuple(int(v) for v in kp[t, b, :2])
                cv2.line(frames[t], pa, pb, colors[ri], 5)
                cv2.line(masks[t], pa, pb, (ri + 1,), 5)
    return frames, masks


def write_video(
    path: Path, frames: np.ndarray, fps: int = 30, codec: str = "libx264", options: dict | None = None
) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames.shape[2], frames.shape[1]
        s.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        for f in frames:
            for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)


def make_dataset(root: Path, n: int = 6, T: int = 24, render_videos: bool = False, fps: float = 30.0) -> Path:
    """A dataset dir in the synthetic generator's layout; returns its manifest.csv."""
    rows = ["video,label,body,split"]
    for i in range(n):
        stem = f"clip{i:03d}"
        kp = skeleton_clip(T, i)
        (root / "keypoints").mkdir(parents=True, exist_ok=True)
        np.savez(root / "keypoints" / f"{stem}.npz", keypoints=kp, fps=np.float32(fps), size=np.array([H, W]))
        if render_videos:
            frames, masks = render(kp)
            write_video(root / "videos" / f"{stem}.mp4", frames, int(fps))
            (root / "masks").mkdir(parents=True, exist_ok=True)
            np.savez(root / "masks" / f"{stem}.npz", masks=masks)
        rows.append(f"videos/{stem}.mp4,{i % 3},0,train")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def write_recording(root: Path, T: int, fps: float, seed: int = 3) -> Path:
    """A rendered recording ``videos/rec.mp4`` with its ground-truth keypoints and region masks
    beside it (``keypoints/rec.npz``, ``masks/rec.npz``)."""
    kp = skeleton_clip(T, seed)
    frames, masks = render(kp)
    write_video(root / "videos" / "rec.mp4", frames, fps)
    (root / "keypoints").mkdir()
    (root / "masks").mkdir()
    np.savez(root / "keypoints" / "rec.npz", keypoints=kp, fps=np.float32(fps), size=np.array([96, 80]))
    np.savez(root / "masks" / "rec.npz", masks=masks)
    return root / "videos" / "rec.mp4"


def train_tiny_detector(root: Path, video: str, overrides: list[str]) -> tuple[Path, Path, Path]:
    """(run folder, store, rendered video): tiny synthetic recordings, ground-truth pose features,
    and a ``demo_bmoe_tridet`` trained briefly with ``overrides`` (epochs, windows, batch size)."""
    from microaction.data.synth.recording import generate_recordings, render_recording
    from microaction.engine.trainer import train
    from microaction.extract.jobs.job_list import collect_jobs
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import ExtractParams

    data = root / "synth"
    generate_recordings(data, "recordings_tiny", seed=0, workers=1, progress=False)
    rendered = render_recording(data, video, "recordings_tiny", seed=0)
    params = ExtractParams(  # streamed, as recordings longer than a minute are (and as mar live encodes)
        parser="groundtruth", encoders=["pose"], fps=24.0, encoder_options={"pose": {"window": 4, "stride": 4}},
        stream_after=10.0,
    )  # fmt: skip
    run_extraction(collect_jobs(data / "manifest.csv"), params, root / "store", progress=False)
    cfg = Path(__file__).resolve().parents[1] / "configs" / "demo_bmoe_tridet.yaml"
    sets = [f"data.store={root / 'store'}", f"data.manifest={data / 'annotations.json'}", f"run.out_dir={root}"]
    return train(cfg, [*sets, "detection.window=64", *overrides]), root / "store", rendered
