"""``mar``: the command line. Thin: each subcommand lives in ``microaction.commands.<name>`` with
``add_arguments(parser)`` (light imports only) and ``run(args) -> int`` (does the work)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Exit statuses (README.md "Exit status"): 0 done; 1 an error, or every item of a run failed;
# 2 a usage error; 3 some items failed and the others are done (mar extract, mar predict on a
# folder; --allow-failures makes both 0); 130 interrupted.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3


def items_status(done: int, failed: int, *, allow_failures: bool = False) -> int:
    """Exit status of a run over items of which ``done`` succeeded and ``failed`` failed."""
    if failed == 0 or allow_failures:
        return EXIT_OK
    return EXIT_PARTIAL if done > 0 else EXIT_FAILED


# name -> (module, one-line help). Order is the order shown by `mar --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("microaction.commands.demo", "synthetic benchmark end to end: generate, extract, train, evaluate, report"),
    "synth": ("microaction.commands.synth", "generate the synthetic micro-action benchmark"),
    "extract": ("microaction.commands.extract", "videos -> body parts -> region crops -> feature store"),
    "pack": ("microaction.commands.pack", "consolidate a feature store into memory-mappable arrays"),
    "train": ("microaction.commands.train", "train a model from a YAML config"),
    "eval": ("microaction.commands.eval", "evaluate a run with the official metrics"),
    "predict": ("microaction.commands.predict", "predict actions for a feature store or videos"),
    "timeline": (
        "microaction.commands.timeline",
        "a detector over a whole recording: timeline.csv/json/eaf/html (+ overlay video)",
    ),
    "live": (
        "microaction.commands.live",
        "micro-actions from a camera, a stream or a pipe as they happen (+ timeline)",
    ),
    "report": ("microaction.commands.report", "HTML report with plots from one or more runs"),
    "score": ("microaction.commands.score", "score a Codabench prediction CSV against a list file"),
    "submit": ("microaction.commands.submit", "write a Codabench submission zip from test scores"),
    "face": ("microaction.commands.face", "L-SSAT face models: train / eval"),
    "models": ("microaction.commands.models", "list registered models and their presets"),
}


def build_parser() -> argparse.ArgumentParser:
    from microaction import __version__

    parser = argparse.ArgumentParser(prog="mar", description="micro-action recognition toolkit")
    parser.add_argument("--version", action="version", version=f"microaction {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue  # a command whose module is not part of this build
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Nothing in this package may fetch weights from a hub at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        rc = int(args._module.run(args) or 0)
    except KeyboardInterrupt:
        print("mar: interrupted", file=sys.stderr)
        rc = 130
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        if os.environ.get("MAR_DEBUG"):
            raise
        from microaction.data.errors import readable_text

        # a message quoting a damaged file's bytes stays short and prints no binary
        print(f"mar {args.command}: error: {readable_text(str(e), 4000)}", file=sys.stderr)
        rc = EXIT_FAILED
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # A torchrun worker whose work is done (files closed, process group destroyed) leaves
        # without interpreter teardown: gloo's and the runtime's background threads can abort
        # the process there (SIGABRT after a finished run, seen on a loaded machine).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
