"""``mar live``: keeping up, latency, quality against the offline detector, memory over a long stream.

1. Detectors: the demo's B-MoE-TriDet trained on the synthetic ``recordings`` preset (``--quick``:
   ``recordings_tiny``, fewer epochs), as ``mar train configs/demo_bmoe_tridet.yaml`` makes it
   (``offline``) and trained for the live view (``online``: ``configs/demo_bmoe_tridet_live.yaml``,
   ``detection.online=1``; the one ``mar live`` is documented with), for each of ``--seeds``
   (default 0), kept in ``OUT``.
2. Quality: every test recording rendered and streamed through ``mar live``'s path as fast as
   possible (a file: no frame dropped, every step run; ``--parse-from`` the ground-truth
   keypoints, as the store was extracted) with the default detector at the default settings, its
   feature steps kept; then every detector of every seed over those steps (``replay``: the live
   detector's code, one detector pass for all settings) at the default settings and (unless
   ``--no-sweep``) at each look-ahead of ``--lookaheads`` and with ``--top-only`` flipped.
   MMA-52 detection mAP (tIoU 0.1-0.9, as ``mar eval``) and online F1 (SMG protocol, tIoU > 0.3,
   events scoring >= 0.1) of the live events beside each detector's offline ones (``mar eval``'s
   detections) on the same recordings; with several seeds, mean ± std. Goal: live mAP >= 80 % of
   the better offline detector's (of the same seed).
3. Latency: test recordings (the first two; ``--latency-recordings N``) played in real time
   (``--realtime``) through the default detector (first seed) at the default settings; for
   each ground-truth action found by an event (same class, tIoU > 0.3), the seconds from its end
   (on the wall clock of the playback) to the event. Goals: median <= 1.0 s, 95th pct <= 2.0 s.
4. Keeping up: 720p and 1080p, 25 fps, one real seated person (the MA-52 demo clips, looped)
   played in real time through the default CPU path (MediaPipe, ``--parser mediapipe``): frames
   dropped (goal at 720p: none) and the process's CPU seconds per second of stream; the same at
   720p with ``--people all`` (MediaPipe on a crop per person and searches for newcomers).
5. Memory: a long stream (an FFmpeg test pattern at 24 fps with the test recording's keypoints
   repeated) through the same session code as fast as possible, not in real time; peak RSS when
   the stream reaches 5 minutes and at 30 minutes (``--quick``: 1 and 4). Goal: <= 1.1 x.

    python benchmarks/bench_live.py [--quick] [--out runs/bench_live] [--seeds 0,1,2] [--lookaheads 0.25,0.5,1]
        [--skip-quality] [--no-sweep] [--skip-latency] [--skip-keepup] [--skip-memory]

The machine is shared: wall-clock figures (drops, latency) depend on its load, which is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchlib import result

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAR_SHARED", REPO.parent / "shared")) / "data" / "ma52" / "demo_clips"
# detector name -> (run folder in OUT, its config): as ``mar train`` makes the demo's detector, and
# trained for the live view (``detection.online``)
RUNS = {
    "offline": ("bmoe_tridet", "demo_bmoe_tridet.yaml"),
    "online": ("bmoe_tridet_live", "demo_bmoe_tridet_live.yaml"),
}
DEFAULT_DETECTOR = "online"  # the one docs/detection.md ("Live") runs mar live with, and why
LOOKAHEADS = "0.25,0.5,1"
MAKE_BENCH = {
    "args": ["--quick"],
    "budget_s": 300,
    "mode": "reduced: --quick (tiny recordings, 1 look-ahead, 10 s keep-up clips, 1 vs 4 min memory; run alone for all)",
}


def prepare(
    out: Path, quick: bool, centre_seconds: float | None = None, seeds: tuple[int, ...] = (0,),
    live_set: tuple[str, ...] = (),
) -> tuple[dict[int, dict[str, Path]], Path]:  # fmt: skip
    """({seed: {name: run folder}}, synthetic data folder): recordings, their store and each of
    ``RUNS`` trained with each seed (seed 0 in the plain folder, others in ``<folder>_seed<k>``);
    ``live_set``: overrides for the online detector's training (another ``OUT`` for each)."""
    from microaction.data.synth.recording import generate_recordings
    from microaction.engine.trainer import train
    from microaction.extract.jobs.job_list import collect_jobs
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import ExtractParams

    data, store = out / "recordings", out / "store"
    runs = {k: {n: out / (f + (f"_seed{k}" if k else "")) for n, (f, _) in RUNS.items()} for k in seeds}
    if not (store / "manifest.json").is_file():
        preset = "recordings_tiny" if quick else "recordings"
        generate_recordings(data, preset, seed=0, workers=1, progress=False)
        params = ExtractParams(
            parser="groundtruth", encoders=["pose"], fps=24.0, encoder_options={"pose": {"window": 4, "stride": 4}}
        )
        if centre_seconds is not None:
            params.centre_seconds = centre_seconds
        if quick:  # the tiny recordings are shorter than stream_after: streamed, as live features are made
            params.stream_after = 0.0
        run_extraction(collect_jobs(data / "manifest.csv"), params, store, progress=False)
    sets = [f"data.store={store}", f"data.manifest={data / 'annotations.json'}", f"run.out_dir={out}"]
    if quick:
        sets += ["run.epochs=4", "detection.window=64", "detection.windows_per_epoch=32"]
    for k, named in runs.items():
        for name, run in named.items():
            if not (run / "best.safetensors").is_file():
                extra = list(live_set) if name == "online" else []
                train(REPO / "configs" / RUNS[name][1], [*sets, f"run.name={run.name}", f"run.seed={k}", *extra])
    return runs, data


