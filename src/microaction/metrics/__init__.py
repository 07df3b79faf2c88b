"""Metrics in one place: classification (``classification``: the official protocols of MA-52,
iMiGUE, SocialGesture and MPII-GI, Codabench submissions), temporal detection (``detection``:
MMA-52 / MAC mAP, online F1, 1-D NMS / Soft-NMS) and iMiGUE's MiGA submissions (``miga``).

``microaction.metrics`` itself gives the classification names, as it always has."""

from __future__ import annotations

from microaction.metrics.classification import (
    COVERAGE_KEYS,
    CSV_NAME,
    SCORE_KEYS,
    MetricsError,
    PredictionTable,
    classification_metrics,
    confusion_matrix,
    coverage,
    f1_mean,
    format_metrics,
    match_rows,
    multilabel_metrics,
    normalize_confusion,
    per_class_f1,
    primary_metric,
    read_prediction_csv,
    score_prediction_csv,
    score_predictions,
    submission_rows,
    topk,
    topk_accuracy,
    write_prediction_csv,
    write_submission,
)

__all__ = [
    "COVERAGE_KEYS",
    "CSV_NAME",
    "SCORE_KEYS",
    "MetricsError",
    "PredictionTable",
    "classification_metrics",
    "confusion_matrix",
    "coverage",
    "f1_mean",
    "format_metrics",
    "match_rows",
    "multilabel_metrics",
    "normalize_confusion",
    "per_class_f1",
    "primary_metric",
    "read_prediction_csv",
    "score_prediction_csv",
    "score_predictions",
    "submission_rows",
    "topk",
    "topk_accuracy",
    "write_prediction_csv",
    "write_submission",
]
