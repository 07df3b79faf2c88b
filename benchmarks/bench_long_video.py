"""Long recordings through ``mar extract``: peak memory against the recording's length, and speed.

    python benchmarks/bench_long_video.py [--quick] [--json] [--tracking] [--people]

1. **Peak RSS, 10 vs 20 minutes.** Two recordings of a drawn seated person that sways, drifts and
   moves its arms (10 and 20 minutes at 4 frames/s, 128 x 96, keypoint sidecars) are extracted
   with the pixel encoders (``motion`` + ``pose``: decoding, crops that follow the person, optical
   flow), each in a fresh process, streamed chunk by chunk. Goal: the 20-minute peak is at most
   10 % above the 10-minute one (memory does not grow with the length).
2. **Frames/s, default parser and encoders.** The real MA-52 demo clips (1080 x 1296, 30 fps)
   joined into one video, four times over (44 s, 1,332 frames: five 10-second chunks and five
   tracker segments), extracted by the default CPU path (MediaPipe + motion + pose) once
   streamed (``--stream-after 0``) and once as one clip, in this run, each in a fresh process.
   Goal: >= 25 frames/s on 2 cores; the clip path's figure is the reference (the CPUs may be
   shared), the ratio says what streaming costs. Peak RSS of both is printed too.
3. ``--tracking`` (not in ``make bench``): the clip path once more with one MediaPipe tracker over
   the whole video (``track_seconds`` past its length), its speed, and the distance (native
   pixels, median and 90th percentile) of the streamed run's landmarks, made by tracker segments
   (``extract.jobs.segment_parsing``), from its: in a segment's first half-second and elsewhere.
4. ``--people`` (not in ``make bench``): the 10- and 20-minute recordings with two people side
   by side, ``--people all`` (their keypoint file, pixel encoders): each person streamed as a
   recording of its own; peak RSS growth (goal as in 1.).

Each figure is printed as ``RESULT {"figure": ..., "value": ..., "goal": ..., "met": ...}``.
``--quick``: 2- and 4-minute recordings and 3 clips once (a smoke test; the RSS goal is not judged).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

REPO = Path(__file__).resolve().parents[1]
CLIPS = Path(os.environ.get("MAR_SHARED", REPO.parent / "shared")) / "data" / "ma52" / "demo_clips"

# a seated person on a 128 x 96 (W x H) canvas, as fractions of the canvas (MediaPipe names)
_JOINTS = {
    "nose": (0.50, 0.16), "left_eye": (0.53, 0.13), "right_eye": (0.47, 0.13), "left_ear": (0.56, 0.15),
    "right_ear": (0.44, 0.15), "mouth_left": (0.52, 0.20), "mouth_right": (0.48, 0.20),
    "left_shoulder": (0.62, 0.30), "right_shoulder": (0.38, 0.30), "left_elbow": (0.68, 0.45),
    "right_elbow": (0.32, 0.45), "left_wrist": (0.64, 0.58), "right_wrist": (0.36, 0.58),
    "left_hip": (0.57, 0.60), "right_hip": (0.43, 0.60), "left_knee": (0.60, 0.78), "right_knee": (0.40, 0.78),
    "left_ankle": (0.60, 0.95), "right_ankle": (0.40, 0.95),
}  # fmt: skip


MAKE_BENCH = {"args": [], "budget_s": 240, "mode": "full (10/20-minute recordings, 6 real 1080p clips x 4)"}


def _template():
    import numpy as np

    from microaction.skeleton import LANDMARKS

    out = np.zeros((len(LANDMARKS), 2), np.float32)
    for i, name in enumerate(LANDMARKS):
        if name in _JOINTS:
            out[i] = _JOINTS[name]
            continue
        side = "left" if name.startswith("left") else "right"
        parent = {"eye": f"{side}_eye", "heel": f"{side}_ankle", "foot": f"{side}_ankle"}
        key = next((v for k, v in parent.items() if k in name), f"{side}_wrist")
        out[i] = _JOINTS[key]
        out[i, 1] += 0.02
    return out


def make_recording(
    folder: Path, minutes: float, fps: int = 4, size: tuple[int, int] = (96, 128), people: int = 1
) -> Path:
    """``folder/videos/rec.mp4`` and its keypoints ``folder/keypoints/rec.npz``, drawn frame by
    frame: ``people`` seated side by side, each ``size[1]`` wide (keypoints ``[T, 33, 3]``, or
    ``[M, T, 33, 3]`` for several)."""
    import av
    import cv2
    import numpy as np

    from microaction.skeleton import BONES

    H, Wp = size
    W = Wp * people
    n = int(minutes * 60 * fps)
    base = _template() * np.array([Wp, H], np.float32)
    rng = np.random.default_rng(0)
    kps = np.zeros((people, n, len(base), 3), np.float32)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    (folder / "keypoints").mkdir(exist_ok=True)
    path = folder / "videos" / "rec.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        drift = np.zeros((people, 2), np.float32)
        for t in range(n):
            drift = 0.999 * drift + rng.normal(0, 0.15, (people, 2)).astype(np.float32)  # posture drifts
            img = np.full((H, W, 3), 40, np.uint8)
            for p in range(people):
                kp = base + drift[p] + np.array([Wp * p, 0], np.float32)
                kp[:11, 1] += 2.0 * np.sin(t * 1.0 + p)  # the head nods
                kp[15:23, 0] += 4.0 * np.sin(t * 0.6) * (np.sin(t * 0.025 + p) > 0.5)  # a hand moves at times
                kps[p, t, :, :2] = kp
                kps[p, t, :, 2] = 0.95
                for a, b in BONES:
                    pa, pb = tuple(int(v) for v in kp[a]), tuple(int(v) for v in kp[b])
                    cv2.line(img, pa, pb, (200, 160, 130), 3)
                cv2.circle(img, tuple(int(v) for v in kp[0]), 6, (220, 180, 150), -1)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    np.savez(folder / "keypoints" / "rec.npz", keypoints=kps[0] if people == 1 else kps, fps=np.float32(fps),
             size=np.array([H, W]))  # fmt: skip
    return path


_CHILD = """
import json, resource, sys, time
from microaction.extract.pipeline import ExtractParams
from microaction.extract.jobs.job_list import Job
from microaction.extract.jobs.runner import run_extraction
args = json.loads(sys.argv[1])
t0 = time.perf_counter()
s = run_extraction([Job("rec", args["video"])], ExtractParams(**args["params"]), args["out"], progress=False)
assert s.failed == 0, s.errors
r = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rss_mb": r.ru_maxrss / 1024, "frames": s.frames, "seconds": time.perf_counter() - t0,
                  "cpu_seconds": r.ru_utime + r.ru_stime}))
