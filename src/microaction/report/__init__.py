"""Reports and visual explanations: what a researcher looks at, not reads.

- ``build_report(run_dirs, out_dir) -> Path``: ``report.html`` + PNGs for one or more run folders
  (training curves, metrics table in the benchmark's layout with mean ± std over seeds, confusion
  matrices, per-class F1 vs training frequency, expert-importance and path-preference heatmaps).
- ``write_overlay(video_path, out_path, *, boxes, region_names, routing, caption_lines)``: the
  video with each region's box drawn by its routing weight and the top predictions in a caption.
- ``write_timeline(detections, out_dir, taxonomy, regions, video=None)``: a recording's detected
  segments as ``timeline.csv`` / ``.json`` / ``.eaf`` (ELAN) / ``.html`` (``docs/detection.md``).
- ``read_run_data(run_dir)``: a run folder read and checked (``ReportError`` names what is missing).

Submodules import matplotlib / PyAV, so they load on first use of these names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["ReportError", "build_report", "read_run_data", "write_overlay", "write_timeline"]

if TYPE_CHECKING:
    from microaction.report.html import build_report
    from microaction.report.overlay import write_overlay
    from microaction.report.runs import ReportError, read_run_data
    from microaction.report.timeline import write_timeline

_WHERE = {
    "build_report": "microaction.report.html",
    "write_overlay": "microaction.report.overlay",
    "read_run_data": "microaction.report.runs",
    "ReportError": "microaction.report.runs",
    "write_timeline": "microaction.report.timeline",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'microaction.report' has no attribute {name!r}")
