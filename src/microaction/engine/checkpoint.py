"""Checkpoints that never unpickle arbitrary objects.

- Weights: ``*.safetensors`` with one metadata entry, ``microaction``: JSON holding ``model``
  (registry name), ``model_kwargs`` (every constructor argument, presets resolved), ``taxonomy``
  (``Taxonomy.to_dict()``), ``store_manifest`` (the extraction parameters of the training store),
  ``num_steps`` (T), ``primary_metric`` and where the weights come from (``stage``, ``epoch``,
  ``metric``). With it, a checkpoint file alone rebuilds the model and knows its labels.
- Training state: ``last_state.pt``, written with ``torch.save`` and read back with
  ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only (optimizer,
  scheduler, EMA, RNG states, epoch and batch position, metric history).

Every file is written to a temporary name and renamed into place: a process killed at any
instant leaves the previous complete file or the new one.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from microaction.data.store import atomic_write_bytes

__all__ = [
    "META_KEY",
    "CheckpointError",
    "build_model",
    "get_rng_state",
    "load_state",
    "load_weights",
    "read_meta",
    "save_state",
    "save_weights",
    "set_rng_state",
]

META_KEY = "microaction"


class CheckpointError(RuntimeError):
    """A checkpoint or state file that cannot be read as a microaction checkpoint."""


def save_weights(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    data = st_save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(Path(path), data)


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a safetensors file ({e})") from None
    if META_KEY not in meta:
        raise CheckpointError(f"{path}: safetensors file without microaction metadata (not written by mar train)")
    return dict(json.loads(meta[META_KEY]))


def load_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = read_meta(path)
    with safe_open(str(path), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    return state, meta


def build_model(meta: dict[str, Any]) -> torch.nn.Module:
    """The (untrained) model a checkpoint's metadata describes."""
    from microaction.models import create_model

    return create_model(meta["model"], **meta["model_kwargs"])


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        return dict(torch.load(str(path), map_location="cpu", weights_only=True))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no training state to resume from") from None
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable training state ({e})") from None


def get_rng_state() -> dict[str, Any]:
    """Global RNG states (torch CPU and CUDA, numpy, Python) as weights-only-loadable data."""
    np_state: Any = np.random.get_state()
    py_state = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
