"""B-MoE speed on this machine, in one run (ratios measured in the same run are what count).

Prints one table (and a ``RESULT`` line per figure, ``benchlib.py``; ``make bench`` collects them):

1. the fp32 and bf16 matmul rates (square ``torch.mm`` 2048², best of several) — the references;
   bf16 only where this CPU runs it natively (``engine.precision``: AVX-512 BF16 / AMX);
2. the B-MoE train step at paper dims (R = 4 regions, D = 1408, d = 512, 8 heads, batch 64,
   T = 16; forward + backward + AdamW, as ``engine.trainer`` runs it: fused AdamW, host memory kept,
   ``engine.hostmem``), fp32 and under bf16 autocast, each as a FLOP rate and as a share of its
   matmul rate (FLOPs counted by ``torch.utils.flop_counter`` on one step; goals: fp32 ≥ 80 %,
   bf16 ≥ 50 %); where bf16 is emulated it measures exactly one step at batch 8 and says
   "bf16: not native on this CPU, skipped (measured one step: N× slower)";
3. ``--compile``: the same step with ``torch.compile`` (forward, loss and the backward AOTAutograd
   derives), its compile time and the steps it takes to pay for it;
4. inference latency per clip at batch 1 (paper dims, fp32, and bf16 where native);
5. at demo size (d = 32, the demo's preset, and d = 128; batch 32) batched experts vs a Python
   loop over separate expert modules: the experts alone (forward + backward: what batching
   changes; goal ≥ 2×) and a whole train step.

The full run takes ~2-3 minutes on 2 idle cores. ``--profile N`` adds torch.profiler's top N ops of
one paper-size step, fp32 and bf16. ``--only batched`` runs section 5 alone (~1 minute); ``--trace`` adds where its experts' time goes
(CPU time in aten calls, the share in matrix products). ``--quick``: small sizes and few repetitions, a smoke run (the
goals are not meaningful there). Timings on a shared machine vary from run to run; the ratios
(measured interleaved in one run, median of the repetitions, once the heap has settled:
``interleaved``) are what to compare, and ``--cpu-time``
(one thread, process CPU time) keeps them steadier when other jobs preempt this one.
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
MAKE_BENCH = {"args": ["--profile", "12"], "budget_s": 180, "mode": "full (+ the top 12 ops of one fp32 step)"}
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


def minor_faults() -> int:
    """This process's minor page faults so far (0 where ``resource`` is missing: not on Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# the most warm-up rounds ``interleaved`` runs while the heap is still growing
SETTLE_ROUNDS = 8


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, the functions run in turn (A B A B ...) so that a change in
    the machine's load hits them alike. After ``warmup`` rounds, more rounds (up to
    ``SETTLE_ROUNDS``) until one takes almost no new pages: a train step is timed as training runs
    it, on memory the heap already holds. At paper size the first rounds of interleaved fp32 and
    bf16 steps page-faulted 40-300 K times each (0.5-7 s of system time a step, the kernel
    zero-filling new pages) before the heap held both (``engine.hostmem``)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    rounds = 0
    while rounds < SETTLE_ROUNDS:
        before = minor_faults()
        for fn in fns.values():
            fn()
        rounds += 1
        if minor_faults() - before < 1000:
            break
    if rounds > 1:
        print(f"  (heap settled after {rounds} extra warm-up rounds)")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = CLOCK[0]()
            fn()
            times[name].append(CLOCK[0]() - t0)
    return {name: sorted(ts)[len(ts) // 2] for name, ts in times.items()}


def matmul_fn(n: int, dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def make_loss(model: Any) -> Any:
    from microaction.models.losses import LossComputer

    heads = model.heads
    return LossComputer(
        num_classes=heads.action.out_features, num_body=heads.body.out_features if heads.body is not None else 0
    )


def train_step_fn(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], autocast: bool, compile_: bool = False
) -> Callable[[], float]:
    """One training step: forward, loss, backward, AdamW (``engine.optim.adamw``, as the trainer
    builds it: fused where the device has the kernel); ``compile_``: forward + loss through
    ``torch.compile`` (the backward is compiled with it)."""
    from microaction.engine.optim import adamw, param_groups

    loss_fn = make_loss(model)
    opt = adamw(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)

    def ctx() -> AbstractContextManager[Any]:
        return torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()

    def forward_loss() -> torch.Tensor:
        return loss_fn(model(batch), batch)[0]

    fwd = torch.compile(forward_loss) if compile_ else forward_loss

    def step() -> float:
        with ctx():
            loss = fwd()
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


def profile_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], rows: int, autocast: bool = False) -> str:
    """torch.profiler's table of one train step (ops by self CPU time), fp32 or bf16 autocast."""
    from torch.profiler import ProfilerActivity, profile

    step = train_step_fn(model, batch, autocast=autocast)
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return str(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=44))


