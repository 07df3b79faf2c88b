"""Data loading at MA-52 scale: one training epoch over a packed feature store of 22,422 clips.

Prints the share of the epoch spent waiting for data (vs the model's train steps) and the peak
memory of the loading processes. Goals: loading <= 5 % of the epoch, peak RSS <= 2 GB.

The store is random features written straight into the packed layout (``engine.testing.
make_packed_store``), with the demo store's dimensions: R = 4 regions (head, body, upper_limbs,
lower_limbs), D = 240 per region (motion 144 + pose 96) and Dg = 409 global (motion 144 + pose
265), 20-40 feature steps per clip (MA-52 clips are 45-75 frames; the motion encoder's window 4 /
stride 2). That is ~1.8 GB of float16 on disk. ``--dims paper`` uses VideoMAE-V2 ViT-g's 1408-d
features with 8-16 steps per clip instead (~3.4 GB). The store is cached under ``--root`` and
reused.

    python benchmarks/bench_loading.py            # 22,422 clips
    python benchmarks/bench_loading.py --quick    # 2,000 clips, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from microaction.data.loader import ClipDataset, make_loader
from microaction.data.readers.annotations import Sample
from microaction.data.samplers import TrainBatchSampler
from microaction.data.store import FeatureStore
from microaction.engine.testing import make_packed_store
from microaction.models import create_model
from microaction.taxonomy import load_taxonomy

DIMS = {"demo": (240, 409, (20, 40)), "paper": (1408, 1408, (8, 16))}


def _mem_kb(pid: int, field: str) -> int:
    """``Pss`` (from smaps_rollup) or ``VmRSS`` (from status) of a process, in kB (0 if gone)."""
    try:
        if field == "Pss":
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1])
        else:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemSampler(threading.Thread):
    """Samples the RSS of this process and the PSS sum of this process + the loader workers."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.pids: list[int] = []
        self.peak_rss_main = 0
        self.peak_pss_total = 0
        self.peak_rss_worker = 0
        self._halt = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self._halt.is_set():
            self.peak_rss_main = max(self.peak_rss_main, _mem_kb(me, "VmRSS"))
            self.peak_rss_worker = max([self.peak_rss_worker] + [_mem_kb(p, "VmRSS") for p in self.pids])
            total = _mem_kb(me, "Pss") + sum(_mem_kb(p, "Pss") for p in self.pids)
            self.peak_pss_total = max(self.peak_pss_total, total)
            time.sleep(0.25)

    def stop(self) -> None:
        self._halt.set()
        self.join()


