"""Metric tables in each benchmark's own layout, runs side by side, mean ± std over seeds.

MA-52 (the layout of the benchmark paper's and its successors' tables):
``Body-level: Top-1 · F1_macro · F1_micro | Action-level: Top-1 · Top-5 · F1_macro · F1_micro | F1_mean``.
Label sets without a body level get ``Top-1 · Top-5`` (iMiGUE style); multi-label sets ``mAP``;
detection runs ``mAP@0.5`` and the average over tIoU 0.1-0.9 (MMA-52 / MAC).
Values are stored in [0, 1] and shown ×100. Metrics a run has beyond its layout (e.g. the body
metrics derived from the top action when the model also has a body head) are listed apart.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from microaction.report.runs import RunData, group_by_seed

__all__ = ["COLUMNS", "MetricRow", "Table", "metrics_table"]

# (group, label, metric key), in display order
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("Body-level", "Top-1", "body_top1"),
    ("Body-level", "F1_macro", "body_f1_macro"),
    ("Body-level", "F1_micro", "body_f1_micro"),
    ("Action-level", "Top-1", "action_top1"),
    ("Action-level", "Top-5", "action_top5"),
    ("Action-level", "F1_macro", "action_f1_macro"),
    ("Action-level", "F1_micro", "action_f1_micro"),
    ("", "F1_mean", "f1_mean"),
    ("", "mAP", "map"),
    ("Detection", "mAP@0.5", "mAP@0.5"),
    ("Detection", "mAP@0.1:0.9", "mAP"),
)
# counts beside the metrics in an evaluation (classes without ground truth, ...): not metrics
COUNT_KEYS = frozenset({"classes_without_gt", "classes_scored", "classes_without_positives"})


@dataclass
class MetricRow:
    label: str
    split: str
    source: str  # "eval_val.json", "metrics.json best", or "mean ± std over n seeds"
    values: dict[str, float]  # key -> value in [0, 1]
    std: dict[str, float]  # key -> std (seed groups only)
    n: int = 1


@dataclass
class Table:
    columns: list[tuple[str, str, str]]  # the layout's columns that some row has
    rows: list[MetricRow]  # one per run
    seed_rows: list[MetricRow]  # one per group of >= 2 runs differing only in seed
    extra_keys: list[str]  # metrics outside the layout

    def best_per_column(self, rows: list[MetricRow]) -> dict[str, float]:
        out: dict[str, float] = {}
        for _, _, key in self.columns:
            vals = [r.values[key] for r in rows if key in r.values]
            if len(vals) > 1:
                out[key] = max(vals)
        return out


def run_metrics(run: RunData, split: str | None) -> MetricRow:
    """A run's metrics: its ``eval_<split>.json`` if any, else the best epoch's validation metrics."""
    ev = run.eval_for(split)
    if ev is not None:
        values = {k: v for k, v in ev.metrics.items() if k not in COUNT_KEYS}
        return MetricRow(run.name, ev.split, ev.path.name, values, {})
    return MetricRow(run.name, "val", "metrics.json best", run.best_val_metrics(), {})


def _seed_label(group: list[RunData]) -> str:
    """The runs' common name without a trailing seed marker ("bmoe_s0", "bmoe_s1" -> "bmoe")."""
    prefix = os.path.commonprefix([r.name for r in group])  # noqa: RUF071 (character-wise on purpose)
    prefix = re.sub(r"([_\-. ]+(seed|s))?[_\-. ]*$", "", prefix, flags=re.IGNORECASE)
    return prefix or group[0].model_name


def metrics_table(runs: list[RunData], split: str | None = None) -> Table:
    rows = [run_metrics(r, split) for r in runs]
    row_of = {id(r): row for r, row in zip(runs, rows)}
    layout_keys = {k for _, _, k in COLUMNS}
    present = {k for row in rows for k in row.values}
    columns = [c for c in COLUMNS if c[2] in present]
    extra = sorted(present - layout_keys)
    seed_rows: list[MetricRow] = []
    for group in group_by_seed(runs):
        if len(group) < 2:
            continue
        members = [row_of[id(r)] for r in group]
        keys = set.intersection(*(set(m.values) for m in members))
        values, std = {}, {}
        for k in keys:
            v = np.array([m.values[k] for m in members], dtype=np.float64)
            values[k] = float(v.mean())
            std[k] = float(v.std(ddof=1))
        seeds = ", ".join(str(r.seed) for r in group)
        splits = sorted({m.split for m in members})
        seed_rows.append(
            MetricRow(
                f"{_seed_label(group)} (seeds {seeds})",
                "/".join(splits),
                f"mean ± std over {len(group)} seeds",
                values,
                std,
                n=len(group),
            )
        )
    return Table(columns, rows, seed_rows, extra)
