"""``mar eval``: evaluate a run with the official metrics (or write a submission for hidden labels)."""

from __future__ import annotations

import argparse
from typing import Any

from microaction.engine.precision import PRECISIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run folder written by mar train")
    p.add_argument(
        "--split",
        help="split of the run's annotations (default: its validation split; a run without one: its test split, "
        "else train, said on output)",
    )
    p.add_argument("--store", help="feature store to read instead of the run's (must match its manifest)")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a .safetensors path")
    p.add_argument("--out", help="folder for eval_<split>.json / submission_<split>.zip (default: the run folder)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (bf16 where native), fp32, bf16, bf16! (forced); default: the run's run.precision",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from microaction.engine.detection import evaluate_detection_run
    from microaction.engine.evaluate import evaluate_run
    from microaction.engine.runs import load_run
    from microaction.metrics import format_metrics

    loaded = load_run(args.run_dir, args.checkpoint, device=args.device)
    if args.split is None:
        args.split, note = default_split(loaded)
        if note:
            print(note)
    if loaded.config is not None and loaded.config.task == "detection":
        report = evaluate_detection_run(loaded, args.split, store=args.store, out=args.out, device=args.device)
    else:
        report = evaluate_run(
            loaded,
            args.split,
            store=args.store,
            checkpoint=args.checkpoint,
            out=args.out,
            batch_size=args.batch_size,
            device=args.device,
            progress=not args.quiet,
            precision=args.precision,
        )
    if "submission" in report:
        print(f"{args.split}: labels are hidden; wrote the submission {report['submission']} ({report['clips']} clips)")
        return 0
    m = report["metrics"]
    unit = "recordings" if report.get("task") == "detection" else "clips"
    print(f"{args.split} ({report['clips']} {unit}, {report['checkpoint']}): {format_metrics(m) if m else 'no labels'}")
    print(f"wrote {args.out or args.run_dir}/eval_{args.split}.json")
    return 0


def default_split(loaded: Any) -> tuple[str, str]:
    """The split ``mar eval`` scores without ``--split``: the run's validation split, or where its
    annotations have none, its test split (else train, else the first there is); and a line saying
    so ('' when it is the validation split)."""
    cfg = loaded.config
    if cfg is None:
        return "val", ""
    d = cfg.data
    if cfg.task == "detection":
        from microaction.engine.detection import split_names

        have = split_names(cfg, loaded.taxonomy)
    else:
        from microaction.engine.runs import read_split

        names = dict.fromkeys([d.train_split, d.val_split, d.test_split])
        have = [n for n in names if read_split(d, loaded.taxonomy, n)]
    if d.val_split in have or not have:
        return d.val_split, ""
    pick = next((n for n in (d.test_split, d.train_split) if n in have), have[0])
    return pick, (
        f"no {d.val_split!r} split in the run's annotations (it has {', '.join(repr(n) for n in have)}): "
        f"evaluating {pick!r} (choose with --split)"
    )
