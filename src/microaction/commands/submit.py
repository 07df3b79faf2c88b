"""``mar submit``: write a submission from test-set scores: a Codabench zip for MA-52, a MiGA
``id,pred`` CSV for label sets without a body level (iMiGUE)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, metavar="SCORES.npy", help="[N, C] action scores, rows in list order")
    p.add_argument(
        "--ann", required=True, metavar="LIST", help="the list the scores follow (e.g. test_list_videos.txt)"
    )
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


def run(args: argparse.Namespace) -> int:
    from microaction.data.annotations import read_annotations
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
        from microaction.miga import write_miga_csv

        if body is not None:
            raise ValueError(f"--body-scores: taxonomy {taxonomy.name!r} has no body level")
        out = write_miga_csv(args.out, [s.video for s in samples], scores, taxonomy, k=args.top, header=args.header)
        print(f"wrote {out}: {len(samples)} samples, MiGA id,pred format ({args.top} ranked per row)")
        return 0
    out = write_submission(args.out, [s.video for s in samples], scores, taxonomy, body_scores=body)
    source = "the body head" if body is not None else "the body group of each action"
    print(f"wrote {out}: {len(samples)} videos, top-5 actions, body columns from {source}")
    return 0
