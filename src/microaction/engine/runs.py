"""Run folders: what ``mar train`` writes and what ``mar eval`` / ``mar predict`` read back.

``runs/<name>/``: ``config.yaml`` (resolved), ``log.txt``, ``metrics.json``, ``best.safetensors``,
``last.safetensors``, ``last_state.pt`` (+ ``pretrain.safetensors`` after a two-stage recipe's
stage 1), and from ``mar eval`` ``eval_<split>.json`` (see docs/architecture.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from microaction.data.readers.annotations import Sample, read_annotations
from microaction.data.standardize import FeatureStats
from microaction.data.store import FeatureStore, StoreManifest, atomic_write_bytes
from microaction.engine import distributed as dist_
from microaction.engine.checkpoint import CheckpointError, build_model, load_weights, read_meta
from microaction.engine.config import DataConfig, ExperimentConfig, experiment_from_dict
from microaction.engine.yamlconfig import ConfigError, apply_overrides
from microaction.taxonomy import Taxonomy

__all__ = [
    "RESUMABLE_OVERRIDES",
    "RUN_FILES",
    "LoadedRun",
    "RunExistsError",
    "check_run_dir",
    "find_checkpoint",
    "load_run",
    "read_split",
    "resume_config",
    "stale_best_note",
    "start_run_dir",
    "write_metrics",
]


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

    @cached_property
    def feature_stats(self) -> FeatureStats | None:
        """The training split's per-feature standardisation the model expects (None: raw features)."""
        return FeatureStats.from_meta(self.meta, source=str(self.checkpoint))

    @property
    def regions(self) -> list[str]:
        return list(self.manifest.regions)

    @property
    def face_size(self) -> int:
        """Side of the face crops the model eats (0: none)."""
        return int(self.meta.get("model_kwargs", {}).get("face_size", 0) or 0)

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


def stale_best_note(meta: dict[str, Any], checkpoint: Path) -> str:
    """A line for the ``best.safetensors`` of a detection run trained without validation before
    best meant the last epoch (its best stayed at epoch 1): use ``--checkpoint last``; '' otherwise."""
    last = checkpoint.with_name("last.safetensors")
    if checkpoint.name != "best.safetensors" or "best_by" in meta or meta.get("metric") is not None:
        return ""
    epoch = read_meta(last).get("epoch") if last.is_file() else None
    if epoch is None or epoch == meta.get("epoch"):
        return ""
    return (
        f"note: {checkpoint} is epoch {meta.get('epoch')} of a run trained without validation by an older "
        f"version, which kept the first epoch as best; its last epoch ({epoch}) is in last.safetensors: "
        "pass --checkpoint last (or train again)"
    )


# ---------------------------------------------------------------------------------------------
# the run folder as mar train writes it

RUN_FILES = (
    "config.yaml",
    "log.txt",
    "metrics.json",
    "best.safetensors",
    "last.safetensors",
    "last_state.pt",
    "pretrain.safetensors",
)
# settings that may change when resuming without changing the result
RESUMABLE_OVERRIDES = ("run.workers", "run.progress", "run.eval_batch_size", "run.threads")


class RunExistsError(FileExistsError, RuntimeError):
    """The run folder already holds a run (resume it, rename, or overwrite)."""


def write_metrics(run_dir: Path, state: dict[str, Any]) -> None:
    doc = {"epochs": json.loads(state.get("history", "[]")), "best": json.loads(state.get("best", "null"))}
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(doc, indent=1).encode())


def check_run_dir(
    run_dir: Path, overwrite: bool, *, command: str = "mar train", rename: str = "--set run.name=..."
) -> list[str]:
    """The run files already in ``run_dir``; refused (``RunExistsError``) unless ``overwrite``."""
    existing = [n for n in RUN_FILES if (run_dir / n).exists()]
    if existing and not overwrite:
        raise RunExistsError(
            f"{run_dir} already holds a run ({', '.join(existing)}): resume it with "
            f"`{command} --resume {run_dir}`, pick another name ({rename}), or pass --overwrite"
        )
    return existing


def start_run_dir(
    run_dir: Path,
    config_yaml: str,
    info: dist_.DistInfo,
    overwrite: bool,
    *,
    command: str = "mar train",
    rename: str = "--set run.name=...",
) -> Path:
    """Empty ``run_dir`` of an earlier run (only with ``overwrite``) and write its ``config.yaml``."""
    if info.is_main:
        existing = check_run_dir(run_dir, overwrite, command=command, rename=rename)
        for n in existing:
            (run_dir / n).unlink()
        for p in run_dir.glob("eval_*.json"):
            p.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", config_yaml.encode())
    dist_.barrier(info)
    return run_dir


def resume_config(run_dir: Path, overrides: list[str]) -> ExperimentConfig:
    import yaml

    cpath = run_dir / "config.yaml"
    if not cpath.is_file():
        raise FileNotFoundError(f"{run_dir}: no config.yaml, not a run folder written by mar train")
    bad = [o for o in overrides if o.split("=", 1)[0].strip() not in RESUMABLE_OVERRIDES]
    if bad:
        raise ConfigError(
            f"--set {bad[0]!r}: a resumed run keeps its config; only {', '.join(RESUMABLE_OVERRIDES)} may change"
        )
    data = yaml.safe_load(cpath.read_text(encoding="utf-8"))
    apply_overrides(data, overrides)
    cfg = experiment_from_dict(data, where=str(cpath))
    if Path(cfg.run.out_dir) / cfg.run.name != run_dir:  # the folder was moved: follow it
        cfg.run.out_dir, cfg.run.name = str(run_dir.parent), run_dir.name
    return cfg
