"""MediaPipe Pose on the synthetic benchmark's rendered mannequin: does the real parser see it?

Renders a synthetic dataset (``tiny`` preset by default), runs the ``mediapipe`` parser (the
tracking session ``mar extract`` uses) on the first N test clips, and compares its landmarks with
the exact projection stored beside each clip (``keypoints_clean``). Printed: the share of frames
in which a person was found, the median landmark error in % of the person's pixel height (over
landmarks inside the image), and the parser's speed in frames/s.

    python benchmarks/bench_mediapipe_mannequin.py [--quick] [--clips 12] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

MAKE_BENCH = {"args": [], "budget_s": 40, "mode": "full (12 clips)"}


def parse_clip(video: Path) -> tuple[np.ndarray, float]:
    """MediaPipe landmarks [T, 33, 3] (pixels, visibility) of every frame, and the parse seconds."""
    import av

    from microaction.extract.parsers.mediapipe import MediaPipeParser

    with av.open(str(video)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    session = MediaPipeParser(max_gap=0).session()  # no gap filling: count what the parser itself found
    t0 = time.perf_counter()
    for f in frames:
        session.add(f)
    res = session.result()
    return res.keypoints, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 clips (a check, not a measurement)")
    ap.add_argument("--clips", type=int, default=12, help="test clips to parse (default 12)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")
    ap.add_argument("--preset", default="tiny", help="synthetic preset (default tiny)")
    ap.add_argument("--out", default="runs/bench_mediapipe_mannequin", help="output folder")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="processes for synth")
    args = ap.parse_args()

    from microaction.data.synth import generate_dataset, read_clip

    data = Path(args.out) / f"synth_{args.preset}_{args.seed}"
    if not (data / "dataset.json").is_file():
        generate_dataset(data, args.preset, seed=args.seed, render=True, workers=args.workers, progress=False)
    stems = sorted(p.stem for p in (data / "videos").glob("test_*.mp4"))[: 2 if args.quick else args.clips]
    found, errors, frames, seconds = [], [], 0, 0.0
    for stem in stems:
        kp, secs = parse_clip(data / "videos" / f"{stem}.mp4")
        clean = read_clip(data, stem)["keypoints_clean"]
        T = min(len(kp), len(clean))
        kp, clean = kp[:T], clean[:T]
        seen = (kp[..., 2] > 0).any(axis=1)  # the parser returned landmarks for that frame
        found.append(float(seen.mean()))
        inside = clean[..., 2] > 0.5
        height = np.ptp(np.where(inside, clean[..., 1], np.nan), axis=1, keepdims=True)  # may be NaN
        height = np.nan_to_num(height, nan=1.0)
        err = np.linalg.norm(kp[..., :2] - clean[..., :2], axis=-1) / np.maximum(height, 1.0)
        errors.append(err[seen[:, None] & inside])
        frames += T
        seconds += secs
        print(f"{stem}: {T} frames, person in {100 * seen.mean():.0f} %, median error "
              f"{100 * np.median(err[seen[:, None] & inside]) if seen.any() else float('nan'):.2f} %")  # fmt: skip
    all_err = np.concatenate(errors) if errors else np.zeros(0)
    result = {
        "clips": len(stems),
        "frames": frames,
        "person_found_share": float(np.mean(found)) if found else 0.0,
        "median_error_of_height": float(np.median(all_err)) if all_err.size else float("nan"),
        "frames_per_second": frames / seconds if seconds else 0.0,
    }
    print(
        f"\nmediapipe on {result['clips']} rendered {args.preset} clips ({frames} frames): person found in "
        f"{100 * result['person_found_share']:.1f} % of frames, median landmark error "
        f"{100 * result['median_error_of_height']:.2f} % of the person's height, "
        f"{result['frames_per_second']:.1f} frames/s"
    )
    (Path(args.out) / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    from benchlib import result as record

    note = f"{result['clips']} rendered {args.preset} clips, {frames} frames" + (", quick" if args.quick else "")
    record("mediapipe on the mannequin: frames with the person found", round(100 * result["person_found_share"], 1),
           unit="%", note=note)  # fmt: skip
    record("mediapipe on the mannequin: median landmark error / person height",
           round(100 * result["median_error_of_height"], 2), unit="%", note=note)  # fmt: skip
    record("mediapipe on the mannequin: frames/s", round(result["frames_per_second"], 1), unit="frames/s", note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
