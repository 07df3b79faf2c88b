"""``mar timeline``: a detector run over one whole recording -> timeline.csv / .json / .eaf / .html
(and ``--overlay``: the video with the current segments and the region boxes).

Input is a video (extracted exactly as the run's feature store was: the store's recorded
extraction parameters, into ``OUT/features``, a feature store of its own, so a killed run resumes
and a second timeline of the same video does not extract again), a keypoint stream (a file or
folder ``mar extract --parser keypoints`` reads: ``.npz``, ``.csv``, a folder of OpenPose JSON;
parsed by that parser with the run's other extraction parameters) or an item of a feature store
extracted beforehand (``--store STORE --key KEY``, checked against the run's store parameters;
``--video`` links the recording's video to the page and the ELAN file). The video is linked (or
copied) into ``OUT`` beside ``timeline.html``, so the page's playhead follows it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from microaction.data.readers.segments import Detection
    from microaction.data.store import Item, StoreManifest

FEATURES = "features"  # OUT/features: the video's feature store


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a detection run (mar train of a task: detection config) or its .safetensors")
    p.add_argument(
        "video",
        nargs="?",
        help="the recording's video, or its keypoints (.npz, .csv, a folder of OpenPose JSON; as mar extract "
        "--parser keypoints reads them); omit with --store/--key",
    )
    p.add_argument("--out", required=True, help="output folder: timeline.csv/json/eaf/html, the video, features/")
    p.add_argument("--store", help="a feature store holding the recording, extracted beforehand (with --key)")
    p.add_argument("--key", help="the recording's key in --store")
    p.add_argument(
        "--video-file",
        dest="video_file",
        help="with --store or keypoints: the recording's video, for the page and --overlay",
    )
    p.add_argument("--keypoints-fps", type=float, help="keypoint input: frame rate of files that do not carry one")
    p.add_argument("--layout", help="keypoint input: joint layout (as mar extract --layout; default: found)")
    p.add_argument(
        "--overlay",
        metavar="OUT.mp4",
        help="also write the video with the current segments and region boxes (several people: OUT_person<id>.mp4 each)",
    )
    p.add_argument("--min-score", type=float, default=0.1, help="keep detections scoring at least this (default 0.1)")
    p.add_argument(
        "--lanes", choices=("body", "class"), default="body", help="one lane per body group (default) or class"
    )
    p.add_argument(
        "--people", choices=("main", "all"), default=None,
        help="all: every person of the video, a lane per person and body group (default: as the run's store)",
    )  # fmt: skip
    p.add_argument("--checkpoint", default="best", help="best (default), last, or a .safetensors path")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def extract_recording(
    video: Path,
    manifest: StoreManifest,
    store_dir: Path,
    *,
    progress: bool = False,
    people: str | None = None,
    keypoints: dict[str, Any] | None = None,
) -> list[tuple[str | None, Item]]:
    """The whole recording's features with the run's extraction parameters (``people``: ``all``
    for every person), through a feature store at ``store_dir`` (the store runner: resumable, and
    the streamed path for long videos) -> ``[(person, item)]`` (person None: one person).
    ``keypoints``: ``video`` is a keypoint file / folder, parsed by the keypoints parser with these
    options over the run's own (when its store was extracted from keypoints)."""
    from dataclasses import replace

    from microaction.data.store import FeatureStore, video_key
    from microaction.extract.jobs.job_list import Job
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import params_from_manifest

    key = video_key(video.name)
    params = params_from_manifest(manifest)
    if people is not None:
        params = replace(params, people=people)
    if keypoints is not None:
        own = dict(params.parser_options) if params.parser == "keypoints" else {}
        # the file is looked up beside itself, not in the training keypoints' folder
        opts = {**own, **{k: v for k, v in keypoints.items() if v is not None}, "root": str(video.parent)}
        params = replace(params, parser="keypoints", parser_options=opts)
    run_extraction([Job(key, str(video))], params, store_dir, progress=progress)
    store = FeatureStore.open(store_dir)
    st = store.status(key) or {}
    if st.get("status") not in ("ok", "people"):
        raise RuntimeError(f"{video}: extraction failed: {st.get('error', 'no status written')}")
    return _items(store, key)


def _items(store: Any, key: str) -> list[tuple[str | None, Item]]:
    """A key's items: itself, or each of its people (a video extracted with ``--people all``)."""
    st = store.status(key) or {}
    if st.get("status") != "people":
        return [(None, store.read(key))]
    return [
        (f"person {(store.status(k) or {}).get('person', k.rsplit('#', 1)[-1])}", store.read(k)) for k in st["people"]
    ]


def _read_items(store_dir: str, key: str, manifest: StoreManifest, run: str) -> list[tuple[str | None, Item]]:
    from microaction.data.loader import check_store
    from microaction.data.store import FeatureStore

    store = FeatureStore.open(store_dir)
    check_store(store, manifest.signature(), source=f"the run {run}")
    st = store.status(key) or {}
    if key not in set(store.keys()) and st.get("status") != "people":
        raise ValueError(f"{store_dir}: no item {key!r} (keys e.g. {store.keys()[:3]})")
    return _items(store, key)


def _place_video(video: Path, out: Path) -> Path:
    """The video beside the page: a hard link where the file system allows, else a copy."""
    import os
    import shutil

    dst = out / video.name
    if dst.exists() and dst.resolve() == video.resolve():
        return dst
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(video, dst)
    except OSError:
        shutil.copy2(video, dst)
    return dst


