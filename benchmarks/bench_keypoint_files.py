"""Extraction from keypoint files (no video): a long single-person OpenPose stream (a folder of
per-frame JSON files, BODY_25 + face-70 + two hands-21) and a pose pickle of many clips
(MMAction2 / PySKL form, COCO-17, HRNet-like), both generated here, through ``mar extract
--parser keypoints`` with the pose encoder (the runner's single-process path). Prints frames/s
and the peak resident memory of each case (each runs in a child process of its own).

    python benchmarks/bench_keypoint_files.py [--frames 20000] [--clips 10000] [--quick] [--json]

Goal (issue 13): >= 2,000 frames/s from keypoint files, peak RSS <= 1 GB. Each figure is also
printed as ``RESULT {"figure", "value", "goal", "met"}`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GOAL_FPS = 2000.0
GOAL_RSS_MB = 1024.0

# a seated person in a 1280 x 720 frame, COCO-17 order (BODY_25 / face / hands derived from it)
_COCO = np.array(
    [[640, 200], [655, 185], [625, 185], [675, 195], [605, 195], [720, 300], [560, 300], [745, 420],
     [535, 420], [720, 520], [560, 520], [690, 540], [590, 540], [700, 650], [580, 650], [705, 715],
     [575, 715]], np.float32,
)  # fmt: skip
_BODY25_FROM_COCO = [0, -1, 6, 8, 10, 5, 7, 9, -2, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3, 15, 15, 15, 16, 16, 16]


MAKE_BENCH = {"args": [], "budget_s": 130, "mode": "full (20,000-frame stream, 10,000-clip pickle)"}


def _motion(T: int, seed: int) -> np.ndarray:
    """``[T, 17, 2]`` COCO joints: a nod, a hand wave, jitter."""
    rng = np.random.default_rng(seed)
    t = np.arange(T, dtype=np.float32)[:, None]
    kp = np.repeat(_COCO[None], T, 0).copy()
    kp[:, :5, 1] += 6 * np.sin(0.2 * t)
    kp[:, 9, 0] += 20 * np.sin(0.35 * t[:, 0])
    return kp + rng.normal(0, 0.8, kp.shape).astype(np.float32)


def make_openpose_stream(folder: Path, frames: int) -> Path:
    """``folder/stream/`` with one OpenPose JSON per frame (one person)."""
    d = folder / "stream"
    d.mkdir(parents=True)
    coco = _motion(frames, 0)
    rng = np.random.default_rng(1)
    for t in range(frames):
        body = np.zeros((25, 3), np.float32)
        for j, c in enumerate(_BODY25_FROM_COCO):
            if c >= 0:
                body[j, :2] = coco[t, c]
            elif c == -1:
                body[j, :2] = (coco[t, 5] + coco[t, 6]) / 2
            else:
                body[j, :2] = (coco[t, 11] + coco[t, 12]) / 2
            body[j, 2] = 0.8
        face = np.concatenate([coco[t, 0] + rng.normal(0, 15, (70, 2)), np.full((70, 1), 0.7)], 1)
        lh = np.concatenate([coco[t, 9] + rng.normal(0, 10, (21, 2)), np.full((21, 1), 0.6)], 1)
        rh = np.concatenate([coco[t, 10] + rng.normal(0, 10, (21, 2)), np.full((21, 1), 0.6)], 1)
        person = {
            "person_id": [-1],
            "pose_keypoints_2d": np.round(body, 3).ravel().tolist(),
            "face_keypoints_2d": np.round(face, 3).ravel().tolist(),
            "hand_left_keypoints_2d": np.round(lh, 3).ravel().tolist(),
            "hand_right_keypoints_2d": np.round(rh, 3).ravel().tolist(),
        }
        (d / f"stream_{t:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": [person]}))
    return d


def make_pose_pickle(folder: Path, clips: int, seed: int = 0) -> tuple[Path, int]:
    """An MMAction2-style pickle of ``clips`` COCO-17 clips (30-90 frames, some with a second person)."""
    rng = np.random.default_rng(seed)
    anns, total = [], 0
    for i in range(clips):
        T = int(rng.integers(30, 91))
        M = 2 if i % 10 == 0 else 1
        kp = np.stack([_motion(T, i) * (1.0 if m == 0 else 0.4) for m in range(M)])
        anns.append(
            {
                "frame_dir": f"clip{i:05d}",
                "label": int(i % 52),
                "img_shape": (720, 1280),
                "original_shape": (720, 1280),
                "total_frames": T,
                "keypoint": kp.astype(np.float16),
                "keypoint_score": rng.uniform(0.5, 1.0, (M, T, 17)).astype(np.float16),
            }
        )
        total += T
    names = [a["frame_dir"] for a in anns]
    cut = int(0.8 * clips)
    p = folder / "poses.pkl"
    p.write_bytes(pickle.dumps({"split": {"train": names[:cut], "val": names[cut:]}, "annotations": anns}, protocol=4))
    return p, total


def cpu_seconds() -> float:
    """CPU time of this process, all threads (the machine may be shared: wall time is reported too)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_case(case: str, source: Path, frames: int) -> dict:
    """Extract ``source`` into a temporary store in this process; frames/s and peak RSS."""
    from microaction.extract.jobs.job_list import Job, collect_jobs
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import ExtractParams

    params = ExtractParams(parser="keypoints", encoders=["pose"], parser_options={"fps": 30.0})
    if case == "openpose":
        jobs = [Job("stream", str(source.parent / "stream.mp4"))]  # found by its stem; no video needed
        params.parser_options["root"] = str(source.parent)
    with tempfile.TemporaryDirectory() as out:
        t0, c0 = time.perf_counter(), cpu_seconds()
        if case == "pickle":
            jobs = collect_jobs(source)  # loading the pickle is part of the cost
        s = run_extraction(jobs, params, Path(out) / "store", progress=False)
        dt, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if s.failed or s.frames != frames:
        raise SystemExit(f"{case}: {s.failed} failed, {s.frames} of {frames} frames: {list(s.errors.items())[:2]}")
    return {"case": case, "frames": s.frames, "items": s.done, "seconds": dt, "fps": s.frames / dt,
            "cpu_seconds": cpu, "peak_rss_mb": peak_rss_mb()}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20000, help="frames of the OpenPose stream")
    ap.add_argument("--clips", type=int, default=10000, help="clips in the pose pickle")
    ap.add_argument("--quick", action="store_true", help="2,000 frames and 500 clips")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument("--case", choices=["openpose", "pickle"], help=argparse.SUPPRESS)  # child process
    ap.add_argument("--source", help=argparse.SUPPRESS)
    ap.add_argument("--expect", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.case:
        print(json.dumps(run_case(a.case, Path(a.source), a.expect)))
        return 0
    frames, clips = (2000, 500) if a.quick else (a.frames, a.clips)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stream = make_openpose_stream(Path(tmp), frames)
        pkl, total = make_pose_pickle(Path(tmp), clips)
        print(f"generated {frames} OpenPose frames and {clips} clips ({total} frames) in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)  # fmt: skip
        for case, source, n in (("openpose", stream, frames), ("pickle", pkl, total)):
            cmd = [sys.executable, __file__, "--case", case, "--source", str(source), "--expect", str(n)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                sys.stderr.write(done.stderr)
                return done.returncode
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if a.json:
        print(json.dumps({"load_average": load, "cpus": os.cpu_count(), **{r["case"]: r for r in results}}))
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} (wall-clock figures shrink on a shared machine; "
          "frames per CPU-second do not)")  # fmt: skip
    for r in results:
        what = f"{r['frames']}-frame OpenPose JSON stream" if r["case"] == "openpose" else (
            f"{r['items']}-clip pose pickle ({r['frames']} frames)")  # fmt: skip
        per_cpu = r["frames"] / max(r["cpu_seconds"], 1e-9)
        print(f"{what}: {r['seconds']:.1f} s ({r['cpu_seconds']:.1f} s CPU), {r['fps']:.0f} frames/s "
              f"({per_cpu:.0f} frames per CPU-second), peak RSS {r['peak_rss_mb']:.0f} MB")  # fmt: skip
        for fig, value, goal, met in (
            (f"keypoints_{r['case']}_frames_per_s", round(r["fps"], 1), f">= {GOAL_FPS:.0f}", r["fps"] >= GOAL_FPS),
            (f"keypoints_{r['case']}_frames_per_cpu_s", round(per_cpu, 1), f">= {GOAL_FPS:.0f}", per_cpu >= GOAL_FPS),
            (f"keypoints_{r['case']}_peak_rss_mb", round(r["peak_rss_mb"], 1), f"<= {GOAL_RSS_MB:.0f}",
             r["peak_rss_mb"] <= GOAL_RSS_MB),
        ):  # fmt: skip
            print("RESULT " + json.dumps({"figure": fig, "value": value, "goal": goal, "met": bool(met)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
