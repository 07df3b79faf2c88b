"""Run folders: what ``mar train`` writes and what ``mar eval`` / ``mar predict`` read back.

``runs/<name>/``: ``config.yaml`` (resolved), ``log.txt``, ``metrics.json``, ``best.safetensors``,
``last.safetensors``, ``last_state.pt`` (+ ``pretrain.safetensors`` after a two-stage recipe's
stage 1), and from ``mar eval`` ``eval_<split>.json`` (see docs/architecture.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from microaction.data.annotations import Sample, read_annotations
from microaction.data.store import FeatureStore, StoreManifest
from microaction.engine.checkpoint import CheckpointError, build_model, load_weights
from microaction.engine.config import DataConfig, ExperimentConfig, experiment_from_dict
from microaction.taxonomy import Taxonomy

__all__ = ["LoadedRun", "find_checkpoint", "load_run", "read_split"]


def read_split(data: DataConfig, taxonomy: Taxonomy, split: str) -> list[Sample]:
    """The samples of one split, from ``data.manifest`` (split column) or ``data.annotations[split]``."""
    if data.manifest:
        return read_annotations(data.manifest, taxonomy, split=split)
    path = data.annotations.get(split)
    return read_annotations(path, taxonomy, split=split) if path else []


def find_checkpoint(run_dir: Path, which: str = "best") -> Path:
    """``best`` (falls back to ``last``), ``last``, or a path to a ``.safetensors`` file."""
    if which.endswith(".safetensors"):
        return Path(which)
    for name in [which] if which != "best" else ["best", "last"]:
        p = run_dir / f"{name}.safetensors"
        if p.is_file():
            return p
    raise CheckpointError(f"{run_dir}: no {which}.safetensors (is this a run folder written by mar train?)")


@dataclass
class LoadedRun:
    """A trained run: its model (eval mode, on CPU), labels, store parameters and config."""

    run_dir: Path
    model: torch.nn.Module
    meta: dict[str, Any]
    taxonomy: Taxonomy
    manifest: StoreManifest
    config: ExperimentConfig | None
    checkpoint: Path

    @property
    def num_steps(self) -> int:
        return int(self.meta["num_steps"])

    @property
    def regions(self) -> list[str]:
        return list(self.manifest.regions)

    def open_store(self, path: str | os.PathLike[str] | None = None) -> FeatureStore:
        """The run's feature store (or ``path``), refused when its parameters differ from training's."""
        from microaction.data.loader import check_store

        if path is None:
            if self.config is None:
                raise CheckpointError(f"{self.run_dir}: no config.yaml; give the feature store explicitly")
            path = self.config.data.store
        store = FeatureStore.open(path)
        check_store(store, self.manifest.signature(), source=f"the checkpoint {self.checkpoint}")
        return store


def load_run(
    run_dir: str | os.PathLike[str], checkpoint: str = "best", device: str | torch.device = "cpu"
) -> LoadedRun:
    """Load a run folder (or a bare ``.safetensors`` checkpoint) for evaluation / prediction."""
    import yaml

    path = Path(run_dir)
    if path.is_file() and path.suffix == ".safetensors":
        ckpt, run_dir_ = path, path.parent
    else:
        run_dir_ = path
        if not run_dir_.is_dir():
            raise FileNotFoundError(f"{run_dir_}: no such run folder")
        ckpt = find_checkpoint(run_dir_, checkpoint)
    state, meta = load_weights(ckpt)
    model = build_model(meta)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{ckpt}: weights do not fit model {meta['model']!r} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    model.to(device).eval()
    cfg = None
    cpath = run_dir_ / "config.yaml"
    if cpath.is_file():
        cfg = experiment_from_dict(yaml.safe_load(cpath.read_text(encoding="utf-8")), where=str(cpath))
    return LoadedRun(
        run_dir=run_dir_,
        model=model,
        meta=meta,
        taxonomy=Taxonomy.from_dict(meta["taxonomy"]),
        manifest=StoreManifest.from_dict(meta["store_manifest"], source=str(ckpt)),
        config=cfg,
        checkpoint=ckpt,
    )
