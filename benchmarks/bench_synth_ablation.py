"""B-MoE against its ablations and the baselines on the synthetic benchmark (demo preset).

For each seed: generate the demo dataset with that seed (keypoint sidecars; rendering is not
needed, the pose features come from the sidecars exactly as in ``mar demo``), extract it with the
``groundtruth`` parser and ``pose`` encoder, train each model from ``configs/demo_<model>.yaml``
with the same seed and evaluate on the test split. Prints mean ± std of F1_mean (and action
top-1) over the seeds, and writes ``results.json`` in the output folder.

    python benchmarks/bench_synth_ablation.py [--quick] [--seeds 0,1,2] [--out DIR]

``--quick``: the tiny preset, one seed, 2 epochs (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

# make bench: the full comparison (3 seeds x 6 models, ~20 min on 2 cores) does not fit its budget
MAKE_BENCH = {"args": ["--quick"], "budget_s": 120, "mode": "reduced: --quick (tiny preset, 1 seed, 2 epochs)"}
MODELS = ("bmoe", "bmoe_nosup", "m3e_global", "bmoe_uniform", "bmoe_concat", "mean_mlp")


def main() -> int:
    from microaction.commands.demo import configs_dir, prepare_data, train_and_eval

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--out", default="runs/bench_synth_ablation")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    preset = "tiny" if args.quick else "demo"
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    out, cfg = Path(args.out), configs_dir(None)
    results: dict[str, list[dict[str, float]]] = {m: [] for m in models}
    timings: dict[str, float] = {}
    for seed in seeds:
        root = out / f"seed{seed}"
        data, store = prepare_data(root, preset, seed, args.workers, timings, render=False)
        for m in models:
            _, met = train_and_eval(m, cfg, data, store, root / "runs", timings, seed=seed, epochs=epochs)
            results[m].append(
                {"f1_mean": met["f1_mean"], "action_top1": met["action_top1"], "seconds": timings[f"train {m}"]}
            )
    print(f"\nsynthetic benchmark, {preset} preset, test split, seeds {seeds} (data and training seed):")
    print(f"{'model':<14} {'F1_mean':>15} {'action top-1':>15}  per seed F1_mean")
    for m in models:
        f1 = 100 * np.array([r["f1_mean"] for r in results[m]])
        t1 = 100 * np.array([r["action_top1"] for r in results[m]])
        print(f"{m:<14} {f1.mean():>7.1f} ± {f1.std():>4.1f}  {t1.mean():>7.1f} ± {t1.std():>4.1f}  "
              + " ".join(f"{v:.1f}" for v in f1))  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"preset": preset, "seeds": seeds, "results": results}, indent=1) + "\n"
    )
    print(f"wrote {out / 'results.json'}")
    from benchlib import result

    note = "quick: a smoke run, not a measurement" if args.quick else f"{preset} preset, seeds {seeds}"
    for m in models:
        f1 = 100 * np.array([r["f1_mean"] for r in results[m]])
        result(f"synthetic ablation: {m} test F1_mean", round(float(f1.mean()), 1), unit="%", note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
