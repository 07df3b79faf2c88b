"""Run every ``benchmarks/bench_*.py`` as ``make bench`` does and print one summary table.

Each script is run as its module-level ``MAKE_BENCH`` says (``args``, ``budget_s``, ``mode``; see
``benchlib.py`` and README.md), in its own process and process group, killed when it overruns its
budget; its output goes to ``OUT/<name>.log`` and its ``RESULT`` lines into the table (figure,
value, goal, met) and ``OUT/summary.json``.

    python benchmarks/run_all.py [--only models extract ...] [--out runs/bench] [--list] [--strict]

Exit status 1 when a script failed or overran its budget (``--strict``: also when a goal was not
met), else 0.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import parse_results

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOTAL_BUDGET_S = 30 * 60  # make bench's promise on 2 cores
DEFAULT_SPEC: dict[str, Any] = {"args": [], "budget_s": 120, "mode": "full"}


def read_spec(path: Path) -> dict[str, Any]:
    """A script's ``MAKE_BENCH`` (a literal dict at module level), without importing the script."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "MAKE_BENCH":
            spec = ast.literal_eval(value)
            unknown = set(spec) - set(DEFAULT_SPEC)
            if unknown:
                raise ValueError(f"{path}: MAKE_BENCH has unknown keys {sorted(unknown)}")
            return {**DEFAULT_SPEC, **spec}
    return {**DEFAULT_SPEC, "mode": "full (no MAKE_BENCH in the script)"}


def discover(only: list[str] | None) -> list[Path]:
    scripts = sorted(HERE.glob("bench_*.py"))
    if only:
        names = {s.stem.removeprefix("bench_"): s for s in scripts}
        missing = [n for n in only if n.removeprefix("bench_") not in names]
        if missing:
            raise SystemExit(f"run_all: no benchmark {missing}; there are {sorted(names)}")
        scripts = [names[n.removeprefix("bench_")] for n in only]
    return scripts


def run_one(script: Path, spec: dict[str, Any], log: Path) -> dict[str, Any]:
    cmd = [sys.executable, str(script), *map(str, spec["args"])]
    t0 = time.perf_counter()
    with open(log, "w", encoding="utf-8") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=f, text=True, start_new_session=True)
        timed_out = False
        try:
            text, _ = proc.communicate(timeout=spec["budget_s"])
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the script and whatever it started
            text, _ = proc.communicate()
        text = text or ""
        f.write(text)
    return {
        "script": script.name,
        "args": spec["args"],
        "mode": spec["mode"],
        "budget_s": spec["budget_s"],
        "seconds": round(time.perf_counter() - t0, 1),
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "results": parse_results(text),
        "log": str(log),
    }


def _fmt_value(rec: dict[str, Any]) -> str:
    v = rec.get("value")
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    unit = rec.get("unit") or ""
    return f"{v} {unit}".strip()


def table(runs: list[dict[str, Any]]) -> str:
    rows = [("benchmark", "figure", "value", "goal", "met")]
    for r in runs:
        name = r["script"].removeprefix("bench_").removesuffix(".py")
        if r["timed_out"] or r["returncode"] != 0:
            why = f"timed out after {r['budget_s']} s" if r["timed_out"] else f"failed (exit {r['returncode']})"
            rows.append((name, f"(script {why}; see {r['log']})", "-", "-", "NO"))
        if not r["results"] and not r["timed_out"] and r["returncode"] == 0:
            rows.append((name, "(no RESULT lines)", "-", "-", "-"))
        for rec in r["results"]:
            met = {True: "yes", False: "NO", None: "-"}[rec.get("met")]
            fig = rec["figure"] + (f" [{rec['note']}]" if rec.get("note") else "")
            rows.append((name, str(fig), str(_fmt_value(rec)), str(rec.get("goal") or "-"), met))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    widths[1] = min(widths[1], 90)
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if j < 4 else c for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--only", nargs="+", help="run only these benchmarks (names without bench_ / .py)")
    ap.add_argument("--out", default="runs/bench", help="folder for the logs and summary.json (default runs/bench)")
    ap.add_argument("--list", action="store_true", help="print each script's MAKE_BENCH and the budget total")
    ap.add_argument("--strict", action="store_true", help="exit 1 also when a goal was not met")
    args = ap.parse_args(argv)
    scripts = discover(args.only)
    specs = {s: read_spec(s) for s in scripts}
    total = sum(sp["budget_s"] for sp in specs.values())
    if args.list:
        for s, sp in specs.items():
            print(f"{s.name:32s} budget {sp['budget_s']:4d} s  mode {sp['mode']}  args {' '.join(sp['args']) or '-'}")
        print(f"total budget {total} s (make bench promises <= {TOTAL_BUDGET_S} s on 2 cores)")
        return 0
    out = (REPO / args.out) if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{len(scripts)} benchmarks, budgets total {total} s; logs in {out}", flush=True)
    runs = []
    t0 = time.perf_counter()
    for s in scripts:
        sp = specs[s]
        print(f"- {s.name} ({sp['mode']}; budget {sp['budget_s']} s) ...", end=" ", flush=True)
        r = run_one(s, sp, out / f"{s.stem}.log")
        state = "timed out" if r["timed_out"] else ("ok" if r["returncode"] == 0 else f"exit {r['returncode']}")
        print(f"{state} in {r['seconds']:.0f} s, {len(r['results'])} figures", flush=True)
        runs.append(r)
    wall = time.perf_counter() - t0
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "unknown"
    print()
    print(table(runs))
    print(
        f"\n{len(runs)} benchmarks in {wall:.0f} s (budget {TOTAL_BUDGET_S} s); {os.cpu_count()} CPUs, load now {load}"
    )
    print("modes: " + "; ".join(f"{r['script']}: {r['mode']}" for r in runs))
    summary = {"seconds": round(wall, 1), "cpus": os.cpu_count(), "runs": runs}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    failed = any(r["timed_out"] or r["returncode"] != 0 for r in runs)
    unmet = any(rec.get("met") is False for r in runs for rec in r["results"])
    return 1 if failed or (args.strict and unmet) else 0


if __name__ == "__main__":
    sys.exit(main())
