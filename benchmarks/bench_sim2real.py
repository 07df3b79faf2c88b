"""Sim-to-real probe: a model trained only on synthetic pose features, applied to real MA-52 clips.

The model is trained on the synthetic benchmark (``groundtruth`` parser + ``pose`` encoder, as in
``mar demo``); each of the 6 real clips in ``../shared/data/ma52/demo_clips`` goes through the
MediaPipe parser and the same ``pose`` encoder (the store's recorded encoder parameters, parser
swapped), then the model. Printed per clip: the true class and body group (from the file name, as
listed in ../shared/README.md), the predicted body group and the top-5 actions. No tuning on
these clips: they are an honest probe, six clips are no accuracy estimate.

    python benchmarks/bench_sim2real.py [--quick] [--run RUN_DIR] [--model bmoe|m3e_global]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# make bench: the full probe trains the demo model first (~3 min on 2 cores); --run reuses a run
MAKE_BENCH = {"args": ["--quick"], "budget_s": 30, "mode": "reduced: --quick (tiny set, 2 epochs, 2 clips)"}
CLIPS = Path(os.environ.get("MAR_SHARED", REPO.parent / "shared")) / "data" / "ma52" / "demo_clips"


def main() -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny synthetic set, 2 epochs, 2 clips")
    ap.add_argument("--run", help="a run trained on a synthetic pose-feature store (default: train one)")
    ap.add_argument("--model", default="bmoe", help="demo config to train when no --run is given")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clips", default=str(CLIPS))
    ap.add_argument("--out", default="runs/bench_sim2real")
    ap.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 8))
    args = ap.parse_args()

    from microaction.engine import Predictor
    from microaction.extract.jobs.execute import extract_video
    from microaction.extract.pipeline import ExtractParams, params_from_manifest
    from microaction.taxonomy import load_taxonomy

    if args.run:
        run = Path(args.run)
    else:
        from microaction.commands.demo import configs_dir, prepare_data, train_and_eval

        timings: dict[str, float] = {}
        out = Path(args.out)
        data, store = prepare_data(
            out, "tiny" if args.quick else "demo", args.seed, args.workers, timings, render=False
        )
        run, _ = train_and_eval(args.model, configs_dir(None), data, store, out / "runs", timings, seed=args.seed,
                                epochs=2 if args.quick else None)  # fmt: skip
    pred = Predictor.from_run(run)
    params = params_from_manifest(pred.run.manifest).to_dict()
    if params["encoders"] != ["pose"]:
        raise SystemExit(f"{run}: trained on {params['encoders']} features; the probe needs a pose-only store")
    params["parser"] = "mediapipe"
    params["parser_options"] = {}
    real = ExtractParams.from_dict(params)
    tax = load_taxonomy("ma52")
    clips = sorted(Path(args.clips).glob("*.mp4"))[: 2 if args.quick else None]
    if not clips:
        raise SystemExit(f"no clips in {args.clips}")
    print(f"\nsim-to-real probe: {run} on {len(clips)} real MA-52 clips (MediaPipe + pose encoder)")
    hits_body = hits5 = 0
    for clip in clips:
        label = tax.index(clip.stem.split("_", 1)[1].replace("_", " "))  # A1_shaking_body -> shaking body
        body = int(tax.body_of(label))
        e = extract_video(clip, real)
        p = pred.predict_arrays(e.regions, e.global_, e.region_valid, key=clip.name)
        top5 = [a[0] for a in p.actions]
        hits_body += p.bodies[0][0] == body
        hits5 += label in top5
        print(f"\n{clip.name}: true {tax.names[label]!r} (body group {tax.body_names[body]})")
        print(
            f"  predicted body group: {p.bodies[0][1]} ({p.bodies[0][2]:.2f})  {'right' if p.bodies[0][0] == body else 'wrong'}"
        )
        print(
            "  top-5 actions: "
            + ", ".join(f"{n} {s:.2f}" for _, n, s in p.actions)
            + ("  [true class in top-5]" if label in top5 else "")
        )
        if p.routing:
            print("  routing: " + ", ".join(f"{r} {w:.2f}" for r, w in p.routing.items()))
    print(f"\nbody group right on {hits_body}/{len(clips)} clips; true action in the top-5 on {hits5}/{len(clips)}")
    from benchlib import result

    note = "quick: a smoke run, not a measurement" if args.quick else f"{len(clips)} real clips, no tuning"
    result("sim-to-real: body group right", f"{hits_body}/{len(clips)}", unit="clips", note=note)
    result("sim-to-real: true action in the top-5", f"{hits5}/{len(clips)}", unit="clips", note=note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
