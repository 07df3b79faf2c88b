"""The ``make bench`` protocol, shared by the ``bench_*.py`` scripts and ``run_all.py`` (README.md).

A benchmark prints, besides whatever it prints for people, one line per figure::

    RESULT {"figure": "...", "value": 0.83, "unit": "x", "goal": ">= 0.8", "met": true, "note": "..."}

(``result()`` writes it) and declares, at module level, how ``make bench`` runs it::

    MAKE_BENCH = {"args": ["--quick"], "budget_s": 120, "mode": "full"}

``run_all.py`` reads ``MAKE_BENCH`` without importing the script (``ast.literal_eval``), runs it with
those arguments under the time budget and prints one table of every ``RESULT``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

__all__ = ["PREFIX", "comma_list", "machine", "mar", "parse_results", "result"]

PREFIX = "RESULT "


def result(
    figure: str,
    value: float | int | str | None,
    *,
    unit: str = "",
    goal: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """Print one machine-readable figure (``met``: None when the figure has no goal or the run
    cannot judge it, e.g. a smoke run). Returns the record."""
    if isinstance(value, float) and not math.isfinite(value):
        value = None
    rec = {"figure": figure, "value": value, "unit": unit, "goal": goal, "met": met, "note": note}
    print(PREFIX + json.dumps(rec), flush=True)
    sys.stdout.flush()
    return rec


def parse_results(text: str) -> list[dict[str, Any]]:
    """The RESULT records of a benchmark's output; a malformed line becomes a record saying so."""
    out = []
    for line in text.splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            rec = json.loads(line[len(PREFIX) :])
            if not isinstance(rec, dict) or "figure" not in rec:
                raise ValueError("not an object with a 'figure'")
        except ValueError as e:
            rec = {"figure": "(malformed RESULT line)", "value": None, "met": False, "note": f"{e}: {line[:80]}"}
        out.append(rec)
    return out


def mar(argv: list[str]) -> float:
    """Run one ``mar`` command in this process; returns its wall seconds (raises when it fails)."""
    from microaction.cli import main as mar_main

    print(f"\n== mar {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = mar_main(argv)
    if rc != 0:
        raise RuntimeError(f"mar {argv[0]} failed (exit {rc})")
    return time.perf_counter() - t0


def machine() -> str:
    """The CPU model, its CPU count and the load average: what every speed figure names."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"


def comma_list(text: str, known: Collection[str], what: str = "models") -> list[str]:
    """The names of a comma list such as ``--models a,b``; an unknown name ends the script, naming
    the known ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return names
