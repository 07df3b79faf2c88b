"""Extraction speed on the real MA-52 clips (1080×1296, 30 fps): frames/s for parse only
(decode + MediaPipe + region masks), parse + motion encoder, parse + pose encoder, and the
default parse + motion + pose, each run through the pipelined single-process runner path, and the
default plus head-box face crops (``face_size=32``, for B-MoE's head-texture branch).

    python benchmarks/bench_extract.py [--quick] [--clips DIR] [--json]

Goal (issue 5): end-to-end >= 80 % of parse-only speed and >= 25 frames/s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")

REPO = Path(__file__).resolve().parents[1]
MAKE_BENCH = {"args": [], "budget_s": 90, "mode": "full"}
DEFAULT_CLIPS = Path(os.environ.get("MAR_SHARED", REPO.parent / "shared")) / "data" / "ma52" / "demo_clips"


def cpu_seconds() -> float:
    """CPU time of this process, all threads (less sensitive than wall time to other load)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def bench_parse_only(ex, jobs) -> tuple[int, float]:
    frames = 0
    t0 = time.perf_counter()
    for j in jobs:
        frames += len(ex.parse(j.path).timestamps)
    return frames, time.perf_counter() - t0


def bench_pipeline(ex, jobs) -> tuple[int, float]:
    from microaction.data.store import FeatureStore
    from microaction.extract.jobs.runner import run_pipelined

    with tempfile.TemporaryDirectory() as d:
        store = FeatureStore.create(d, ex.manifest())
        t0 = time.perf_counter()
        results = list(run_pipelined(ex, store, jobs))
        dt = time.perf_counter() - t0
    bad = [r for r in results if r[1] != "ok"]
    if bad:
        raise SystemExit(f"extraction failed: {bad}")
    return sum(r[2] for r in results), dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 clips, 30 frames each")
    ap.add_argument("--clips", type=Path, default=DEFAULT_CLIPS)
    ap.add_argument("--max-side", type=int, default=640)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from microaction.extract.jobs.job_list import collect_jobs
    from microaction.extract.pipeline import Extractor, ExtractParams

    if not a.clips.is_dir():
        print(f"bench_extract: {a.clips} not found (needs ../shared)", file=sys.stderr)
        return 1
    jobs = collect_jobs(a.clips)
    sampling = {"max_side": a.max_side}
    if a.quick:
        jobs = jobs[:2]
        sampling["num_frames"] = 30
    cases: dict[str, tuple[list[str], dict[str, int]]] = {
        "parse+motion": (["motion"], {}),
        "parse+pose": (["pose"], {}),
        "parse+motion+pose": (["motion", "pose"], {}),
        "+ face crops (32 px)": (["motion", "pose"], {"face_size": 32}),
    }
    load = os.getloadavg()[0]
    # warm-up (imports, graph creation) on the first clip
    ex = Extractor(ExtractParams(encoders=["pose"], **sampling))
    ex.encode(ex.parse(jobs[0].path))
    rows = {}
    c0 = cpu_seconds()
    n, dt = bench_parse_only(Extractor(ExtractParams(encoders=["pose"], **sampling)), jobs)
    rows["parse only"] = {
        "frames": n,
        "seconds": dt,
        "fps": n / dt,
        "cpu_ms_per_frame": 1000 * (cpu_seconds() - c0) / n,
    }
    for name, (encs, extra) in cases.items():
        c0 = cpu_seconds()
        n, dt = bench_pipeline(Extractor(ExtractParams(encoders=encs, **sampling, **extra)), jobs)
        rows[name] = {"frames": n, "seconds": dt, "fps": n / dt, "cpu_ms_per_frame": 1000 * (cpu_seconds() - c0) / n}
    base = rows["parse only"]["fps"]
    for r in rows.values():
        r["vs_parse_only"] = r["fps"] / base
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    from benchlib import result

    note = "quick: not a measurement" if a.quick else f"{len(jobs)} clips, load {load:.1f}"
    e2e = rows["parse+motion+pose"]
    result("extraction, default encoders (motion + pose)", round(e2e["fps"], 1), unit="frames/s",
           goal=">= 25 frames/s", met=None if a.quick else e2e["fps"] >= 25, note=note)  # fmt: skip
    result("extraction, default encoders vs parse only", round(100 * e2e["vs_parse_only"], 1), unit="%",
           goal=">= 80 %", met=None if a.quick else e2e["vs_parse_only"] >= 0.8, note=note)  # fmt: skip
    print(f"extraction on {len(jobs)} MA-52 clips ({a.clips}), decode at max side {a.max_side}, {os.cpu_count()} CPUs")
    print(f"load average before the run: {load:.1f} (other processes slow wall-clock figures down)")
    print(f"{'case':20s} {'frames':>7s} {'seconds':>8s} {'frames/s':>9s} {'vs parse':>9s} {'CPU ms/frame':>13s}")
    for name, r in rows.items():
        print(
            f"{name:20s} {r['frames']:7d} {r['seconds']:8.2f} {r['fps']:9.1f} {100 * r['vs_parse_only']:8.0f}%"
            f" {r['cpu_ms_per_frame']:13.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
