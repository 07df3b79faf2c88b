"""``mar score``: score a submission against an annotation file with the true labels: a
Codabench prediction CSV (or zip) for MA-52, a MiGA ``id,pred`` CSV for label sets without a body
level (iMiGUE)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pred",
        required=True,
        metavar="PRED.csv",
        help="prediction.csv or a submission .zip holding one (MA-52); a MiGA id,pred CSV (iMiGUE)",
    )
    p.add_argument(
        "--ann",
        required=True,
        metavar="LIST",
        help="annotation file with the true labels (e.g. val_list_videos.txt, iMiGUE's (names, labels) test_label.pkl)",
    )
    p.add_argument("--taxonomy", default="ma52", help="label set: built-in name or YAML file (default: ma52)")
    p.add_argument("--json", action="store_true", help="print one JSON object (values in [0, 1]) instead of a table")


def run(args: argparse.Namespace) -> int:
    import json

    from microaction.data.annotations import read_annotations
    from microaction.metrics import score_prediction_csv
    from microaction.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    samples = read_annotations(args.ann, taxonomy)
    hidden = sum(s.label < 0 for s in samples)
    if hidden:
        raise ValueError(
            f"{args.ann}: {hidden} of {len(samples)} labels are unknown (a test list's labels are hidden on "
            "the evaluation server); score a list with known labels, e.g. the val list"
        )
    videos, labels = [s.video for s in samples], [s.label for s in samples]
    if taxonomy.has_body or taxonomy.multi_label:
        metrics = score_prediction_csv(args.pred, videos, labels, taxonomy)
    else:
        from microaction.miga import score_miga_csv

        metrics = score_miga_csv(args.pred, videos, labels, taxonomy)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{len(samples)} videos scored from {args.pred} against {args.ann}")
        for k, v in metrics.items():
            print(f"  {k:16s} {100 * v:6.2f}")
    return 0
