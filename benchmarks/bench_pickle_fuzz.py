"""Seeded fuzz of the pose-pickle reader: crashes in ``--cases`` hostile pickles (goal: none).

Each case is drawn from ``--seed`` (``tests/pickle_cases.py``): a numpy dtype with a drawn
descriptor, state (version, byte order, sub-array, names, fields, item size, alignment, flags),
shape and byte count, used as a scalar, an array or a protocol-5 buffer; or a real pose pickle
(protocols 2-5) with bytes flipped, inserted, deleted or cut; or a mutation of the reported
crafted files. Cases are loaded with ``microaction.data.readers.pickles.safe_loads`` in worker processes
(address space capped at 2 GB) that report each case before loading it, so a crash is counted
against its case and a new worker goes on: the run always finishes. Every array a case gives is
read back in full. The control loads the reported crafted files with plain ``pickle.loads`` in
the same harness, to show that a crash is seen and counted.

    python benchmarks/bench_pickle_fuzz.py [--cases 10000] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchlib import machine, result

MAKE_BENCH = {"args": [], "budget_s": 20, "mode": "full (10,000 cases)"}

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="also print the counts as one JSON object")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from pickle_cases import crafted, run_isolated

    run = run_isolated(args.seed, args.cases)
    control = run_isolated(args.seed, len(crafted()), which="crafted", loader="plain")
    crashes = run.counts["crash"] + run.counts["hang"]
    where = machine()
    print(
        f"{args.cases} cases (seed {args.seed}): {run.counts['loaded']} loaded, {run.counts['refused']} refused, "
        f"{run.counts['crash']} crashed, {run.counts['hang']} hung, {len(run.errors)} other errors; "
        f"{run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU in {run.workers} worker(s) on {where}"
    )
    for line in run.errors[:10]:
        print("  " + line)
    print(f"control (plain pickle.loads on the {len(crafted())} crafted files): {dict(control.counts)}")
    result(
        "pose-pickle fuzz: cases that crashed or hung the reader",
        crashes,
        goal="== 0",
        met=crashes == 0 and not run.errors,
        note=f"{args.cases} cases, seed {args.seed}: {run.counts['loaded']} loaded, {run.counts['refused']} refused, "
        f"{len(run.errors)} other errors; {run.wall_s:.1f} s wall, {run.cpu_s:.1f} s CPU; {where}",
    )
    result(
        "control: crashes of plain pickle.loads on the crafted files",
        control.counts["crash"],
        note="the harness counts a crash and goes on (numpy trusts a pickled dtype state)",
    )
    if args.json:
        print(json.dumps({"cases": args.cases, "seed": args.seed, **run.counts, "errors": len(run.errors),
                          "wall_s": round(run.wall_s, 2), "cpu_s": round(run.cpu_s, 2)}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
