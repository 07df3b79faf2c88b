"""``mar extract``: videos → body parts → region crops → feature store.

Exit status: 0 every video extracted (or recorded with no person found); 3 some videos failed and
the others are done; 1 every video failed, or an error stopped the run; ``--allow-failures``
makes the first two 0. ``--verify``: 1 while damaged items or packed arrays remain."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = (
        "exit status: 0 every video extracted (or stored with no person found); 3 some videos failed, the "
        "others are done; 1 every video failed, or an error stopped the run (--allow-failures: 0 for the "
        "first two); --verify: 1 while damaged items or packed arrays remain"
    )
    _input_arguments(p)
    _parser_arguments(p)
    _sampling_arguments(p)
    _run_arguments(p)


def _input_arguments(p: argparse.ArgumentParser) -> None:
    """What to extract, where to, and checking a store."""
    p.add_argument(
        "--videos",
        help="folder of videos, a manifest CSV (video[,start,end]), one video file, or a pose pickle "
        "(MMAction2 / PySKL / MMN; with --parser keypoints)",
    )
    p.add_argument("--out", help="feature store folder (created, or resumed when it exists)")
    p.add_argument(
        "--verify",
        metavar="STORE",
        help="check every item of STORE against the checksum in its status record and list the damaged ones",
    )
    p.add_argument(
        "--repair",
        action="store_true",
        help="with --verify: re-extract the damaged items (from --videos when given, else the recorded video paths)",
    )
    p.add_argument("--video-root", help="folder the manifest's video paths are relative to (default: the CSV's folder)")


def _parser_arguments(p: argparse.ArgumentParser) -> None:
    """The body parser, the encoders, and how keypoint files are read."""
    p.add_argument("--parser", default="mediapipe", choices=["mediapipe", "sapiens", "keypoints", "groundtruth"])
    p.add_argument("--encoder", default="motion,pose", help="comma list of motion, pose, videomae (concatenated)")
    p.add_argument("--checkpoint", help="videomae checkpoint folder / sapiens TorchScript file")
    p.add_argument("--keypoints", help="folder of precomputed keypoint files (--parser keypoints)")
    p.add_argument(
        "--layout",
        help="joint layout of the keypoint files (coco17, pcan28, mmn44, halpe136, openpose137, kinect25, ...; "
        "default: found by the joint count)",
    )
    p.add_argument(
        "--coords",
        default="auto",
        choices=["auto", "pixels", "unit", "centred"],
        help="keypoint coordinates: pixels, unit ([0, 1]), centred ([-1, 1], MMN); auto tells them apart",
    )
    p.add_argument(
        "--keypoints-fps",
        help="frame rate of keypoint files that do not carry one (pose pickles, OpenPose folders, CSVs): a number, "
        "or a release's name for its rate (imigue: 25, ma52: 30)",
    )
    p.add_argument(
        "--min-confidence",
        type=float,
        help="score at which a keypoint counts as seen, for every source (default: what each source means: "
        "MediaPipe 0.5, OpenPose body 0.1 / face 0.4 / hands 0.2, MMPose 0.3, AlphaPose 0.4; see docs/data_formats.md)",
    )
    p.add_argument(
        "--frame-size",
        metavar="WxH",
        help="frame size of keypoint files that do not give one (default: the video's, else guessed from the points)",
    )
    p.add_argument(
        "--kinect",
        default="project",
        choices=["project", "xy"],
        help="Kinect camera coordinates to pixels: perspective projection, or the camera's x, y",
    )


def _sampling_arguments(p: argparse.ArgumentParser) -> None:
    """Regions, frames, crops, people, and long recordings."""
    p.add_argument("--regions", default="bmoe4", help="region set (bmoe4, ma52, imigue) or a comma list")
    p.add_argument("--stride", type=int, default=1, help="use every k-th frame")
    p.add_argument("--fps", type=float, help="resample to this frame rate")
    p.add_argument("--num-frames", type=int, help="use this many evenly spaced frames")
    p.add_argument("--max-side", type=int, default=640, help="decode at most this long a side (0: native)")
    p.add_argument("--window", type=int, help="encoder window in frames (first encoder; default per encoder)")
    p.add_argument("--window-stride", type=int, help="encoder window stride in frames (first encoder)")
    p.add_argument("--crop-size", type=int, help="motion encoder crop side (default 64)")
    p.add_argument("--no-mask", action="store_true", help="do not blank pixels outside each region's mask")
    p.add_argument("--flip", action="store_true", help="extract the horizontally mirrored videos")
    p.add_argument(
        "--face-size",
        type=int,
        default=0,
        help="also store grey head-box crops of this side at every feature step (for B-MoE's texture branch)",
    )
    p.add_argument(
        "--people",
        default="main",
        choices=["main", "all"],
        help="main: the main person of each video (key video); all: find, track and extract every person "
        "(keys video#0, video#1, ...); a manifest's person box always picks its person",
    )
    p.add_argument(
        "--min-person-seconds",
        type=float,
        default=1.0,
        help="--people all: a person seen for less than this (or half the clip, if shorter) is dropped, after "
        "the pieces of one person's broken track are joined",
    )
    p.add_argument(
        "--box-window", type=float, default=8.0, help="seconds over which region boxes follow the person (smoothed)"
    )
    p.add_argument(
        "--feature-rate",
        type=float,
        help="steps per second of the stored sequences (default: the first encoder's windows for clips, "
        "6 for recordings longer than --stream-after)",
    )
    p.add_argument(
        "--stream-after",
        type=float,
        default=60.0,
        help="seconds: a longer video or keypoint stream is extracted chunk by chunk (memory independent of its "
        "length, resumable per chunk)",
    )
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="seconds per chunk of a streamed recording")
    p.add_argument("--centre-seconds", type=float, default=5.0,
                   help="seconds of past frames whose median torso centres a streamed recording's pose features, "
                   "frame by frame, as mar live does (0: each chunk's median, as stores made before this flag)")  # fmt: skip
    p.add_argument("--track-seconds", type=float, default=10.0,
                   help="seconds per MediaPipe tracker segment (segments are parsed side by side)")  # fmt: skip


def _run_arguments(p: argparse.ArgumentParser) -> None:
    """Devices, workers, failures and output."""
    p.add_argument("--device", default="cpu", help="torch device for sapiens / videomae (cuda, cpu)")
    p.add_argument("--shard", help="i/N: this process's share of the videos (SLURM arrays, several machines)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--ray", action="store_true", help="run the videos as Ray tasks (RAY_ADDRESS or a local cluster)")
    p.add_argument("--retry-failed", action="store_true", help="try videos recorded as failed again")
    p.add_argument(
        "--allow-failures",
        action="store_true",
        help="exit 0 even when videos failed (by default: 3 when some failed and the others are done, "
        "1 when all failed; videos that failed in an earlier run and were not retried count)",
    )
    p.add_argument("--debug-crops", metavar="DIR", help="write each clip's region crops and boxes as images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--verbose", action="store_true", help="show the native libraries' log lines (MediaPipe, TensorFlow Lite)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def params_from_args(args: argparse.Namespace):
    from microaction.extract.pipeline import ExtractParams

    encoders = [e.strip() for e in args.encoder.split(",") if e.strip()]
    enc_opts: dict[str, dict] = {}
    if args.window or args.window_stride:
        first = encoders[0]
        o = enc_opts.setdefault(first, {})
        if args.window and first != "videomae":
            o["window"] = args.window
        if args.window_stride:
            o["stride"] = args.window_stride
    if args.crop_size:
        enc_opts.setdefault("motion", {})["size"] = args.crop_size
    popts: dict = {}
    if args.keypoints:
        popts["root"] = args.keypoints
    if args.parser == "keypoints":
        # only what differs from the parser's defaults (stores made before these options resume)
        if args.coords != "auto":
            popts["coords"] = args.coords
        if args.kinect != "project":
            popts["kinect"] = args.kinect
        if args.layout:
            popts["layout"] = args.layout
        if args.keypoints_fps:
            from microaction.taxonomy.releases import resolve_fps

            popts["fps"] = resolve_fps(args.keypoints_fps)
        if args.frame_size:
            from microaction.extract.parsers.keypoints import parse_frame_size

            h, w = parse_frame_size(args.frame_size)  # type: ignore[misc]
            popts["frame_size"] = f"{w}x{h}"
    elif args.layout or args.keypoints_fps or args.frame_size or args.coords != "auto" or args.kinect != "project":
        raise ValueError("--layout, --coords, --keypoints-fps, --frame-size and --kinect go with --parser keypoints")
    if args.min_confidence is not None:
        if args.parser not in ("keypoints", "mediapipe"):
            raise ValueError("--min-confidence goes with --parser keypoints or mediapipe")
        popts["min_confidence"] = args.min_confidence
    return ExtractParams(
        parser=args.parser,
        encoders=encoders,
        regions=args.regions,
        stride=args.stride,
        fps=args.fps,
        num_frames=args.num_frames,
        max_side=args.max_side,
        masked=not args.no_mask,
        flip=args.flip,
        face_size=args.face_size,
        people=args.people,
        min_person_seconds=args.min_person_seconds,
        box_window=args.box_window,
        feature_rate=args.feature_rate,
        stream_after=args.stream_after,
        chunk_seconds=args.chunk_seconds,
        centre_seconds=args.centre_seconds,
        track_seconds=args.track_seconds,
        checkpoint=args.checkpoint,
        device=args.device,
        parser_options=popts,
        encoder_options=enc_opts,
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from microaction.cli import items_status
    from microaction.extract.jobs.job_list import collect_jobs, parse_shard
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.native_logs import set_verbose

    if args.verbose:
        set_verbose(True)
    if args.verify:
        return _verify(args)
    if args.repair:
        raise ValueError("--repair goes with --verify STORE")
    if not args.videos or not args.out:
        raise ValueError("mar extract needs --videos and --out (or --verify STORE)")
    params = params_from_args(args)
    if Path(args.videos).suffix.lower() in (".pkl", ".pickle"):
        if args.parser != "keypoints":
            raise ValueError(f"{args.videos}: a pose pickle holds keypoints, not videos: add --parser keypoints")
        pixels = [e for e in params.encoders if e != "pose"] + (["--face-size"] if params.face_size else [])
        if pixels:
            raise ValueError(f"{args.videos}: a pose pickle has no pixels for {pixels}: use --encoder pose")
    jobs = collect_jobs(args.videos, args.video_root)
    summary = run_extraction(
        jobs,
        params,
        args.out,
        shard=parse_shard(args.shard),
        workers=max(1, args.workers),
        ray=args.ray,
        retry_failed=args.retry_failed,
        debug_crops=args.debug_crops,
        progress=not args.quiet,
    )
    if args.json:
        print(json.dumps({**{k: v for k, v in vars(summary).items() if k != "errors"}, "errors": summary.errors}))
    else:
        print(f"mar extract: {summary.line()}")
        if summary.no_person:
            print(f"  {summary.no_person_line()}")
        for k, e in summary.errors.items():
            print(f"  failed {k}: {e.splitlines()[0] if e else ''}")
        for k, e in summary.failed_before.items():
            print(f"  failed earlier {k}: {e.splitlines()[0] if e else ''} (--retry-failed tries it again)")
        for line in summary.warnings():
            print(f"  warning: {line}")
    failed = summary.failed + len(summary.failed_before)
    return items_status(summary.total - failed, failed, allow_failures=args.allow_failures)


def _verify(args: argparse.Namespace) -> int:
    """``--verify STORE [--repair]``: list the damaged items and packed arrays; re-extract the items
    and rebuild the pack when asked. Exit status 1 while anything damaged remains."""
    from microaction.data.store import FeatureStore
    from microaction.extract.repair import repair_items

    store = FeatureStore.open(args.verify)
    damaged = store.verify()
    packed = store.verify_packed()
    repaired: dict[str, str] = {}
    if damaged and args.repair:
        repaired = repair_items(
            store, sorted(damaged), videos=args.videos, video_root=args.video_root, device=args.device,
            progress=not args.quiet,
        )  # fmt: skip
    left = {k: why for k, why in damaged.items() if repaired.get(k) not in ("ok", "no_person")}
    rebuilt = ""
    if args.repair and (store.root / "packed").is_dir() and (packed.damaged or repaired) and not left:
        rebuilt = str(store.pack(sorted(set(store.keys()) | set(packed.keys))))
    packed_left = {} if rebuilt else packed.damaged
    n = sum(1 for st in store.statuses().values() if st.get("status") != "failed")
    bad = bool(left or packed_left)
    if args.json:
        print(json.dumps({"store": str(store.root), "checked": n, "damaged": damaged, "repaired": repaired,
                          "still_damaged": sorted(left), "packed_checked": packed.checked,
                          "packed_damaged": packed.damaged, "packed_rebuilt": bool(rebuilt),
                          "packed_note": packed.note}))  # fmt: skip
        return 1 if bad else 0
    print(f"mar extract --verify: {store.root}: {n} items checked, {len(damaged)} damaged")
    for k, why in sorted(damaged.items()):
        fix = f" -> re-extracted: {repaired[k]}" if k in repaired else ""
        print(f"  damaged {k}: {why}{fix}")
    if left and not args.repair:
        print(f"re-extract them with: mar extract --verify {store.root} --repair [--videos SRC]")
    if (store.root / "packed").is_dir():
        print(f"packed arrays: {packed.checked} files hashed, {len(packed.damaged)} damaged")
        for name, why in sorted(packed.damaged.items()):
            print(f"  damaged {name}: {why}")
        if packed.note:
            print(f"  note: {packed.note}")
        if rebuilt:
            print(f"  rebuilt {rebuilt} from the items")
        elif packed_left:
            print(f"rebuild them with: mar pack --force {store.root} (or mar extract --verify {store.root} --repair)")
    return 1 if bad else 0
