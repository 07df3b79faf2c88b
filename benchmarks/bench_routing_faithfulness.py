"""Routing faithfulness on the synthetic benchmark: does B-MoE route each class to the body
region that really moves?

For every class with test clips, the expert with the highest mean routing weight (``mar eval``'s
``routing_per_class``) is compared with the class's ground-truth regions
(``Taxonomy.regions_of_body``: head-hand classes count head or upper limbs). Prints the share of
classes routed to a ground-truth region, per body group too, next to what routers that ignore the
input get: a random one (|regions of the class| / R, averaged over classes) and the best constant
one (always the region most classes involve: upper limbs on MA-52's taxonomy, 33 of 52 classes),
so a collapsed router is not mistaken for a faithful one.

    python benchmarks/bench_routing_faithfulness.py [--quick] [--run RUN_DIR] [--seed N]

Without ``--run`` it generates the demo dataset, extracts it and trains ``configs/demo_bmoe.yaml``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np


def faithfulness(ev: dict) -> dict:
    from microaction.taxonomy import load_taxonomy

    tax = load_taxonomy("ma52")
    routing = ev.get("routing_per_class")
    if routing is None:
        raise SystemExit("this run's evaluation has no routing_per_class (not a mixture model?)")
    regions = list(ev["regions"])
    rows = []
    for c in range(tax.num_classes):
        if routing[c] is None:
            continue  # no test clip of this class
        w = np.asarray(routing[c], dtype=np.float64)
        if not np.all(np.isfinite(w)) or w.sum() <= 0:
            continue
        gt = tax.regions_of_body(int(tax.body_of(c)))
        top = regions[int(np.argmax(w))]
        rows.append({"class": tax.names[c], "body": tax.body_names[int(tax.body_of(c))], "top": top,
                     "gt": list(gt), "hit": top in gt, "chance": len(gt) / len(regions), "weights": w.round(3).tolist()})  # fmt: skip
    by_body: dict[str, list[bool]] = {}
    for r in rows:
        by_body.setdefault(r["body"], []).append(r["hit"])
    # a router that ignores the input and always picks one region: the best such constant choice
    constant = {reg: float(np.mean([reg in r["gt"] for r in rows])) for reg in regions}
    best_const = max(constant, key=constant.__getitem__)
    return {
        "classes": len(rows),
        "share": float(np.mean([r["hit"] for r in rows])),
        "chance": float(np.mean([r["chance"] for r in rows])),
        "constant_region": best_const,
        "constant_share": constant[best_const],
        "distinct_top": sorted({r["top"] for r in rows}),
        "mean_top_weight": float(np.mean([max(r["weights"]) for r in rows])),
        "by_body": {b: float(np.mean(h)) for b, h in by_body.items()},
        "rows": rows,
        "regions": regions,
    }


MAKE_BENCH = {"args": [], "budget_s": 240, "mode": "full (demo preset, seed 0)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--run", help="an existing B-MoE run folder trained on the synthetic benchmark")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/bench_routing")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    if args.run:
        run = Path(args.run)
        if not (run / "eval_test.json").is_file():
            from microaction.cli import main as mar

            mar(["eval", str(run), "--split", "test"])
    else:
        from microaction.commands.demo import configs_dir, prepare_data, train_and_eval

        timings: dict[str, float] = {}
        out = Path(args.out)
        data, store = prepare_data(
            out, "tiny" if args.quick else "demo", args.seed, args.workers, timings, render=False
        )
        run, _ = train_and_eval("bmoe", configs_dir(None), data, store, out / "runs", timings, seed=args.seed,
                                epochs=2 if args.quick else None)  # fmt: skip
    res = faithfulness(json.loads((run / "eval_test.json").read_text()))
    print(f"\nrouting faithfulness ({run}):")
    print(
        f"{'class':<34} {'body group':<11} {'top expert':<12} {'weights ' + '/'.join(r[:4] for r in res['regions']):<30} ok"
    )
    for r in res["rows"]:
        print(
            f"{r['class']:<34} {r['body']:<11} {r['top']:<12} {' '.join(f'{w:.2f}' for w in r['weights']):<30} {'yes' if r['hit'] else 'no'}"
        )
    print(f"\nclasses routed to a ground-truth region: {100 * res['share']:.1f}% of {res['classes']} "
          f"(random router: {100 * res['chance']:.1f}%; "
          f"always {res['constant_region']}: {100 * res['constant_share']:.1f}%)")  # fmt: skip
    print(f"experts that are ever the top one: {', '.join(res['distinct_top'])}; "
          f"mean top routing weight {res['mean_top_weight']:.2f}")  # fmt: skip
    print("per body group: " + ", ".join(f"{b} {100 * v:.0f}%" for b, v in res["by_body"].items()))
    (run / "routing_faithfulness.json").write_text(json.dumps(res, indent=1) + "\n")
    from benchlib import result

    beat = max(res["chance"], res["constant_share"])
    result("routing: classes whose top expert is a ground-truth region", round(100 * res["share"], 1), unit="%",
           goal=f"> best input-blind router ({100 * beat:.1f} %)", met=None if args.quick else res["share"] > beat,
           note="quick: a smoke run, not a measurement" if args.quick else f"{res['classes']} classes")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
