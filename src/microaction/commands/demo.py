"""``mar demo``: the synthetic benchmark end to end, on a CPU, in minutes.

Steps (each through the same code path a user's data takes): ``mar synth`` (the demo preset,
rendered: mannequin videos, region masks, keypoint sidecars) → ``mar extract`` (the ``groundtruth``
parser reads the sidecars instead of running MediaPipe, see docs/synthetic.md; ``pose`` encoder)
→ ``mar pack`` (memory-mappable arrays: reading them is ~3× faster than the items) → ``mar train``
(configs/demo_bmoe.yaml, configs/demo_m3e_global.yaml) → ``mar eval`` on the test split (MA-52
metrics) → ``mar report`` → a table: model, action top-1, F1_mean, time.

Every training uses one torch thread. The first model of ``--models`` (the longest) trains in a
background process (its log: ``OUT/runs/<model>.log``) while the others and the detection part run
in this one: two single-threaded jobs use both cores of a 2-core machine.

Detection (``--detector``, default ``bmoe_tridet``): ``mar synth --preset recordings`` (long
recordings with temporal ground truth; one test recording rendered to video) → ``mar extract``
(6 feature steps/s) → ``mar train configs/demo_<detector>.yaml`` → ``mar eval --split test``
(MMA-52 detection mAP) → ``mar timeline`` of the rendered recording (timeline.csv / .json / .eaf /
.html beside the video, and the overlay video); the run's mAP joins the report's table.

``--quick`` runs the ``tiny`` preset with few epochs: a smoke test of the whole chain (< 1 min),
not a measurement.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

MODELS = ("bmoe", "m3e_global")
DETECTOR = "bmoe_tridet"
TIMELINE_VIDEO = "rec_test_000"  # the test recording rendered for the timeline
# the detection part per preset: recordings preset, epochs, training windows per epoch
DETECTION = {"tiny": ("recordings_tiny", 3, 16), "demo": ("recordings", 6, 128)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (synth, store, runs, report); default runs/demo")
    p.add_argument("--quick", action="store_true", help="tiny dataset, few epochs: a smoke test in under a minute")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated data and of training")
    p.add_argument("--workers", type=int, default=None, help="processes for generation and extraction (default: CPUs)")
    p.add_argument("--epochs", type=int, default=None, help="override the configs' epochs")
    p.add_argument(
        "--models", default=",".join(MODELS), help=f"comma list of demo configs to train (default {','.join(MODELS)})"
    )
    p.add_argument(
        "--detector",
        default=DETECTOR,
        help=f"detector config demo_<name>.yaml for the detection run and the timeline (default {DETECTOR}; none: skip)",
    )
    p.add_argument(
        "--configs", default=None, help="folder of demo_<model>.yaml configs (default: the repository's configs/)"
    )


def configs_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "configs" / "demo_bmoe.yaml").is_file():
            return parent / "configs"
    return Path("configs")


def _clean(out: Path) -> None:
    """Empty a previous demo's folders; refuse to touch a folder that is not a demo's."""
    import shutil

    if out.exists() and any(out.iterdir()) and not (out / "demo.json").is_file():
        raise ValueError(f"{out} exists and is not a demo folder (no demo.json): give another --out")
    for sub in ("synth", "store", "runs", "report", "recordings", "store_recordings", "timeline"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)


def _mar(name: str, argv: list[str], timings: dict[str, float]) -> None:
    import time

    from microaction.cli import main as mar

    print(f"\n== {name}: mar {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    rc = mar(argv)
    timings[name] = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f"step {name!r} failed (exit {rc})")


def prepare_data(
    out: Path,
    preset: str,
    seed: int,
    workers: int,
    timings: dict[str, float],
    *,
    render: bool = True,
    face_size: int = 0,
) -> tuple[Path, Path]:
    """Generate a synthetic dataset into ``out/synth`` and extract it into ``out/store``
    (``out/store_face<S>`` with head-box face crops of side ``face_size``, which needs ``render``)."""
    data, store = out / "synth", out / (f"store_face{face_size}" if face_size else "store")
    argv = ["synth", "--out", str(data), "--preset", preset, "--seed", str(seed), "--workers", str(workers)]
    _mar("synth", argv + (["--render"] if render else []), timings)
    face = ["--face-size", str(face_size)] if face_size else []
    _mar("extract", ["extract", "--videos", str(data / "manifest.csv"), "--out", str(store), "--parser", "groundtruth",
                     "--encoder", "pose", "--workers", str(workers), *face], timings)  # fmt: skip
    _mar("pack", ["pack", str(store)], timings)
    return data, store


def train_argv(
    model: str,
    cfg_dir: Path,
    data: Path,
    store: Path,
    runs: Path,
    *,
    seed: int = 0,
    epochs: int | None = None,
    name: str | None = None,
    extra: list[str] | None = None,
    manifest: Path | None = None,
) -> list[str]:
    """``mar train configs/demo_<model>.yaml`` on ``store`` into ``runs/<name>``, one torch thread."""
    name = name or model
    manifest = manifest or data / "manifest.csv"
    # one torch thread: the demo models are small, and two threads on a busy 2-core machine
    # spend most of their time waiting for each other
    sets = [f"data.store={store}", f"data.manifest={manifest}", f"run.out_dir={runs}", f"run.name={name}",
            f"run.seed={seed}", "run.threads=1", *(extra or [])]  # fmt: skip
    if epochs is not None:
        sets.append(f"run.epochs={epochs}")
    argv = ["train", str(cfg_dir / f"demo_{model}.yaml"), "--overwrite"]
    for s in sets:
        argv += ["--set", s]
    return argv


def eval_test(name: str, runs: Path, timings: dict[str, float]) -> tuple[Path, dict]:
    """``mar eval runs/<name> --split test``: the run folder and its test metrics."""
    import json

    _mar(f"eval {name}", ["eval", str(runs / name), "--split", "test"], timings)
    return runs / name, json.loads((runs / name / "eval_test.json").read_text())["metrics"]


def train_and_eval(
    model: str, cfg_dir: Path, data: Path, store: Path, runs: Path, timings: dict[str, float], **options: Any
) -> tuple[Path, dict]:
    """``mar train configs/demo_<model>.yaml`` on ``store`` (``options``: ``train_argv``'s ``seed``,
    ``epochs``, ``name``, ``extra``, ``manifest``) then ``mar eval --split test``; returns the run
    folder and the test metrics."""
    name = options.pop("name", None) or model
    _mar(f"train {name}", train_argv(model, cfg_dir, data, store, runs, name=name, **options), timings)
    return eval_test(name, runs, timings)


class Background:
    """``mar ARGV`` in a child process (stdout and stderr to ``log``), timed into ``timings[name]``."""

    def __init__(self, name: str, argv: list[str], log: Path, timings: dict[str, float]) -> None:
        import subprocess
        import sys
        import time

        self.name, self.log, self.timings = name, log, timings
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"\n== {name} (background, log {log}): mar {' '.join(argv)}", flush=True)
        self._t0 = time.perf_counter()
        with open(log, "w", encoding="utf-8") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "microaction.cli", *argv], stdout=f, stderr=subprocess.STDOUT
            )

    def wait(self) -> None:
        import time

        rc = self.proc.wait()
        self.timings[self.name] = time.perf_counter() - self._t0
        tail = self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-3:]
        print(f"\n== {self.name} (background) finished, exit {rc}: " + " | ".join(tail), flush=True)
        if rc != 0:
            raise RuntimeError(f"step {self.name!r} failed (exit {rc}); its log: {self.log}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def detection_and_timeline(
    detector: str, cfg_dir: Path, out: Path, quick: bool, seed: int, workers: int, timings: dict[str, float]
) -> tuple[Path, dict, Path]:
    """Recordings → store → a detection run → test mAP → the timeline of one rendered test
    recording; returns the run folder, its test metrics and the timeline folder."""
    import time

    from microaction.data.synth.recording import render_recording

    preset, epochs, windows = DETECTION["tiny" if quick else "demo"]
    data, store = out / "recordings", out / "store_recordings"
    _mar("synth recordings", ["synth", "--out", str(data), "--preset", preset, "--seed", str(seed),
                              "--workers", str(workers)], timings)  # fmt: skip
    t0 = time.perf_counter()
    video = render_recording(data, TIMELINE_VIDEO, preset, seed=seed)
    timings["render recording"] = time.perf_counter() - t0
    _mar("extract recordings", ["extract", "--videos", str(data / "manifest.csv"), "--out", str(store), "--parser",
                                "groundtruth", "--encoder", "pose", "--fps", "24", "--window", "4", "--window-stride",
                                "4", "--workers", str(workers)], timings)  # fmt: skip
    rd, metrics = train_and_eval(detector, cfg_dir, data, store, out / "runs", timings, seed=seed, epochs=epochs,
                                 extra=[f"detection.windows_per_epoch={windows}"],
                                 manifest=data / "annotations.json")  # fmt: skip
    tl = out / "timeline"
    _mar("timeline", ["timeline", str(rd), str(video), "--out", str(tl), "--overlay", str(tl / "timeline.mp4")],
         timings)  # fmt: skip
    return rd, metrics, tl


def routing_supervised(run_dir: Path) -> bool:
    """Whether a run trained its routing towards the body group's regions (loss.routing_weight)."""
    import yaml

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    return float((cfg.get("loss") or {}).get("routing_weight", 0.0) or 0.0) > 0


