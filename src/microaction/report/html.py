"""``build_report(run_dirs, out_dir) -> report.html``: one self-contained page for one or more runs.

The PNGs are written beside the page (``<out>/<run>/*.png``) and, by default, also embedded in
it as base64 data URIs, so ``report.html`` alone opens offline anywhere (``embed=False`` links to
the PNGs instead). No script, no external stylesheet or font.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure as MplFigure

from microaction.report import plots
from microaction.report.runs import EvalData, ReportError, RunData, read_run_data
from microaction.report.tables import MetricRow, Table, metrics_table

__all__ = ["ReportFigure", "build_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1500px;
 padding:0 16px;color:#222;background:#fff}
h1{font-size:24px} h2{font-size:20px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:36px}
h3{font-size:16px;margin:20px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right} th{background:#f2f4f7} th[colspan]{text-align:center}
td.l,th.l{text-align:left} tr.seed td{background:#fbf7e9} b.best{color:#0b5}
figure{margin:10px 0 22px} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:13px;color:#555;max-width:1100px} .note{color:#a55;font-size:13px}
nav a{margin-right:14px} code{background:#f4f4f4;padding:1px 4px} .small{font-size:12px;color:#666}
"""


@dataclass
class ReportFigure:
    run: str
    kind: str
    path: Path
    caption: str


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "run"


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names = [p.resolve().name for p in paths]
    if len(set(names)) == len(names):
        return names
    parts = [p.resolve().parts for p in paths]
    common = 0
    while all(len(p) > common + 1 for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return ["/".join(p[common:]) for p in parts]


def _fmt(v: float | None, std: float | None = None) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    s = f"{v * 100:.2f}"
    return f"{s} ± {std * 100:.2f}" if std is not None else s


def _table_html(table: Table) -> str:
    cols = table.columns
    groups = [(g, len(list(run))) for g, run in itertools.groupby(c[0] for c in cols)]
    out = ["<table>", "<tr><th class=l rowspan=2>run</th><th class=l rowspan=2>split</th>"]
    i = 0
    for g, n in groups:
        if g:
            out.append(f"<th colspan={n}>{html.escape(g)}</th>")
        else:  # an ungrouped column (F1_mean) spans both header rows
            out.extend(f"<th rowspan=2>{html.escape(label)}</th>" for _, label, _ in cols[i : i + n])
        i += n
    out.append("<th class=l rowspan=2>source</th></tr><tr>")
    out.extend(f"<th>{html.escape(label)}</th>" for g, label, _ in cols if g)
    out.append("</tr>")

    def row_html(row: MetricRow, best: dict[str, float], cls: str = "") -> str:
        cells = [f"<td class=l>{html.escape(row.label)}</td><td class=l>{html.escape(row.split)}</td>"]
        for _, _, key in cols:
            v = row.values.get(key)
            txt = _fmt(v, row.std.get(key) if row.std else None)
            if v is not None and key in best and v >= best[key] - 1e-12:
                txt = f"<b class=best>{txt}</b>"
            cells.append(f"<td>{txt}</td>")
        cells.append(f"<td class='l small'>{html.escape(row.source)}</td>")
        return f"<tr{f' class={cls}' if cls else ''}>{''.join(cells)}</tr>"

    best = table.best_per_column(table.rows)
    out.extend(row_html(r, best) for r in table.rows)
    if table.seed_rows:
        best_s = table.best_per_column(table.seed_rows)
        out.extend(row_html(r, best_s, "seed") for r in table.seed_rows)
    out.append("</table>")
    if table.extra_keys:
        out.append("<details><summary class=small>other metrics</summary><table><tr><th class=l>run</th>")
        out.extend(f"<th>{html.escape(k)}</th>" for k in table.extra_keys)
        out.append("</tr>")
        for r in table.rows + table.seed_rows:
            out.append(f"<tr><td class=l>{html.escape(r.label)}</td>")
            out.extend(f"<td>{_fmt(r.values.get(k), r.std.get(k) if r.std else None)}</td>" for k in table.extra_keys)
            out.append("</tr>")
        out.append("</table></details>")
    return "\n".join(out)


def _entities(ev: EvalData, run: RunData, k: int) -> list[str]:
    if len(ev.entities) == k:
        return ev.entities
    if len(ev.regions) == k:
        return ev.regions
    from microaction.skeleton import ENTITY_SETS

    tax = (run.taxonomy or {}).get("name")
    if isinstance(tax, str) and len(ENTITY_SETS.get(tax, ())) == k:
        return list(ENTITY_SETS[tax])
    return [f"entity {j}" for j in range(k)]


def _best_epoch(run: RunData) -> int | None:
    """1-based position in ``epochs`` of the best epoch recorded in ``metrics.json``."""
    be, stage = run.best.get("epoch"), run.best.get("stage")
    if be is None:
        return None
    for i, e in enumerate(run.epochs):
        if e.get("epoch") == be and (stage is None or e.get("stage") == stage):
            return i + 1
    return None


def _run_figures(
    run: RunData, out: Path, split: str | None, rare_quantile: float
) -> tuple[list[ReportFigure], list[str]]:
    figs: list[ReportFigure] = []
    notes: list[str] = []
    d = out / _slug(run.name)

    def add(kind: str, fig: MplFigure, caption: str) -> None:
        figs.append(ReportFigure(run.name, kind, plots.save(fig, d / f"{kind}.png"), caption))

    if run.epochs:
        best = f"best ({run.best.get('stage', '')} epoch {run.best.get('epoch')})".replace("( ", "(")
        add("curves", plots.training_curves(run.epochs, f"{run.name}: training", _best_epoch(run), best),
            "Training loss and validation metrics per epoch (×100); dotted line: the best epoch kept as "
            "best.safetensors.")  # fmt: skip
    else:
        notes.append("metrics.json has no epochs yet: no training curves.")
    ev = run.eval_for(split)
    if ev is None:
        want = f"eval_{split}.json" if split else "eval_<split>.json"
        where = html.escape(str(run.path))
        notes.append(f"No {want} in {where}: run <code>mar eval {where}</code> for confusion "
                     "matrices, per-class F1 and routing maps; the table shows the best epoch's validation metrics.")  # fmt: skip
        return figs, notes
    body_of = run.body_of_class
    if body_of is not None and len(body_of) != len(ev.class_names):
        body_of = None
    tag = f"{run.name} ({ev.split})"
    if ev.confusion_action is not None:
        add("confusion_action", plots.confusion(ev.confusion_action, ev.class_names, f"{tag}: action confusion"),
            "Action-level confusion, each row normalised by the true class's clip count (diagonal = recall); "
            "grey rows: no clips of that class in the split.")  # fmt: skip
    if ev.confusion_body is not None and ev.body_names:
        add(
            "confusion_body",
            plots.confusion(ev.confusion_body, ev.body_names, f"{tag}: body confusion"),
            "Body-level confusion, row-normalised (%).",
        )
    if ev.per_class_f1 is not None and ev.train_counts is not None and len(ev.train_counts) == len(ev.per_class_f1):
        support = ev.confusion_action.sum(axis=1) if ev.confusion_action is not None else None
        add("long_tail", plots.f1_vs_frequency(ev.per_class_f1, ev.train_counts, ev.class_names, rare_quantile,
                                               f"{tag}: per-class F1 vs training frequency", support),
            f"Per-class F1 against the number of training clips; red: rare classes (training count at or below "
            f"the {rare_quantile:.2f} quantile); hollow grey: no clips of the class in this split.")  # fmt: skip
    elif ev.per_class_f1 is not None:
        notes.append("eval file has no train_counts: no long-tail plot.")
    if ev.routing_per_class is not None:
        add("routing_per_class", plots.routing_heatmap(
                ev.routing_per_class, ev.class_names, ev.regions, body_of_class=body_of,
                body_names=ev.body_names, body_regions=run.body_regions, title=f"{tag}: expert importance per class"),
            "Mean routing weight of each region expert over the clips of each true class (B-MoE Fig. 5 style); "
            "rows grouped by body group.")  # fmt: skip
        if body_of is not None:
            add("routing_per_body", plots.routing_by_body(ev.routing_per_class, body_of, ev.body_names, ev.regions,
                                                          f"{tag}: expert importance per body group"),
                "Routing weights averaged over the classes of each body group.")  # fmt: skip
    if ev.path_weights_per_class is not None:
        k = ev.path_weights_per_class.shape[1]
        add("path_preference", plots.path_preference(
                ev.path_weights_per_class, ev.class_names, _entities(ev, run, k), body_of_class=body_of,
                body_names=ev.body_names, title=f"{tag}: ST/TS path preference"),
            "Micro-DualNet: share of the Spatial→Temporal path per entity and class "
            "(w_ST / (w_ST + w_TS); 1 = ST, 0 = TS).")  # fmt: skip
    return figs, notes


def _img(fig: ReportFigure, out: Path, embed: bool) -> str:
    if embed:
        src = "data:image/png;base64," + base64.b64encode(fig.path.read_bytes()).decode("ascii")
    else:
        src = html.escape(fig.path.relative_to(out).as_posix())
    return (
        f'<figure id="{html.escape(_slug(fig.run))}-{fig.kind}"><img class=fig alt="{html.escape(fig.kind)}" '
        f'src="{src}"><figcaption>{html.escape(fig.caption)}</figcaption></figure>'
    )


def _config_summary(run: RunData) -> str:
    items = [("model", run.model_name), ("seed", run.seed), ("taxonomy", (run.taxonomy or {}).get("name"))]
    items.append(("epochs logged", len(run.epochs)))
    items.append(("evaluations", ", ".join(sorted(run.evals)) or "none"))
    cells = "".join(
        f"<tr><th class=l>{k}</th><td class=l>{html.escape(str(v))}</td></tr>" for k, v in items if v is not None
    )
    return f"<table>{cells}</table><p class=small>folder: <code>{html.escape(str(run.path))}</code></p>"


def build_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    split: str | None = None,
    title: str | None = None,
    rare_quantile: float = 0.25,
    embed: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` (+ PNGs) for the runs; returns the HTML's path.

    ``split``: which ``eval_<split>.json`` to use (default: test, then val, then any).
    """
    if not run_dirs:
        raise ReportError("no run folders given")
    if not 0 < rare_quantile < 1:
        raise ReportError(f"rare_quantile must be in (0, 1), got {rare_quantile}")
    paths = [Path(p) for p in run_dirs]
    names = _unique_names(paths)
    runs = [read_run_data(p, name=n) for p, n in zip(paths, names)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = metrics_table(runs, split)
    title = title or ("Report: " + ", ".join(r.name for r in runs[:4]) + (" …" if len(runs) > 4 else ""))
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=small>microaction report · {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · {len(runs)} run(s)</p>",
        "<nav>"
        + "".join(f'<a href="#run-{html.escape(_slug(r.name))}">{html.escape(r.name)}</a>' for r in runs)
        + "</nav>",
        "<h2>Metrics</h2>",
        "<p class=small>Values ×100. Highlighted: best per column. Seed rows (shaded): mean ± sample std over runs "
        "whose configs differ only in <code>run.seed</code>.</p>",
        _table_html(table),
    ]
    for run in runs:
        figs, notes = _run_figures(run, out, split, rare_quantile)
        parts.append(f'<h2 id="run-{html.escape(_slug(run.name))}">{html.escape(run.name)}</h2>')
        parts.append(_config_summary(run))
        parts.extend(f"<p class=note>{n}</p>" for n in notes)
        parts.extend(_img(f, out, embed) for f in figs)
    parts.append("</body></html>")
    page = out / "report.html"
    page.write_text("\n".join(parts), encoding="utf-8")
    return page
