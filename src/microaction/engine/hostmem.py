"""Host memory for CPU training: keep large freed blocks in the process instead of unmapping them.

glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and unmaps them
on ``free``. The threshold adapts upwards to blocks that were freed, but never beyond 32 MiB: an
activation of 32 MiB or more (B-MoE at paper size, batch 64: the MLP hidden ``[4, 1024, 2048]``
fp32) gets new pages every time it is allocated, and the kernel zero-fills each 4 KiB page on its
first touch. On an AMD EPYC (Zen 4) an fp32 product of two such tensors took 19 ms that way and
4 ms from recycled memory: the page faults, not the arithmetic, were the op's cost. Raising the
threshold (and the trim threshold, so the top of the heap is not handed back either) makes the
training step reuse the same memory every step, as CUDA's caching allocator does on GPUs.

``keep_freed_host_memory()`` sets both (glibc only; elsewhere it does nothing and says so). It is
process-wide and cannot be undone to the adaptive default, so the trainer calls it for CPU runs
only. The price: the process keeps its peak memory until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["MMAP_THRESHOLD", "keep_freed_host_memory"]

MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from (and go back to) the heap
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_DONE: list[bool] = []


def keep_freed_host_memory(threshold: int = MMAP_THRESHOLD) -> bool:
    """Serve allocations up to ``threshold`` bytes from the heap and keep freed memory there (glibc
    ``mallopt``); True when set (now or by an earlier call), False where the C library is not glibc."""
    if _DONE:
        return _DONE[0]
    ok = False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            trim = min(2 * threshold, 2**31 - 1)
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(threshold))) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim))
            )
        except (OSError, AttributeError):
            ok = False
    _DONE.append(ok)
    return ok