def scores(gt: list[Any], dets: list[Any], num_classes: int, tious: list[float]) -> dict[str, float]:
    from microaction.metrics.detection import detection_map, online_f1

    m = detection_map(gt, dets, num_classes, tious)
    f1 = online_f1(gt, [d for d in dets if d.score >= 0.1])
    return {"mAP": m["mAP"], "f1": f1["f1"], "precision": f1["precision"], "recall": f1["recall"]}


def live_events(run: Path, video: Path, settings: Any, out: Path, realtime: bool = False, on_steps: Any = None) -> Any:
    """``mar live`` of ``run`` on ``video`` (``--parse-from`` it) under ``settings``, every event kept
    (``min_score`` 0: mAP ranks them all)."""
    from microaction.live import LiveOptions, SourceSpec, run_live

    opts = LiveOptions(SourceSpec(str(video), realtime=realtime), out, replace(settings, min_score=0.0),
                       events=str(out / "events.jsonl"), parse_from=str(video), quiet=True)  # fmt: skip
    return run_live(run, opts, on_steps=on_steps)


def replay(run: Path, steps: dict[str, list[Any]], settings: list[Any]) -> list[dict[str, list[tuple[Any, float]]]]:
    """The live detector of ``run`` over the feature steps a live session encoded (per recording,
    in the batches it encoded them), one run per batch as the session runs it, its candidates
    finalised under each of ``settings`` (look-ahead, ``rank``): per setting and recording, the
    events with the stream seconds seen when each was emitted. The same steps and the same code
    as ``mar live`` (``LiveDetector.run``, ``Finaliser.take``), one detector pass for all settings."""
    from microaction.data.standardize import FeatureStats
    from microaction.engine.detection import load_detector
    from microaction.extract.pipeline import params_from_manifest
    from microaction.live import LiveDetector

    loaded = load_detector(run)
    stats = FeatureStats.from_meta(loaded.meta, source=str(loaded.checkpoint))
    visible = params_from_manifest(loaded.manifest).min_visible_fraction
    out: list[dict[str, list[tuple[Any, float]]]] = [{} for _ in settings]
    for video, batches in steps.items():
        rate = 1.0 / float(np.median(np.diff(np.concatenate([b.times for b in batches]))))
        det = LiveDetector(loaded.model, video, rate, settings[0], stats=stats, min_visible_fraction=visible)
        finals = [det.finaliser(s) for s in settings]
        got: list[list[tuple[Any, float]]] = [[] for _ in settings]
        for k, batch in enumerate(batches):
            det.add(batch)
            last = k == len(batches) - 1
            if len(det.held.times) < 2 or (not last and all(det.horizon - s.lookahead <= f.cut
                                                              for s, f in zip(settings, finals))):  # fmt: skip
                continue
            dets = det.run()
            for g, f in zip(got, finals):
                g += [(d, det.horizon) for d in f.take(dets, det.horizon, final=last)]
        for o, g in zip(out, got):
            o[video] = g
    return out


