"""Several people: tracking and per-person attribution on rendered scenes, and `--people all` speed.

Renders scenes of the synthetic generator with 2-4 seated people side by side (one in three with
two people sliding past each other, one hiding the other for a moment), extracts them with
``mar extract --people all`` (the library path: ``run_extraction``), once from pixels
(``mediapipe`` parser: ``PersonFinder`` + tracker) and once from the per-frame OpenPose JSON with
the people in shuffled order (``keypoints`` parser: tracker only), and scores each person's
item (its stored landmarks) against the ground truth (``score_tracking``):

- identity switches per minute of video;
- share of ground-truth actions attributed to the right person (goal >= 95 %);
- frames/s of ``--people all`` (video frames per second of wall time, all people together; and
  per CPU-second of this process, less sensitive to other load on the machine).

    python benchmarks/bench_people.py [--scenes 6] [--seed 0] [--json]

Each figure is also printed as ``RESULT {"figure": ..., "value": ..., "goal": ..., "met": ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from microaction.data.store import FeatureStore  # noqa: E402
from microaction.data.synth.scene import generate_scenes, read_scene_truth  # noqa: E402
from microaction.extract.jobs.job_list import collect_jobs  # noqa: E402
from microaction.extract.jobs.person_tracking import keypoint_box, score_tracking  # noqa: E402
from microaction.extract.jobs.runner import run_extraction  # noqa: E402
from microaction.extract.pipeline import ExtractParams  # noqa: E402

MAKE_BENCH = {
    "args": ["--parsers", "keypoints"],
    "budget_s": 30,
    "mode": "reduced: 6 scenes from keypoint files (the MediaPipe video path: run the script alone)",
}


def track_boxes(store: FeatureStore, stem: str, T: int, scale: float) -> np.ndarray:
    """``[N, T, 4]`` per-frame boxes of the seen landmarks of every person item of ``stem``."""
    st = store.status(stem) or {}
    keys = st.get("people", [])
    out = np.full((len(keys), T, 4), np.nan, np.float32)
    for n, key in enumerate(keys):
        ex = store.read_extras(key, ("keypoints", "frame_indices"))
        for kp, f in zip(ex["keypoints"], ex["frame_indices"].tolist()):
            if f < T:
                b = keypoint_box(kp * np.array([scale, scale, 1], np.float32))
                if b is not None:
                    out[n, f] = b
    return out


def cpu_seconds() -> float:
    """CPU time of this process, all threads (less sensitive than wall time to other load)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run(root: Path, stems: list[str], parser: str) -> dict[str, float]:
    params = ExtractParams(parser=parser, encoders=["pose"], people="all", max_side=0)
    jobs = collect_jobs(root / "videos")
    out = root / f"store_{parser}"
    t0, c0 = time.perf_counter(), cpu_seconds()
    summary = run_extraction(jobs, params, out, progress=False)
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    if summary.failed:
        raise SystemExit(f"extraction failed: {summary.errors}")
    store = FeatureStore.open(out)
    tot = {"id_switches": 0.0, "actions": 0.0, "attributed": 0.0, "frames": 0.0, "minutes": 0.0}
    for stem in stems:
        truth = read_scene_truth(root, stem)
        T = truth["boxes"].shape[1]
        s = score_tracking(truth["boxes"], track_boxes(store, stem, T, 1.0), truth["action_windows"])
        for k in ("id_switches", "actions", "attributed"):
            tot[k] += s[k]
        tot["frames"] += T
        tot["minutes"] += T / float(truth["fps"]) / 60.0
    return {
        "id_switches_per_minute": tot["id_switches"] / max(tot["minutes"], 1e-9),
        "attributed_share": tot["attributed"] / max(tot["actions"], 1.0),
        "frames_per_second": tot["frames"] / seconds,
        "frames_per_cpu_second": tot["frames"] / max(cpu, 1e-9),
        "actions": tot["actions"],
        "frames": tot["frames"],
        "minutes": tot["minutes"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parsers", default="keypoints,mediapipe")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_people_") as tmp:
        root = Path(tmp)
        stems = generate_scenes(root, args.scenes, seed=args.seed)
        for parser in args.parsers.split(","):
            results[parser] = run(root, stems, parser)
    for parser, r in results.items():
        print(
            f"{parser:10s} {int(r['frames'])} frames ({r['minutes']:.2f} min), {int(r['actions'])} actions: "
            f"{r['id_switches_per_minute']:.2f} identity switches/min, "
            f"{100 * r['attributed_share']:.1f} % attributed to the right person, "
            f"{r['frames_per_second']:.1f} frames/s ({r['frames_per_cpu_second']:.1f} per CPU-second)"
        )
        for fig, goal, met in (
            ("id_switches_per_minute", None, None),
            ("attributed_share", 0.95, r["attributed_share"] >= 0.95),
            ("frames_per_second", None, None),
            ("frames_per_cpu_second", None, None),
        ):
            print(
                "RESULT "
                + json.dumps({"figure": f"{parser}/{fig}", "value": round(r[fig], 4), "goal": goal, "met": met})
            )
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
