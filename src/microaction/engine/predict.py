"""Prediction with a trained run: on a feature store, on feature arrays, or on videos.

``Predictor.from_run(run_dir)`` loads the best checkpoint; it needs nothing but the checkpoint
(model name + kwargs, label names, the extraction parameters of the training store, T)::

    from microaction.engine import Predictor
    p = Predictor.from_run("runs/demo_bmoe")
    for pred in p.predict_store("runs/demo/store"):
        print(pred.key, pred.actions[0], pred.routing)
    pred = p.predict_video("clip.mp4")           # extraction with the checkpoint's parameters

Each ``Prediction`` holds the top-k actions and body groups (id, name, probability), the routing
weight per region (mixture models), Micro-DualNet's path weights and the temporal saliency
when the model gives them, and, for videos, the clip-stable region boxes (for overlays).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microaction.data.loader import ClipDataset, sample_steps
from microaction.data.readers.annotations import Sample
from microaction.data.store import FeatureStore, StoreError, StoreManifest
from microaction.engine.evaluate import infer, output_arrays
from microaction.engine.precision import autocast, resolve_precision
from microaction.engine.runs import LoadedRun, load_run

__all__ = ["VIDEO_SUFFIXES", "Prediction", "Predictor", "extract_video_features"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v", ".mpg", ".mpeg")


@dataclass
class Prediction:
    key: str
    actions: list[tuple[int, str, float]]  # top-k (id, name, probability)
    bodies: list[tuple[int, str, float]] = field(default_factory=list)  # top body groups
    routing: dict[str, float] | None = None  # region -> weight (mixture models)
    path_weights: list[list[float]] | None = None  # [K, 2] (Micro-DualNet)
    saliency: list[float] | None = None  # [T] over the sampled steps
    video: str | None = None
    boxes: list[list[float]] | None = None  # [R+1, 4] xyxy pixels, person last (videos)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["actions"] = [{"id": i, "name": n, "score": s} for i, n, s in self.actions]
        d["bodies"] = [{"id": i, "name": n, "score": s} for i, n, s in self.bodies]
        return d

    def summary(self) -> str:
        lines = [self.key]
        lines.append("  actions: " + " | ".join(f"{n} {100 * s:.1f}%" for _, n, s in self.actions))
        if self.bodies:
            lines.append("  body:    " + " | ".join(f"{n} {100 * s:.1f}%" for _, n, s in self.bodies))
        if self.routing:
            lines.append("  routing: " + "  ".join(f"{r} {w:.2f}" for r, w in self.routing.items()))
        return "\n".join(lines)


def extract_video_features(
    path: str | os.PathLike[str], manifest: StoreManifest, *, parser: str | None = None
) -> dict[str, np.ndarray]:
    """Features of one video with exactly the extraction parameters of ``manifest``.

    ``parser`` swaps only the body parser (e.g. ``mediapipe`` for a run trained on the synthetic
    benchmark's ground-truth keypoints, to apply it to real video); every other parameter stays.

    Returns ``regions`` [R, T, D], ``global`` [T, Dg], ``region_valid`` [R] and the extras the
    extraction gives (``boxes`` [R+1, 4], ``keypoints``, ...). Uses the extraction library
    (``extract.jobs.execute.extract_video``).
    """
    import dataclasses

    from microaction.extract.jobs.execute import extract_video
    from microaction.extract.pipeline import params_from_manifest

    params = params_from_manifest(manifest)
    if parser is not None and parser != params.parser:
        params = dataclasses.replace(params, parser=parser, parser_options={})
    res = extract_video(path, params)
    return {"regions": res.regions, "global": res.global_, "region_valid": res.region_valid, **res.extras}


class Predictor:
    """A trained model ready to predict (see the module docstring)."""

    def __init__(
        self,
        run: LoadedRun,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        top: int = 5,
        precision: str | None = None,
    ) -> None:
        """``precision``: auto | fp32 | bf16 | bf16! (default: the run's ``run.precision``, else auto),
        resolved for inference on ``device`` (``engine.precision``)."""
        self.run = run
        self.device = torch.device(device)
        requested = precision or (run.config.run.precision if run.config is not None else "auto")
        self.precision = resolve_precision(requested, self.device, for_inference=True)
        self.model = run.model.to(self.device).eval()
        self.batch_size, self.top = batch_size, top
        self.taxonomy = run.taxonomy

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike[str], checkpoint: str = "best", **kwargs: Any) -> Predictor:
        return cls(load_run(run_dir, checkpoint), **kwargs)

    # -- outputs -> Prediction --------------------------------------------------------------
    def _prediction(self, key: str, out: dict[str, np.ndarray], j: int) -> Prediction:
        tax = self.taxonomy
        probs = out["action"][j]
        k = min(self.top, len(probs))
        top = np.argsort(-probs, kind="stable")[:k]
        actions = [(int(i), tax.names[i], float(probs[i])) for i in top]
        bodies: list[tuple[int, str, float]] = []
        if tax.has_body:
            if "body" in out:
                bp = out["body"][j]
            else:  # no body head: probability of a body group = sum over its actions
                bp = np.bincount(tax.body_map, weights=probs, minlength=tax.num_body)
            order = np.argsort(-bp, kind="stable")[: min(self.top, len(bp))]
            bodies = [(int(i), tax.body_names[i], float(bp[i])) for i in order]
        routing = None
        if "routing" in out:
            routing = {r: float(w) for r, w in zip(self.run.regions, out["routing"][j])}
        pw = out["path_weights"][j].tolist() if "path_weights" in out else None
        sal = out["saliency"][j].tolist() if "saliency" in out else None
        return Prediction(key, actions, bodies, routing, pw, sal)

    # -- inputs -----------------------------------------------------------------------------
    def predict_store(
        self, store: str | os.PathLike[str] | FeatureStore, keys: Sequence[str] | None = None, *, progress: bool = False
    ) -> list[Prediction]:
        """Predictions for clips of a feature store (all by default), refused if its parameters differ."""
        from microaction.data.loader import check_store, store_keys

        fs = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
        check_store(fs, self.run.manifest.signature(), source=f"the checkpoint {self.run.checkpoint}")
        keys = list(keys) if keys is not None else store_keys(fs)
        if not keys:
            raise StoreError(f"{fs.root}: no extracted clips")
        ds = ClipDataset(
            fs,
            [Sample(k) for k in keys],
            self.taxonomy,
            num_steps=self.run.num_steps,
            keys=keys,
            face_size=self.run.face_size,
            stats=self.run.feature_stats,
        )
        out = infer(
            self.model,
            ds,
            device=self.device,
            batch_size=self.batch_size,
            precision=self.precision,
            progress=progress,
            desc="predict",
        )
        return [self._prediction(keys[i], out, j) for j, i in enumerate(out["index"])]

    @torch.no_grad()
    def predict_arrays(
        self,
        regions: np.ndarray,
        global_: np.ndarray,
        region_valid: np.ndarray | None = None,
        *,
        key: str = "clip",
        face: np.ndarray | None = None,
        face_valid: np.ndarray | None = None,
        step_valid: np.ndarray | None = None,
    ) -> Prediction:
        """Prediction for one clip's features: ``regions`` [R, L, D], ``global`` [L, Dg] (+ the head-box
        crops ``face`` [L, S, S] uint8 / ``face_valid`` [L] for a model with a face branch; + the
        per-step region validity ``step_valid`` [R, L] bool the extraction gives, which the model
        then uses at the sampled steps as the loader's ``region_valid_steps``)."""
        m = self.run.manifest
        regions, global_ = np.asarray(regions, np.float32), np.asarray(global_, np.float32)
        R, L, D = regions.shape
        if R != len(m.regions) or D != m.region_dim or global_.shape != (L, m.global_dim):
            raise StoreError(
                f"{key}: features regions {regions.shape} / global {global_.shape} do not fit the checkpoint "
                f"(R={len(m.regions)}, D={m.region_dim}, Dg={m.global_dim})"
            )
        valid = np.ones(R, bool) if region_valid is None else np.asarray(region_valid, bool)
        stats = self.run.feature_stats
        if stats is not None:  # the training split's standardisation, as at training time
            regions = stats.apply_regions(regions).astype(np.float32)
            global_ = stats.apply_global(global_).astype(np.float32)
        T = self.run.num_steps
        idx = sample_steps(L, T, "uniform")
        n = len(idx)
        batch = {
            "regions": torch.zeros(1, R, T, D),
            "global": torch.zeros(1, T, m.global_dim),
            "mask": torch.zeros(1, T, dtype=torch.bool),
            "region_valid": torch.from_numpy(valid)[None],
        }
        batch["regions"][0, :, :n] = torch.from_numpy(regions[:, idx]) * batch["region_valid"][0, :, None, None]
        batch["global"][0, :n] = torch.from_numpy(global_[idx])
        batch["mask"][0, :n] = True
        if step_valid is not None:
            sv = np.asarray(step_valid, bool)
            if sv.shape != (R, L):
                raise StoreError(f"{key}: step_valid {sv.shape} does not fit {R} regions x {L} steps")
            batch["region_valid_steps"] = torch.zeros(1, R, T, dtype=torch.bool)
            batch["region_valid_steps"][0, :, :n] = torch.from_numpy(sv[:, idx] & valid[:, None])
        S = self.run.face_size
        if S:
            if face is None or face.shape != (L, S, S):
                got = "none" if face is None else str(tuple(face.shape))
                raise StoreError(
                    f"{key}: the model needs face crops [{L}, {S}, {S}] (extracted with face_size), got {got}"
                )
            fv = np.ones(L, bool) if face_valid is None else np.asarray(face_valid, bool)
            batch["face"] = torch.zeros(1, T, S, S, dtype=torch.uint8)
            batch["face"][0, :n] = torch.from_numpy(np.ascontiguousarray(face[idx], dtype=np.uint8))
            batch["face_valid"] = torch.zeros(1, T, dtype=torch.bool)
            batch["face_valid"][0, :n] = torch.from_numpy(fv[idx])
        with autocast(self.device, self.precision):
            out = self.model({k: v.to(self.device) for k, v in batch.items()})
        return self._prediction(key, output_arrays(out, self.taxonomy.multi_label), 0)

    def predict_video(self, path: str | os.PathLike[str], *, parser: str | None = None) -> Prediction:
        """Extract a video's features with the checkpoint's parameters (``parser`` overrides the
        body parser only), then predict."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video")
        feats = extract_video_features(path, self.run.manifest, parser=parser)
        pred = self.predict_arrays(
            feats["regions"],
            feats["global"],
            feats.get("region_valid"),
            key=path.name,
            face=feats.get("face"),
            face_valid=feats.get("face_valid"),
            step_valid=feats.get("step_valid"),
        )
        pred.video = str(path)
        if "boxes" in feats:
            pred.boxes = np.asarray(feats["boxes"], dtype=np.float64).tolist()
        return pred


def find_videos(folder: str | os.PathLike[str]) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