def test_set(run: Path, data: Path, quick: bool) -> tuple[dict[str, Path], list[Any]]:
    """The test recordings' videos (rendered) and their ground truth."""
    from microaction.data.synth.recording import render_recording
    from microaction.engine.detection import load_detector, load_recordings, read_split_segments

    loaded = load_detector(run)
    cfg = loaded.config
    gt, names = read_split_segments(cfg, loaded.taxonomy, "test")
    recs = load_recordings(loaded.open_store(None), gt, names, source="test")
    preset = "recordings_tiny" if quick else "recordings"
    return {r.video: render_recording(data, r.video, preset, seed=0) for r in recs}, gt


def quality(
    runs: dict[int, dict[str, Path]], videos: dict[str, Path], gt: list[Any], out: Path, default: Any,
    lookaheads: list[float], sweep: bool,
) -> dict[str, Any]:  # fmt: skip
    """Live events beside the offline detectors' on every test recording: a live session of the
    default detector (first seed) at the ``default`` settings, its feature steps kept (they do not
    depend on the detector); every detector of every seed over those steps (``replay``) at the
    default settings and, with ``sweep``, at each of ``lookaheads`` and with ``rank`` flipped.
    ``offline`` / ``live``: per detector / setting, a row per seed."""
    from microaction.engine.detection import detect_split, load_detector

    default = replace(default, min_score=0.0)
    first = runs[min(runs)][DEFAULT_DETECTOR]
    loaded = load_detector(first)
    tious, C = list(loaded.config.detection.tious), loaded.taxonomy.num_classes
    steps: dict[str, list[Any]] = {}
    session: dict[str, list[tuple[Any, float]]] = {}
    seconds = stream = 0.0
    for v, path in videos.items():
        steps[v] = []
        res = live_events(first, path, default, out / "quality" / v, on_steps=steps[v].append)
        session[v] = [(d, e["horizon"]) for d, e in zip(res.events, read_events(out / "quality" / v / "events.jsonl"))]
        seconds, stream = seconds + res.stats["seconds"], stream + res.stats["stream_seconds"]
    print(f"live session: {stream:.0f} s of stream in {seconds:.0f} s", flush=True)
    rows: dict[str, Any] = {"offline": {}, "live": {}, "speed": stream / max(seconds, 1e-9)}
    rows["features"] = same_features(first, steps, gt, tious, C)
    print(f"live steps against the store: {rows['features']}", flush=True)
    settings = [default]
    if sweep:
        settings += [replace(default, lookahead=la) for la in lookaheads if la != default.lookahead]
        settings.append(replace(default, rank=not default.rank))
    for seed, named in runs.items():
        for name, run in named.items():
            offline = detect_split(load_detector(run), "test")[2]
            rows["offline"].setdefault(name, {})[seed] = scores(gt, offline, C, tious)
            print(f"offline, {name}, seed {seed}: {rows['offline'][name][seed]}", flush=True)
            todo = [st for st in settings if not (run == first and st == default)]
            found_by = [(default, session)] if run == first else []
            found_by += list(zip(todo, replay(run, steps, todo)))
            for st, got in found_by:
                label = f"{name}, look-ahead {st.lookahead:g} s" + (", --top-only" if st.rank else ", every candidate")
                events = [d for g in got.values() for d, _ in g]
                row = scores(gt, events, C, tious)
                lag = [h - s.end for v, g in got.items() for s, h in first_found(g, gt, v)]
                row["stream_lag_median"] = float(np.median(lag)) if lag else float("nan")
                row["stream_lag_p95"] = float(np.percentile(lag, 95)) if lag else float("nan")
                row |= {"detector": name, "lookahead": st.lookahead, "top": st.rank, "default": st == default}
                rows["live"].setdefault(label, {})[seed] = row
                print(f"live, {label}, seed {seed}: {row}", flush=True)
    return rows


