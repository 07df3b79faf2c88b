"""``mar predict``: top actions, body groups and routing per region for a feature store or videos.

A folder of videos: a video that cannot be read or extracted is listed with its reason (on stderr,
and in ``OUT.failed.csv`` beside ``--out``) and the others are predicted and written; exit status 3
when some failed, 1 when all did (``--allow-failures``: 0)."""

from __future__ import annotations

import argparse

from microaction.engine.precision import PRECISIONS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "exit status: 0 every clip predicted; 3 a folder of videos in which some failed (listed on stderr and "
        "in OUT.failed.csv) and the others are written; 1 all failed, or an error (--allow-failures: 0)"
    )
    p.add_argument("run_dir", help="run folder written by mar train (or a .safetensors checkpoint)")
    p.add_argument("input", help="a feature store folder, a video file, or a folder of videos")
    p.add_argument("--top", type=int, default=5, help="how many actions / body groups to show (default 5)")
    p.add_argument("--out", help="write the predictions to FILE (.json or .csv)")
    p.add_argument("--keys", nargs="*", help="only these clips of a feature store")
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a .safetensors path")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="auto (bf16 where native), fp32, bf16, bf16! (forced); default: the run's run.precision",
    )
    p.add_argument("--overlay", metavar="OUT", help="explained video: OUT.mp4 for one video, a folder for several")
    p.add_argument("--overlay-gif", action="store_true", help="also write a GIF beside each overlay video")
    p.add_argument(
        "--parser",
        choices=["mediapipe", "sapiens", "keypoints", "groundtruth"],
        help="video input: use this body parser instead of the one the training store recorded "
        "(e.g. mediapipe for a run trained on the synthetic benchmark's ground-truth keypoints)",
    )
    p.add_argument(
        "--allow-failures",
        action="store_true",
        help="a folder of videos: exit 0 even when some could not be predicted (by default 3 when some "
        "failed and the others are written, 1 when all failed; the failed ones are listed either way)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument(
        "--verbose", action="store_true", help="show the native libraries' log lines (MediaPipe, TensorFlow Lite)"
    )


def _write(path: str, preds: list) -> None:
    import json
    from pathlib import Path

    from microaction.data import csv_cells

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        top = max(len(p.actions) for p in preds)
        ntop = max(len(p.bodies) for p in preds)
        regions = list(preds[0].routing or {})
        header = ["key"] + [f"action_{i + 1}" for i in range(top)] + [f"action_score_{i + 1}" for i in range(top)]
        header += [f"body_{i + 1}" for i in range(ntop)] + [f"body_score_{i + 1}" for i in range(ntop)]
        header += [f"routing_{r}" for r in regions]
        with open(out, "w", newline="", encoding="utf-8") as f:
            w = csv_cells.writer(f)  # class names from files: no spreadsheet formulas
            w.writerow(header)
            for p in preds:
                w.writerow(
                    [p.key]
                    + [n for _, n, _ in p.actions]
                    + [f"{s:.6f}" for _, _, s in p.actions]
                    + [n for _, n, _ in p.bodies]
                    + [f"{s:.6f}" for _, _, s in p.bodies]
                    + [f"{(p.routing or {}).get(r, 0.0):.6f}" for r in regions]
                )
    else:
        out.write_text(json.dumps([p.to_dict() for p in preds], indent=1), encoding="utf-8")


def trained_on(manifest: object) -> str | None:
    """The data source of the store a run was trained on (``synthetic``, ``real``, ``mixed``), from
    its manifest (``params.data_source``; older synthetic stores: the ``groundtruth`` parser)."""
    params = getattr(manifest, "params", None) or {}
    src = params.get("data_source") if isinstance(params, dict) else None
    if src:
        return str(src)
    return "synthetic" if getattr(manifest, "parser", None) == "groundtruth" else None