"""


def run_child(video: Path, out: Path, params: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    arg = json.dumps({"video": str(video), "out": str(out), "params": params})
    res = subprocess.run([sys.executable, "-c", _CHILD, arg], capture_output=True, text=True, env=env)
    if res.returncode:
        raise SystemExit(f"extraction of {video} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def join_clips(clips: list[Path], out: Path) -> tuple[Path, int]:
    """The clips one after another in one video (their native size and rate)."""
    import av

    from microaction.extract.video import Sampling, iter_frames, probe

    info = probe(clips[0])
    n = 0
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=round(info.fps), options={"preset": "veryfast", "crf": "20"})
        s.width, s.height, s.pix_fmt = info.width, info.height, "yuv420p"
        for clip in clips:
            for _, _, f in iter_frames(clip, Sampling(max_side=0)):
                for pkt in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pkt)
                n += 1
        for pkt in s.encode():
            c.mux(pkt)
    return out, n


def result(figure: str, value: float, goal: str, met: bool | None, **extra) -> dict:
    r = {"figure": figure, "value": round(float(value), 3), "goal": goal, "met": met, **extra}
    print("RESULT " + json.dumps(r), flush=True)
    return r


def tracking_figures(video: Path, d: Path, streamed_fps: float) -> list[dict]:
    """3. The clip path with one MediaPipe tracker for the whole video (``track_seconds`` past its
    length: the parse before tracker segments): its speed, and how far the streamed run's
    landmarks (tracker segments) are from its, in native pixels."""
    import numpy as np

    from microaction.data.store import FeatureStore

    r = run_child(video, d / "one_tracker", {"feature_rate": 6.0, "stream_after": 1e9, "track_seconds": 1e9})
    fps = r["frames"] / r["seconds"]
    print(f"one tracker, clip path: {r['frames']} frames in {r['seconds']:.1f} s", flush=True)
    one = FeatureStore.open(d / "one_tracker").read("rec").extras
    seg = FeatureStore.open(d / "speed_streamed").read("rec").extras
    a, b = one["keypoints"], seg["keypoints"]
    seen = (a[..., 2] > 0.5) & (b[..., 2] > 0.5)
    err = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1)
    t = one["frame_indices"] / 30.0  # the joined video is 30 frames/s
    first = (t % 10.0 < 0.5) & (t >= 10.0)  # a segment's first half-second, after a restart
    out = [
        result("fps_1080p_one_tracker_clip_path", fps, "reference", None),
        result("fps_streamed_over_one_tracker", streamed_fps / fps, "", None),
    ]
    for name, where in (("segment_start", first), ("elsewhere", ~first)):
        e = err[where[:, None] & seen]
        out.append(
            result(
                f"landmark_px_median_{name}", float(np.median(e)), "", None, p90=round(float(np.percentile(e, 90)), 3)
            )
        )
    return out


def people_figures(d: Path, lengths: tuple[float, float], *, quick: bool) -> list[dict]:
    """4. Two people side by side in the drawn recordings, ``--people all`` (their keypoint file,
    pixel encoders): each person streamed as a recording of its own; peak RSS against length."""
    from microaction.data.store import FeatureStore

    params = {"parser": "keypoints", "encoders": ["motion", "pose"], "stream_after": 60.0, "people": "all"}
    peaks, out = [], []
    for minutes in lengths:
        video = make_recording(d / f"two{minutes:g}", minutes, people=2)
        r = run_child(video, d / f"two_store{minutes:g}", params)
        store = FeatureStore.open(d / f"two_store{minutes:g}")
        chunks = [store.status(k)["chunks"] for k in store.status("rec")["people"]]
        peaks.append(r["rss_mb"])
        print(f"{minutes:g}-minute recording, two people: {len(chunks)} people streamed in {chunks} chunks in "
              f"{r['seconds']:.1f} s, peak RSS {r['rss_mb']:.0f} MB", flush=True)  # fmt: skip
        out.append(result(f"peak_rss_mb_two_people_{minutes:g}min", r["rss_mb"], "", None))
    growth = 100.0 * (peaks[1] / peaks[0] - 1.0)
    out.append(result("peak_rss_growth_pct_two_people", growth, "<= 10", None if quick else bool(growth <= 10.0)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2/4-minute recordings, 3 clips (smoke test)")
    ap.add_argument("--json", action="store_true", help="print all figures as one JSON list at the end")
    ap.add_argument("--tracking", action="store_true", help="3.: tracker segments against one tracker (+80 s)")
    ap.add_argument("--people", action="store_true", help="4.: peak RSS with two people, --people all (+4 min)")
    args = ap.parse_args(argv)
    lengths = (2.0, 4.0) if args.quick else (10.0, 20.0)
    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        # 1. peak RSS against length (streamed; keypoint sidecars, pixel encoders)
        params = {"parser": "keypoints", "encoders": ["motion", "pose"], "stream_after": 60.0}
        peaks = []
        for minutes in lengths:
            t0 = time.perf_counter()
            video = make_recording(d / f"rec{minutes:g}", minutes)
            made = time.perf_counter() - t0
            r = run_child(video, d / f"store{minutes:g}", params)
            peaks.append(r["rss_mb"])
            print(f"{minutes:g}-minute recording: {r['frames']} frames in {r['seconds']:.1f} s "
                  f"({r['frames'] / r['seconds']:.0f} frames/s), peak RSS {r['rss_mb']:.0f} MB "
                  f"(drawn in {made:.0f} s)", flush=True)  # fmt: skip
            out.append(result(f"peak_rss_mb_{minutes:g}min", r["rss_mb"], "", None))
        growth = 100.0 * (peaks[1] / peaks[0] - 1.0)
        out.append(
            result(
                f"peak_rss_growth_pct_{lengths[0]:g}_to_{lengths[1]:g}min",
                growth,
                "<= 10",
                None if args.quick else bool(growth <= 10.0),
            )
        )
        # 2. frames/s of the default CPU path on a short 1080p video: streamed vs one clip
        clips = sorted(p for p in CLIPS.iterdir() if p.suffix == ".mp4")
        clips = clips[:3] if args.quick else clips * 4
        video, n_frames = join_clips(clips, d / "joined.mp4")
        rates, per_cpu = {}, {}
        for name, extra in (("clip", {"stream_after": 1e9}), ("streamed", {"stream_after": 0.0})):
            r = run_child(video, d / f"speed_{name}", {"feature_rate": 6.0, **extra})
            rates[name] = r["frames"] / r["seconds"]
            per_cpu[name] = r["frames"] / r["cpu_seconds"]
            print(f"{name} path: {r['frames']} frames (1080x1296, {n_frames / 30:.0f} s) in {r['seconds']:.1f} s, "
                  f"{r['cpu_seconds']:.1f} CPU-s, peak RSS {r['rss_mb']:.0f} MB", flush=True)  # fmt: skip
            out.append(result(f"peak_rss_mb_1080p_{name}", r["rss_mb"], "", None))
        out.append(result("fps_1080p_streamed", rates["streamed"], ">= 25", bool(rates["streamed"] >= 25)))
        out.append(result("fps_1080p_clip_path", rates["clip"], "reference", None))
        out.append(result("fps_streamed_over_clip", rates["streamed"] / rates["clip"], "~ 1", None))
        # frames per CPU-second (whole process, all threads): less sensitive to other load; two
        # cores give at most twice this
        out.append(result("frames_per_cpu_second_streamed", per_cpu["streamed"], "", None))
        out.append(result("frames_per_cpu_second_clip_path", per_cpu["clip"], "", None))
        if args.tracking:
            out += tracking_figures(video, d, rates["streamed"])
        if args.people:
            out += people_figures(d, lengths, quick=args.quick)
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