def run(args: argparse.Namespace) -> int:
    import json
    import os

    out = Path(args.out)
    _clean(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = args.workers or min(os.cpu_count() or 1, 8)
    preset = "tiny" if args.quick else "demo"
    epochs = args.epochs if args.epochs is not None else (4 if args.quick else None)
    cfg_dir = configs_dir(args.configs)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if not (cfg_dir / f"demo_{m}.yaml").is_file():
            raise FileNotFoundError(f"no config {cfg_dir / f'demo_{m}.yaml'} (use --configs DIR)")
    detector = None if args.detector.lower() == "none" else args.detector
    if detector is not None and not (cfg_dir / f"demo_{detector}.yaml").is_file():
        raise FileNotFoundError(
            f"no config {cfg_dir / f'demo_{detector}.yaml'} (use --configs DIR, or --detector none)"
        )
    (out / "demo.json").write_text(json.dumps({"preset": preset, "seed": args.seed, "models": models}) + "\n")
    timings: dict[str, float] = {}
    data, store = prepare_data(out, preset, args.seed, workers, timings)
    runs = out / "runs"
    results: dict[str, tuple[Path, dict, float]] = {}
    first = models[0] if models else None
    bg = None
    if first is not None:  # the longest training runs beside everything else
        argv = train_argv(first, cfg_dir, data, store, runs, seed=args.seed, epochs=epochs)
        bg = Background(f"train {first}", argv, runs / f"{first}.log", timings)
    t_start = sum(timings.values())
    detection = None
    try:
        for m in models[1:]:
            rd, metrics = train_and_eval(m, cfg_dir, data, store, runs, timings, seed=args.seed, epochs=epochs)
            results[m] = (rd, metrics, timings[f"train {m}"] + timings[f"eval {m}"])
        if detector is not None:
            t0 = sum(timings.values())
            det_rd, det_metrics, tl = detection_and_timeline(
                detector, cfg_dir, out, args.quick, args.seed, workers, timings
            )
            detection = (detector, det_rd, det_metrics, sum(timings.values()) - t0, tl)
        if bg is not None:
            t_fg = sum(timings.values()) - t_start
            bg.wait()
            assert first is not None
            rd, metrics = eval_test(first, runs, timings)
            results[first] = (rd, metrics, timings[f"train {first}"] + timings[f"eval {first}"])
            # the background training overlapped the steps above: count only the time it added
            timings[f"train {first}"] = max(0.0, timings[f"train {first}"] - t_fg)
    finally:
        if bg is not None:
            bg.kill()
    report = None
    try:
        import time

        from microaction.report import build_report

        t0 = time.perf_counter()
        run_dirs = [results[m][0] for m in models] + ([detection[1]] if detection else [])
        report = build_report(run_dirs, out / "report", title="mar demo: synthetic micro-action benchmark")
        timings["report"] = time.perf_counter() - t0
    except ImportError as e:  # the numbers do not need the report
        print(f"(no report: {e})")

    print(f"\nsynthetic benchmark ({preset} preset, seed {args.seed}), test split:")
    print(f"{'model':<14} {'action top-1':>12} {'F1_mean':>8} {'time':>8}  routing supervision")
    for m in models:
        rd, met, secs = results[m]
        sup = "yes (ours, not the paper's)" if routing_supervised(rd) else "no"
        print(f"{m:<14} {100 * met['action_top1']:>11.1f}% {100 * met['f1_mean']:>7.1f}% {secs:>7.1f}s  {sup}")
    if detection is not None:
        name, _, dm, secs, tl = detection
        print(f"\nsynthetic recordings ({DETECTION['tiny' if args.quick else 'demo'][0]} preset), test split:")
        print(f"{'detector':<14} {'mAP@0.5':>12} {'mAP':>8} {'time':>8}")
        print(f"{name:<14} {100 * dm['mAP@0.5']:>11.1f}% {100 * dm['mAP']:>7.1f}% {secs:>7.1f}s")
        print(f"timeline: {tl / 'timeline.html'} (and .csv, .eaf, .json; overlay {tl / 'timeline.mp4'})")
    steps = ", ".join(f"{k} {v:.0f}s" for k, v in timings.items())
    print(f"steps: {steps} (train {first}: the time it ran on after the rest); total {sum(timings.values()):.0f}s")
    if report is not None:
        print(f"report: {report}")
    summary = {
        "preset": preset,
        "seed": args.seed,
        "models": models,
        "timings": timings,
        "results": [
            {"model": m, "run": str(results[m][0]), "metrics": results[m][1], "seconds": results[m][2]} for m in models
        ],
    }
    if detection is not None:
        name, rd, dm, secs, tl = detection
        summary["detection"] = {"model": name, "run": str(rd), "metrics": dm, "seconds": secs, "timeline": str(tl)}
    (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0
