"""``mar submit``: write a submission from test-set scores (a Codabench zip for MA-52, a MiGA
``id,pred`` CSV for label sets without a body level: iMiGUE), or a MAC detection submission from a
detector's detections (``--detections``) or from a detection run (``--run RUN --split test``)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scores", metavar="SCORES.npy", help="[N, C] action scores, rows in list order")
    src.add_argument(
        "--detections",
        metavar="DETS",
        help="detections (.json as a detector / `mar timeline` writes them, or a detection .csv) -> "
        "MAC detection submission ,video_id,t_start,t_end,class,score",
    )
    src.add_argument(
        "--run", metavar="RUN", help="a detection run: its detections on --split -> MAC detection submission"
    )
    p.add_argument("--split", default="test", help="with --run: the split of the run's annotations (default: test)")
    p.add_argument("--store", help="with --run: feature store to read instead of the run's")
    p.add_argument(
        "--ann",
        metavar="ANN",
        help="clips: the list the scores follow (e.g. test_list_videos.txt; required); detections: temporal "
        "annotations (e.g. mmad.json) whose --subset videos the detections must belong to (optional check)",
    )
    p.add_argument("--subset", metavar="SPLIT", help="detections: the subset of --ann (e.g. test)")
    p.add_argument(
        "--out", required=True, metavar="submission.zip", help="output zip (or a .csv for the bare file; MiGA: a .csv)"
    )
    p.add_argument("--body-scores", metavar="B.npy", help="[N, C_body] body-head scores (default: body of each action)")
    p.add_argument("--taxonomy", default="ma52", help="label set: built-in name or YAML file (default: ma52)")
    p.add_argument("--top", type=int, default=1, help="MiGA: ranked predictions per row (5: scoreable for top-5)")
    p.add_argument("--header", action="store_true", help="MiGA: write the Id,Target header (Kaggle editions)")


def _load(path: str, what: str) -> np.ndarray:
    import numpy as np

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read {what} as a .npy array ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{path}: expected a single .npy array for {what}")
    return arr


def _submit_detections(args: argparse.Namespace) -> int:
    from microaction.data.readers.segment_readers import read_segments
    from microaction.data.readers.segments import write_detections
    from microaction.metrics.detection import read_detection_submission
    from microaction.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    dets = read_detection_submission(args.detections, taxonomy)
    if not dets:
        raise ValueError(f"{args.detections}: no detections")
    if args.ann:
        videos = set(read_segments(args.ann, taxonomy, split=args.subset).videos())
        extra = sorted({d.video for d in dets} - videos)
        if extra:
            raise ValueError(f"{args.detections}: {len(extra)} video(s) not in {args.ann}, e.g. {extra[:3]}")
        absent = len(videos - {d.video for d in dets})
        if absent:
            print(f"note: {absent} of {len(videos)} videos of {args.ann} have no detections")
    if not args.out.lower().endswith((".zip", ".csv")):
        raise ValueError(f"{args.out}: a detection submission is a .zip (holding prediction.csv) or a .csv")
    out = write_detections(args.out, dets, taxonomy=taxonomy)
    print(f"wrote {out}: {len(dets)} detections in {len({d.video for d in dets})} videos")
    return 0


def _submit_run(args: argparse.Namespace) -> int:
    from microaction.data.readers.segments import write_detections
    from microaction.engine.detection import detect_split, load_detector

    if not args.out.lower().endswith((".zip", ".csv")):
        raise ValueError(f"{args.out}: a detection submission is a .zip (holding prediction.csv) or a .csv")
    loaded = load_detector(args.run)
    recs, _, dets = detect_split(loaded, args.split, store=args.store)
    out = write_detections(args.out, dets, taxonomy=loaded.taxonomy)
    print(f"wrote {out}: {len(dets)} detections in {len(recs)} recordings of split {args.split!r}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.detections:
        return _submit_detections(args)
    if args.run:
        return _submit_run(args)
    if not args.ann:
        raise ValueError("--ann is required with --scores (the list the score rows follow)")
    from microaction.data.readers.annotations import read_annotations
    from microaction.metrics import write_submission
    from microaction.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.taxonomy)
    samples = read_annotations(args.ann, taxonomy)
    scores = _load(args.scores, "action scores")
    body = _load(args.body_scores, "body scores") if args.body_scores else None
    if scores.ndim != 2 or scores.shape[0] != len(samples):
        raise ValueError(
            f"{args.scores}: shape {scores.shape}, expected ({len(samples)}, {taxonomy.num_classes}) for {args.ann}"
        )
    if not taxonomy.has_body and not taxonomy.multi_label:
        from microaction.metrics.miga import write_miga_csv

        if body is not None:
            raise ValueError(f"--body-scores: taxonomy {taxonomy.name!r} has no body level")
        out = write_miga_csv(args.out, [s.video for s in samples], scores, taxonomy, k=args.top, header=args.header)
        print(f"wrote {out}: {len(samples)} samples, MiGA id,pred format ({args.top} ranked per row)")
        return 0
    out = write_submission(args.out, [s.video for s in samples], scores, taxonomy, body_scores=body)
    source = "the body head" if body is not None else "the body group of each action"
    print(f"wrote {out}: {len(samples)} videos, top-5 actions, body columns from {source}")
    return 0
