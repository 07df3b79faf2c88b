"""``mar train``: train a model from a YAML config (or resume a run folder)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="experiment YAML (configs/*.yaml)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder where it stopped (exact resume)")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing run folder")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    from microaction.engine.config import config_to_yaml, load_experiment
    from microaction.engine.trainer import train

    if args.resume is None and args.config is None:
        raise ValueError("give a config file, or --resume RUN_DIR")
    if args.resume is not None and args.config is not None:
        raise ValueError("--resume takes the config of the run folder; do not give a config file too")
    if args.print_config:
        if args.config is None:
            raise ValueError("--print-config needs a config file")
        print(config_to_yaml(load_experiment(args.config, args.overrides)), end="")
        return 0
    run_dir = train(args.config, args.overrides, resume=args.resume, overwrite=args.overwrite)
    print(f"run folder: {run_dir}")
    return 0
