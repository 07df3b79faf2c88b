"""``mar score``: score a prediction file against the true labels.

The format is recognised from the file: a Codabench clip prediction CSV (``vid,action_pred_1..5,
body_pred_1..5``, or a submission .zip holding one) is scored against a list file with the
MA-52 metrics; a MiGA ``id,pred`` CSV (label sets without a body level: iMiGUE) against a list or
an ST-GCN ``(names, labels)`` pickle; a MAC detection submission (``,video_id,t_start,t_end,class,
score``, CSV or .zip) or a detections .json against temporal annotations (MMA-52 JSON, ...) with
detection mAP at tIoU 0.1..0.9.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from microaction.taxonomy import Taxonomy


def _tious(text: str) -> tuple[float, ...]:
    names = {"mma52": "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", "socialgesture": "0.3,0.5,0.7"}
    try:
        values = tuple(float(x) for x in names.get(text.lower(), text).split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected mma52, socialgesture or numbers like 0.3,0.5,0.7"
        ) from None
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: tIoU thresholds must be in (0, 1]")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pred",
        required=True,
        metavar="PRED",
        help="prediction.csv or a submission .zip (clips or detections, recognised from the columns), "
        "a MiGA id,pred CSV (iMiGUE), or a detections .json",
    )
    p.add_argument(
        "--ann",
        required=True,
        metavar="ANN",
        help="true labels: a list file (e.g. val_list_videos.txt) or iMiGUE's (names, labels) test_label.pkl for "
        "clips, temporal annotations (e.g. mmad.json) for detections",
    )
    p.add_argument("--subset", metavar="SPLIT", help="score the videos of this subset / split only (e.g. val)")
    p.add_argument("--taxonomy", default="ma52", help="label set: built-in name or YAML file (default: ma52)")
    p.add_argument(
        "--tiou",
        type=_tious,
        default=None,
        metavar="T1,T2,..",
        help="detections: tIoU thresholds, or mma52 (0.1..0.9, default) / socialgesture (0.3,0.5,0.7)",
    )
    p.add_argument(
        "--classes",
        choices=("all", "present"),
        default="all",
        help="detections: average AP over all classes (official MMA-52: a class without ground truth scores 0) "
        "or over classes with ground truth only (ActivityNet / ActionFormer)",
    )
    p.add_argument(
        "--metric",
        choices=("map", "online-f1"),
        default="map",
        help="detections: detection mAP (MMA-52 / MAC, default) or online recognition F1 at overlap > 0.3 "
        "(SMG / iMiGUE)",
    )
    p.add_argument(
        "--fps",
        type=float,
        help="detections: frame rate of annotations given in frames (SMG; iMiGUE's instance CSV: 25 unless given)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="clips: score the listed samples that have a prediction and say how many were left out "
        "(default: a listed sample without a prediction is an error)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of a table (metrics in [0, 1]; with --partial also the counts "
        "'scored' and 'left_out')",
    )
    p.add_argument(
        "--max-unzipped-mb",
        type=float,
        metavar="MB",
        help="refuse a submission zip whose member inflates past this many MB (default 256, or $MAR_MAX_UNZIPPED_MB)",
    )


def _score_detections(args: argparse.Namespace) -> int:
    import json
    import sys

    from microaction.metrics_detection import MMA52_TIOUS, map_keys, score_detection_file
    from microaction.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    if args.metric == "online-f1":
        return _online_f1(args, taxonomy)
    tious = args.tiou or MMA52_TIOUS
    res = score_detection_file(
        args.pred, args.ann, taxonomy, subset=args.subset, tious=tious, classes=args.classes, fps=args.fps
    )
    for issue in res.ground_truth.issues[:5]:
        print(f"warning: {issue}", file=sys.stderr)
    if len(res.ground_truth.issues) > 5:
        print(f"warning: ... {len(res.ground_truth.issues) - 5} more annotation rows reported", file=sys.stderr)
    missing = int(res.metrics["classes_without_gt"])
    if missing:
        how = "count as AP 0" if args.classes == "all" else "are left out of the mean"
        print(f"note: {missing} of {taxonomy.num_classes} classes have no ground truth here and {how}", file=sys.stderr)
    keys = map_keys(tious)
    if args.json:
        print(json.dumps({k: res.metrics[k] for k in keys}))
    else:
        gt = res.ground_truth
        print(
            f"{res.num_predictions} detections scored from {args.pred} against {len(gt)} segments "
            f"in {len(gt.videos())} videos of {args.ann}" + (f" ({args.subset})" if args.subset else "")
        )
        for k in keys:
            print(f"  {k:16s} {100 * res.metrics[k]:6.2f}")
    return 0


def _online_f1(args: argparse.Namespace, taxonomy: Taxonomy) -> int:
    import json

    from microaction.data.segment_readers import read_segments
    from microaction.metrics_detection import online_f1, read_detection_submission

    gt = read_segments(args.ann, taxonomy, split=args.subset, fps=args.fps)
    dets = read_detection_submission(args.pred, taxonomy)
    extra = sorted({d.video for d in dets} - set(gt.videos()))
    if extra:
        raise ValueError(f"{args.pred}: detections for {len(extra)} video(s) not in {args.ann}, e.g. {extra[:3]}")
    res = online_f1(gt.segments, dets)
    keys = ("precision", "recall", "f1")
    if args.json:
        print(json.dumps({k: res[k] for k in keys}))
    else:
        print(f"{len(dets)} detections against {len(gt)} segments: {int(res['matched'])} matched at overlap > 0.3")
        for k in keys:
            print(f"  {k:16s} {100 * res[k]:6.2f}")
    return 0


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from microaction.data.archives import set_max_unzipped_mb
    from microaction.metrics_detection import is_detection_file

    set_max_unzipped_mb(getattr(args, "max_unzipped_mb", None))

    if is_detection_file(args.pred):
        if args.partial:
            raise ValueError("--partial scores clip predictions; detections are scored over every annotated video")
        return _score_detections(args)

    from microaction.data.annotations import read_annotations
    from microaction.metrics import COVERAGE_KEYS, score_prediction_csv
    from microaction.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    samples = read_annotations(args.ann, taxonomy, split=args.subset)
    hidden = sum(s.label < 0 for s in samples)
    if hidden:
        raise ValueError(
            f"{args.ann}: {hidden} of {len(samples)} labels are unknown (a test list's labels are hidden on "
            "the evaluation server); score a list with known labels, e.g. the val list"
        )
    videos, labels = [s.video for s in samples], [s.label for s in samples]
    if taxonomy.has_body or taxonomy.multi_label:
        metrics = score_prediction_csv(args.pred, videos, labels, taxonomy, partial=args.partial)
    else:
        from microaction.miga import score_miga_csv

        metrics = score_miga_csv(args.pred, videos, labels, taxonomy, partial=args.partial)
    counts = {k: int(metrics.pop(k)) for k in COVERAGE_KEYS if k in metrics}
    if args.json:
        print(json.dumps({**metrics, **counts}))
    else:
        scored = counts.get("scored", len(samples))
        print(f"{scored} of {len(samples)} listed samples scored from {args.pred} against {args.ann}")
        for k, v in metrics.items():
            print(f"  {k:16s} {100 * v:6.2f}")
    if counts.get("left_out"):
        print(
            f"note: {counts['left_out']} of {len(samples)} listed samples have no prediction and were left out "
            "(--partial)",
            file=sys.stderr,
        )
    return 0
