"""One entry point for one process or many (``torchrun --nproc_per_node=N``).

``setup()`` reads torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and starts the
process group (gloo on CPU, nccl on CUDA); without it everything is a no-op on rank 0 of 1.
Only rank 0 writes files; ``gather_objects`` collects per-process evaluation results so every
process computes the same metrics (and takes the same early-stopping decision).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "barrier", "cleanup", "gather_objects", "resolve_device", "setup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and torch.cuda.is_available():
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"run.device {name!r} asked for but CUDA is not available (use cpu or auto)")
    return torch.device(name)


def setup(device: str = "auto") -> tuple[DistInfo, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), resolve_device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world, local_rank), dev


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """``obj`` of every process, in rank order (a one-element list without DDP)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def cleanup(info: DistInfo) -> None:
    """Tear the process group down together: every process waits for the others first, and
    objects that still hold the group (a DDP wrapper in a reference cycle) are freed before it goes."""
    if info.enabled and dist.is_initialized():
        import gc

        dist.barrier()
        gc.collect()
        dist.destroy_process_group()
