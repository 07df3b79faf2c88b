"""Reading run folders for reports: ``config.yaml``, ``metrics.json`` and ``eval_<split>.json``.

The files and their fields are the run-folder contract of docs/architecture.md. A folder that is
not a run (no ``config.yaml`` / ``metrics.json``) is refused with an error naming what is missing
and what writes it; a run without any ``eval_<split>.json`` still gets its training curves and
its best validation metrics, and the report says to run ``mar eval`` for the rest.

Seeds: runs whose resolved configs are equal once ``run.seed`` and the keys that only name or place
the run folder or set progress bars / threads (``IDENTITY_KEYS``) are left out form one group; the
report gives mean ± std (sample std, ddof=1) over such a group.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = [
    "IDENTITY_KEYS",
    "EvalData",
    "ReportError",
    "RunData",
    "group_by_seed",
    "read_checkpoint_metadata",
    "read_run_data",
]

# Config keys that may differ between the seeds of one experiment without making it another one:
# the seed, where the run folder is, and run-local settings that do not change what is learnt.
IDENTITY_KEYS: tuple[str, ...] = ("run.seed", "run.name", "run.out_dir", "run.progress", "run.threads", "run.workers")
SPLIT_PREFERENCE: tuple[str, ...] = ("test", "val", "train")


class ReportError(ValueError):
    """A run folder that cannot be reported on (missing or malformed files)."""


@dataclass
class EvalData:
    """One ``eval_<split>.json``, with its arrays as numpy."""

    split: str
    path: Path
    metrics: dict[str, float]
    class_names: list[str]
    body_names: list[str]
    regions: list[str]
    train_counts: np.ndarray | None  # [C] int, None when unknown
    per_class_f1: np.ndarray | None  # [C]
    confusion_action: np.ndarray | None  # [C, C] counts, rows = true
    confusion_body: np.ndarray | None  # [G, G]
    routing_per_class: np.ndarray | None  # [C, R]
    path_weights_per_class: np.ndarray | None  # [C, K, 2] (ST, TS)
    entities: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunData:
    path: Path
    name: str
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    best: dict[str, Any]
    evals: dict[str, EvalData]
    taxonomy: dict[str, Any] | None  # Taxonomy.to_dict() from the checkpoint (or the config's builtin)

    @property
    def seed(self) -> Any:
        run = self.config.get("run")
        return run.get("seed") if isinstance(run, dict) else None

    @property
    def model_name(self) -> str:
        m = self.config.get("model")
        if isinstance(m, dict):
            return str(m.get("name") or m.get("type") or "?")
        return str(m) if m is not None else "?"

    def eval_for(self, split: str | None = None) -> EvalData | None:
        """The evaluation of ``split``, or the preferred one present (test, val, train, others)."""
        if split is not None:
            return self.evals.get(split)
        for s in (*SPLIT_PREFERENCE, *sorted(self.evals)):
            if s in self.evals:
                return self.evals[s]
        return None

    def best_val_metrics(self) -> dict[str, float]:
        """Validation metrics of the best epoch (``metrics.json``'s ``best``)."""
        best = self.best
        val = best.get("val") if isinstance(best.get("val"), dict) else None
        if val is None:
            val = {k: v for k, v in best.items() if k not in ("epoch", "stage", "lr", "seconds", "step")}
        return {k: float(v) for k, v in val.items() if _is_number(v)}

    @property
    def body_of_class(self) -> list[int] | None:
        tax = self.taxonomy or {}
        b = tax.get("body_of_class")
        return [int(x) for x in b] if b else None

    @property
    def body_regions(self) -> dict[str, list[str]]:
        tax = self.taxonomy or {}
        return {str(k): list(v) for k, v in (tax.get("body_regions") or {}).items()}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e})") from None


def _array(d: dict[str, Any], key: str, path: Path, ndim: int, dtype: Any = np.float64) -> np.ndarray | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, list) and any(row is None for row in v):
        # per-class means are None for classes absent from the split: NaN rows
        like = next((row for row in v if row is not None), None)
        if like is None:
            return None
        blank = np.full(np.shape(like), np.nan).tolist()
        v = [blank if row is None else row for row in v]
    try:
        a = np.asarray(v, dtype=dtype)
    except (TypeError, ValueError):
        raise ReportError(f"{path}: {key!r} is not a numeric array") from None
    if a.ndim != ndim:
        raise ReportError(f"{path}: {key!r} should have {ndim} dimension(s), has shape {a.shape}")
    return a


