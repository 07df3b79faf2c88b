"""``mar live RUN SOURCE``: micro-actions as they happen, one JSON line per finished action (start,
end, class, body group, score, routing per region, when it was emitted), and on the source's end
or Ctrl-C the timeline files ``mar timeline`` writes. ``microaction.live`` does the work."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a detection run (mar train of a task: detection config) or its .safetensors")
    p.add_argument(
        "source",
        help="a camera (/dev/video0), a stream FFmpeg opens (rtsp://, http://, udp://, tcp://), a video file, "
        "or - (a streamable container on standard input: MPEG-TS, Matroska)",
    )
    p.add_argument("--out", required=True, help="folder for timeline.csv/json/eaf/html and live.json")
    p.add_argument("--events", metavar="FILE", help="write the JSON lines here (default: standard output)")
    p.add_argument("--overlay", metavar="OUT.mp4", help="also write the frames with region boxes and recent events")
    p.add_argument("--realtime", action="store_true", help="play a video file at its own frame rate (as a camera)")
    p.add_argument("--format", dest="fmt", help="the container or device format, when FFmpeg cannot guess it")
    p.add_argument(
        "--lookahead", type=float, default=0.25,
        help="seconds of stream after an action's end before it is final (default 0.25)",
    )  # fmt: skip
    p.add_argument(
        "--window", type=float, default=64.0,
        help="seconds of features the detector sees at once (default 64)",
    )  # fmt: skip
    p.add_argument(
        "--hop", type=float, default=0.0,
        help="seconds of new features encoded (and the detector run) at once (default 0: every feature step)",
    )  # fmt: skip
    p.add_argument("--min-score", type=float, default=0.1, help="emit events scoring at least this (default 0.1)")
    p.add_argument(
        "--top-only", dest="top_only", action=argparse.BooleanOptionalAction, default=True,
        help="emit only the window's best candidates, as many as the detector keeps offline per window length "
        "(fewer, surer events; the default); --no-top-only: every candidate scoring --min-score",
    )  # fmt: skip
    p.add_argument("--reconnect", type=int, default=3, help="times a failed stream or camera is opened again (3)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds without data before a source is stalled")
    p.add_argument("--name", help="the recording's name in events and timeline (default: from the source)")
    p.add_argument(
        "--parse-from", dest="parse_from",
        help="a run parsed from files (groundtruth, keypoints): the file its parser reads, matched by frame index",
    )  # fmt: skip
    p.add_argument("--parser", choices=("mediapipe",), help="parse the frames with this instead of the run's parser")
    p.add_argument("--people", choices=("main", "all"), default="main", help="main (default): one person")
    p.add_argument(
        "--lanes", choices=("body", "class"), default="body", help="timeline lanes per body group (default) or class"
    )
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a .safetensors path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no summary on standard error")


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from microaction.live import LiveOptions, SourceSpec, WindowSettings, run_live

    if not 0.0 <= args.min_score <= 1.0:
        raise ValueError(f"--min-score must be in [0, 1], got {args.min_score}")
    for flag, value in (("--lookahead", args.lookahead), ("--reconnect", args.reconnect)):
        if value < 0:
            raise ValueError(f"{flag} must be >= 0, got {value}")
    if not ((args.window is None or args.window > args.lookahead) and args.hop >= 0 and args.timeout > 0):
        raise ValueError("--window must exceed --lookahead; --hop must be >= 0 and --timeout > 0")
    spec = SourceSpec(args.source, args.fmt, realtime=args.realtime, reconnects=args.reconnect, timeout=args.timeout)
    settings = WindowSettings(
        window=args.window, lookahead=args.lookahead, min_score=args.min_score, rank=args.top_only
    )
    opts = LiveOptions(spec, Path(args.out), settings, events=args.events, overlay=args.overlay, name=args.name,
                       parse_from=args.parse_from, parser=args.parser, people=args.people, hop=args.hop,
                       stall=args.timeout, checkpoint=args.checkpoint, device=args.device, lanes=args.lanes,
                       quiet=args.quiet)  # fmt: skip
    res = run_live(args.run_dir, opts)
    if not args.quiet:
        s = res.stats
        print(f"{s['video']}: {s['events']} events over {s['stream_seconds']:.1f}s of stream; frames "
              f"{s['frames_sampled']} sampled, {s['frames_dropped']} dropped; {s['status']}"
              + (f" ({s['error']})" if s["error"] else ""), file=sys.stderr)  # fmt: skip
        print("wrote " + ", ".join(str(p) for p in res.paths.values()), file=sys.stderr)
    if res.status and args.quiet:
        print(json.dumps({"error": res.stats["error"]}), file=sys.stderr)
    return res.status
