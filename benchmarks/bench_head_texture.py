"""B-MoE's head texture branch on the synthetic benchmark: does the face stream (and its texture-MAE loss) help?

On one synthetic dataset (generated as ``mar demo`` does: the demo preset, rendered, data seed 0)
and one feature store extracted with head-box face crops (``mar extract --parser groundtruth
--encoder pose --face-size 32``), it trains for every seed of ``--seeds``:

* ``bmoe``: ``configs/demo_bmoe_texture.yaml`` with ``model.kwargs.face_size=0`` (no face branch,
  everything else the same; the face crops in the store are ignored);
* ``bmoe+face``: ``configs/demo_bmoe_texture.yaml`` with ``model.kwargs.texture_target=none``
  (the face features join the head expert, no auxiliary loss);
* ``bmoe+face+ldp``: ``configs/demo_bmoe_texture.yaml`` as shipped (L-SSAT's LDP texture-MAE loss);
* ``bmoe+face+pixel`` (``--with-pixel``): the same with ``texture_target=pixel`` (the MAE ablation);

evaluates each run on the test split and prints markdown tables: mean ± sample std over the seeds
of F1_mean, action top-1 and the macro F1 over the classes of the ``head`` and ``head_hand`` body
groups, and the training seconds per epoch (``metrics.json``) against ``bmoe``.

    python benchmarks/bench_head_texture.py [--quick] [--seeds 0 1 2] [--epochs N] [--with-pixel]
                                            [--out DIR] [--data DIR] [--store DIR]

``--variants NAME ...`` trains a subset. Finished runs whose config, overrides and ``microaction``
sources match are reused (``--rerun`` trains them again), so an interrupted comparison goes on
where it stopped. ``--quick``: the tiny preset, one seed, 2 epochs (1 of stage-1 pre-training): a
check that the script runs, not a measurement. Timings are wall-clock seconds on whatever else the
machine is doing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import mar

FACE_SIZE = 32  # the side configs/demo_bmoe_texture.yaml expects (model.kwargs.face_size)
HEAD_GROUPS = ("head", "head_hand")  # MA-52 body groups whose classes the head region carries


@dataclass(frozen=True)
class Variant:
    name: str  # shown in the tables
    slug: str  # run folder prefix
    config: str  # file in configs/
    overrides: tuple[str, ...] = ()


VARIANTS = (
    Variant("bmoe", "bmoe", "demo_bmoe_texture.yaml", ("model.kwargs.face_size=0",)),
    Variant("bmoe+face", "bmoe_face", "demo_bmoe_texture.yaml", ("model.kwargs.texture_target=none",)),
    Variant("bmoe+face+ldp", "bmoe_face_ldp", "demo_bmoe_texture.yaml"),
)
PIXEL = Variant("bmoe+face+pixel", "bmoe_face_pixel", "demo_bmoe_texture.yaml", ("model.kwargs.texture_target=pixel",))


@dataclass
class RunResult:
    variant: str
    seed: int
    run_dir: str
    metrics: dict[str, float]
    head_f1: dict[str, float]
    sec_main: float  # mean seconds per main-stage epoch (training + validation)
    sec_pretrain: float  # mean seconds per stage-1 epoch (nan: none)
    train_seconds: float  # sum of all epochs' seconds
    texture_loss: list[float] = field(default_factory=list)  # unweighted, first and last main-stage epoch


def prepare(args: argparse.Namespace, out: Path, preset: str) -> tuple[Path, Path, dict[str, Any]]:
    """The rendered synthetic dataset and the face store, made unless they exist; timings of what was made."""
    data = Path(args.data) if args.data else out / "synth"
    store = Path(args.store) if args.store else out / f"store_face{FACE_SIZE}"
    timing_file = out / "prepare_timings.json"
    timings: dict[str, Any] = json.loads(timing_file.read_text()) if timing_file.is_file() else {}
    manifest = data / "manifest.csv"
    if not (manifest.is_file() and (data / "dataset.json").is_file()):
        secs = mar(["synth", "--out", str(data), "--preset", preset, "--seed", str(args.data_seed),
                    "--workers", str(args.workers), "--render"])  # fmt: skip
        timings["synth"] = {"seconds": round(secs, 1), "workers": args.workers}
    elif not (data / "videos").is_dir():
        raise SystemExit(f"{data} has no videos/: the face crops need a rendered dataset (mar synth --render)")
    else:
        print(f"reusing the dataset {data}")
    extract = ["extract", "--videos", str(manifest), "--parser", "groundtruth", "--encoder", "pose",
               "--workers", str(args.workers), "--quiet"]  # fmt: skip
    stores = [("face", store, ["--face-size", str(FACE_SIZE)])]
    if args.plain_extract:  # the same extraction without face crops, for its time only
        stores.append(("plain", out / "store_plain", []))
    for what, path, extra in stores:
        fresh = not (path / "manifest.json").is_file()
        secs = mar([*extract, "--out", str(path), *extra])  # resumes (skips every finished clip) when it exists
        if fresh:
            timings[f"extract_{what}"] = {"seconds": round(secs, 1), "workers": args.workers, "store": str(path)}
    out.mkdir(parents=True, exist_ok=True)
    timing_file.write_text(json.dumps(timings, indent=1) + "\n")
    return data, store, timings


def head_f1(report: dict[str, Any]) -> dict[str, float]:
    """Macro F1 over the test classes (support > 0) of each head-related body group."""
    from microaction.taxonomy import load_taxonomy

    tax = load_taxonomy("ma52")
    if report.get("per_class_f1") is None or report.get("confusion_action") is None:
        return {}
    f1 = np.asarray(report["per_class_f1"], dtype=np.float64)
    support = np.asarray(report["confusion_action"]).sum(1)
    out = {}
    for group in HEAD_GROUPS:
        sel = (tax.body_map == tax.body_names.index(group)) & (support > 0)
        out[group] = float(f1[sel].mean()) if sel.any() else math.nan
    return out


def epoch_stats(run_dir: Path) -> tuple[float, float, float, list[float]]:
    history = json.loads((run_dir / "metrics.json").read_text())["epochs"]
    main = [e for e in history if e["stage"] == "main"]
    pre = [e for e in history if e["stage"] != "main"]
    texture = [e["train_parts"]["aux/texture"] for e in main if "aux/texture" in (e.get("train_parts") or {})]

    def mean(es: list[dict[str, Any]]) -> float:
        return float(np.mean([e["seconds"] for e in es])) if es else math.nan

    return mean(main), mean(pre), float(sum(e["seconds"] for e in history)), texture[:1] + texture[-1:]


def source_digest() -> str:
    """Hash of the installed ``microaction`` sources: a finished run is reused only under the same code."""
    import hashlib

    import microaction

    h = hashlib.sha1()
    root = Path(microaction.__file__).parent
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def train_variant(
    v: Variant, seed: int, cfg_dir: Path, data: Path, store: Path, runs: Path, args: argparse.Namespace
) -> RunResult:
    from microaction.engine import evaluate_run, train

    name = f"{v.slug}_s{seed}"
    run_dir = runs / name
    overrides = [f"data.store={store}", f"data.manifest={data / 'manifest.csv'}", f"run.out_dir={runs}",
                 f"run.name={name}", f"run.seed={seed}", f"run.threads={args.threads}", "run.progress=false",
                 *v.overrides, *args.extra_set]  # fmt: skip
    if args.epochs is not None:
        overrides.append(f"run.epochs={args.epochs}")
    if args.pretrain_epochs is not None:
        overrides.append(f"stages.pretrain_epochs={args.pretrain_epochs}")
    marker = run_dir / "bench_run.json"
    want = {"config": v.config, "config_text": (cfg_dir / v.config).read_text(), "overrides": overrides,
            "source": source_digest()}  # fmt: skip
    done = marker.is_file() and json.loads(marker.read_text()) == want and (run_dir / "eval_test.json").is_file()
    if done and not args.rerun:
        print(f"\n== reusing {run_dir} ({v.name}, seed {seed})", flush=True)
        report = json.loads((run_dir / "eval_test.json").read_text())
    else:
        print(f"\n== train {v.name}, seed {seed}: {cfg_dir / v.config} " + " ".join(overrides), flush=True)
        marker.unlink(missing_ok=True)
        t0 = time.perf_counter()
        train(cfg_dir / v.config, overrides, overwrite=True)
        report = evaluate_run(run_dir, "test", progress=False)
        print(f"   {v.name} seed {seed}: {time.perf_counter() - t0:.0f}s, test f1_mean "
              f"{100 * report['metrics']['f1_mean']:.2f}", flush=True)  # fmt: skip
        marker.write_text(json.dumps(want, indent=1) + "\n")
    sec_main, sec_pre, total, texture = epoch_stats(run_dir)
    return RunResult(v.name, seed, str(run_dir), report["metrics"], head_f1(report), sec_main, sec_pre, total, texture)


# make bench: the full comparison (3 variants x 3 seeds on the rendered demo preset) takes ~20 min
MAKE_BENCH = {"args": ["--quick"], "budget_s": 30, "mode": "reduced: --quick (tiny preset, 1 seed, 2 epochs)"}


def mean_std(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    a = scale * np.asarray(values, dtype=np.float64)
    if len(a) == 0 or np.isnan(a).all():
        return "–"
    if len(a) == 1:
        return f"{a[0]:.{digits}f}"
    return f"{a.mean():.{digits}f} ± {a.std(ddof=1):.{digits}f}"


def tables(results: list[RunResult], variants: list[Variant], seeds: list[int]) -> str:
    lines = [
        f"Test split, mean ± sample std over seeds {seeds} (training seeds; one dataset and store). "
        "F1 in %; s/epoch: mean wall seconds of a main-stage epoch (training + validation).",
        "",
        "| variant | F1_mean | action top-1 | F1 head | F1 head_hand | s/epoch | × bmoe | s/epoch stage 1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = [r.sec_main for r in results if r.variant == VARIANTS[0].name]  # nan when bmoe was not run
    base_sec = float(np.mean(base)) if base else math.nan
    for v in variants:
        rs = [r for r in results if r.variant == v.name]
        if not rs:
            continue
        sec = float(np.mean([r.sec_main for r in rs]))
        lines.append(
            f"| {v.name} | {mean_std([r.metrics['f1_mean'] for r in rs])} "
            f"| {mean_std([r.metrics['action_top1'] for r in rs])} "
            f"| {mean_std([r.head_f1.get('head', math.nan) for r in rs])} "
            f"| {mean_std([r.head_f1.get('head_hand', math.nan) for r in rs])} "
            f"| {sec:.1f} | {sec / base_sec:.2f} "
            f"| {mean_std([r.sec_pretrain for r in rs], scale=1.0)} |"
        )
    lines += [
        "",
        "Per run:",
        "",
        "| variant | seed | F1_mean | action top-1 | body top-1 | F1 head | F1 head_hand | s/epoch | train s "
        "| texture loss first → last epoch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        tex = " → ".join(f"{x:.4f}" for x in r.texture_loss) or "–"
        lines.append(
            f"| {r.variant} | {r.seed} | {100 * m['f1_mean']:.2f} | {100 * m['action_top1']:.2f} "
            f"| {100 * m.get('body_top1', math.nan):.2f} | {100 * r.head_f1.get('head', math.nan):.2f} "
            f"| {100 * r.head_f1.get('head_hand', math.nan):.2f} | {r.sec_main:.1f} | {r.train_seconds:.0f} | {tex} |"
        )
    return "\n".join(lines)


def main() -> int:
    from microaction.commands.demo import configs_dir

    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny preset, one seed, 2 epochs: a check, not a measurement")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--epochs", type=int, default=None, help="override the configs' run.epochs (quick: 2)")
    ap.add_argument("--pretrain-epochs", type=int, default=None, help="override stages.pretrain_epochs (quick: 1)")
    ap.add_argument("--with-pixel", action="store_true", help="also train bmoe+face+pixel (texture_target=pixel)")
    ap.add_argument("--variants", nargs="+", default=None, help="train only these variants (names as in the table)")
    ap.add_argument("--out", default=None, help="output folder (default runs/bench_head_texture[_quick])")
    ap.add_argument("--data", default=None, help="synthetic dataset, generated unless it exists (default OUT/synth)")
    ap.add_argument(
        "--store", default=None, help=f"face store, made unless it exists (default OUT/store_face{FACE_SIZE})"
    )
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the generated dataset (as mar demo: 0)")
    ap.add_argument("--preset", default=None, help="synthetic preset (default demo; quick: tiny)")
    ap.add_argument("--no-plain-extract", dest="plain_extract", action="store_false",
                    help="do not also extract (and time) a store without face crops")  # fmt: skip
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8), help="processes for synth / extract")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training (as mar demo: 1)")
    ap.add_argument("--set", dest="extra_set", action="append", default=[], help="extra a.b=value override, every run")
    ap.add_argument("--rerun", action="store_true", help="train again runs that finished already")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        args.epochs = 2 if args.epochs is None else args.epochs
        args.pretrain_epochs = 1 if args.pretrain_epochs is None else args.pretrain_epochs
    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    preset = args.preset or ("tiny" if args.quick else "demo")
    out = Path(args.out or ("runs/bench_head_texture_quick" if args.quick else "runs/bench_head_texture"))
    cfg_dir = configs_dir(None)
    variants = [*VARIANTS, *([PIXEL] if args.with_pixel else [])]
    if args.variants:
        known = {v.name: v for v in (*VARIANTS, PIXEL)}
        unknown = [n for n in args.variants if n not in known]
        if unknown:
            ap.error(f"unknown variant {unknown[0]!r} (known: {', '.join(known)})")
        variants = [v for v in known.values() if v.name in args.variants]

    t_start = time.perf_counter()
    data, store, timings = prepare(args, out, preset)
    results: list[RunResult] = []
    for seed in seeds:  # seed-major: a slow spell of a shared machine spreads over the variants
        for v in variants:
            results.append(train_variant(v, seed, cfg_dir, data, store, out / "runs", args))
    wall = time.perf_counter() - t_start

    print(f"\n## B-MoE head texture branch: synthetic {preset} preset (data seed {args.data_seed}), "
          f"face crops {FACE_SIZE}×{FACE_SIZE}\n")  # fmt: skip
    print(tables(results, variants, seeds))
    if timings:
        print("\nData preparation (wall seconds, when made by this script): "
              + ", ".join(f"{k} {v['seconds']:.1f}s ({v['workers']} workers)" for k, v in timings.items()))  # fmt: skip
    print(f"\nwall time of this invocation: {wall:.0f}s")
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "preset": preset,
        "data_seed": args.data_seed,
        "seeds": seeds,
        "data": str(data),
        "store": str(store),
        "prepare_timings": timings,
        "wall_seconds": round(wall, 1),
        "results": [vars(r) for r in results],
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out / 'results.json'}")
    from benchlib import result

    note = "quick: a smoke run, not a measurement" if args.quick else f"{preset} preset, seeds {seeds}"
    for v in variants:
        f1 = [r.metrics["f1_mean"] for r in results if r.variant == v.name]
        if f1:
            result(f"head texture: {v.name} test F1_mean", round(100 * float(np.mean(f1)), 1), unit="%", note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