def same_features(
    run: Path, steps: dict[str, list[Any]], gt: list[Any], tious: list[float], C: int
) -> dict[str, float]:
    """How far the live session's steps are from the store's (rms over every column, standardised
    with the run's statistics), and the detector's offline mAP on the live steps of whole
    recordings beside its mAP on the store's."""
    from microaction.data.standardize import FeatureStats
    from microaction.engine.detection import detect_recording, detect_split, load_detector, standardize_recording

    loaded = load_detector(run)
    recs, _, stored = detect_split(loaded, "test")
    stats = FeatureStats.from_meta(loaded.meta, source=str(loaded.checkpoint))
    diff = ref = 0.0
    live = []
    for r in recs:
        b = steps[r.video]
        rec = replace(r, regions=np.concatenate([x.regions for x in b], 1).astype(np.float32),
                      global_=np.concatenate([x.global_ for x in b]).astype(np.float32))  # fmt: skip
        standardize_recording(rec, stats, where="live steps")
        n = min(rec.length, r.length)
        diff += float(((rec.regions[:, :n] - r.regions[:, :n]) ** 2).mean())
        ref += float((r.regions[:, :n] ** 2).mean())
        live += detect_recording(loaded.model, rec)
    return {"rms_difference": (diff / len(recs)) ** 0.5, "rms_store": (ref / len(recs)) ** 0.5,
            "mAP_store": scores(gt, stored, C, tious)["mAP"], "mAP_live_steps": scores(gt, live, C, tious)["mAP"]}  # fmt: skip


def first_found(got: list[tuple[Any, float]], gt: list[Any], video: str) -> list[tuple[Any, float]]:
    """(ground-truth action, stream seconds seen) for each action of ``video`` an event found."""
    recs = [{"score": d.score, "class_id": d.label, "start": d.start, "end": d.end, "emitted_unix": h} for d, h in got]
    return [(s, e["emitted_unix"]) for s, e in found(recs, gt, video)]


def found(records: list[dict[str, Any]], gt: list[Any], video: str) -> list[tuple[Any, dict[str, Any]]]:
    """Each ground-truth action of ``video`` and the first event (scoring >= 0.1) that finds it
    (same class, tIoU > 0.3), for those found."""
    out = []
    for s in (s for s in gt if s.video == video):
        hits = [e for e in records if e["score"] >= 0.1 and e["class_id"] == s.label
                and min(e["end"], s.end) - max(e["start"], s.start) > 0.3 * (max(e["end"], s.end) - min(e["start"], s.start))]  # fmt: skip
        if hits:
            out.append((s, min(hits, key=lambda e: e["emitted_unix"])))
    return out


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def latency(run: Path, videos: dict[str, Path], gt: list[Any], out: Path, settings: Any, n: int) -> dict[str, Any]:
    """Seconds from each found ground-truth action's end to its event, recordings played in real time."""
    lat: list[float] = []
    dropped = sampled = 0
    for v, path in list(videos.items())[:n]:
        res = live_events(run, Path(path), settings, out / "latency" / v, realtime=True)
        dropped, sampled = dropped + res.stats["frames_dropped"], sampled + res.stats["frames_sampled"]
        for s, e in found(read_events(out / "latency" / v / "events.jsonl"), gt, v):
            lat.append(e["delay"] + e["end"] - s.end)  # emitted - (wall clock of the action's end)
    return {"latencies": lat, "dropped": dropped, "sampled": sampled}


