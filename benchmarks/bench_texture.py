"""Texture descriptors: faces per second for batched LBP / LDP (torch) vs scikit-image / numpy.

For face crops of ``--size`` × ``--size`` (112 by default) it prints faces/s for

* LBP (P = 8, R = 1, "default" and "uniform"): ``microaction.models.texture.lbp`` on a batch vs
  ``skimage.feature.local_binary_pattern`` one image at a time (the codes are identical; checked);
* LDP (k = 3): ``microaction.models.texture.ldp`` on a batch vs ``ldp_reference`` (numpy, one image
  at a time; scikit-image has no LDP);

on the CPU with torch's thread count and with one thread, and on the GPU when there is one.
``--quick``: a small batch and few repetitions (a smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from microaction.models.texture import lbp, ldp, ldp_reference

MAKE_BENCH = {"args": [], "budget_s": 30, "mode": "full"}


def timed(fn: Callable[[], Any], reps: int, sync: bool = False) -> float:
    """Median seconds of ``fn`` over ``reps`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(reps):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    ap.add_argument("--size", type=int, default=112, help="face crop side in pixels")
    ap.add_argument("--batch", type=int, default=None, help="faces per batch (default 256, quick 32)")
    args = ap.parse_args()
    batch = args.batch or (32 if args.quick else 256)
    reps = 2 if args.quick else 5
    ref_n = 8 if args.quick else 64  # images for the one-at-a-time references
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (batch, args.size, args.size)).astype(np.uint8)
    x = torch.from_numpy(faces)

    from skimage.feature import local_binary_pattern

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("default", "uniform"):
            ref = np.stack([local_binary_pattern(f, 8, 1, method=method) for f in faces[:ref_n]])
            same = lbp(x[:ref_n], method, border="constant").numpy()  # type: ignore[arg-type]
            assert np.array_equal(same, ref), "LBP (zero border, as scikit-image) differs from scikit-image"
    assert all(np.array_equal(ldp(x[i]).numpy(), ldp_reference(faces[i])) for i in range(min(4, ref_n)))

    rows: list[tuple[str, str, float]] = []
    sk_default = timed(lambda: [local_binary_pattern(f, 8, 1) for f in faces[:ref_n]], reps)
    sk_uniform = timed(lambda: [local_binary_pattern(f, 8, 1, method="uniform") for f in faces[:ref_n]], reps)
    np_ldp = timed(lambda: [ldp_reference(f) for f in faces[:ref_n]], reps)
    rows += [
        ("LBP default", "scikit-image, per image", ref_n / sk_default),
        ("LBP uniform", "scikit-image, per image", ref_n / sk_uniform),
        ("LDP k=3", "numpy reference, per image", ref_n / np_ldp),
    ]
    threads = torch.get_num_threads()
    for n_threads in sorted({threads, 1}, reverse=True):
        torch.set_num_threads(n_threads)
        where = f"torch CPU batch {batch}, {n_threads} thread{'s' if n_threads > 1 else ''}"
        rows.append(("LBP default", where, batch / timed(lambda: lbp(x, "default"), reps)))
        rows.append(("LBP uniform", where, batch / timed(lambda: lbp(x, "uniform"), reps)))
        rows.append(("LDP k=3", where, batch / timed(lambda: ldp(x), reps)))
    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        xg = x.cuda()
        where = f"torch GPU batch {batch} ({torch.cuda.get_device_name()})"
        assert torch.equal(lbp(xg).cpu(), lbp(x)) and torch.equal(ldp(xg).cpu(), ldp(x))
        rows.append(("LBP default", where, batch / timed(lambda: lbp(xg, "default"), reps, sync=True)))
        rows.append(("LBP uniform", where, batch / timed(lambda: lbp(xg, "uniform"), reps, sync=True)))
        rows.append(("LDP k=3", where, batch / timed(lambda: ldp(xg), reps, sync=True)))

    base = {"LBP default": ref_n / sk_default, "LBP uniform": ref_n / sk_uniform, "LDP k=3": ref_n / np_ldp}
    print(f"faces/s on {args.size}x{args.size} grey crops (median of {reps}; codes checked identical)")
    print(f"{'descriptor':12s}  {'implementation':48s}  {'faces/s':>10s}  {'vs reference':>12s}")
    for name, where, fps in rows:
        print(f"{name:12s}  {where:48s}  {fps:10.0f}  {fps / base[name]:11.1f}x")
    from benchlib import result

    for name, where, fps in rows:
        if where.startswith("torch"):
            result(
                f"{name} faces/s, {where}", round(fps), unit="faces/s", note=f"{fps / base[name]:.1f}x the reference"
            )


if __name__ == "__main__":
    main()
