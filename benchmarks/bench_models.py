"""B-MoE speed on this machine, in one run (ratios measured in the same run are what count).

Prints:
1. the fp32 matmul rate (square ``torch.mm``, best of several) — the reference;
2. B-MoE train-step throughput at paper dims (R = 4 regions, D = 1408, d = 512, 8 heads, batch 64,
   T = 16; forward + backward + AdamW), and its FLOP rate as a share of the matmul rate
   (FLOPs counted by ``torch.utils.flop_counter`` on one step; goal ≥ 80 %);
3. the same step under bf16 autocast vs fp32 (goal ≥ 1.5× faster) where this CPU runs bf16 natively
   (``engine.precision``: AVX-512 BF16 / AMX); elsewhere PyTorch emulates bf16 (a paper-size step
   took 60× the fp32 one on an AVX2 EPYC), so it measures exactly one step at batch 8 and says
   "bf16: not native on this CPU, skipped (measured one step: N× slower)";
4. at demo size (d = 32, the demo's preset, and d = 128; batch 32) batched experts vs a naive
   Python loop over separate expert modules: the experts alone (forward + backward: what batching
   changes; goal ≥ 2×) and a whole train step;
5. inference latency per clip at batch 1 (paper dims, fp32, and bf16 where native).

Every figure is also a ``RESULT`` line (``benchlib.py``; ``make bench`` collects them). The full
run takes ~1-2 minutes on 2 idle cores (budget: 5 minutes). ``--profile N`` adds torch.profiler's
top N ops of one fp32 paper-size step. ``--quick``: small sizes and few repetitions, a smoke run
(the goals are not meaningful there). Timings on a shared machine vary from run to run; the ratios
(measured interleaved in one run) are what to compare, and ``--cpu-time`` (one thread, process CPU
time) keeps them steadier when other jobs preempt this one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from microaction.models import create_model

REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
MAKE_BENCH = {"args": ["--profile", "12"], "budget_s": 120, "mode": "full (+ the top 12 ops of one fp32 step)"}
# the clock every timing uses: wall time, or this process's CPU time with --cpu-time (one thread:
# on a machine shared with other jobs, time spent preempted does not count)
CLOCK: list[Callable[[], float]] = [time.perf_counter]


def make_batch(B: int, T: int, D: int, C: int, CB: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[: B // 4, T - T // 4 :] = False  # a quarter of the clips are padded
    valid = torch.ones(B, len(REGIONS), dtype=torch.bool)
    valid[: B // 8, 3] = False
    return {
        "regions": torch.randn(B, len(REGIONS), T, D, generator=g),
        "global": torch.randn(B, T, D, generator=g),
        "mask": mask,
        "region_valid": valid,
        "action": torch.randint(0, C, (B,), generator=g),
        "body": torch.randint(0, CB, (B,), generator=g),
    }


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> float:
    """Best (minimum) seconds of ``fn`` over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = CLOCK[0]()
        fn()
        best = min(best, CLOCK[0]() - t0)
    return best


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Best seconds of each function, the functions run in turn (A B A B ...) so that a change in
    the machine's load hits them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = CLOCK[0]()
            fn()
            best[name] = min(best[name], CLOCK[0]() - t0)
    return best


def matmul_fn(n: int) -> Callable[[], Any]:
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    return lambda: torch.mm(a, b, out=out)


def make_loss(model: Any) -> Any:
    from microaction.models.losses import LossComputer

    heads = model.heads
    return LossComputer(
        num_classes=heads.action.out_features, num_body=heads.body.out_features if heads.body is not None else 0
    )


def train_step_fn(model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: bool) -> Callable[[], float]:
    """One training step: forward, loss, backward, AdamW (fused, as the engine uses on CPU)."""
    loss_fn = make_loss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def ctx() -> AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()

    def step() -> float:
        with ctx():
            out = model(batch)
            loss, _ = loss_fn(out, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def count_step_flops(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """FLOPs of one forward + backward (``torch.utils.flop_counter``: matmuls, attention, convolutions)."""
    loss_fn = make_loss(model)
    with FlopCounterMode(display=False) as fc:
        out = model(batch)
        loss, _ = loss_fn(out, batch)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(fc.get_total_flops())


def build(kw: dict[str, Any], seed: int = 0, **extra: Any) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("bmoe", **kw, **extra).train()


def latency(model: torch.nn.Module, one: dict[str, torch.Tensor], reps: int, bf16: bool) -> dict[str, float]:
    """Best seconds per clip at batch 1: fp32, and bf16 autocast when ``bf16`` (interleaved)."""
    model.eval()

    def fp32() -> None:
        with torch.inference_mode():
            model(one)

    def half() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(one)

    t = interleaved({"fp32": fp32, **({"bf16": half} if bf16 else {})}, reps, warmup=2)
    model.train()
    return t


def one_step_ratio(kw: dict[str, Any], B: int, T: int, D: int, C: int, CB: int) -> tuple[float, float]:
    """Seconds of exactly one bf16-autocast train step and of one fp32 step (after one fp32 warm-up)
    at batch ``B``: how much slower emulated bf16 is, without spending minutes on it."""
    batch = make_batch(B, T, D, C, CB, seed=2)
    model = build(kw)
    fp32 = train_step_fn(model, batch, autocast=False)
    fp32()
    t0 = CLOCK[0]()
    fp32()
    t32 = CLOCK[0]() - t0
    bf16 = train_step_fn(build(kw), batch, autocast=True)
    t0 = CLOCK[0]()
    bf16()
    return CLOCK[0]() - t0, t32


def profile_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: int) -> str:
    """torch.profiler's table of one fp32 train step (ops by self CPU time)."""
    from torch.profiler import ProfilerActivity, profile

    step = train_step_fn(model, batch, autocast=False)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=44))