def op_trace(fn: Callable[[], Any], reps: int) -> tuple[float, float, float]:
    """Per call of ``fn`` (after one warm-up call): seconds spent inside aten calls, seconds of them in
    matrix products and attention kernels (process CPU time around each call, so time preempted
    by other jobs does not count), and the number of aten calls."""
    from torch.utils._python_dispatch import TorchDispatchMode

    products = ("mm", "addmm", "bmm", "baddbmm")
    acc = [0.0, 0.0, 0.0]

    class Timer(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            t0 = time.process_time()
            out = func(*args, **(kwargs or {}))
            dt = time.process_time() - t0
            name = func.overloadpacket.__name__
            acc[0] += dt
            acc[1] += dt if name in products or "scaled_dot_product" in name else 0.0
            acc[2] += 1
            return out

    fn()
    with Timer():
        for _ in range(reps):
            fn()
    return acc[0] / reps, acc[1] / reps, acc[2] / reps


def demo_batched_vs_loop(
    d: int, heads: int, *, Bd: int, Dd: int, T: int, reps: int, trace: bool = False
) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """Loop / batched time ratios: the R experts alone (forward + backward), and a whole train step;
    ``trace``: also print where the experts' time goes (``op_trace``)."""
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
    if trace:
        for name, fn in (("batched", experts_batched), ("loop", experts_loop)):
            ops, prod, calls = op_trace(fn, max(3, reps // 3))
            print(f"  d={d} {name}: {ops * 1e3:.1f} ms in {calls:.0f} aten calls per forward+backward, "
                  f"{prod * 1e3:.1f} ms ({100 * prod / ops:.0f} %) in matrix products and attention kernels")  # fmt: skip
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


def batched_rows(reps: int, T: int, note: str, quick: bool, trace: bool = False) -> list[tuple[str, str]]:
    """Section 5: at demo size (d = 32, the demo's preset, and d = 128; D = 64, batch 32) batched
    experts vs a Python loop over expert modules; prints, and returns the table rows."""
    from benchlib import result

    rows: list[tuple[str, str]] = []
    for d, heads in ((32, 2), (128, 4)):
        ratio_e, ratio_s, te, ts = demo_batched_vs_loop(d, heads, Bd=32, Dd=64, T=T, reps=reps * 5, trace=trace)
        print(
            f"demo size d={d} (D=64, R={len(REGIONS)}, B=32, T={T}): experts forward+backward batched "
            f"{te['batched'] * 1e3:.1f} ms vs loop {te['loop'] * 1e3:.1f} ms; whole train step "
            f"{ts['batched'] * 1e3:.1f} ms vs {ts['loop'] * 1e3:.1f} ms"
        )
        rows.append((f"batched experts vs loop, d={d} (fwd + bwd; whole step)", f"{ratio_e:.2f}× ({ratio_s:.2f}×)"))
        result(f"batched experts vs Python loop, d={d}, experts fwd+bwd", round(ratio_e, 2), unit="x",
               goal=">= 2x", met=None if quick else ratio_e >= 2, note=note)  # fmt: skip
        result(f"batched experts vs Python loop, d={d}, whole train step", round(ratio_s, 2), unit="x", note=note)
    return rows


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


def compiled_step(
    kw: dict[str, Any], batch: dict[str, torch.Tensor], eager: Callable[[], float], reps: int
) -> tuple[float, float, float]:
    """``torch.compile`` of the fp32 step: (compile seconds: the first call less a step, compiled
    step seconds, eager step seconds; the two steps interleaved after the compilation)."""
    step = train_step_fn(build(kw), batch, autocast=False, compile_=True)
    t0 = CLOCK[0]()
    step()
    first = CLOCK[0]() - t0
    t = interleaved({"compiled": step, "eager": eager}, reps)
    return first - t["compiled"], t["compiled"], t["eager"]


def print_table(rows: list[tuple[str, str]], clock: str) -> int:
    print(load_note())
    print(f"\n| figure ({torch.get_num_threads()} threads, {clock}) | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    from benchlib import result
    from microaction.engine.hostmem import keep_freed_host_memory
    from microaction.engine.precision import native_bf16

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes, few repetitions (smoke run)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions per measurement")
    p.add_argument("--batch", type=int, default=None, help="paper-size batch (default 64; 16 with --quick)")
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
    p.add_argument("--compile", action="store_true", help="also time the torch.compile'd fp32 step (+ compile time)")
    p.add_argument(
        "--no-keep-memory", action="store_true", help="leave glibc's malloc thresholds alone (engine.hostmem)"
    )
    p.add_argument("--profile", type=int, default=0, metavar="N", help="also print the top N ops of one step")
    p.add_argument(
        "--only", choices=("batched",), default=None, help="batched: only section 5 (batched experts vs a loop)"
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help="section 5: also the CPU time in aten calls of batched and loop experts, and its matrix-product share",
    )
    args = p.parse_args(argv)
    kept = False if args.no_keep_memory else keep_freed_host_memory()
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
    B = args.batch or B
    kw = {"num_classes": C, "num_body": CB, "regions": REGIONS, "region_dim": D, "global_dim": D, **paper}
    native, why = native_bf16("cpu")
    run_bf16 = args.bf16 == "run" or (args.bf16 == "auto" and bool(native))
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {clock}, {'QUICK smoke run' if quick else 'full run'}"
    )
    print(f"bf16: {why}")
    print(f"host memory kept (engine.hostmem): {kept}")
    print(load_note())
    note = "quick: not a measurement" if quick else ""
    if args.only == "batched":
        return print_table(batched_rows(reps, T, note, quick, args.trace), clock)
    dims = f"d={paper['d_model']} D={D} R={len(REGIONS)} B={B} T={T}"
    rows: list[tuple[str, str]] = []

    # 1-2: paper dims, fp32 (and bf16) steps and the matmul references, interleaved
    batch = make_batch(B, T, D, C, CB)
    model32 = build(kw)
    n_params = sum(p.numel() for p in model32.parameters())
    flops = count_step_flops(model32, batch)
    step32 = train_step_fn(model32, batch, autocast=False)
    fns = {"mm": matmul_fn(mm_n), "fp32": step32}
    if run_bf16:
        fns["mm16"] = matmul_fn(mm_n, torch.bfloat16)
        fns["bf16"] = train_step_fn(build(kw), batch, autocast=True)
    t = interleaved(fns, reps)
    mm = 2 * mm_n**3 / t["mm"]
    rate = flops / t["fp32"]
    share = 100 * rate / mm
    print(f"fp32 matmul {mm_n}x{mm_n}: {mm / 1e9:.1f} GFLOP/s")
    print(
        f"B-MoE train step (forward, backward, AdamW), {dims}, {n_params / 1e6:.1f} M params, {flops / 1e9:.1f} GFLOP/step:"
    )
    print(f"  fp32: {t['fp32']:.3f} s/step, {B / t['fp32']:.1f} clips/s, {rate / 1e9:.1f} GFLOP/s")
    rows.append((f"fp32 matmul {mm_n}²", f"{mm / 1e9:.0f} GFLOP/s"))
    result("B-MoE fp32 train step, FLOP rate / fp32 matmul rate", round(share, 1), unit="%", goal=">= 80 %",
           met=None if quick else share >= 80, note=note or dims)  # fmt: skip
    result("B-MoE fp32 train step", round(t["fp32"], 3), unit="s", note=note or dims)
    step_row = f"eager fp32 step ({dims}, {flops / 1e9:.0f} GFLOP)"
    threads = torch.get_num_threads()
    one_thread: tuple[str, str] | None = None
    if threads > 1:  # the same share on one thread: what the second thread does not buy
        torch.set_num_threads(1)
        t1 = interleaved({"mm": fns["mm"], "fp32": fns["fp32"]}, max(1, reps - 1))
        torch.set_num_threads(threads)
        share1 = 100 * (flops / t1["fp32"]) / (2 * mm_n**3 / t1["mm"])
        print(f"  one thread: fp32 step {t1['fp32']:.3f} s, {share1:.1f} % of the one-thread matmul rate "
              f"(threads {threads} -> 1: matmul {t1['mm'] / t['mm']:.2f}x slower, step {t1['fp32'] / t['fp32']:.2f}x)")  # fmt: skip
        rows.append(
            ("the fp32 step on one thread", f"{t1['fp32']:.2f} s = {share1:.1f} % of the one-thread matmul rate")
        )
        result("B-MoE fp32 train step, FLOP rate / fp32 matmul rate, one thread", round(share1, 1), unit="%",
               note=note or f"{dims}; step {t1['fp32'] / t['fp32']:.2f}x and matmul {t1['mm'] / t['mm']:.2f}x slower "
               f"than on {threads} threads")  # fmt: skip
    if run_bf16:
        mm16 = 2 * mm_n**3 / t["mm16"]
        share16 = 100 * (flops / t["bf16"]) / mm16
        speedup = t["fp32"] / t["bf16"]
        print(f"bf16 matmul {mm_n}x{mm_n}: {mm16 / 1e9:.1f} GFLOP/s ({mm16 / mm:.2f}x fp32)")
        print(
            f"  bf16 autocast: {t['bf16']:.3f} s/step, {B / t['bf16']:.1f} clips/s, {share16:.1f} % of the bf16 matmul rate"
        )
        rows.append((f"bf16 matmul {mm_n}²", f"{mm16 / 1e9:.0f} GFLOP/s ({mm16 / mm:.1f}× fp32)"))
        rows.append((step_row, f"{t['fp32']:.2f} s = **{share:.1f} %** of the fp32 matmul rate"))
        rows.append(
            (
                "eager bf16 autocast step",
                f"{t['bf16']:.2f} s = **{share16:.1f} %** of the bf16 matmul rate ({speedup:.2f}× fp32)",
            )
        )
        emulated = "" if native else "emulated bf16"
        result("B-MoE bf16 train step, FLOP rate / bf16 matmul rate", round(share16, 1), unit="%", goal=">= 50 %",
               met=None if quick or not native else share16 >= 50, note=", ".join(x for x in (note, emulated) if x))  # fmt: skip
        result("bf16 autocast train step speed-up", round(speedup, 2), unit="x", note=", ".join(x for x in (note, emulated) if x))  # fmt: skip
    else:
        rows.append((step_row, f"{t['fp32']:.2f} s = **{share:.1f} %** of the fp32 matmul rate"))
        t16, t32 = one_step_ratio(kw, B_probe, T, D, C, CB)
        slower = t16 / t32
        why_skip = "not native on this CPU" if not native else "--bf16 skip"
        print(f"bf16: {why_skip}, skipped (measured one step: {slower:.0f}x slower)")
        print(f"  (one step at batch {B_probe}, paper dims otherwise: bf16 {t16:.2f} s vs fp32 {t32:.2f} s)")
        rows.append(("bf16 autocast step", f"{why_skip}: one step at batch {B_probe} {slower:.0f}× slower than fp32"))
        result("bf16 autocast train step speed-up", round(1 / slower, 3), unit="x", goal=">= 1.5x", met=None,
               note=f"{why_skip}, skipped (measured one step at batch {B_probe}: {slower:.0f}x slower)")  # fmt: skip
    if one_thread is not None:
        rows.append(one_thread)
    del fns

    # 3: torch.compile of the fp32 step (opt-in: compiling takes minutes on CPU)
    if args.compile:
        t_comp, tc, te = compiled_step(kw, batch, step32, reps)
        gain = te - tc
        pays = f"pays after {t_comp / gain:.0f} steps" if gain > 0 else "never pays (slower than eager)"
        print(f"torch.compile fp32 step: {tc:.3f} s vs eager {te:.3f} s, compile {t_comp:.0f} s: {pays}")
        rows.append(("torch.compile fp32 step", f"{tc:.2f} s = {100 * flops / tc / mm:.1f} % ({te / tc:.2f}× eager; "
                     f"{t_comp:.0f} s to compile: {pays})"))  # fmt: skip
        result("torch.compile fp32 train step speed-up", round(te / tc, 2), unit="x", note=f"compile {t_comp:.0f} s")

    # 4: inference latency per clip at batch 1
    one = {k: v[:1] for k, v in batch.items()}
    lat = latency(model32, one, max(reps * 3, 6), bf16=run_bf16)
    for name, sec in lat.items():
        print(f"inference latency, batch 1, {name}: {sec * 1e3:.1f} ms/clip")
        result(f"B-MoE inference latency per clip, batch 1, {name}", round(sec * 1e3, 1), unit="ms",
               note=note or dims.replace(f"B={B}", "B=1"))  # fmt: skip
    rows.append(("inference, batch 1", ", ".join(f"{n} {sec * 1e3:.1f} ms" for n, sec in lat.items())))
    if args.profile:
        for mode in ("fp32", "bf16") if run_bf16 else ("fp32",):
            print(f"\ntorch.profiler, one {mode} train step ({dims}):")
            print(profile_step(build(kw), batch, args.profile, autocast=mode == "bf16"))
    del model32, batch

    rows += batched_rows(reps, T, note, quick, args.trace)
    return print_table(rows, clock)


if __name__ == "__main__":
    sys.exit(main())
