"""The zoom B-MoE relies on: region crops against the whole-person crop, through the pixel path.

The pose features of ``mar demo`` are keypoints: every region stream is a subset of the global
one, so a region expert sees nothing the global stream lacks. Here the rendered demo videos go
through the **pixel path** instead: ``mar extract --parser groundtruth --encoder motion
--crop-size S`` computes optical-flow / gradient descriptors (HOF, MBH, HOG) on each region's
masked crop resized to S × S (the head crop zooms in on eyes, nose and mouth, the arm crop on the
hands) and, for the global stream, on the whole-person crop at the **same** S × S. Then, on that
one store and for every training seed, it trains

* ``pooled_linear`` (the linear probe on pooled mean / std / mean |Δ| of all five streams),
* ``m3e_global`` (``configs/demo_m3e_global.yaml``: one M3E on the whole-person crop's features),
* ``bmoe`` (``configs/demo_bmoe.yaml``: region experts on the zoomed crops + the global stream),
* ``mean_mlp`` (the five streams time-averaged, MLP) and ``micro_dualnet`` (the five streams),
* on request, ``bmoe`` variants (``VARIANTS``; docs/synthetic.md): ``bmoe_seg0`` (``pool_segments: 0``),
  ``bmoe_raw`` (the segment means without ``segment_center`` / ``segment_dropout``), ``bmoe_segdrop``
  (those raw means, ``segment_drop: 0.5``), ``bmoe_raw_dropout``, ``bmoe_center``, ``bmoe_center_drop``,

evaluates each on the test split and prints mean ± std (population) over the seeds of F1_mean and
action top-1, the gap ``bmoe`` − ``m3e_global`` (goal: ≥ +5 F1_mean points) and the gap ``bmoe`` −
the better of ``pooled_linear`` / ``mean_mlp``, which see the same streams (goal: ≥ +3).

    python benchmarks/bench_pixel_zoom.py [--quick] [--seeds 0,1,2] [--crop-size 64] [--data DIR] [--out DIR]

``--data``: a rendered synthetic dataset to reuse (``mar demo`` leaves one in ``runs/demo/synth``);
without it the demo preset is generated and rendered into ``OUT/synth``. The store is reused when
it exists (an interrupted extraction resumes); ``--resume`` reuses finished runs.
``--quick``: the tiny preset, one seed, 2 epochs (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from benchlib import comma_list, mar, result

MAKE_BENCH = {"args": ["--quick", "--models", "pooled_linear,m3e_global,bmoe"], "budget_s": 30,
              "mode": "reduced: --quick (tiny preset, 1 seed, 2 epochs, 3 models)"}  # fmt: skip
MODELS = ("pooled_linear", "mean_mlp", "m3e_global", "bmoe", "micro_dualnet")
# the demo configs' segment means without segment_center / segment_dropout (before they were on)
RAW = ["model.kwargs.segment_center=false", "model.kwargs.segment_dropout=0"]
# variant -> (config demo_<config>.yaml, --set overrides); a shipped model is its own config, no overrides
VARIANTS: dict[str, tuple[str, list[str]]] = {
    **{m: (m, []) for m in MODELS},
    "bmoe_seg0": ("bmoe", ["model.kwargs.pool_segments=0"]),  # pooled tokens without the segment means
    # the segment means as before segment_center / segment_dropout (docs/synthetic.md), and variants
    "bmoe_raw": ("bmoe", RAW),
    "bmoe_raw_dropout": ("bmoe", ["model.kwargs.segment_center=false"]),  # element-wise dropout only
    "bmoe_center": ("bmoe", ["model.kwargs.segment_dropout=0"]),  # centred, no dropout
    "bmoe_center_drop": ("bmoe", ["model.kwargs.segment_dropout=0", "model.kwargs.segment_drop=0.5"]),
    "bmoe_segdrop": ("bmoe", [*RAW, "model.kwargs.segment_drop=0.5"]),  # the raw branch dropped per sample
}
SAME_INPUT = ("pooled_linear", "mean_mlp")  # baselines that see bmoe's five streams, time pooled away


def main() -> int:
    from microaction.commands.demo import configs_dir, train_and_eval

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--crop-size", type=int, default=64, help="side of every stream's crop (regions and global)")
    ap.add_argument("--data", help="a rendered synthetic dataset to reuse (default: generate into OUT/synth)")
    ap.add_argument("--out", default="runs/bench_pixel_zoom")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--resume", action="store_true", help="reuse runs that have finished (eval_test.json)")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    models = comma_list(args.models, VARIANTS)
    preset = "tiny" if args.quick else "demo"
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    out, cfg = Path(args.out), configs_dir(None)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    data = Path(args.data) if args.data else out / "synth"
    if not (data / "manifest.csv").is_file():
        timings["synth + render"] = mar(["synth", "--out", str(data), "--preset", preset, "--seed",
                                         str(args.data_seed), "--workers", str(args.workers), "--render"])  # fmt: skip
    if not (data / "videos").is_dir():
        raise SystemExit(f"{data} has no videos/: the pixel path needs a rendered dataset (mar synth --render)")
    store = out / f"store_motion{args.crop_size}"
    if not (store / "packed" / "keys.json").is_file():
        timings["extract (motion)"] = mar(["extract", "--videos", str(data / "manifest.csv"), "--out", str(store),
                                           "--parser", "groundtruth", "--encoder", "motion", "--crop-size",
                                           str(args.crop_size), "--workers", str(args.workers), "--quiet"])  # fmt: skip
        timings["pack"] = mar(["pack", str(store)])

    rows: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    for seed in seeds:
        for m in models:
            name = f"{m}_s{seed}"
            done = out / "runs" / name / "eval_test.json"
            if args.resume and done.is_file():
                met = json.loads(done.read_text())["metrics"]
            else:
                config, sets = VARIANTS[m]
                _, met = train_and_eval(config, cfg, data, store, out / "runs", timings, seed=seed, epochs=epochs,
                                        name=name, extra=["run.progress=false", *sets])  # fmt: skip
            rows[m].append(met)

    note = "quick: not a measurement" if args.quick else f"demo preset rendered, motion encoder {args.crop_size}px"
    print(f"\npixel path (motion encoder, every crop {args.crop_size}x{args.crop_size}), test split, seeds {seeds}:")
    print(f"{'model':<15} {'F1_mean':>14} {'action top-1':>14}  per seed F1_mean")
    f1 = {m: 100 * np.array([r["f1_mean"] for r in rows[m]]) for m in models}
    for m in models:
        top1 = 100 * np.array([r["action_top1"] for r in rows[m]])
        per = ", ".join(f"{v:.1f}" for v in f1[m])
        print(f"{m:<15} {f1[m].mean():>7.1f} ± {f1[m].std():>4.1f} {top1.mean():>7.1f} ± {top1.std():>4.1f}  {per}")
        result(f"pixel path: {m} test F1_mean", round(float(f1[m].mean()), 1), unit="%", note=note)
    if "bmoe" in f1 and "m3e_global" in f1:
        gap = float(f1["bmoe"].mean() - f1["m3e_global"].mean())
        print(f"bmoe - m3e_global: {gap:+.1f} F1_mean points (goal >= +5)")
        result("pixel path: bmoe (region crops) - m3e_global (whole-person crop), F1_mean", round(gap, 1),
               unit="points", goal=">= +5", met=None if args.quick else gap >= 5, note=note)  # fmt: skip
    base = [m for m in SAME_INPUT if m in f1]
    if "bmoe" in f1 and base:
        best = max(base, key=lambda m: float(f1[m].mean()))
        gap = float(f1["bmoe"].mean() - f1[best].mean())
        print(f"bmoe - best same-input baseline ({best}): {gap:+.1f} F1_mean points (goal >= +3)")
        result("pixel path: bmoe - best of pooled_linear / mean_mlp (the same five streams), F1_mean", round(gap, 1),
               unit="points", goal=">= +3", met=None if args.quick else gap >= 3, note=f"{note}; {best}")  # fmt: skip
    for v in (m for m in models if m.startswith("bmoe_") and base):  # the variants, beside the goal
        best = max(base, key=lambda m: float(f1[m].mean()))
        print(f"{v} - best same-input baseline ({best}): {float(f1[v].mean() - f1[best].mean()):+.1f} F1_mean points")
    if timings:
        print("steps: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
