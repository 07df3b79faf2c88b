"""The diagnostic preset: a benchmark where time and body parts both matter.

``mar synth --preset diagnostic`` (``data/synth/diagnostic.py``) has classes in groups that move one
body part with the same moves and the same time-averaged statistics, and differ only in the
**order** of two moves, the **rhythm** (repetitions per burst) or the **duration** of the holds. A
model that pools time away is at chance inside a group; the time course separates the classes.

This script generates the preset (data seed ``--data-seed``), extracts it on one path, trains every
model of ``--models`` from ``configs/demo_<config>.yaml`` (+ the variant's overrides, below; label
set ``synth_diagnostic``) with each training seed and evaluates on the test split. It prints, per
model, mean ± std (population) over the seeds of F1_mean, action top-1 and the **within-group
accuracy** — per group, the group's test clips classified among the group's classes only (the
argmax of the model's action scores restricted to them: the group given, which class?), the share
right (chance: 1 / the group's size), averaged over the groups — and, for the two probes (``pooled_linear``,
``mean_mlp``), the within-group accuracy of every group against chance (goal: within 5 points).
The **oracle** classifies every test clip from the generator's recorded program alone (which move
comes first, how many beats per burst, how the hold time is split; not the label): it must be
perfect, or the preset would not be what it claims.

    python benchmarks/bench_diagnostic.py [--quick] [--path pose|pixel] [--seeds 0,1,2] [--models a,b] [--out DIR]

``--path pose``: pose features from the keypoint sidecars (``--parser groundtruth --encoder pose``,
as ``mar demo``). ``--path pixel``: the preset rendered and extracted with the motion encoder on
``--crop-size`` crops (as ``bench_pixel_zoom.py``); rendering and optical flow are slow, so the
pixel path's test split is cut to ``--pixel-test`` clips per class (train and val as the preset).
``micro_dualnet_mean`` (not in the default list) is Micro-DualNet with the paper's mean pooling
(``pool_segments: 0``) against the shipped config's ordered segment means.
``--resume`` reuses finished runs and the data. ``--quick``: ``diagnostic_tiny``, one seed, 2
epochs (a smoke run, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import comma_list, mar, result

MAKE_BENCH = {"args": ["--quick", "--models", "pooled_linear,mean_mlp,bmoe"], "budget_s": 60,
              "mode": "reduced: --quick (diagnostic_tiny preset, 1 seed, 2 epochs, 3 models)"}  # fmt: skip
TAXONOMY = "synth_diagnostic"
# the demo configs' segment means without segment_center / segment_dropout (before they were on)
RAW = ["model.kwargs.segment_center=false", "model.kwargs.segment_dropout=0"]
# variant -> (config demo_<config>.yaml, --set overrides)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "pooled_linear": ("pooled_linear", []),  # mean / std / mean |Δ| of every stream, logistic regression
    "mean_mlp": ("mean_mlp", []),  # time-averaged streams, MLP
    "m3e_global": ("m3e_global", []),
    "micro_dualnet": ("micro_dualnet", []),  # pool_segments: 4 (the config), not in the paper
    "micro_dualnet_mean": ("micro_dualnet", ["model.kwargs.pool_segments=0"]),  # the paper's mean pooling
    "bmoe": ("bmoe", []),
    "bmoe_uniform": ("bmoe_uniform", []),
    "bmoe_concat": ("bmoe_concat", []),
    "bmoe_no_sgp": ("bmoe", ["model.kwargs.n_sgp=0"]),  # M3E without its SGP blocks (attention only)
    "bmoe_no_attn": ("bmoe", ["model.kwargs.n_attn=0"]),  # M3E without self-attention (SGP only)
    # the segment means as before segment_center / segment_dropout (docs/synthetic.md), and variants
    "bmoe_raw": ("bmoe", RAW),
    "bmoe_uniform_raw": ("bmoe_uniform", RAW),
    "bmoe_raw_dropout": ("bmoe", ["model.kwargs.segment_center=false"]),  # element-wise dropout only
    "bmoe_center": ("bmoe", ["model.kwargs.segment_dropout=0"]),  # centred, no dropout
    "bmoe_center_drop": ("bmoe", ["model.kwargs.segment_dropout=0", "model.kwargs.segment_drop=0.5"]),
    "bmoe_segdrop": ("bmoe", [*RAW, "model.kwargs.segment_drop=0.5"]),  # the raw branch dropped per clip
}
DEFAULT = "pooled_linear,mean_mlp,m3e_global,micro_dualnet,bmoe,bmoe_uniform,bmoe_concat,bmoe_no_sgp,bmoe_no_attn"
PROBES = ("pooled_linear", "mean_mlp")


def test_scores(run: Path) -> tuple[np.ndarray, np.ndarray]:
    """A finished run's test clips: true action ids ``[N]`` and action probabilities ``[N, C]``
    (the evaluation's own data path: ``mar eval``'s sampling, standardisation and checkpoint)."""
    from microaction.data.loader import ClipDataset, select_samples
    from microaction.engine.evaluate import infer
    from microaction.engine.runs import load_run, read_split

    loaded = load_run(run, "best")
    assert loaded.config is not None
    fs = loaded.open_store(None)
    samples, _ = select_samples(fs, read_split(loaded.config.data, loaded.taxonomy, "test"), source="test")
    ds = ClipDataset(fs, samples, loaded.taxonomy, num_steps=loaded.num_steps, sampling="uniform",
                     stats=loaded.feature_stats)  # fmt: skip
    out = infer(loaded.model, ds, batch_size=256)
    return ds.action[out["index"]], out["action"]


def within_group(y: np.ndarray, scores: np.ndarray, groups: dict[str, list[int]]) -> dict[str, dict[str, float]]:
    """Per group: ``acc`` (the group's test clips classified among the group's classes only —
    the group given, which class? — share right), ``chance`` (1 / the group's size) and
    ``in_group`` (share of the group's clips whose unrestricted top class is in the group)."""
    out = {}
    for g, ids in groups.items():
        sel = np.isin(y, ids)
        sub = scores[sel][:, ids]
        acc = float((np.asarray(ids)[sub.argmax(1)] == y[sel]).mean())
        inside = float(np.isin(scores[sel].argmax(1), ids).mean())
        out[g] = {"acc": acc, "chance": 1.0 / len(ids), "in_group": inside}
    return out


def oracle(program: dict[str, Any], groups: dict[str, Any]) -> str:
    """The class a clip's recorded program (factor, segments with moves and timings) describes."""
    segs = sorted(program["segments"], key=lambda s: s["start"])
    moves = tuple(dict.fromkeys(s["move"] for s in segs))
    for grp in groups.values():
        if grp.factor != program["factor"] or set(grp.moves) != set(moves):
            continue
        if grp.factor == "order":
            key: Any = grp.moves.index(moves[0])
        elif grp.factor == "rhythm":  # beats per burst from the bursts' spans
            key = tuple(round((s["end"] - s["start"]) / s["period"]) for s in segs)
        else:  # duration: one hold carries (nearly) all the hold time
            holds = [s["hold"] for s in segs]
            key = max(holds) > 0.75 * sum(holds)
        if key in grp.variants:
            return str(grp.classes[grp.variants.index(key)])
    raise ValueError(f"no class matches program {program}")


def oracle_accuracy(data: Path, taxonomy: Any, groups: dict[str, Any]) -> float:
    """Share of the test clips whose program the oracle names correctly."""
    from microaction.data.synth import read_clip

    rows = [r.split(",") for r in (data / "manifest.csv").read_text().splitlines()[1:]]
    hits = []
    for video, label, _, split in rows:
        if split != "test":
            continue
        meta = read_clip(data, Path(video).stem)["meta"]
        hits.append(taxonomy.index(oracle(meta["program"], groups)) == int(label))
    return float(np.mean(hits))


def prepare(args: argparse.Namespace, out: Path, preset: str, timings: dict[str, float]) -> tuple[Path, Path]:
    """Generate (and, for the pixel path, render) the preset; extract and pack one store."""
    from microaction.data.synth.generate import PRESETS, generate_dataset
    from microaction.taxonomy import load_taxonomy

    data = out / ("synth" if args.path == "pose" else "synth_render")
    store = out / ("store" if args.path == "pose" else f"store_motion{args.crop_size}")
    if not (args.resume and (data / "manifest.csv").is_file()):
        if args.path == "pose":
            timings["synth"] = mar(["synth", "--out", str(data), "--preset", preset, "--seed", str(args.data_seed),
                                    "--workers", str(args.workers)])  # fmt: skip
        else:  # the preset with a smaller test split: same train / val clips, fewer test clips
            import time

            p = PRESETS[preset]
            n = load_taxonomy(p.taxonomy).num_classes
            p = replace(p, clips={**p.clips, "test": min(p.clips["test"], n * args.pixel_test)})
            t0 = time.perf_counter()
            generate_dataset(data, p, seed=args.data_seed, render=True, workers=args.workers)
            timings["synth + render"] = time.perf_counter() - t0
    if not (args.resume and (store / "packed" / "keys.json").is_file()):
        enc = (
            ["--encoder", "pose"]
            if args.path == "pose"
            else ["--encoder", "motion", "--crop-size", str(args.crop_size)]
        )
        timings["extract"] = mar(["extract", "--videos", str(data / "manifest.csv"), "--out", str(store), "--parser",
                                  "groundtruth", *enc, "--workers", str(args.workers), "--quiet"])  # fmt: skip
        timings["pack"] = mar(["pack", str(store)])
    return data, store


def main() -> int:
    from microaction.commands.demo import configs_dir, train_and_eval
    from microaction.data.synth.diagnostic import GROUPS
    from microaction.taxonomy import load_taxonomy

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--path", choices=("pose", "pixel"), default="pose")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--models", default=DEFAULT, help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--out", default="runs/bench_diagnostic")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    ap.add_argument("--crop-size", type=int, default=64, help="pixel path: side of every stream's crop")
    ap.add_argument("--pixel-test", type=int, default=40, help="pixel path: test clips per class")
    ap.add_argument("--resume", action="store_true", help="reuse the data and the finished runs (eval_test.json)")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    models = comma_list(args.models, VARIANTS)
    preset = "diagnostic_tiny" if args.quick else "diagnostic"
    epochs = 2 if args.quick and args.epochs is None else args.epochs
    out, cfg = Path(args.out) / args.path, configs_dir(None)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    tax = load_taxonomy(TAXONOMY)
    groups = {g: [tax.index(n) for n in grp.classes] for g, grp in GROUPS.items()}
    data, store = prepare(args, out, preset, timings)

    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    for seed in seeds:
        for m in models:
            config, sets = VARIANTS[m]
            name = f"{m}_s{seed}"
            done = out / "runs" / name / "eval_test.json"
            if not (args.resume and done.is_file()):
                train_and_eval(config, cfg, data, store, out / "runs", timings, seed=seed, epochs=epochs, name=name,
                               extra=["run.progress=false", f"data.taxonomy={TAXONOMY}", *sets])  # fmt: skip
            ev = json.loads(done.read_text())
            cached = out / "runs" / name / "within_group_test.json"
            if args.resume and cached.is_file() and cached.stat().st_mtime >= done.stat().st_mtime:
                wg = json.loads(cached.read_text())
            else:
                wg = within_group(*test_scores(out / "runs" / name), groups)
                cached.write_text(json.dumps(wg, indent=1) + "\n")
            rows[m].append({"seed": seed, **ev["metrics"], "within": wg})
    (out / "results.json").write_text(json.dumps({"preset": preset, "path": args.path, "seeds": seeds,
                                                  "results": rows}, indent=1) + "\n")  # fmt: skip
    report(args, preset, seeds, models, rows, data, tax, groups)
    if timings:
        print("steps: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return 0


def report(
    args: argparse.Namespace,
    preset: str,
    seeds: list[int],
    models: list[str],
    rows: dict[str, list[dict[str, Any]]],
    data: Path,
    tax: Any,
    groups: dict[str, list[int]],
) -> None:
    from microaction.data.synth.diagnostic import GROUPS

    note = "quick: not a measurement" if args.quick else f"{preset} preset, {args.path} path, seeds {seeds}"
    acc = oracle_accuracy(data, tax, GROUPS)
    print(f"\noracle (the generator's program parameters): test accuracy {100 * acc:.1f} %")
    result(f"diagnostic ({args.path}): oracle test accuracy", round(100 * acc, 1), unit="%", goal="100",
           met=None if args.quick else bool(acc == 1.0), note=note)  # fmt: skip

    def within_mean(m: str) -> np.ndarray:
        return 100 * np.array([np.mean([w["acc"] for w in r["within"].values()]) for r in rows[m]])

    print(f"\ndiagnostic preset, {args.path} path, test split, seeds {seeds} (chance inside groups: "
          f"{100 * np.mean([1 / len(v) for v in groups.values()]):.1f} %):")  # fmt: skip
    print(f"{'model':<15} {'F1_mean':>13} {'action top-1':>13} {'within-group':>13}  per seed F1_mean")
    f1 = {m: 100 * np.array([r["f1_mean"] for r in rows[m]]) for m in models}
    for m in models:
        t1 = 100 * np.array([r["action_top1"] for r in rows[m]])
        wg = within_mean(m)
        print(f"{m:<15} {f1[m].mean():>6.1f} ± {f1[m].std():>4.1f} {t1.mean():>6.1f} ± {t1.std():>4.1f} "
              f"{wg.mean():>6.1f} ± {wg.std():>4.1f}  " + ", ".join(f"{v:.1f}" for v in f1[m]))  # fmt: skip
        result(f"diagnostic ({args.path}): {m} test F1_mean", round(float(f1[m].mean()), 1), unit="%", note=note)
        result(f"diagnostic ({args.path}): {m} within-group accuracy", round(float(wg.mean()), 1), unit="%",
               note=note)  # fmt: skip
    print(
        "\nwithin-group accuracy per group (mean over seeds; chance; share of the group's clips predicted inside it):"
    )
    print(f"{'group':<15} {'chance':>7} " + " ".join(f"{m:>{max(13, len(m))}}" for m in models))
    for g, ids in groups.items():
        accs = [100 * np.mean([r["within"][g]["acc"] for r in rows[m]]) for m in models]
        print(
            f"{g:<15} {100 / len(ids):>6.1f}% "
            + " ".join(f"{a:>{max(13, len(m)) - 1}.1f}%" for m, a in zip(models, accs))
        )
    for m in (p for p in PROBES if p in models):
        devs = {
            g: 100 * (np.mean([r["within"][g]["acc"] for r in rows[m]]) - 1 / len(ids)) for g, ids in groups.items()
        }
        worst = max(devs, key=lambda g: abs(devs[g]))
        print(f"{m}: largest distance from chance inside a group: {devs[worst]:+.1f} points ({worst})")
        result(f"diagnostic ({args.path}): {m} within-group accuracy - chance, largest |.| over groups",
               round(float(abs(devs[worst])), 1), unit="points", goal="<= 5",
               met=None if args.quick else bool(abs(devs[worst]) <= 5), note=f"{note}; {worst}")  # fmt: skip
    goals = (("mean_mlp", 15.0), ("bmoe_uniform", 3.0))
    for ref, gap_goal in goals:
        if "bmoe" in f1 and ref in f1:
            gap = float(f1["bmoe"].mean() - f1[ref].mean())
            print(f"bmoe - {ref}: {gap:+.1f} F1_mean points (goal >= +{gap_goal:g})")
            result(f"diagnostic ({args.path}): bmoe - {ref}, F1_mean", round(gap, 1), unit="points",
                   goal=f">= +{gap_goal:g}", met=None if args.quick else gap >= gap_goal, note=note)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
