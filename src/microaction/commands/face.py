"""``mar face``: L-SSAT face models (texture-MAE auxiliary task).

mar face synth --out DIR [--set n_train=...]     generate the synthetic face-like dataset
mar face train CONFIG [--set key=value ...]        train one run (config: configs/face_*.yaml)
mar face eval RUN_DIR [--split test]               accuracy + fairness of a run's best checkpoint
mar face compare RUN_DIR ... [--out table.md]      mean ± std over seeds, per experiment
mar face compare --configs A.yaml B.yaml --seeds 0 1 2 --out-dir runs/face_cmp
                                                   train what is missing, then compare
mar face crops VIDEO_OR_IMAGE --out DIR            aligned face crops (MediaPipe)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# metrics shown by ``compare`` (key, header); values in [0, 1], shown ×100
COMPARE_METRICS = (
    ("accuracy", "accuracy"),
    ("worst_group_accuracy", "worst-group acc."),
    ("accuracy_gap", "gap (max-min)"),
    ("accuracy_std", "std over groups"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="face_command", metavar="ACTION", required=True)

    s = sub.add_parser("synth", help="generate the synthetic face-like dataset (texture classes, nuisance group)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="SynthFaceConfig field, e.g. n_train=500"
    )

    t = sub.add_parser("train", help="train an L-SSAT face model from a YAML config")
    t.add_argument("config", nargs="?", help="YAML config (configs/face_*.yaml)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last finished epoch")
    t.add_argument("--overwrite", action="store_true", help="start an existing run folder again")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field (a.b=c)")
    t.add_argument("--quiet", action="store_true", help="log to the run folder only")

    e = sub.add_parser("eval", help="evaluate a face run (accuracy and group fairness)")
    e.add_argument("run_dir")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--checkpoint", default="best", choices=("best", "last"))
    e.add_argument("--device", default="cpu")

    c = sub.add_parser("compare", help="compare face runs: mean ± std over seeds per experiment")
    c.add_argument("run_dirs", nargs="*", help="run folders (each with eval_<split>.json, else it is evaluated)")
    c.add_argument("--split", default="test", choices=("val", "test"))
    c.add_argument("--configs", nargs="*", default=[], help="train these configs first (skipping finished runs)")
    c.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="seeds for --configs")
    c.add_argument("--out-dir", default="runs/face_compare", help="where --configs runs go")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every --configs run")
    c.add_argument("--out", help="also write the table (markdown) here; a .json beside it holds the numbers")

    r = sub.add_parser("crops", help="aligned face crops from a video, GIF or image (MediaPipe)")
    r.add_argument("input")
    r.add_argument("--out", required=True, help="folder for crop_<frame>.png and faces.json")
    r.add_argument("--size", type=int, default=112)
    r.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    r.add_argument("--refine", action="store_true", help="refine the eye centres with the face mesh")


def run(args: argparse.Namespace) -> int:
    return int(_ACTIONS[args.face_command](args))


def _synth(args: argparse.Namespace) -> int:
    from microaction.face.synthetic import generate_face_dataset

    overrides: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not key=value")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    meta = generate_face_dataset(args.out, **overrides)
    counts = ", ".join(f"{s}: {sum(c.values())} ({c})" for s, c in meta["group_counts"].items())
    print(f"wrote {args.out}: {counts}; classes {meta['class_names']}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from microaction.face.config import load_face_config, load_run_config
    from microaction.face.train import train_face

    if (args.config is None) == (args.resume is None):
        raise ValueError("give a config file, or --resume RUN_DIR (its config.yaml is used)")
    if args.resume is not None:
        if args.set:
            raise ValueError("--resume continues the run's own config; --set cannot change it")
        cfg = load_run_config(args.resume)
    else:
        cfg = load_face_config(args.config, args.set)
    run = train_face(
        cfg, echo=not args.quiet, resume=args.resume is not None, overwrite=args.overwrite, run_dir=args.resume
    )
    print(f"run folder: {run}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from microaction.face.train import evaluate_face_run

    result = evaluate_face_run(args.run_dir, split=args.split, checkpoint=args.checkpoint, device=args.device)
    m = result["metrics"]
    print(f"{args.run_dir} [{args.split}, {args.checkpoint} epoch {result['epoch']}]")
    for key, value in m.items():
        print(f"  {key:28s} {100 * value:6.2f}")
    for g, acc in result["per_group"]["per_group_accuracy"].items():
        print(f"  group {g!s:22s} {100 * acc:6.2f}  (n={result['per_group']['per_group_count'][g]})")
    print(f"wrote {Path(args.run_dir) / f'eval_{args.split}.json'}")
    return 0


def _load_result(run: Path, split: str) -> dict[str, Any]:
    path = run / f"eval_{split}.json"
    if path.is_file():
        return json.loads(path.read_text())
    from microaction.face.train import evaluate_face_run

    return evaluate_face_run(run, split=split)


def compare_table(results: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Markdown table (mean ± sample std over seeds, ×100) and the numbers, per experiment."""
    import numpy as np

    by_exp: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_exp.setdefault(str(r.get("experiment") or Path(r["run"]).name), []).append(r)
    header = "| experiment | aux target | seeds | " + " | ".join(h for _, h in COMPARE_METRICS) + " |"
    lines = [header, "|" + "---|" * (3 + len(COMPARE_METRICS))]
    numbers: dict[str, Any] = {}
    for exp, rs in by_exp.items():
        row = {
            "aux_target": rs[0].get("aux_target"),
            "seeds": sorted(int(r.get("seed") or 0) for r in rs),
            "runs": [r["run"] for r in rs],
        }
        cells = []
        for key, _ in COMPARE_METRICS:
            vals = np.array([r["metrics"][key] for r in rs], dtype=np.float64)
            mean = float(vals.mean())
            std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
            row[key] = {"mean": mean, "std": std, "values": vals.tolist()}
            cells.append(f"{100 * mean:.1f} ± {100 * std:.1f}")
        numbers[exp] = row
        lines.append(f"| {exp} | {row['aux_target']} | {len(rs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines), numbers


def _compare(args: argparse.Namespace) -> int:
    runs = [Path(r) for r in args.run_dirs]
    if args.configs:
        from microaction.face.config import load_face_config, run_dir_of
        from microaction.face.train import train_face

        for config in args.configs:
            for seed in args.seeds:
                cfg = load_face_config(config, [*args.set, f"seed={seed}", f"out_dir={args.out_dir}"])
                run = run_dir_of(cfg)
                if not (run / f"eval_{args.split}.json").is_file():
                    print(f"training {config} seed {seed} -> {run}", flush=True)
                    train_face(cfg, echo=False, resume=True)  # an interrupted run goes on where it stopped
                runs.append(run)
    if not runs:
        raise ValueError("nothing to compare: give run folders or --configs")
    results = [_load_result(r, args.split) for r in runs]
    table, numbers = compare_table(results)
    print(f"{args.split} split, mean ± std over seeds (×100; std with ddof=1)\n")
    print(table)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table + "\n")
        out.with_suffix(".json").write_text(json.dumps({"split": args.split, "experiments": numbers}, indent=1) + "\n")
        print(f"\nwrote {out} and {out.with_suffix('.json')}")
    return 0


def _crops(args: argparse.Namespace) -> int:
    from microaction.face.crops import crop_faces_from_file, save_crops

    track = crop_faces_from_file(args.input, size=args.size, stride=args.stride, refine=args.refine)
    save_crops(track, args.out)
    found = int(track.valid.sum())
    print(f"{args.input}: face found in {found}/{len(track.valid)} frames; wrote {args.out}")
    return 0 if found else 1


_ACTIONS = {"synth": _synth, "train": _train, "eval": _eval, "compare": _compare, "crops": _crops}
