"""A zip bomb against `mar score`: time and peak memory until it is refused (goals: < 5 s, < 500 MB).

The bomb is the reported case: a ~2 MB submission zip whose ``prediction.csv`` inflates to
``--gib`` GiB of zeros (``tests/zip_bombs.py``). ``mar score`` runs on it in a fresh process
(address space capped at 4 GB, so that an unbounded reader fails instead of taking the machine);
the figures are that process's wall time (imports included) and peak RSS, and the time of the
refusal itself (``read_prediction_csv`` in this process).

    python benchmarks/bench_zip_bomb.py [--gib 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import machine, result

MAKE_BENCH = {"args": [], "budget_s": 15, "mode": "full (a 2 GiB member)"}

REPO = Path(__file__).resolve().parents[1]
DRIVER = """
import resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
t = time.perf_counter()
from microaction.cli import main
rc = main(sys.argv[1:])
ru = resource.getrusage(resource.RUSAGE_SELF)
hwm = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]  # ru_maxrss carries the parent's over exec
print("FIGURES", rc, time.perf_counter() - t, hwm, ru.ru_utime + ru.ru_stime)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gib", type=float, default=2.0, help="inflated size of prediction.csv, GiB")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "tests"))
    from microaction.metrics import MetricsError, read_prediction_csv
    from zip_bombs import zip_bomb

    where = machine()
    with tempfile.TemporaryDirectory() as tmp:
        bomb = zip_bomb(Path(tmp) / "submission.zip", size=int(args.gib * (1 << 30)))
        zipped_mb = bomb.stat().st_size / 1e6
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        env.pop("MAR_MAX_UNZIPPED_MB", None)
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", DRIVER, "score", "--pred", str(bomb), "--ann", str(Path(tmp) / "val.txt")],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        t0 = time.perf_counter()
        try:
            read_prediction_csv(bomb)
            refused = False
        except MetricsError:
            refused = True
        refusal_s = time.perf_counter() - t0
    figures = [line.split()[1:] for line in res.stdout.splitlines() if line.startswith("FIGURES")]
    if not figures:
        print(res.stdout[-2000:], res.stderr[-2000:], sep="\n")
        print(f"mar score did not finish (exit {res.returncode}): an unbounded read?")
        result("zip bomb: mar score peak memory", None, unit="MB", goal="< 500", met=False, note="no figures")
        return 0
    rc, main_s, maxrss_kb, cpu_s = int(figures[0][0]), float(figures[0][1]), int(figures[0][2]), float(figures[0][3])
    print(res.stderr.strip())
    print(f"{zipped_mb:.1f} MB zip, {args.gib:g} GiB inflated: exit {rc}, {wall:.2f} s wall ({main_s:.2f} s in main, "
          f"{cpu_s:.2f} s CPU), "
          f"peak RSS {maxrss_kb / 1024:.0f} MB; refusal alone {refusal_s * 1000:.1f} ms; {where}")  # fmt: skip
    note = f"{zipped_mb:.1f} MB zip, {args.gib:g} GiB prediction.csv; exit {rc}; {where}"
    result("zip bomb: mar score peak memory", round(maxrss_kb / 1024), unit="MB", goal="< 500",
           met=maxrss_kb / 1024 < 500 and rc == 1, note=note)  # fmt: skip
    result("zip bomb: mar score wall time (process start to refusal)", round(wall, 2), unit="s", goal="< 5",
           met=wall < 5 and rc == 1, note=note + f"; {cpu_s:.2f} s CPU, mostly imports")  # fmt: skip
    result("zip bomb: refusal time of read_prediction_csv", round(refusal_s * 1000, 2), unit="ms",
           goal="refused", met=refused, note=note)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
