"""Speed of the detection metrics and NMS at the field's scales (random segments, fixed seed):

- ``detection_map`` over an MMA-52-sized subset (``--videos`` videos x 3 ground-truth segments,
  ``--preds`` predictions per video, 52 classes, 9 thresholds);
- ``nms`` and ``soft_nms`` (Gaussian) over the candidates of a 1-hour recording
  (``--candidates`` segments of 0.3-5 s, 52 classes).

    python benchmarks/bench_detection_metrics.py [--videos 1000] [--preds 100] [--candidates 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np

MAKE_BENCH = {"args": [], "budget_s": 20, "mode": "full"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=1000)
    ap.add_argument("--preds", type=int, default=100, help="predictions per video")
    ap.add_argument("--candidates", type=int, default=5000, help="NMS candidates in one 1-hour recording")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from microaction.data.readers.segments import Detection, Segment
    from microaction.metrics.detection import detection_map, nms, soft_nms

    rng = random.Random(0)
    gt, pred = [], []
    for v in range(args.videos):
        for _ in range(3):
            a = rng.uniform(0, 10)
            gt.append(Segment(f"v{v}", a, a + rng.uniform(0.5, 4), rng.randrange(52)))
        for _ in range(args.preds):
            a = rng.uniform(0, 10)
            pred.append(Detection(f"v{v}", a, a + rng.uniform(0.5, 4), rng.randrange(52), rng.random()))
    t = time.perf_counter()
    detection_map(gt, pred, 52)
    t_map = time.perf_counter() - t

    g = np.random.default_rng(0)
    n = args.candidates
    a = g.uniform(0, 3600, n)
    seg, scores, labels = np.stack([a, a + g.uniform(0.3, 5, n)], 1), g.random(n), g.integers(0, 52, n)
    t = time.perf_counter()
    kept = nms(seg, scores, labels, 0.5)
    t_nms = time.perf_counter() - t
    t = time.perf_counter()
    soft, _ = soft_nms(seg, scores, labels, max_num=2000)
    t_soft = time.perf_counter() - t

    res = {
        "map_predictions": len(pred),
        "map_seconds": round(t_map, 3),
        "nms_candidates": n,
        "nms_kept": len(kept),
        "nms_seconds": round(t_nms, 3),
        "soft_nms_kept": len(soft),
        "soft_nms_seconds": round(t_soft, 3),
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"detection_map: {len(pred)} predictions, {len(gt)} segments, 52 classes x 9 tIoU: {t_map:.2f} s")
        print(f"nms: {n} candidates -> {len(kept)} kept: {t_nms:.2f} s")
        print(f"soft_nms (gaussian, max 2000): {n} candidates -> {len(soft)}: {t_soft:.2f} s")
    from benchlib import result

    result("detection mAP (MMA-52 protocol), seconds", res["map_seconds"], unit="s",
           note=f"{len(pred)} predictions, {len(gt)} segments, 52 classes x 9 tIoU")  # fmt: skip
    result("class-aware NMS, seconds", res["nms_seconds"], unit="s", note=f"{n} candidates of a 1-hour recording")
    result("Soft-NMS (Gaussian, max 2000), seconds", res["soft_nms_seconds"], unit="s", note=f"{n} candidates")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
