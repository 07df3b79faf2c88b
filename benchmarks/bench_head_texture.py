"""B-MoE's head-texture branch on the synthetic benchmark (demo preset, rendered clips).

For each seed: generate and render the demo dataset, extract it with head-box face crops
(``--face-size 32``; ground-truth keypoints and the pose encoder otherwise, as ``mar demo``), then
train and test on the same store:

- ``bmoe``: configs/demo_bmoe.yaml (no face branch);
- ``bmoe+face``: configs/demo_bmoe_texture.yaml with ``texture_target=none`` (face features, no
  auxiliary loss);
- ``bmoe+face+ldp``: configs/demo_bmoe_texture.yaml as shipped (L-SSAT's LDP texture-MAE loss).

Prints mean ± std over the seeds of test F1_mean, action top-1 and the mean per-class F1 of the
classes whose body group involves the head (MA-52's head and head-hand groups, 13 classes), and
the training time per epoch relative to ``bmoe``; writes ``results.json`` in the output folder.

    python benchmarks/bench_head_texture.py [--quick] [--seeds 0,1,2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

VARIANTS = {
    "bmoe": ("bmoe", []),
    "bmoe+face": ("bmoe_texture", ["model.kwargs.texture_target=none"]),
    "bmoe+face+ldp": ("bmoe_texture", []),
}


def head_class_f1(run: Path) -> float:
    """Mean per-class test F1 over the classes of MA-52's head and head-hand body groups."""
    from microaction.taxonomy import load_taxonomy

    tax = load_taxonomy("ma52")
    per_class = json.loads((run / "eval_test.json").read_text())["per_class_f1"]
    groups = {tax.body_names.index(n) for n in ("head", "head_hand")}
    return float(np.mean([per_class[c] for c in range(tax.num_classes) if int(tax.body_of(c)) in groups]))


def main() -> int:
    from microaction.commands.demo import configs_dir, prepare_data, train_and_eval

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny preset, one seed, 2 epochs (a smoke run)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/bench_head_texture")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    preset = "tiny" if args.quick else "demo"
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    out, cfg = Path(args.out), configs_dir(None)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for seed in seeds:
        root = out / f"seed{seed}"
        timings: dict[str, float] = {}
        data, store = prepare_data(root, preset, seed, args.workers, timings, render=True, face_size=32)
        for variant, (config, extra) in VARIANTS.items():
            name = variant.replace("+", "_")
            run, met = train_and_eval(
                config, cfg, data, store, root / "runs", timings, seed=seed, epochs=epochs, name=name, extra=extra
            )
            epochs_log = json.loads((run / "metrics.json").read_text())["epochs"]
            results[variant].append(
                {
                    "f1_mean": met["f1_mean"],
                    "action_top1": met["action_top1"],
                    "head_class_f1": head_class_f1(run),
                    "seconds_per_epoch": float(np.mean([e["seconds"] for e in epochs_log if e["stage"] == "main"])),
                }
            )
    base = np.mean([r["seconds_per_epoch"] for r in results["bmoe"]])
    print(f"\nhead-texture branch, synthetic {preset} preset, test split, seeds {seeds}:")
    print(f"{'variant':<15} {'F1_mean':>15} {'action top-1':>15} {'head-class F1':>15} {'s/epoch':>8} "
          f"{'vs bmoe':>8}  per seed F1_mean")  # fmt: skip
    for v, rs in results.items():
        f1, t1, hf = (100 * np.array([r[k] for r in rs]) for k in ("f1_mean", "action_top1", "head_class_f1"))
        sec = float(np.mean([r["seconds_per_epoch"] for r in rs]))
        cells = "  ".join(f"{a.mean():>7.1f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:>4.1f}" for a in (f1, t1, hf))
        print(f"{v:<15} {cells}  {sec:>8.1f} {sec / base:>7.2f}×  " + " ".join(f"{x:.1f}" for x in f1))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"preset": preset, "seeds": seeds, "results": results}, indent=1))
    print(f"wrote {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