MAKE_BENCH = {"args": [], "budget_s": 110, "mode": "full (22,422 clips, demo dims)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 clips instead of 22,422")
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--dims", choices=sorted(DIMS), default="demo")
    ap.add_argument("--root", default=os.environ.get("MAR_BENCH_DIR", "/tmp/mar_bench_loading"))
    ap.add_argument("--model", default="bmoe")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--num-steps", type=int, default=16)
    ap.add_argument("--workers", type=int, default=0, help="0: prefetching thread (default); N: worker processes")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for the model (0: default)")
    ap.add_argument("--max-batches", type=int, default=0, help="stop the epoch after N batches (0: whole epoch)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    n = args.clips or (2000 if args.quick else 22422)
    D, Dg, lengths = DIMS[args.dims]
    root = Path(args.root) / f"{args.dims}_{n}"
    t0 = time.perf_counter()
    if not (root / "packed" / "keys.json").is_file():
        print(f"writing a random packed store of {n} clips to {root} ...", flush=True)
        # in a child process: writing maps the whole store, which would count in this process's peak RSS
        import multiprocessing as mp

        writer = mp.get_context("fork").Process(
            target=make_packed_store, args=(root, n), kwargs={"region_dim": D, "global_dim": Dg, "lengths": lengths}
        )
        writer.start()
        writer.join()
        if writer.exitcode != 0:
            raise SystemExit(f"writing the store failed (exit code {writer.exitcode})")
    gen_s = time.perf_counter() - t0
    size_gb = sum(p.stat().st_size for p in (root / "packed").iterdir()) / 1e9
    store = FeatureStore.open(root)
    keys = json.loads((root / "packed" / "keys.json").read_text())
    tax = load_taxonomy("ma52")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, tax.num_classes, size=n)
    samples = [Sample(k, int(y)) for k, y in zip(keys, labels)]
    ds = ClipDataset(store, samples, tax, num_steps=args.num_steps, sampling="jitter", seed=0, flip_prob=0.5, keys=keys)
    sampler = TrainBatchSampler(n, args.batch_size, seed=0)
    sampler.set_epoch(0)
    m = store.manifest
    model = create_model(
        args.model,
        preset=args.preset,
        num_classes=tax.num_classes,
        num_body=tax.num_body,
        regions=m.regions,
        region_dim=m.region_dim,
        global_dim=m.global_dim,
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()

    # data only: how fast can the loader deliver on its own? (another epoch's order, so that the
    # measured epoch below does not start on pages this warmed up)
    sampler.set_epoch(1)
    it = iter(make_loader(ds, sampler, workers=args.workers))
    t = time.perf_counter()
    warm = 0
    for _ in range(min(40, len(sampler))):
        next(it)
        warm += 1
    load_only = warm * args.batch_size / (time.perf_counter() - t)
    del it

    sampler.set_epoch(0)
    mem = MemSampler()
    mem.start()
    loader = make_loader(ds, sampler, workers=args.workers)
    it = iter(loader)
    mem.pids = [w.pid for w in getattr(it, "_workers", [])]
    wait = compute = 0.0
    first_wait = 0.0
    batches = 0
    t_epoch = time.perf_counter()
    total = len(sampler) if not args.max_batches else min(args.max_batches, len(sampler))
    while batches < total:
        a = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            break
        b = time.perf_counter()
        out = model(batch)
        loss = loss_fn(out["action"], batch["action"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        c = time.perf_counter()
        wait += b - a
        compute += c - b
        if batches == 0:
            first_wait = b - a  # includes starting the worker processes
        batches += 1
        if batches % 50 == 0:
            print(f"  {batches}/{total} batches, loading {100 * wait / (wait + compute):.1f} %", flush=True)
    epoch_s = time.perf_counter() - t_epoch
    mem.stop()
    maxrss_main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = {
        "clips": n,
        "dims": {"R": len(m.regions), "D": D, "Dg": Dg, "steps_per_clip": list(lengths), "T": args.num_steps},
        "store_gb": round(size_gb, 2),
        "store_write_s": round(gen_s, 1),
        "model": f"{args.model}/{args.preset}",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "batches": batches,
        "epoch_s": round(epoch_s, 1),
        "loading_s": round(wait, 2),
        "compute_s": round(compute, 2),
        "loading_share": round(wait / max(1e-9, wait + compute), 4),
        "first_batch_wait_s": round(first_wait, 3),
        "loader_alone_clips_per_s": round(load_only, 1),
        "peak_rss_main_gb": round(max(maxrss_main, mem.peak_rss_main) / 1e6, 3),
        "peak_rss_worker_gb": round(mem.peak_rss_worker / 1e6, 3),
        "peak_pss_total_gb": round(mem.peak_pss_total / 1e6, 3),
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(
            f"store: {n} clips, R={len(m.regions)} D={D} Dg={Dg}, {lengths[0]}-{lengths[1]} steps/clip, {size_gb:.2f} GB"
        )
        how = f"{args.workers} worker process(es)" if args.workers else "a prefetching thread"
        print(f"epoch: {batches} batches of {args.batch_size} in {epoch_s:.1f} s, loading in {how},")
        print(f"       model {args.model}/{args.preset} ({torch.get_num_threads()} torch thread(s))")
        print(
            f"loading (waiting for data): {wait:.2f} s = {100 * res['loading_share']:.2f} % of the epoch "
            f"(goal <= 5 %); compute {compute:.1f} s"
        )
        print(f"  (of which the first batch: {first_wait:.2f} s)")
        print(f"loader alone: {load_only:.0f} clips/s")
        workers = f", a worker {res['peak_rss_worker_gb']:.2f} GB" if args.workers else ""
        print(
            f"peak RSS: main {res['peak_rss_main_gb']:.2f} GB{workers}; "
            f"all processes (PSS) {res['peak_pss_total_gb']:.2f} GB (goal <= 2 GB)"
        )
    ok = res["loading_share"] <= 0.05 and max(res["peak_pss_total_gb"], res["peak_rss_main_gb"]) <= 2.0
    print("goals met" if ok else "goals NOT met")
    from benchlib import result

    note = f"{n} clips, {args.dims} dims" + (", quick" if args.quick else "")
    result("data loading share of a training epoch", round(100 * res["loading_share"], 2), unit="%",
           goal="<= 5 %", met=res["loading_share"] <= 0.05, note=note)  # fmt: skip
    peak = max(res["peak_pss_total_gb"], res["peak_rss_main_gb"])
    result("peak memory of the loading processes", peak, unit="GB", goal="<= 2 GB", met=peak <= 2.0, note=note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
