"""Report figures, drawn with matplotlib's object API on the Agg canvas (no display, no pyplot
state, safe to call from any thread). Each function returns a ``Figure``; ``save`` writes a PNG.

- ``training_curves``: train loss and validation metrics per epoch, stages shaded, best marked.
- ``confusion``: row-normalised confusion matrix (rows = true class: each row is that class's
  recall profile), full class names on both axes, sized so 52 names stay readable.
- ``f1_vs_frequency``: per-class F1 against the class's training frequency (log scale), classes
  sorted head → tail, rare classes (bottom ``rare_quantile`` of training counts) in red.
- ``routing_heatmap``: mean routing weight per class × region (the B-MoE paper's Fig. 5), rows
  grouped by body group, the regions the taxonomy says a body group moves outlined.
- ``routing_by_body``: the same averaged per body group.
- ``path_preference``: Micro-DualNet's ST share ``w_ST / (w_ST + w_TS)`` per class × entity.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = [
    "confusion",
    "f1_vs_frequency",
    "path_preference",
    "rare_mask",
    "routing_by_body",
    "routing_heatmap",
    "save",
    "training_curves",
]

DPI = 100
_CELL_IN = 0.2  # inches per class row/column in the big matrices (7 pt labels fit)
_LABEL_PT = 7
_PRIMARY = ("f1_mean", "action_top1", "map", "body_top1", "action_f1_macro")


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _literal_text(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Text from files (class, body, region and run names) is shown as written: a ``$`` starts
    no mathtext (a class named ``$x^$`` made matplotlib raise while drawing). Applies while the
    figure is built and while it is drawn (tick labels are made then)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context({"text.parse_math": False}):
            return fn(*args, **kwargs)

    return wrapper


@_literal_text
def save(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")
    return path


def _label_width_in(names: Sequence[str], pt: float = _LABEL_PT) -> float:
    longest = max((len(n) for n in names), default=4)
    return 0.3 + longest * pt * 0.55 / 72  # average glyph width ≈ 0.55 em


@_literal_text
def training_curves(
    epochs: list[dict[str, Any]], title: str = "", best_epoch: int | None = None, best_label: str = "best"
) -> Figure:
    """Loss (left) and validation metrics ×100 (right) per epoch of ``metrics.json``; the x axis
    counts epochs over all stages; ``best_epoch`` is a 1-based position on it."""
    fig = Figure(figsize=(11, 3.8), dpi=DPI, layout="constrained")
    ax_loss, ax_val = fig.subplots(1, 2)
    x = np.arange(1, len(epochs) + 1)
    stages = [str(e.get("stage") or "") for e in epochs]
    # shade stages (two-stage training, pretrain / finetune …)
    if len(set(stages)) > 1:
        for band, (name, a, b) in enumerate(_runs(stages)):
            for ax in (ax_loss, ax_val):
                ax.axvspan(a + 0.5, b + 1.5, color=("#f0f0f0", "#dde8f5")[band % 2], zorder=0)
                ax.text((a + b + 2) / 2, 1.0, name, transform=ax.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=8, color="#555")  # fmt: skip
    loss = np.array([float(e.get("train_loss", np.nan)) for e in epochs])
    if np.isfinite(loss).any():
        ax_loss.plot(x, loss, "o-", ms=3, label="train loss")
    parts: list[str] = []  # the loss terms the trainer logs apart (train_parts: body CE, L_emb, aux …)
    for e in epochs:
        parts += [k for k, v in (e.get("train_parts") or {}).items() if k not in parts and isinstance(v, int | float)]
    for k in parts[:6]:
        y = np.array([float((e.get("train_parts") or {}).get(k, np.nan)) for e in epochs])
        ax_loss.plot(x, y, "--", lw=1, label=k)
    val_loss = np.array([float((e.get("val") or {}).get("loss", np.nan)) for e in epochs])
    if np.isfinite(val_loss).any():
        ax_loss.plot(x, val_loss, "s--", ms=3, label="val loss")
    ax_loss.set_xlabel("epoch (all stages)" if len(set(stages)) > 1 else "epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.grid(alpha=0.3)
    if ax_loss.lines:
        ax_loss.legend(fontsize=8)
    keys: list[str] = []
    for e in epochs:
        for k, v in (e.get("val") or {}).items():
            if k not in keys and k != "loss" and isinstance(v, int | float):
                keys.append(k)
    shown = [k for k in _PRIMARY if k in keys][:3] or keys[:3]
    for k in shown:
        y = np.array([float((e.get("val") or {}).get(k, np.nan)) * 100 for e in epochs])
        ax_val.plot(x, y, "o-", ms=3, label=k)
    if best_epoch is not None and 1 <= best_epoch <= len(epochs):
        ax_val.axvline(best_epoch, color="k", ls=":", lw=1, label=best_label)
    ax_val.set_xlabel(ax_loss.get_xlabel())
    ax_val.set_ylabel("validation metric (×100)")
    ax_val.grid(alpha=0.3)
    if ax_val.lines:
        ax_val.legend(fontsize=8)
    else:
        ax_val.text(0.5, 0.5, "no validation metrics logged", ha="center", va="center", transform=ax_val.transAxes)
    for ax in (ax_loss, ax_val):
        if len(x) <= 30:
            ax.set_xticks(x)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


@_literal_text
def confusion(cm: np.ndarray, names: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix; rows without samples are left blank (grey)."""
    cm = np.asarray(cm, dtype=np.float64)
    n = cm.shape[0]
    support = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(support > 0, cm / np.where(support > 0, support, 1), np.nan)
    big = n > 15
    cell = _CELL_IN if big else 0.55
    pt = _LABEL_PT if big else 9
    labels = [f"{i} {nm}" if big else nm for i, nm in enumerate(names)]
    lab_in = _label_width_in(labels, pt)
    side = max(n * cell, 2.5)
    fig = Figure(figsize=(side + lab_in + 1.4, side + lab_in + 0.8), dpi=DPI)
    left = (lab_in + 0.1) / (side + lab_in + 1.4)
    bottom = (lab_in + 0.1) / (side + lab_in + 0.8)
    ax = fig.add_axes((left, bottom, side / (side + lab_in + 1.4), side / (side + lab_in + 0.8)))
    cmap = _cmap("Blues", bad="#e6e6e6")
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=pt)
    ax.set_yticks(range(n), labels, fontsize=pt)
    ax.set_xlabel("predicted", fontsize=pt + 2)
    ax.set_ylabel("true", fontsize=pt + 2)
    ax.xaxis.set_label_position("top")
    if not big:
        for i in range(n):
            for j in range(n):
                if np.isfinite(norm[i, j]) and norm[i, j] >= 0.005:
                    ax.text(j, i, f"{norm[i, j] * 100:.0f}", ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")  # fmt: skip
    cax = fig.add_axes((left + side / (side + lab_in + 1.4) + 0.01, bottom, 0.012 * 10 / max(side, 2.5), 0.3))
    fig.colorbar(im, cax=cax, label="fraction of the true class")
    if title:
        fig.suptitle(title, fontsize=11, y=1 - 0.25 / (side + lab_in + 0.8))
    return fig


def rare_mask(train_counts: np.ndarray, rare_quantile: float = 0.25) -> np.ndarray:
    """Classes whose training count is at or below the ``rare_quantile`` quantile of counts."""
    counts = np.asarray(train_counts, dtype=np.float64)
    return counts <= np.quantile(counts, rare_quantile)


@_literal_text
def f1_vs_frequency(
    per_class_f1: np.ndarray,
    train_counts: np.ndarray,
    names: Sequence[str],
    rare_quantile: float = 0.25,
    title: str = "",
    support: np.ndarray | None = None,
) -> Figure:
    """Long-tail view: classes sorted by training count (bars, log) with their F1 (dots).

    ``support``: clips of each class in the evaluated split; a class without any has no F1
    (drawn as a hollow grey marker at 0 and left out of the means).
    """
    f1 = np.asarray(per_class_f1, dtype=np.float64) * 100
    counts = np.asarray(train_counts, dtype=np.float64)
    present = np.ones(len(f1), bool) if support is None else np.asarray(support) > 0
    rare = rare_mask(counts, rare_quantile)
    order = np.argsort(-counts, kind="stable")
    n = len(order)
    labels = [f"{i} {names[i]}" if i < len(names) else str(i) for i in order]
    lab_in = _label_width_in(labels)
    width = max(8.0, n * 0.2 + 1.5)
    fig = Figure(figsize=(width + 4.5, 4.2 + lab_in), dpi=DPI, layout="constrained")
    ax, ax_sc = fig.subplots(1, 2, width_ratios=(width, 4.5))
    x = np.arange(n)
    colors = np.where(rare[order], "#f4a6a6", "#c5d5ea")
    ax.bar(x, np.maximum(counts[order], 0.8), color=colors, width=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("training clips (log)")
    ax.set_xticks(x, labels, rotation=90, fontsize=_LABEL_PT)
    for t, r in zip(ax.get_xticklabels(), rare[order]):
        if r:
            t.set_color("#c0392b")
    ax.set_xlim(-0.6, n - 0.4)
    ax2 = ax.twinx()
    xs, fs, rs, ps = x, f1[order], rare[order], present[order]
    ax2.plot(xs[ps], fs[ps], color="#555", lw=0.8, zorder=3)
    ax2.scatter(xs[ps & ~rs], fs[ps & ~rs], color="#1f4e9c", s=18, zorder=4, label="F1")
    ax2.scatter(xs[ps & rs], fs[ps & rs], color="#c0392b", s=24, zorder=4, label="F1 (rare class)")
    if (~ps).any():
        ax2.scatter(xs[~ps], np.zeros((~ps).sum()), facecolors="none", edgecolors="#999", s=24, zorder=4,
                    label="no clips in this split")  # fmt: skip
    ax2.set_ylim(-2, 102)
    ax2.set_ylabel("per-class F1 (×100)")
    ax2.legend(fontsize=8, loc="upper right")
    ax.set_title("classes from head to tail", fontsize=10)
    # scatter F1 vs count, with the rare-vs-rest means over the classes present in the split
    for sel, color, size, label in (
        (present & ~rare, "#1f4e9c", 16, "others"),
        (present & rare, "#c0392b", 22, f"rare ≤ q{rare_quantile:.2f}"),
    ):
        if sel.any():
            ax_sc.scatter(counts[sel], f1[sel], color=color, s=size, label=f"{label} (mean {f1[sel].mean():.1f})")
    ax_sc.set_xscale("log")
    ax_sc.set_xlabel("training clips (log)")
    ax_sc.set_ylabel("per-class F1 (×100)")
    ax_sc.set_ylim(-2, 102)
    ax_sc.grid(alpha=0.3)
    ax_sc.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _class_rows(
    class_names: Sequence[str], body_of_class: Sequence[int] | None, c: int
) -> tuple[np.ndarray, list[tuple[int, int, int]], list[str], float, float]:
    """Row layout shared by the class × region heatmaps: class order grouped by body group, row
    labels, label column width and group-bracket width (inches)."""
    order, spans = _group_order(body_of_class, c)
    labels = [f"{i} {class_names[i]}" if i < len(class_names) else str(i) for i in order]
    return order, spans, labels, _label_width_in(labels), 1.2 if spans else 0.2


def _group_order(body_of_class: Sequence[int] | None, n: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Row order grouped by body group and the (group, first row, last row) spans."""
    if not body_of_class or len(body_of_class) != n:
        return np.arange(n), []
    b = np.asarray(body_of_class)
    order = np.argsort(b, kind="stable")
    return order, [(int(g), first, last) for g, first, last in _runs(b[order].tolist())]


def _runs(values: Sequence[Any]) -> list[tuple[Any, int, int]]:
    """(value, first, last position) of each run of equal neighbours in ``values``."""
    out, start = [], 0
    for v, run in itertools.groupby(values):
        n = len(list(run))
        out.append((v, start, start + n - 1))
        start += n
    return out


@_literal_text
def routing_heatmap(
    routing: np.ndarray,
    class_names: Sequence[str],
    regions: Sequence[str],
    *,
    body_of_class: Sequence[int] | None = None,
    body_names: Sequence[str] = (),
    body_regions: dict[str, list[str]] | None = None,
    title: str = "",
) -> Figure:
    """Mean routing weight per class (rows) × region (columns)."""
    w = np.asarray(routing, dtype=np.float64)
    c, r = w.shape
    regions = list(regions) or [f"region {j}" for j in range(r)]
    order, spans, labels, lab_in, grp_in = _class_rows(class_names, body_of_class, c)
    cell_w = 0.75
    h = max(c * _CELL_IN, 2.0) + 1.6
    wid = lab_in + r * cell_w + grp_in + 1.3
    fig = Figure(figsize=(wid, h), dpi=DPI)
    ax = fig.add_axes((lab_in / wid, 0.9 / h, r * cell_w / wid, (h - 1.6) / h))
    im = ax.imshow(w[order], cmap=_cmap("viridis", bad="#e6e6e6"), vmin=0, vmax=max(float(np.nanmax(w)), 1e-6), aspect="auto",
                   interpolation="nearest")  # fmt: skip
    ax.set_xticks(range(r), regions, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(c), labels, fontsize=_LABEL_PT)
    for g, a, b in spans:
        if a > 0:
            ax.axhline(a - 0.5, color="white", lw=2)
        name = body_names[g] if g < len(body_names) else f"group {g}"
        ax.text(r - 0.5 + 0.15, (a + b) / 2, name, va="center", ha="left", fontsize=8, clip_on=False)
        if body_regions and name in body_regions:
            for reg in body_regions[name]:
                if reg in regions:
                    j = regions.index(reg)
                    ax.add_patch(Rectangle((j - 0.45, a - 0.42), 0.9, b - a + 0.84, fill=False, ec="#ff3b30", lw=2,
                                           zorder=5))  # fmt: skip
    cax = fig.add_axes(((lab_in + r * cell_w + grp_in) / wid, 0.9 / h, 0.15 / wid, min(3.0, h - 1.6) / h))
    fig.colorbar(im, cax=cax, label="mean routing weight")
    fig.text(0.5, 1 - 0.3 / h, title or "expert importance per class", ha="center", fontsize=11)
    if body_regions and spans:
        fig.text(0.5, 0.15 / h, "red outline: regions the class's body group moves (taxonomy)", ha="center",
                 fontsize=8, color="#c0392b")  # fmt: skip
    return fig


@_literal_text
def routing_by_body(
    routing: np.ndarray,
    body_of_class: Sequence[int],
    body_names: Sequence[str],
    regions: Sequence[str],
    title: str = "",
) -> Figure:
    """Routing weight averaged over the classes of each body group (groups × regions, annotated)."""
    w = np.asarray(routing, dtype=np.float64)
    b = np.asarray(body_of_class)
    g = max(int(b.max()) + 1, len(body_names))
    mean = np.full((g, w.shape[1]), np.nan)
    for k in range(g):
        rows = w[b == k]
        rows = rows[np.isfinite(rows).all(axis=1)]  # classes absent from the split are NaN rows
        if len(rows):
            mean[k] = rows.mean(axis=0)
    names = [body_names[k] if k < len(body_names) else f"group {k}" for k in range(g)]
    fig = Figure(figsize=(1.2 + 0.9 * w.shape[1] + _label_width_in(names, 9), 1.4 + 0.45 * g), dpi=DPI,
                 layout="constrained")  # fmt: skip
    ax = fig.subplots()
    im = ax.imshow(mean, cmap=_cmap("viridis"), vmin=0, vmax=max(float(np.nanmax(mean)), 1e-6), aspect="auto")
    ax.set_xticks(range(w.shape[1]), list(regions), rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(g), names, fontsize=9)
    for i in range(g):
        for j in range(w.shape[1]):
            if np.isfinite(mean[i, j]):
                ax.text(j, i, f"{mean[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if mean[i, j] > 0.6 * np.nanmax(mean) else "white")  # fmt: skip
    fig.colorbar(im, ax=ax, label="mean routing weight")
    ax.set_title(title or "expert importance per body group", fontsize=11)
    return fig


@_literal_text
def path_preference(
    path_weights: np.ndarray,
    class_names: Sequence[str],
    entities: Sequence[str],
    *,
    body_of_class: Sequence[int] | None = None,
    body_names: Sequence[str] = (),
    title: str = "",
) -> Figure:
    """ST share ``w_ST / (w_ST + w_TS)`` per class × entity (red: Spatial→Temporal, blue: Temporal→Spatial)."""
    pw = np.asarray(path_weights, dtype=np.float64)
    c, k, _ = pw.shape
    with np.errstate(invalid="ignore", divide="ignore"):
        st = pw[..., 0] / (pw[..., 0] + pw[..., 1])
    entities = list(entities) or [f"entity {j}" for j in range(k)]
    order, spans, labels, lab_in, grp_in = _class_rows(class_names, body_of_class, c)
    cell_w = 0.75
    h = max(c * _CELL_IN, 2.0) + 2.4
    wid = lab_in + k * cell_w + grp_in + 1.4
    fig = Figure(figsize=(wid, h), dpi=DPI)
    top_h = 0.8  # the per-entity mean strip
    ax = fig.add_axes((lab_in / wid, 0.9 / h, k * cell_w / wid, (h - 1.6 - top_h) / h))
    ax_m = fig.add_axes((lab_in / wid, (h - 0.6 - top_h) / h, k * cell_w / wid, 0.3 / h))
    cmap = _cmap("coolwarm", bad="#e6e6e6")
    im = ax.imshow(st[order], cmap=cmap, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    with np.errstate(invalid="ignore"):
        col_mean = np.nanmean(np.where(np.isfinite(st), st, np.nan), axis=0) if np.isfinite(st).any() else st[0]
    ax_m.imshow(col_mean[None], cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for j, v in enumerate(col_mean):
        ax_m.text(j, 0, f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax_m.set_xticks([])
    ax_m.set_yticks([0], ["mean"], fontsize=8)
    ax.set_xticks(range(k), entities, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(c), labels, fontsize=_LABEL_PT)
    if c <= 20:
        for i, row in enumerate(st[order]):
            for j, v in enumerate(row):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    for g, a, b in spans:
        if a > 0:
            ax.axhline(a - 0.5, color="white", lw=2)
        name = body_names[g] if g < len(body_names) else f"group {g}"
        ax.text(k - 0.5 + 0.15, (a + b) / 2, name, va="center", ha="left", fontsize=8, clip_on=False)
    cax = fig.add_axes(((lab_in + k * cell_w + grp_in) / wid, 0.9 / h, 0.15 / wid, min(3.0, h - 2.4) / h))
    fig.colorbar(im, cax=cax, label="ST share (1 = ST, 0 = TS)")
    fig.text(0.5, 1 - 0.3 / h, title or "Micro-DualNet path preference per entity", ha="center", fontsize=11)
    return fig


def _cmap(name: str, bad: str | None = None) -> Any:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return cmap.with_extremes(bad=bad) if bad is not None else cmap