def sim_to_real_note(manifest: object, src: object, videos: list[str]) -> str:
    """A line for the output when a model trained on synthetic data predicts real data ('' otherwise)."""
    from pathlib import Path

    if trained_on(manifest) != "synthetic":
        return ""
    if (Path(str(src)) / "manifest.json").is_file():  # a feature store: its own manifest says
        from microaction.data.store import FeatureStore

        if trained_on(FeatureStore.open(Path(str(src))).manifest) == "synthetic":
            return ""
    else:
        from microaction.data.synth.writer import synthetic_dataset_of

        if videos and all(synthetic_dataset_of(v) is not None for v in videos):
            return ""
    return (
        "note: this model was trained on synthetic data (the mar synth benchmark) and is applied to real "
        "video: the predictions below are a sim-to-real probe, not a recognition result"
    )


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from microaction.cli import items_status
    from microaction.engine.predict import VIDEO_SUFFIXES, Predictor, find_videos
    from microaction.extract.native_logs import set_verbose

    if args.verbose:
        set_verbose(True)

    predictor = Predictor.from_run(
        args.run_dir, args.checkpoint, device=args.device, top=args.top, precision=args.precision
    )
    src = Path(args.input)
    check_groundtruth_parser(predictor.run.manifest, src, args.parser)  # type: ignore[attr-defined]
    failed: dict[str, str] = {}  # video -> why it could not be predicted (a folder of videos)
    if (src / "manifest.json").is_file():
        if args.overlay:
            raise ValueError("--overlay needs video input (a feature store holds no pixels)")
        preds = predictor.predict_store(src, args.keys, progress=not args.quiet)
    elif src.is_file() and src.suffix.lower() in VIDEO_SUFFIXES:
        preds = [predictor.predict_video(src, parser=args.parser)]
    elif src.is_dir():
        videos = find_videos(src)
        if not videos:
            raise FileNotFoundError(f"{src}: neither a feature store (no manifest.json) nor a folder with videos")
        preds, failed = [], {}
        try:
            for video in videos:
                try:
                    preds.append(predictor.predict_video(video, parser=args.parser))
                except Exception as e:  # one unreadable clip does not cost the others
                    failed[str(video)] = f"{type(e).__name__}: {e}".splitlines()[0]
                    print(f"mar predict: failed {video}: {failed[str(video)]}", file=sys.stderr)
        except KeyboardInterrupt:  # keep what is done
            if args.out and preds:
                _write(args.out, preds)
                print(f"mar predict: interrupted; wrote the {len(preds)} clips done to {args.out}", file=sys.stderr)
            raise
    else:
        raise FileNotFoundError(f"{src}: not a feature store, a video ({', '.join(VIDEO_SUFFIXES)}) or a folder")
    if not args.quiet:
        note = sim_to_real_note(predictor.run.manifest, src, [p.video or p.key for p in preds])  # type: ignore[attr-defined]
        if note:
            print(note)
        for p in preds:
            print(p.summary())
    if args.out and preds:
        _write(args.out, preds)
        if not args.quiet:
            print(f"wrote {args.out}")
    if args.out:
        _write_failures(args.out, failed)
    if args.overlay:
        _overlays(args, preds, predictor)
    if failed:
        print(f"mar predict: {len(failed)} of {len(failed) + len(preds)} videos failed (listed above)", file=sys.stderr)
    return items_status(len(preds), len(failed), allow_failures=args.allow_failures)


def _write_failures(out: str, failed: dict[str, str]) -> None:
    """``OUT.failed.csv`` (video, error) beside the predictions; a stale one is removed."""
    from pathlib import Path

    from microaction.data import csv_cells

    path = Path(out).with_suffix(".failed.csv")
    if not failed:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv_cells.writer(f)  # video names from files: no spreadsheet formulas
        w.writerow(["video", "error"])
        w.writerows(failed.items())


def _overlays(args: argparse.Namespace, preds: list, predictor: object) -> None:
    from pathlib import Path

    import numpy as np

    from microaction.report.overlay import write_overlay

    single = len(preds) == 1 and Path(args.overlay).suffix != ""
    for p in preds:
        if p.boxes is None:
            raise ValueError(f"{p.key}: the extraction gave no region boxes; cannot draw an overlay")
        out = Path(args.overlay) if single else Path(args.overlay) / (Path(p.key).stem + ".mp4")
        caption = [f"{n} {100 * s:.0f}%" for _, n, s in p.actions[:3]]
        if p.bodies:
            caption.append(f"body: {p.bodies[0][1]} {100 * p.bodies[0][2]:.0f}%")
        regions = list(predictor.run.regions)  # type: ignore[attr-defined]
        routing = np.asarray([p.routing[r] for r in regions]) if p.routing else None
        files = write_overlay(
            p.video,
            out,
            boxes=np.asarray(p.boxes),
            region_names=regions,
            routing=routing,
            caption_lines=caption,
            gif=args.overlay_gif,
        )
        if not args.quiet:
            print("overlay: " + ", ".join(str(f) for f in files))


def check_groundtruth_parser(manifest: object, src: object, parser: str | None) -> None:
    """Video input to a run whose store used the ``groundtruth`` parser (the synthetic benchmark's
    sidecar keypoints): refused, naming ``--parser mediapipe``, when a video has no such sidecar."""
    from pathlib import Path

    from microaction.engine.predict import VIDEO_SUFFIXES, find_videos
    from microaction.extract.parsers.groundtruth import GroundTruthParser

    path = Path(str(src))
    if parser is not None or getattr(manifest, "parser", None) != "groundtruth" or (path / "manifest.json").is_file():
        return
    videos = [path] if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES else []
    videos += find_videos(path) if path.is_dir() else []
    lacking = [v for v in videos if not GroundTruthParser.sidecar(v, "keypoints", ".npz").is_file()]
    if lacking:
        raise ValueError(
            f"{lacking[0]}: this run's feature store used the groundtruth parser (the synthetic benchmark's "
            f"sidecar keypoints), which {'this video has' if len(videos) == 1 else f'{len(lacking)} of the videos have'}"
            " not: pass --parser mediapipe to parse real video"
        )
