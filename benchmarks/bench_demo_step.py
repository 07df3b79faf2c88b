"""The demo's B-MoE train step on this machine (the model of ``configs/demo_bmoe.yaml`` at the demo
store's shapes: R = 4 regions of 96 features, a global stream of 265, T = 32 steps, batch 32), in
the precision ``run.precision: auto`` picks here (bf16 autocast where the CPU runs bf16 natively,
else fp32), one torch thread as ``mar demo`` trains. Ratios measured in one run, interleaved:

1. the attention of its read-out (CLS, global token and the R·T expert steps: 130 tokens, the
   routing as a float bias that needs a gradient) and of its experts (32 steps, a key mask):
   forward + backward of ``models.common.attention`` against PyTorch's kernel;
2. the whole train step (forward, backward, fused AdamW) with the global M3E run as one more
   batched expert (``StackedM3E.forward_with``, the default) against run on its own.

Random features of the store's shapes stand in for the store (the step's cost does not depend on
the values). ``--quick``: few repetitions (a smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml

from microaction.engine.optim import adamw, param_groups
from microaction.engine.precision import autocast, resolve_precision
from microaction.models import create_model
from microaction.models.common import attention
from microaction.models.losses import LossComputer

MAKE_BENCH = {"args": [], "budget_s": 60, "mode": "full"}
REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_bmoe.yaml"


def interleaved(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median process CPU seconds of each function, run in turn (A B A B ...) after one warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t0 = time.process_time()
            fn()
            times[k].append(time.process_time() - t0)
    return {k: sorted(v)[len(v) // 2] for k, v in times.items()}


def attention_fns(B: int, H: int, L: int, dh: int, bias: bool, dtype: torch.dtype) -> dict[str, Callable[[], Any]]:
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, H, L, dh, generator=g).to(dtype).requires_grad_() for _ in range(3))
    keep = torch.ones(B, 1, 1, L, dtype=torch.bool)
    keep[: B // 4, ..., L - L // 4 :] = False
    mask = torch.randn(keep.shape, generator=g).masked_fill(~keep, float("-inf")).to(dtype) if bias else keep
    if bias:
        mask.requires_grad_()

    def ours() -> None:
        attention(q, k, v, mask).float().sum().backward()

    def kernel() -> None:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).float().sum().backward()

    return {"ours": ours, "kernel": kernel}


def step_fn(joint: bool, precision: Any, B: int, T: int) -> Callable[[], None]:
    cfg = yaml.safe_load(CONFIG.read_text())
    torch.manual_seed(0)
    model = create_model("bmoe", preset=cfg["model"]["preset"], num_classes=52, num_body=7, regions=REGIONS,
                         region_dim=96, global_dim=265, **cfg["model"]["kwargs"]).train()  # fmt: skip
    model._joint_global = joint and model._joint_global  # type: ignore[assignment]
    loss_fn = LossComputer(num_classes=52, num_body=7)
    opt = adamw(param_groups(model, 0.05), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[: B // 4, T - T // 4 :] = False
    batch = {
        "regions": torch.randn(B, len(REGIONS), T, 96, generator=g),
        "global": torch.randn(B, T, 265, generator=g),
        "mask": mask,
        "region_valid": torch.ones(B, len(REGIONS), dtype=torch.bool),
        "action": torch.randint(0, 52, (B,), generator=g),
        "body": torch.randint(0, 7, (B,), generator=g),
    }

    def step() -> None:
        with autocast("cpu", precision):
            loss, _ = loss_fn(model(batch), batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main(argv: list[str] | None = None) -> int:
    from benchlib import result

    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="few repetitions (a smoke run)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions of each (default 30; 2 with --quick)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    reps = args.reps or (2 if args.quick else 30)
    note = "quick: not a measurement" if args.quick else ""
    precision = resolve_precision("auto", torch.device("cpu"))
    dtype = torch.bfloat16 if precision.bf16 else torch.float32
    print(f"torch {torch.__version__}, 1 thread, process CPU time; precision {precision.used}: {precision.reason}")
    rows: list[tuple[str, str]] = []
    for name, shape, bias in (("read-out, 130 tokens, routing bias", (32, 2, 130, 16), True),
                              ("expert, 32 steps, key mask", (160, 2, 32, 16), False)):  # fmt: skip
        t = interleaved(attention_fns(*shape, bias=bias, dtype=dtype), reps * 3)
        ratio = t["kernel"] / t["ours"]
        print(f"attention {name} {list(shape)} {precision.used}: ours {t['ours'] * 1e3:.2f} ms, "
              f"PyTorch's kernel {t['kernel'] * 1e3:.2f} ms (forward + backward)")  # fmt: skip
        rows.append((f"attention, {name} (fwd + bwd, {precision.used})", f"{ratio:.2f}× PyTorch's kernel"))
        result(f"demo attention, {name}: PyTorch's kernel / ours", round(ratio, 2), unit="x", note=note)
    t = interleaved({"joint": step_fn(True, precision, 32, 32), "apart": step_fn(False, precision, 32, 32)}, reps)
    ratio = t["apart"] / t["joint"]
    print(f"demo B-MoE train step {precision.used}: global M3E with the batched experts {t['joint'] * 1e3:.1f} ms, "
          f"on its own {t['apart'] * 1e3:.1f} ms")  # fmt: skip
    rows.append(
        ("demo train step, global M3E with the batched experts", f"{t['joint'] * 1e3:.1f} ms ({ratio:.2f}× on its own)")
    )
    result(
        "demo B-MoE train step, global M3E on its own / with the batched experts", round(ratio, 2), unit="x", note=note
    )
    result("demo B-MoE train step", round(t["joint"] * 1e3, 1), unit="ms", note=note or precision.used)
    print("\n| figure (1 thread, process CPU time) | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
