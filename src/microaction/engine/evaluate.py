"""Inference over a dataset and the evaluation report of a run (``mar eval``).

``infer`` runs a model over every clip of a ``ClipDataset`` (sharded over processes under DDP,
gathered back in order) and returns probabilities and the model's explanation outputs.
``evaluate_run`` writes ``eval_<split>.json`` (official metrics, per-class F1, confusion matrices,
mean routing weight per class for mixture models, mean path weights per class for Micro-DualNet)
or, when the split's labels are hidden (benchmark test sets), the Codabench submission zip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from microaction.data.loader import ClipDataset, make_loader, select_samples
from microaction.data.samplers import EvalBatchSampler
from microaction.data.store import atomic_write_bytes
from microaction.engine.distributed import DistInfo, gather_objects
from microaction.engine.precision import Precision, autocast, resolve_precision
from microaction.engine.runs import LoadedRun, load_run, read_split
from microaction.taxonomy import Taxonomy

__all__ = ["class_means", "evaluate_run", "infer", "output_arrays", "score_outputs"]

EXPLAIN_KEYS = ("routing", "path_weights", "saliency")


@torch.no_grad()
def infer(
    model: torch.nn.Module,
    dataset: ClipDataset,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    precision: str | Precision = "auto",
    workers: int = 0,
    info: DistInfo | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, np.ndarray]:
    """Outputs for every clip of ``dataset`` in order: ``action`` probabilities ``[N, C]`` (sigmoid
    for multi-label taxonomies, else softmax), ``body`` ``[N, C_body]`` when the model has a body
    head, and ``routing`` / ``path_weights`` / ``saliency`` when the model gives them.

    ``precision``: a run's ``run.precision``, resolved for inference on ``device``
    (``engine.precision``: a ``bf16`` that is not native there runs in fp32), or a resolved one."""
    info = info or DistInfo()
    device = torch.device(device)
    prec = precision if isinstance(precision, Precision) else resolve_precision(precision, device, for_inference=True)
    was_training = model.training
    model.eval()
    sampler = EvalBatchSampler(len(dataset), batch_size, rank=info.rank, world=info.world)
    parts: dict[str, list[np.ndarray]] = {}
    multi = dataset.taxonomy.multi_label
    bar = tqdm(
        make_loader(dataset, sampler, workers=workers),
        total=len(sampler),
        desc=desc,
        leave=False,
        disable=None if progress else True,
    )
    for batch in bar:
        index = batch.pop("index")
        inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device, prec):
            out = model(inputs)
        for k, v in {"index": index.numpy(), **output_arrays(out, multi)}.items():
            parts.setdefault(k, []).append(v)
    model.train(was_training)
    local = {k: np.concatenate(v) for k, v in parts.items()}
    gathered = gather_objects(info, local)
    keys = set().union(*(g.keys() for g in gathered))
    merged = {k: np.concatenate([g[k] for g in gathered if k in g]) for k in keys}
    if "index" not in merged:
        return {"index": np.zeros(0, dtype=np.int64)}
    order = np.argsort(merged["index"], kind="stable")
    return {k: v[order] for k, v in merged.items()}


def output_arrays(out: dict[str, Any], multi_label: bool) -> dict[str, np.ndarray]:
    """A model's outputs as numpy: ``action`` probabilities (sigmoid for a multi-label label set,
    else softmax), ``body`` probabilities, and the explanations (``EXPLAIN_KEYS``) it gives."""
    action = out["action"].float()
    arrays = {"action": (torch.sigmoid(action) if multi_label else torch.softmax(action, -1)).cpu().numpy()}
    if "body" in out:
        arrays["body"] = torch.softmax(out["body"].float(), -1).cpu().numpy()
    arrays.update({k: out[k].float().cpu().numpy() for k in EXPLAIN_KEYS if k in out and torch.is_tensor(out[k])})
    return arrays


def score_outputs(taxonomy: Taxonomy, dataset: ClipDataset, outputs: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Official metrics of ``infer``'s outputs against the dataset's labels (None: labels hidden)."""
    from microaction import metrics

    idx = outputs["index"]
    if len(idx) == 0:
        return None
    if taxonomy.multi_label:
        assert dataset.multi_hot is not None
        y = dataset.multi_hot[idx]
        return metrics.multilabel_metrics(y, outputs["action"]) if y.any() else None
    y = dataset.action[idx]
    known = y >= 0
    if not known.any():
        return None
    body = outputs.get("body")
    return metrics.classification_metrics(
        y[known], outputs["action"][known], taxonomy, None if body is None else body[known]
    )


def class_means(values: np.ndarray, labels: np.ndarray, num_classes: int) -> list[Any]:
    """Mean of ``values`` ``[N, ...]`` per true class: ``[C, ...]`` nested lists, ``None`` rows for absent classes."""
    out: list[Any] = []
    for c in range(num_classes):
        sel = labels == c
        out.append(values[sel].mean(axis=0).tolist() if sel.any() else None)
    return out