def overlay_boxes(item: Item) -> Any:
    """Region boxes for the overlay: per feature step ``[T, R+1, 4]`` where the extraction has them
    (``step_boxes`` ``[R+1, T, 4]``: boxes that follow the person), else the clip's ``[R+1, 4]``."""
    import numpy as np

    step = item.extras.get("step_boxes")
    if step is not None and step.ndim == 3 and step.shape[1] == item.length:
        return np.transpose(np.asarray(step), (1, 0, 2))
    boxes = item.extras.get("boxes")
    if boxes is None:
        raise ValueError(f"{item.key}: the extraction gave no region boxes; cannot draw an overlay")
    return np.asarray(boxes)


def current_segments(dets: list[Detection], names: list[str], regions: list[str], rows: int = 3) -> Any:
    """``at_time`` for the overlay: the best ``rows`` segments running at a time, and the routing
    of the best one that has a routing (None: draw the regions alike)."""
    import numpy as np

    order = sorted(dets, key=lambda d: -d.score)

    def at(t: float) -> tuple[list[str], np.ndarray | None]:
        now = [d for d in order if d.start <= t < d.end][:rows]
        lines = [f"{names[d.label]} {100 * d.score:.0f}% ({d.start:.1f}-{d.end:.1f}s)" for d in now]
        routed = next((d for d in now if d.routing is not None and len(d.routing) == len(regions)), None)
        return lines or ["-"], None if routed is None else np.asarray(routed.routing, dtype=np.float64)

    return at


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    import numpy as np

    from microaction.data.standardize import FeatureStats
    from microaction.engine.detection import detect_recording, load_detector, recording_from_item
    from microaction.report.overlay import write_overlay
    from microaction.report.timeline import write_timeline

    if (args.store is None) != (args.key is None):
        raise ValueError("--store and --key go together (a recording extracted beforehand)")
    if args.store is None and args.video is None:
        raise ValueError("give the recording: a video, or --store STORE --key KEY")
    if args.store is not None and args.video is not None:
        raise ValueError("give either a video or --store/--key, not both (--video-file links a video to a store item)")
    if not 0.0 <= args.min_score <= 1.0:
        raise ValueError(f"--min-score must be in [0, 1], got {args.min_score}")
    from microaction.extract.parsers.keypoints import is_keypoint_source

    source = Path(args.video) if args.video else None
    if source is not None and not source.exists():
        raise FileNotFoundError(f"{source}: no such video or keypoint file")
    from_keypoints = source is not None and is_keypoint_source(source)
    if (args.keypoints_fps or args.layout) and not from_keypoints:
        raise ValueError("--keypoints-fps and --layout go with keypoint input (.npz, .csv, a folder of OpenPose JSON)")
    video = Path(args.video_file) if args.video_file else (None if from_keypoints else source)
    if video is not None and not video.is_file():
        raise FileNotFoundError(f"{video}: no such video file")
    if args.overlay and video is None:
        raise ValueError("--overlay needs the recording's video (--video-file with --store or keypoints)")
    loaded = load_detector(args.run_dir, args.checkpoint, device=args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.store is not None:
        if args.people is not None:
            raise ValueError("--people is for a video; a store's key names its people itself (status 'people')")
        items = _read_items(args.store, args.key, loaded.manifest, str(args.run_dir))
        name = args.key.split("__")[-1].split("#")[0]  # the recording's id: its key's last path component
    else:
        assert source is not None
        kp = {"fps": args.keypoints_fps, "layout": args.layout} if from_keypoints else None
        items = extract_recording(
            source, loaded.manifest, out / FEATURES, progress=not args.quiet, people=args.people, keypoints=kp
        )
        name = source.stem
    stats = FeatureStats.from_meta(loaded.meta, source=str(loaded.checkpoint))  # the run's data.standardize
    dets, seconds, routed = [], 0.0, False
    for person, item in items:
        rec = recording_from_item(name, item, where=f"{args.store or source}: {item.key}", stats=stats)
        found = detect_recording(loaded.model, rec, args.device)
        routed |= any(d.routing is not None for d in found)  # the detector routes (bmoe_tridet)
        dets += [replace(d, person=person) for d in found if d.score >= args.min_score]
        seconds = max(seconds, float(rec.to_seconds(np.array(rec.length - 0.5)).item()))  # the last step's end
    regions = list(getattr(loaded.model, "regions", ()) or loaded.regions)
    placed = _place_video(video, out) if video is not None else None
    people = [p for p, _ in items if p is not None]
    paths = write_timeline(
        dets, out, loaded.taxonomy, regions, placed, duration=seconds, lanes=args.lanes, people=people, routing=routed
    )
    if not args.quiet:
        who = f", {len(items)} people" if len(items) > 1 else ""
        print(f"{name}: {len(dets)} segments over {seconds:.1f}s{who} (score >= {args.min_score:g})")
        print("wrote " + ", ".join(str(p) for p in paths.values()))
    if args.overlay:
        assert video is not None
        names, regs = list(loaded.taxonomy.names), list(loaded.regions)
        for person, item in items:
            # several people: one overlay each (its region boxes, its segments), <stem>_person<id>
            target = Path(args.overlay)
            if person is not None and len(items) > 1:
                target = target.with_name(f"{target.stem}_{person.replace(' ', '')}{target.suffix}")
            mine = [d for d in dets if d.person == person]
            files = write_overlay(
                video, target, boxes=overlay_boxes(item), region_names=regs, routing=None,
                at_time=current_segments(mine, names, regs), caption_rows=3,
            )  # fmt: skip
            if not args.quiet:
                print("overlay: " + ", ".join(str(f) for f in files))
    return 0
