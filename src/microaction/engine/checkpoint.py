"""Checkpoints that never unpickle arbitrary objects.

- Weights: ``*.safetensors`` with one metadata entry, ``microaction``: JSON holding ``model``
  (registry name), ``model_kwargs`` (every constructor argument, presets resolved), ``taxonomy``
  (``Taxonomy.to_dict()``), ``store_manifest`` (the extraction parameters of the training store),
  ``num_steps`` (T), ``primary_metric`` and where the weights come from (``stage``, ``epoch``,
  ``metric``). With it, a checkpoint file alone rebuilds the model and knows its labels. A second
  entry, ``microaction_sha256``, is the SHA-256 of everything else the file holds (the
  ``microaction`` entry, the tensor table and the tensor bytes, ``weights_digest``): every load
  (``load_weights``: ``mar eval`` / ``predict`` / ``timeline`` / ``submit``) recomputes it and
  refuses a file whose checksum differs, naming it. Files written before the checksum existed
  still load, with a ``CheckpointWarning``.
- Training state: ``last_state.pt``, written with ``torch.save`` and read back with
  ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and dicts only (optimizer,
  scheduler, EMA, RNG states, epoch and batch position, metric history).

Every file is written to a temporary name and renamed into place: a process killed at any
instant leaves the previous complete file or the new one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as st_save

from microaction.data.store import atomic_write_bytes

__all__ = [
    "META_KEY",
    "SUM_KEY",
    "CheckpointError",
    "CheckpointWarning",
    "build_model",
    "check_weights",
    "get_rng_state",
    "load_state",
    "load_weights",
    "read_meta",
    "save_state",
    "save_weights",
    "set_rng_state",
    "weights_digest",
]

META_KEY = "microaction"
SUM_KEY = "microaction_sha256"
_DIGEST_VERSION = b"microaction-weights-1\n"
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header


class CheckpointError(RuntimeError):
    """A checkpoint or state file that cannot be read as a microaction checkpoint."""


class CheckpointWarning(UserWarning):
    """A checkpoint that loads but cannot be checked (written before checksums were recorded)."""


def _header(path: Path, f: BinaryIO) -> tuple[dict[str, Any], int]:
    """A safetensors file's JSON header and the byte offset of its tensor data."""
    head = f.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else -1
    size = path.stat().st_size
    if n < 2 or n > _MAX_HEADER or 8 + n > size:
        raise CheckpointError(f"{path}: not a safetensors file (header of {n} bytes in a file of {size})")
    try:
        header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a safetensors file (unreadable header: {e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object)")
    return header, 8 + n


def weights_digest(header: dict[str, Any], data: BinaryIO) -> str:
    """The checksum stored under ``SUM_KEY``: SHA-256 over the ``META_KEY`` entry, the tensor
    table (name, dtype, shape, offsets; canonical JSON) and the tensor bytes (``data``, read to its
    end), so a change to any of them, the metadata included, is seen."""
    table = {k: v for k, v in header.items() if k != "__metadata__"}
    meta = (header.get("__metadata__") or {}).get(META_KEY, "")
    h = hashlib.sha256(_DIGEST_VERSION)
    h.update(json.dumps(table, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    h.update(str(meta).encode() + b"\n")
    while block := data.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def save_weights(path: str | os.PathLike[str], state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write weights and metadata as safetensors, with their checksum (``SUM_KEY``)."""
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    meta_json = json.dumps(meta, sort_keys=True)
    data = st_save(tensors, metadata={META_KEY: meta_json})
    n = int.from_bytes(data[:8], "little")
    digest = weights_digest(json.loads(data[8 : 8 + n]), io.BytesIO(data[8 + n :]))
    # the tensor bytes and table do not depend on the metadata: the second file holds the same
    data = st_save(tensors, metadata={META_KEY: meta_json, SUM_KEY: digest})
    atomic_write_bytes(Path(path), data)


def check_weights(path: str | os.PathLike[str]) -> bool:
    """Recompute a checkpoint's checksum: True when it matches, False for a file written before
    checksums were recorded (a ``CheckpointWarning`` says so); a mismatch raises ``CheckpointError``
    naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            header, _ = _header(path, f)
            want = (header.get("__metadata__") or {}).get(SUM_KEY)
            if want is None:
                warnings.warn(
                    f"{path}: checkpoint without a checksum (written by an older version): its weights cannot "
                    "be checked for damage",
                    CheckpointWarning,
                    stacklevel=3,
                )
                return False
            got = weights_digest(header, f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    if got != want:
        raise CheckpointError(
            f"{path}: checksum mismatch: the weights or their metadata changed after mar wrote them (a damaged "
            "or edited copy); refusing to use it: copy it again from a sound source, or train again"
        )
    return True


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
    """Weights and metadata of a checkpoint whose checksum holds (``check_weights``)."""
    meta = read_meta(path)
    check_weights(path)
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
