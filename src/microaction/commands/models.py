"""``mar models``: list registered models."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", "-v", action="store_true", help="also show presets")


def run(args: argparse.Namespace) -> int:
    from microaction.models import list_models, model_entry

    for name in list_models():
        e = model_entry(name)
        extra = f"  presets: {', '.join(sorted(e.presets))}" if args.verbose and e.presets else ""
        print(f"{name:16s} {e.summary}{extra}")
    return 0