def make_clip(path: Path, width: int, height: int, seconds: float) -> Path:
    """The MA-52 demo clips (one seated person, 1080x1296 portrait), letterboxed to width x height
    and looped, at 25 fps (H.264)."""
    import av
    import cv2

    if path.is_file():
        return path
    frames = []
    for clip in sorted(SHARED.glob("*.mp4")):
        with av.open(str(clip)) as c:
            for f in c.decode(video=0):
                img = f.to_ndarray(format="rgb24")
                s = height / img.shape[0]
                img = cv2.resize(img, (round(img.shape[1] * s) // 2 * 2, height), interpolation=cv2.INTER_AREA)
                pad = np.zeros((height, width, 3), np.uint8)
                x = (width - img.shape[1]) // 2
                pad[:, x : x + img.shape[1]] = img
                frames.append(pad)
    if not frames:
        raise FileNotFoundError(f"{SHARED}: no MA-52 demo clips (the shared data beside the checkout)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as o:
        st = o.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.options = {"preset": "veryfast", "crf": "23"}
        for k in range(round(seconds * 25)):
            for p in st.encode(av.VideoFrame.from_ndarray(frames[k % len(frames)], format="rgb24")):
                o.mux(p)
        for p in st.encode():
            o.mux(p)
    return path


def keep_up(run: Path, out: Path, seconds: float) -> dict[str, dict[str, float]]:
    from microaction.live import LiveOptions, SourceSpec, WindowSettings, run_live

    got = {}
    for name, (w, h), people in (("720p", (1280, 720), "main"), ("1080p", (1920, 1080), "main"),
                                 ("720p --people all", (1280, 720), "all")):  # fmt: skip
        clip = make_clip(out / "clips" / f"{w}x{h}_{seconds:g}s.mp4", w, h, seconds)
        cpu0 = time.process_time()
        res = run_live(run, LiveOptions(SourceSpec(str(clip), realtime=True), out / "keepup" / name.replace(" ", ""),
                                        WindowSettings(), events=os.devnull, parser="mediapipe", people=people,
                                        quiet=True))  # fmt: skip
        s = res.stats
        got[name] = {"dropped": s["frames_dropped"], "sampled": s["frames_sampled"],
                     "cpu_per_stream_s": (time.process_time() - cpu0) / max(s["stream_seconds"], 1e-9)}  # fmt: skip
        print(f"keep-up {name}: {got[name]}", flush=True)
    return got


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``; ``ru_maxrss`` would count the parent's peak
    before ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(run: Path, data: Path, out: Path, minutes: float, early: float) -> None:
    """(In a process of its own) a ``minutes`` long stream; prints peak RSS at ``early`` minutes and at the end."""
    from microaction.live import LiveOptions, SourceSpec, WindowSettings, run_live

    src = sorted((data / "keypoints").glob("rec_test_*.npz"))[0]
    with np.load(src) as z:
        kp, fps, size = z["keypoints"], float(z["fps"]), z["size"]
    n = int(minutes * 60 * fps) + 48
    long = out / "long"
    (long / "keypoints").mkdir(parents=True, exist_ok=True)
    np.savez(long / "keypoints" / "long.npz", keypoints=np.resize(kp, (n, *kp.shape[1:])), fps=fps, size=size)
    rss: dict[str, float] = {}

    def on_steps(steps: Any) -> None:
        if "early" not in rss and steps.times[-1] >= early * 60:
            rss["early"] = peak_rss_mb()

    source = f"testsrc=duration={minutes * 60:g}:size=320x240:rate={fps:g}"
    opts = LiveOptions(SourceSpec(source, "lavfi"), out / "memory", WindowSettings(), events=os.devnull,
                       parse_from=str(long / "videos" / "long.mp4"), quiet=True)  # fmt: skip
    res = run_live(run, opts, on_steps=on_steps)
    rss["end"] = peak_rss_mb()
    print(json.dumps({**rss, "stream_seconds": res.stats["stream_seconds"], "seconds": res.stats["seconds"]}))


def memory(run: Path, data: Path, out: Path, minutes: float, early: float) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", f"{minutes:g},{early:g}", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(REPO / "src")}
    text = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=REPO).stdout
    got: dict[str, float] = json.loads(text.strip().splitlines()[-1])
    print(f"memory: {got}", flush=True)
    return got


def _spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    v = np.asarray(values, np.float64) * scale
    return f"{v.mean():.{digits}f}" + (f" ± {v.std():.{digits}f} ({len(v)} seeds)" if len(v) > 1 else "")


def report_quality(q: dict[str, Any], quick: bool) -> None:
    """The quality rows: each figure per seed, as mean ± std over the seeds when there are several;
    live mAP against the better offline detector of the same seed (the goal) and its own."""
    for name, per in q["offline"].items():
        result(
            f"offline mAP, {name} detector (test recordings)", _spread([r["mAP"] for r in per.values()], 100), unit="%"
        )
        result(f"offline online F1 (SMG), {name} detector", _spread([r["f1"] for r in per.values()], 100), unit="%")
    for label, per in q["live"].items():
        seeds = list(per)
        rows = [per[k] for k in seeds]
        best = [max(q["offline"][n][k]["mAP"] for n in q["offline"]) for k in seeds]
        ratio = [r["mAP"] / b if b > 0 else float("nan") for r, b in zip(rows, best)]
        mine = [q["offline"][r["detector"]][k]["mAP"] for r, k in zip(rows, seeds)]
        own = [r["mAP"] / m if m > 0 else float("nan") for r, m in zip(rows, mine)]
        result(f"live mAP, {label}", _spread([r["mAP"] for r in rows], 100), unit="%")
        result(f"live online F1, {label}", _spread([r["f1"] for r in rows], 100), unit="%")
        result(f"stream lag from action end to its event, {label}, median / p95",
               f"{_spread([r['stream_lag_median'] for r in rows])} / {_spread([r['stream_lag_p95'] for r in rows])}",
               unit="s", note="stream seconds seen when the event came, past the end (no processing delay)")  # fmt: skip
        is_default = rows[0]["detector"] == DEFAULT_DETECTOR and rows[0]["default"]
        mean = float(np.mean(ratio))
        result(f"live / offline mAP, {label}", _spread(ratio, digits=3), unit="x", goal=">= 0.8" if is_default else "",
               met=bool(mean >= 0.8) if is_default and not quick else None,
               note=f"against the better offline detector of each seed; {_spread(own, digits=3)} x its own")  # fmt: skip
    f = q["features"]
    result("live steps against the store's, rms difference (standardised)", round(f["rms_difference"], 4),
           unit="std", note=f"store features' rms {f['rms_store']:.3f}; offline detector's mAP on the live steps "
           f"{100 * f['mAP_live_steps']:.2f} % against {100 * f['mAP_store']:.2f} % on the store's")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--lookaheads", default=None, help="seconds, comma-separated (default 0.25,0.5,1; --quick: the default only)"
    )
    ap.add_argument("--centre-seconds", type=float, default=None,
                    help="the store's pose centre (mar extract --centre-seconds; default: its default)")  # fmt: skip
    ap.add_argument("--seeds", default="0", help="training seeds of the detectors for the quality figures "
                    "(comma-separated; mean and spread over them; the first's default detector plays the rest)")  # fmt: skip
    ap.add_argument("--live-set", action="append", default=[], metavar="KEY=VALUE",
                    help="an override for the online detector's training (e.g. detection.online=0.5; with --out)")  # fmt: skip
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--no-sweep", action="store_true", help="quality at the default settings only")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--latency-recordings", type=int, default=None,
                    help="test recordings played in real time for the latency (default 2; --quick 1; 6: all)")  # fmt: skip
    ap.add_argument("--skip-keepup", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out or ("runs/bench_live_quick" if args.quick else "runs/bench_live")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from microaction.live import WindowSettings

    torch.set_num_threads(1)
    if args.memory_child:
        minutes, early = (float(x) for x in args.memory_child.split(","))
        memory_child(out / RUNS[DEFAULT_DETECTOR][0], out / "recordings", out, minutes, early)
        return 0
    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs (a shared machine)", flush=True)
    seeds = tuple(int(x) for x in args.seeds.split(","))
    by_seed, data = prepare(out, args.quick, args.centre_seconds, seeds, tuple(args.live_set))
    live_default = WindowSettings()
    default_la = live_default.lookahead
    run = by_seed[min(seeds)][DEFAULT_DETECTOR]
    runs = {k: {DEFAULT_DETECTOR: v[DEFAULT_DETECTOR], **v} for k, v in by_seed.items()}  # the default first
    las = [float(x) for x in (args.lookaheads or (f"{default_la:g}" if args.quick else LOOKAHEADS)).split(",")]
    las = sorted(set(las) | {default_la})
    summary: dict[str, Any] = {"quick": args.quick}
    videos, gt = test_set(run, data, args.quick)
    if not args.skip_quality:
        q = quality(runs, videos, gt, out, live_default, las, sweep=not args.no_sweep)
        report_quality(q, args.quick)
        summary["quality"] = {k: q[k] for k in ("offline", "live", "speed", "features")}
    if not args.skip_latency:
        lat = latency(run, videos, gt, out, live_default, args.latency_recordings or (1 if args.quick else 2))
        arr = np.asarray(lat["latencies"])
        med, p95 = (float(np.median(arr)), float(np.percentile(arr, 95))) if len(arr) else (float("nan"),) * 2
        note = (f"{len(arr)} actions found; {lat['dropped']} of {lat['sampled']} frames dropped; {DEFAULT_DETECTOR} "
                f"detector (seed {min(seeds)}), look-ahead {default_la:g} s" + (", --top-only" if live_default.rank else ""))  # fmt: skip
        result("latency from action end to event, median", round(med, 3), unit="s", goal="<= 1.0",
               met=bool(med <= 1.0) if len(arr) else None, note=note)  # fmt: skip
        result("latency from action end to event, 95th pct", round(p95, 3), unit="s", goal="<= 2.0",
               met=bool(p95 <= 2.0) if len(arr) else None, note=note)  # fmt: skip
        summary["latency"] = {**lat, "median": med, "p95": p95}
    if not args.skip_keepup:
        ku = keep_up(run, out, 10.0 if args.quick else 40.0)
        for name, g in ku.items():
            goal = "== 0" if name == "720p" else ""  # 1080p and several people: how many, no goal
            result(f"frames dropped, {name} 25 fps, MediaPipe, real time", g["dropped"], unit="frames", goal=goal,
                   met=(g["dropped"] == 0) if goal else None, note=f"of {g['sampled']}; "
                   f"{g['cpu_per_stream_s']:.2f} CPU s per stream s")  # fmt: skip
        summary["keep_up"] = ku
    if not args.skip_memory:
        minutes, early = (4.0, 1.0) if args.quick else (30.0, 5.0)
        m = memory(run, data, out, minutes, early)
        ratio = m["end"] / m["early"]
        result(f"peak RSS at {minutes:g} min / at {early:g} min of stream", round(ratio, 3), unit="x", goal="<= 1.1",
               met=bool(ratio <= 1.1), note=f"{m['early']:.0f} -> {m['end']:.0f} MB, as fast as possible "
               f"({m['stream_seconds']:.0f} s of stream in {m['seconds']:.0f} s)")  # fmt: skip
        summary["memory"] = m
    print(f"load average at the end: {os.getloadavg()}", flush=True)
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