def demo_batched_vs_loop(
    d: int, heads: int, *, Bd: int, Dd: int, T: int, reps: int
) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """Loop / batched time ratios: the R experts alone (forward + backward), and a whole train step."""
    from microaction.models.m3e import M3E, StackedM3E

    R = len(REGIONS)
    ekw = {"d_model": d, "n_heads": heads, "n_attn": 1, "n_sgp": 1, "max_len": 64}
    torch.manual_seed(0)
    stacked = StackedM3E(R, Dd, **ekw)
    loop = torch.nn.ModuleList(M3E(Dd, **ekw) for _ in range(R))
    x = torch.randn(R, Bd, T, Dd)
    mask = torch.ones(Bd, T, dtype=torch.bool)
    mask[: Bd // 4, T - T // 4 :] = False

    def experts_batched() -> None:
        out = stacked(x, mask)
        (out.seq.square().mean() + out.pooled.square().mean()).backward()

    def experts_loop() -> None:
        outs = [e(x[r], mask) for r, e in enumerate(loop)]
        seq, pooled = torch.stack([o.seq for o in outs]), torch.stack([o.pooled for o in outs])
        (seq.square().mean() + pooled.square().mean()).backward()

    te = interleaved({"batched": experts_batched, "loop": experts_loop}, reps, warmup=2)
    kw = {"num_classes": 52, "num_body": 7, "regions": REGIONS, "region_dim": Dd, "global_dim": Dd, **ekw}
    batch = make_batch(Bd, T, Dd, 52, 7, seed=1)
    ts = interleaved(
        {
            "batched": train_step_fn(build(kw, expert_impl="batched"), batch, False),
            "loop": train_step_fn(build(kw, expert_impl="loop"), batch, False),
        },
        reps,
        warmup=2,
    )
    return te["loop"] / te["batched"], ts["loop"] / ts["batched"], te, ts


def load_note() -> str:
    """The machine's load: timings on a shared machine are only comparable within one run."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return "load average: unknown"
    cores = os.cpu_count() or 1
    note = f"load average {load:.1f} on {cores} cores"
    if load > cores and torch.get_num_threads() > 1:
        note += " (busy: multi-threaded timings suffer from preempted threads; --threads 1 is steadier)"
    return note


def main(argv: list[str] | None = None) -> int:
    from benchlib import result
    from microaction.engine.precision import native_bf16

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repetitions (smoke run)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per measurement")
    p.add_argument(
        "--bf16",
        choices=("auto", "run", "skip"),
        default="auto",
        help="auto: compare bf16 where this CPU runs it natively, else measure one step and skip; "
        "run: compare even where emulated (slow); skip: measure one step only",
    )
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="one torch thread, timed in process CPU time (steadier when other jobs share the cores)",
    )
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also print the top N ops of one fp32 step")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        torch.set_num_threads(1)
        CLOCK[0] = time.process_time
    quick = args.quick
    reps = args.reps or (2 if quick else 3)
    C, CB, T = 52, 7, 16
    if quick:
        paper = {"d_model": 128, "n_heads": 8, "n_attn": 1, "n_sgp": 1, "max_len": 64}
        D, B, mm_n, B_probe = 256, 16, 1024, 4
    else:
        paper = {"d_model": 512, "n_heads": 8, "n_attn": 2, "n_sgp": 2, "max_len": 64}
        D, B, mm_n, B_probe = 1408, 64, 2048, 8
    kw = {"num_classes": C, "num_body": CB, "regions": REGIONS, "region_dim": D, "global_dim": D, **paper}
    native, why = native_bf16("cpu")
    run_bf16 = args.bf16 == "run" or (args.bf16 == "auto" and bool(native))
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {clock}, {'QUICK smoke run' if quick else 'full run'}"
    )
    print(f"bf16: {why}")
    print(load_note())
    note = "quick: not a measurement" if quick else ""
    dims = f"d={paper['d_model']} D={D} R={len(REGIONS)} B={B} T={T}"

    # 1-3: paper dims, fp32 (and bf16) steps and the matmul reference, interleaved
    batch = make_batch(B, T, D, C, CB)
    model32 = build(kw)
    n_params = sum(p.numel() for p in model32.parameters())
    flops = count_step_flops(model32, batch)
    fns = {"mm": matmul_fn(mm_n), "fp32": train_step_fn(model32, batch, autocast=False)}
    if run_bf16:
        fns["bf16"] = train_step_fn(build(kw), batch, autocast=True)
    t = interleaved(fns, reps)
    mm = 2 * mm_n**3 / t["mm"]
    rate = flops / t["fp32"]
    print(f"fp32 matmul {mm_n}x{mm_n}: {mm / 1e9:.1f} GFLOP/s")
    print(
        f"B-MoE train step (forward, backward, AdamW), {dims}, {n_params / 1e6:.1f} M params, "
        f"{flops / 1e9:.1f} GFLOP/step:"
    )
    print(f"  fp32: {t['fp32']:.3f} s/step, {B / t['fp32']:.1f} clips/s, {rate / 1e9:.1f} GFLOP/s")
    share = 100 * rate / mm
    result("B-MoE fp32 train step, FLOP rate / fp32 matmul rate", round(share, 1), unit="%", goal=">= 80 %",
           met=None if quick else share >= 80, note=note or dims)  # fmt: skip
    result("B-MoE fp32 train step", round(t["fp32"], 3), unit="s", note=note or dims)
    threads = torch.get_num_threads()
    if threads > 1:  # the same share on one thread: what the second thread does not buy
        torch.set_num_threads(1)
        t1 = interleaved({"mm": fns["mm"], "fp32": fns["fp32"]}, max(1, reps - 1))
        torch.set_num_threads(threads)
        share1 = 100 * (flops / t1["fp32"]) / (2 * mm_n**3 / t1["mm"])
        print(f"  one thread: fp32 step {t1['fp32']:.3f} s, {share1:.1f} % of the one-thread matmul rate "
              f"(threads {threads} -> 1: matmul {t1['mm'] / t['mm']:.2f}x slower, step {t1['fp32'] / t['fp32']:.2f}x)")  # fmt: skip
        result("B-MoE fp32 train step, FLOP rate / fp32 matmul rate, one thread", round(share1, 1), unit="%",
               note=note or f"{dims}; step {t1['fp32'] / t['fp32']:.2f}x and matmul {t1['mm'] / t['mm']:.2f}x slower "
               f"than on {threads} threads")  # fmt: skip
    if run_bf16:
        print(f"  bf16 autocast: {t['bf16']:.3f} s/step, {B / t['bf16']:.1f} clips/s")
        speedup = t["fp32"] / t["bf16"]
        emulated = "" if native else "emulated bf16"
        result("bf16 autocast train step speed-up", round(speedup, 2), unit="x", goal=">= 1.5x",
               met=None if quick else speedup >= 1.5, note=", ".join(x for x in (note, emulated) if x))  # fmt: skip
    else:
        t16, t32 = one_step_ratio(kw, B_probe, T, D, C, CB)
        slower = t16 / t32
        why_skip = "not native on this CPU" if not native else "--bf16 skip"
        print(f"bf16: {why_skip}, skipped (measured one step: {slower:.0f}x slower)")
        print(f"  (one step at batch {B_probe}, paper dims otherwise: bf16 {t16:.2f} s vs fp32 {t32:.2f} s)")
        result("bf16 autocast train step speed-up", round(1 / slower, 3), unit="x", goal=">= 1.5x", met=None,
               note=f"{why_skip}, skipped (measured one step at batch {B_probe}: {slower:.0f}x slower)")  # fmt: skip
    del fns

    # 5: inference latency per clip at batch 1
    one = {k: v[:1] for k, v in batch.items()}
    lat = latency(model32, one, max(reps * 3, 6), bf16=run_bf16)
    for name, sec in lat.items():
        print(f"inference latency, batch 1, {name}: {sec * 1e3:.1f} ms/clip")
        result(f"B-MoE inference latency per clip, batch 1, {name}", round(sec * 1e3, 1), unit="ms",
               note=note or dims.replace(f"B={B}", "B=1"))  # fmt: skip
    if args.profile:
        print(f"\ntorch.profiler, one fp32 train step ({dims}):")
        print(profile_step(model32, batch, args.profile))
    del model32, batch

    # 4: demo size (the demo's own preset: d = 32, batch 32), batched experts vs a Python loop
    for d, heads in ((32, 2), (128, 4)):
        ratio_e, ratio_s, te, ts = demo_batched_vs_loop(d, heads, Bd=32, Dd=64, T=T, reps=reps * 5)
        print(
            f"demo size d={d} (D=64, R={len(REGIONS)}, B=32, T={T}): experts forward+backward batched "
            f"{te['batched'] * 1e3:.1f} ms vs loop {te['loop'] * 1e3:.1f} ms; whole train step "
            f"{ts['batched'] * 1e3:.1f} ms vs {ts['loop'] * 1e3:.1f} ms"
        )
        result(f"batched experts vs Python loop, d={d}, experts fwd+bwd", round(ratio_e, 2), unit="x",
               goal=">= 2x", met=None if quick else ratio_e >= 2, note=note)  # fmt: skip
        result(f"batched experts vs Python loop, d={d}, whole train step", round(ratio_s, 2), unit="x", note=note)
    print(load_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