def _load_eval(path: Path) -> EvalData:
    d = _read_json(path)
    if not isinstance(d, dict) or not isinstance(d.get("metrics"), dict):
        raise ReportError(f"{path}: expected an object with 'metrics' (written by `mar eval`)")
    split = str(d.get("split") or path.stem.removeprefix("eval_"))
    class_names = [str(x) for x in d.get("class_names") or []]
    ev = EvalData(
        split=split,
        path=path,
        metrics={k: float(v) for k, v in d["metrics"].items() if _is_number(v)},
        class_names=class_names,
        body_names=[str(x) for x in d.get("body_names") or []],
        regions=[str(x) for x in d.get("regions") or []],
        train_counts=_array(d, "train_counts", path, 1, np.int64) if d.get("train_counts") else None,
        per_class_f1=_array(d, "per_class_f1", path, 1),
        confusion_action=_array(d, "confusion_action", path, 2),
        confusion_body=_array(d, "confusion_body", path, 2) if d.get("confusion_body") else None,
        routing_per_class=_array(d, "routing_per_class", path, 2),
        path_weights_per_class=_array(d, "path_weights_per_class", path, 3),
        entities=[str(x) for x in d.get("entities") or []],
        raw=d,
    )
    c = len(class_names)
    for key in ("train_counts", "per_class_f1", "confusion_action", "routing_per_class", "path_weights_per_class"):
        a = getattr(ev, key)
        if a is not None and c and a.shape[0] != c:
            raise ReportError(f"{path}: {key!r} has {a.shape[0]} rows for {c} class_names")
    if ev.routing_per_class is not None and ev.regions and ev.routing_per_class.shape[1] != len(ev.regions):
        raise ReportError(
            f"{path}: 'routing_per_class' has {ev.routing_per_class.shape[1]} columns for {len(ev.regions)} regions"
        )
    if ev.path_weights_per_class is not None and ev.path_weights_per_class.shape[2] != 2:
        raise ReportError(f"{path}: 'path_weights_per_class' must be [C, K, 2] (ST, TS)")
    return ev


def read_checkpoint_metadata(path: Path) -> dict[str, Any] | None:
    """The ``microaction`` metadata of a safetensors checkpoint, read from its header only."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 0 < n < 100_000_000:
                return None
            header = json.loads(f.read(n))
    except (OSError, struct.error, json.JSONDecodeError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__") or {}
    raw = meta.get("microaction")
    if not raw:
        return None
    try:
        out = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None


def _resolve_taxonomy(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    for ckpt in ("best.safetensors", "last.safetensors"):
        meta = read_checkpoint_metadata(run_dir / ckpt)
        if meta and isinstance(meta.get("taxonomy"), dict):
            return meta["taxonomy"]
    # fall back to a builtin taxonomy named in the config (data.taxonomy or taxonomy)
    data = config.get("data")
    name = (data.get("taxonomy") if isinstance(data, dict) else None) or config.get("taxonomy")
    if isinstance(name, str):
        from microaction.taxonomy import TaxonomyError, load_taxonomy

        try:
            return load_taxonomy(name).to_dict()
        except (TaxonomyError, FileNotFoundError, OSError):
            return None
    return None


def read_run_data(path: str | Path, *, name: str | None = None) -> RunData:
    """Read one run folder; ``ReportError`` names any missing or malformed file."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: not a directory (expected a run folder written by `mar train`)")
    missing = [f for f in ("config.yaml", "metrics.json") if not (run_dir / f).is_file()]
    if missing:
        raise ReportError(
            f"{run_dir}: not a complete run folder: missing {', '.join(missing)} "
            "(written by `mar train`; `mar eval RUN_DIR` then adds eval_<split>.json)"
        )
    try:
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except yaml.YAMLError as e:
        raise ReportError(f"{run_dir / 'config.yaml'}: not valid YAML ({e})") from None
    if not isinstance(config, dict):
        raise ReportError(f"{run_dir / 'config.yaml'}: expected a mapping")
    m = _read_json(run_dir / "metrics.json")
    if not isinstance(m, dict) or not isinstance(m.get("epochs"), list):
        raise ReportError(f"{run_dir / 'metrics.json'}: expected an object with an 'epochs' list")
    epochs = [e for e in m["epochs"] if isinstance(e, dict)]
    best = m.get("best") if isinstance(m.get("best"), dict) else {}
    evals: dict[str, EvalData] = {}
    for p in sorted(run_dir.glob("eval_*.json")):
        ev = _load_eval(p)
        evals[ev.split] = ev
    return RunData(
        path=run_dir,
        name=name or run_dir.resolve().name,
        config=config,
        epochs=epochs,
        best=best or {},
        evals=evals,
        taxonomy=_resolve_taxonomy(run_dir, config),
    )


def _without(config: dict[str, Any], dotted: tuple[str, ...]) -> dict[str, Any]:
    out = json.loads(json.dumps(config, default=str))
    for key in dotted:
        *parents, leaf = key.split(".")
        d: Any = out
        for p in parents:
            d = d.get(p) if isinstance(d, dict) else None
        if isinstance(d, dict):
            d.pop(leaf, None)
    return out


def group_by_seed(runs: list[RunData]) -> list[list[RunData]]:
    """Runs grouped by config with ``IDENTITY_KEYS`` left out, in first-seen order."""
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        key = json.dumps(_without(r.config, IDENTITY_KEYS), sort_keys=True)
        groups.setdefault(key, []).append(r)
    return list(groups.values())
