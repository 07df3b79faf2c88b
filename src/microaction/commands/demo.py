"""``mar demo``: the synthetic benchmark end to end, on a CPU, in minutes.

Steps (each through the same code path a user's data takes): ``mar synth`` (the demo preset,
rendered: mannequin videos, region masks, keypoint sidecars) → ``mar extract`` (the ``groundtruth``
parser reads the sidecars instead of running MediaPipe, see docs/synthetic.md; ``pose`` encoder)
→ ``mar train`` (configs/demo_bmoe.yaml, configs/demo_m3e_global.yaml) → ``mar eval`` on the test
split (MA-52 metrics) → ``mar report`` → a table: model, action top-1, F1_mean, time.

``--quick`` runs the ``tiny`` preset with few epochs: a smoke test of the whole chain (< 1 min),
not a measurement.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODELS = ("bmoe", "m3e_global")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (data, store, runs, report); default runs/demo")
    p.add_argument("--quick", action="store_true", help="tiny dataset, few epochs: a smoke test in under a minute")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and of training")
    p.add_argument("--workers", type=int, default=None, help="processes for generation and extraction (default: CPUs)")
    p.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of demo configs to train (default {','.join(MODELS)})")
    p.add_argument("--configs", default=None, help="folder of demo_<model>.yaml configs (default: the repository's configs/)")


def _configs_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "configs" / "demo_bmoe.yaml").is_file():
            return parent / "configs"
    return Path("configs")


def _clean(out: Path) -> None:
    """Empty a previous demo's folders; refuse to touch a folder that is not a demo's."""
    import shutil

    if out.exists() and any(out.iterdir()) and not (out / "demo.json").is_file():
        raise ValueError(f"{out} exists and is not a demo folder (no demo.json): give another --out")
    for sub in ("data", "store", "runs", "report"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    from microaction.cli import main as mar

    out = Path(args.out)
    _clean(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = args.workers or min(os.cpu_count() or 1, 8)
    preset = "tiny" if args.quick else "demo"
    epochs = args.epochs if args.epochs is not None else (4 if args.quick else None)
    cfg_dir = _configs_dir(args.configs)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if not (cfg_dir / f"demo_{m}.yaml").is_file():
            raise FileNotFoundError(f"no config {cfg_dir / f'demo_{m}.yaml'} (use --configs DIR)")
    (out / "demo.json").write_text(json.dumps({"preset": preset, "seed": args.seed, "models": models}) + "\n")
    timings: dict[str, float] = {}

    def step(name: str, argv: list[str]) -> None:
        print(f"\n== {name}: mar {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = mar(argv)
        timings[name] = time.perf_counter() - t0
        if rc != 0:
            raise RuntimeError(f"step {name!r} failed (exit {rc})")

    data, store, runs = out / "data", out / "store", out / "runs"
    step("synth", ["synth", "--out", str(data), "--preset", preset, "--seed", str(args.seed), "--render", "--workers", str(workers)])
    step("extract", ["extract", "--videos", str(data / "manifest.csv"), "--out", str(store), "--parser", "groundtruth",
                     "--encoder", "pose", "--workers", str(workers)])  # fmt: skip
    run_dirs = []
    for m in models:
        sets = [f"data.store={store}", f"data.manifest={data / 'manifest.csv'}", f"run.out_dir={runs}", f"run.name={m}",
                f"run.seed={args.seed}"]  # fmt: skip
        if epochs is not None:
            sets.append(f"run.epochs={epochs}")
        argv = ["train", str(cfg_dir / f"demo_{m}.yaml"), "--overwrite"]
        for s in sets:
            argv += ["--set", s]
        step(f"train {m}", argv)
        step(f"eval {m}", ["eval", str(runs / m), "--split", "test"])
        run_dirs.append(runs / m)
    report = None
    try:
        from microaction.report import build_report

        t0 = time.perf_counter()
        report = build_report(run_dirs, out / "report", title="mar demo: synthetic micro-action benchmark")
        timings["report"] = time.perf_counter() - t0
    except ImportError as e:  # the report module is optional for the demo's numbers
        print(f"(no report: {e})")

    rows = []
    for m, rd in zip(models, run_dirs):
        ev = json.loads((rd / "eval_test.json").read_text())["metrics"]
        secs = timings[f"train {m}"] + timings[f"eval {m}"]
        rows.append((m, ev["action_top1"], ev["f1_mean"], secs))
    print(f"\nsynthetic benchmark ({preset} preset, seed {args.seed}), test split:")
    print(f"{'model':<14} {'action top-1':>12} {'F1_mean':>8} {'time':>8}")
    for m, top1, f1, secs in rows:
        print(f"{m:<14} {100 * top1:>11.1f}% {100 * f1:>7.1f}% {secs:>7.1f}s")
    total = sum(timings.values())
    print(f"steps: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()) + f"; total {total:.0f}s")
    if report is not None:
        print(f"report: {report}")
    summary = {"preset": preset, "seed": args.seed, "timings": timings,
               "results": [{"model": m, "action_top1": a, "f1_mean": f, "seconds": s} for m, a, f, s in rows]}  # fmt: skip
    (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0
