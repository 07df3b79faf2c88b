"""B-MoE against its ablations and the baselines on the synthetic benchmark (demo preset).

One demo dataset (data seed ``--data-seed``; keypoint sidecars, no rendering: the pose features
come from the sidecars exactly as in ``mar demo``) is generated and extracted once, or reused
when ``--out`` already holds it. Every variant then trains from ``configs/demo_<config>.yaml``
(plus the variant's overrides, below) with each training seed, one after the other in this one
process, and is evaluated on the test split. Prints, per variant, mean ± std (population) over
the seeds of F1_mean and action top-1, the per-seed F1_mean, whether the row had routing
supervision (``loss.routing_weight`` > 0: ours, not the paper's), and for routing models the
routing faithfulness (``bench_routing_faithfulness.faithfulness``: share of classes whose top
expert is a ground-truth region; number of experts that are on top for some class). Writes
``results.json``; ``--resume`` reuses finished runs (a killed benchmark loses only the run it was in;
parts run in parallel with ``--resume``, then one ``--resume`` over everything prints the table).

    python benchmarks/bench_synth_ablation.py [--quick] [--seeds 0,1,2] [--variants a,b] [--out DIR]

``--quick``: the tiny preset, one seed, 2 epochs (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import comma_list, result

# make bench: the full comparison (3 seeds x 5 default variants, 20 epochs each) does not fit its budget
MAKE_BENCH = {"args": ["--quick"], "budget_s": 30, "mode": "reduced: --quick (tiny preset, 1 seed, 2 epochs)"}
# variant -> (config demo_<config>.yaml, --set overrides): one switch per ablation row
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "pooled_linear": ("pooled_linear", []),
    "pooled_linear_global": ("pooled_linear", ["model.kwargs.streams=global"]),  # the probe on the global stream only
    "m3e_global": ("m3e_global", []),
    "m3e_global_mean": ("m3e_global", ["model.kwargs.pool=mean"]),  # its token: the mean of the steps only
    "micro_dualnet": ("micro_dualnet", []),
    "bmoe": ("bmoe", []),  # the paper's objective: CE + L_emb, no routing supervision
    "bmoe_routed": ("bmoe_routed", []),  # + body-part routing supervision (ours)
    # the read-out: the routed sum of the region experts' pooled outputs straight to the head (bmoe),
    # with the global M3E's pooled output added, or no direct path at all
    "bmoe_sum_all": ("bmoe", ["model.kwargs.expert_sum=all"]),
    "bmoe_sum_all_balance": ("bmoe", ["model.kwargs.expert_sum=all", "loss.load_balance_weight=0.05"]),
    "bmoe_no_sum": ("bmoe", ["model.kwargs.expert_sum=none"]),  # experts reach the head through attention only
    "bmoe_no_sum_readout": ("bmoe", ["model.kwargs.expert_sum=none", "model.kwargs.readout_pooled=true"]),
    "bmoe_no_sum_mean": ("bmoe", ["model.kwargs.expert_sum=none", "model.kwargs.pool=mean"]),  # the former design
    "bmoe_mix": ("bmoe", ["model.kwargs.combine=mix"]),  # routing-weighted average of the expert sequences
    "bmoe_emb_features": ("bmoe", ["loss.emb_on=features"]),  # L_emb on the classifier input only
    "bmoe_noise": ("bmoe", ["model.kwargs.router_noise=1.0"]),  # Gaussian noise on routing logits
    "bmoe_balance": ("bmoe", ["loss.load_balance_weight=0.05"]),  # load-balance term
    "bmoe_uniform": ("bmoe_uniform", []),
    "bmoe_concat": ("bmoe_concat", []),
    "mean_mlp": ("mean_mlp", []),
}
DEFAULT = "pooled_linear,m3e_global,micro_dualnet,bmoe,bmoe_routed"


def main() -> int:
    from microaction.commands.demo import configs_dir, prepare_data, routing_supervised, train_and_eval

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_routing_faithfulness import faithfulness

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--variants", default=DEFAULT, help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--out", default="runs/bench_synth_ablation")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--resume", action="store_true", help="reuse runs that have finished (eval_test.json)")
    ap.add_argument("--report-only", action="store_true", help="train nothing: the table of the finished runs")
    ap.add_argument("--results", default="results.json", help="file name in --out (parallel parts: one each)")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    variants = comma_list(args.variants, VARIANTS, "variants")
    preset = "tiny" if args.quick else "demo"
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    out, cfg = Path(args.out), configs_dir(None)
    timings: dict[str, float] = {}
    data, store = out / "synth", out / "store"
    args.resume = args.resume or args.report_only
    if not (args.resume and (store / "manifest.json").is_file()):
        data, store = prepare_data(out, preset, args.data_seed, args.workers, timings, render=False)
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for seed in seeds:
        for v in variants:
            config, sets = VARIANTS[v]
            name = f"{v}_s{seed}"
            run = out / "runs" / name
            if args.resume and (run / "eval_test.json").is_file():
                met = json.loads((run / "eval_test.json").read_text())["metrics"]
                seconds = None
            elif args.report_only:
                continue
            else:
                run, met = train_and_eval(config, cfg, data, store, out / "runs", timings, seed=seed, epochs=epochs,
                                          name=name, extra=["run.progress=false", *sets])  # fmt: skip
                seconds = timings[f"train {name}"]
            row: dict[str, Any] = {"seed": seed, "f1_mean": met["f1_mean"], "action_top1": met["action_top1"],
                                   "seconds": seconds, "routing_supervised": routing_supervised(run)}  # fmt: skip
            ev = json.loads((run / "eval_test.json").read_text())
            if ev.get("routing_per_class") is not None:
                fa = faithfulness(ev)
                row.update(faithful=fa["share"], experts_on_top=len(fa["distinct_top"]))
            results[v].append(row)
            out.mkdir(parents=True, exist_ok=True)
            (out / args.results).write_text(json.dumps({"preset": preset, "data_seed": args.data_seed,
                                                          "seeds": seeds, "results": results}, indent=1) + "\n")  # fmt: skip
    print(f"\nsynthetic benchmark, {preset} preset (data seed {args.data_seed}), test split, training seeds {seeds}:")
    print(f"{'variant':<18} {'routing sup.':<12} {'F1_mean':>13} {'action top-1':>13}  {'faithful':>13} "
          f"{'experts on top':>14}  per seed F1_mean (seeds)")  # fmt: skip
    for v in variants:
        rows = results[v]
        if not rows:
            continue
        f1 = 100 * np.array([r["f1_mean"] for r in rows])
        t1 = 100 * np.array([r["action_top1"] for r in rows])
        sup = "yes (ours)" if any(r["routing_supervised"] for r in rows) else "no"
        fa = "-"
        top = "-"
        if all("faithful" in r for r in rows):
            fv = 100 * np.array([r["faithful"] for r in rows])
            fa = f"{fv.mean():.1f} ± {fv.std():.1f}"
            top = "/".join(str(r["experts_on_top"]) for r in rows)
        print(f"{v:<18} {sup:<12} {f1.mean():>6.1f} ± {f1.std():>4.1f} {t1.mean():>6.1f} ± {t1.std():>4.1f}  "
              f"{fa:>13} {top:>14}  " + " ".join(f"{x:.1f}" for x in f1)
              + f" ({','.join(str(r['seed']) for r in rows)})")  # fmt: skip
    print(f"wrote {out / args.results}")

    note = "quick: a smoke run, not a measurement" if args.quick else f"{preset} preset, seeds {seeds}"
    for v in variants:
        if results[v]:
            f1 = 100 * np.array([r["f1_mean"] for r in results[v]])
            result(f"synthetic ablation: {v} test F1_mean", round(float(f1.mean()), 1), unit="%", note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
