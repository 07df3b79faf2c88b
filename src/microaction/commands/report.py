"""``mar report RUN_DIR [RUN_DIR ...] [--out DIR]``: HTML report with plots from one or more runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (config.yaml, metrics.json, eval_*.json)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/report for one run, "
                   "<common parent>/report for several)")  # fmt: skip
    p.add_argument("--split", help="which eval_<split>.json to show (default: test, then val, then any)")
    p.add_argument("--title", help="page title")
    p.add_argument("--rare-quantile", type=float, default=0.25,
                   help="classes at or below this quantile of training counts are marked rare (default 0.25)")  # fmt: skip
    p.add_argument("--link-images", action="store_true",
                   help="link the PNGs beside the page instead of embedding them (smaller HTML)")  # fmt: skip


def default_out(runs: list[Path]) -> Path:
    if len(runs) == 1:
        return runs[0] / "report"
    return Path(os.path.commonpath([str(r.resolve().parent) for r in runs])) / "report"


def run(args: argparse.Namespace) -> int:
    from microaction.report import build_report

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else default_out(runs)
    page = build_report(runs, out, split=args.split, title=args.title, rare_quantile=args.rare_quantile,
                        embed=not args.link_images)  # fmt: skip
    print(f"wrote {page} ({page.read_text(encoding='utf-8').count('<figure ')} figures)")
    return 0