def evaluate_run(
    run: str | os.PathLike[str] | LoadedRun,
    split: str = "val",
    *,
    store: str | os.PathLike[str] | None = None,
    checkpoint: str = "best",
    out: str | os.PathLike[str] | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    progress: bool = True,
    precision: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run on ``split``; writes ``eval_<split>.json`` (or, for hidden labels, the
    submission zip ``submission_<split>.zip``; ``predictions_<split>.csv`` for label sets without
    a body level) into the run folder or ``out``. Returns the report (for hidden labels:
    ``{"split", "run", "submission": path, "clips"}``). ``precision``: auto | fp32 | bf16 | bf16!
    (default: the run's ``run.precision``, resolved for inference on ``device``)."""
    from microaction import metrics

    loaded = run if isinstance(run, LoadedRun) else load_run(run, checkpoint, device=device)
    cfg = loaded.config
    if cfg is None:
        raise FileNotFoundError(f"{loaded.run_dir}: no config.yaml, so the split's annotations are unknown")
    if cfg.task == "detection":  # engine.detection sits above the experiment, which uses this module
        raise ValueError(
            f"{loaded.run_dir}: a detection run; evaluate it with engine.detection.evaluate_detection_run (mar eval does)"
        )
    tax = loaded.taxonomy
    fs = loaded.open_store(store)
    samples = read_split(cfg.data, tax, split)
    if not samples:
        d = cfg.data
        have = [n for n in dict.fromkeys([d.train_split, d.val_split, d.test_split]) if read_split(d, tax, n)]
        raise ValueError(
            f"{loaded.run_dir}: split {split!r} has no clips in the run's annotations; it has "
            + (", ".join(repr(n) for n in have) + f" (e.g. --split {have[-1]})" if have else "none")
        )
    samples, missing = select_samples(
        fs,
        samples,
        allow_missing=cfg.data.allow_missing,
        source=f"split {split!r}",
        keep_no_person=cfg.data.keep_no_person,
    )
    ds = ClipDataset(
        fs,
        samples,
        tax,
        num_steps=loaded.num_steps,
        sampling="uniform",
        face_size=loaded.face_size,
        stats=loaded.feature_stats,
    )
    outputs = infer(
        loaded.model,
        ds,
        device=device,
        batch_size=batch_size or cfg.run.eval_batch_size,
        precision=precision or cfg.run.precision,
        progress=progress,
        desc=f"eval {split}",
    )
    out_dir = Path(out) if out is not None else loaded.run_dir
    labels = ds.action[outputs["index"]]
    hidden = not tax.multi_label and bool((labels < 0).all())
    if hidden:
        videos = [ds.samples[i].video for i in outputs["index"]]
        if tax.has_body:  # the MA-52 Codabench format
            path = metrics.write_submission(
                out_dir / f"submission_{split}.zip", videos, outputs["action"], tax, outputs.get("body")
            )
        else:  # no body level: the top-5 actions per clip
            top = metrics.topk(outputs["action"], min(5, tax.num_classes))
            rows = [["vid"] + [f"action_pred_{i + 1}" for i in range(top.shape[1])]]
            rows += [[v, *(str(int(a)) for a in t)] for v, t in zip(videos, top)]
            path = metrics.write_prediction_csv(out_dir / f"predictions_{split}.csv", rows)
        return {"split": split, "run": str(loaded.run_dir), "submission": str(path), "clips": len(videos)}
    report = build_eval_report(loaded, split, ds, outputs)
    report["missing_clips"] = len(missing)
    atomic_write_bytes(out_dir / f"eval_{split}.json", json.dumps(report, indent=1).encode())
    return report


def build_eval_report(loaded: LoadedRun, split: str, ds: ClipDataset, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    from microaction import metrics

    tax = loaded.taxonomy
    m = score_outputs(tax, ds, outputs) or {}
    report: dict[str, Any] = {
        "split": split,
        "run": str(loaded.run_dir),
        "checkpoint": loaded.checkpoint.name,
        "model": loaded.meta["model"],
        "metrics": m,
        "primary_metric": metrics.primary_metric(tax),
        "class_names": list(tax.names),
        "body_names": list(tax.body_names),
        "regions": loaded.regions,
        "train_counts": list(tax.train_counts),
        "clips": len(outputs["index"]),
        "per_class_f1": None,
        "confusion_action": None,
        "confusion_body": None,
        "routing_per_class": None,
        "path_weights_per_class": None,
    }
    if tax.multi_label:
        return report
    y = ds.action[outputs["index"]]
    known = y >= 0
    y, probs = y[known], outputs["action"][known]
    pred = probs.argmax(1)
    report["per_class_f1"] = metrics.per_class_f1(y, pred, tax.num_classes).tolist()
    report["confusion_action"] = metrics.confusion_matrix(y, pred, tax.num_classes).tolist()
    if tax.has_body:
        body_pred = outputs["body"][known].argmax(1) if "body" in outputs else tax.body_map[pred]
        report["confusion_body"] = metrics.confusion_matrix(tax.body_map[y], body_pred, tax.num_body).tolist()
    if "routing" in outputs:
        report["routing_per_class"] = class_means(outputs["routing"][known], y, tax.num_classes)
    if "path_weights" in outputs:
        report["path_weights_per_class"] = class_means(outputs["path_weights"][known], y, tax.num_classes)
    return report
