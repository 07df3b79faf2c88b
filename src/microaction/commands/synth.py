"""``mar synth``: generate the synthetic micro-action benchmark (see docs/synthetic.md)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--preset", default="demo",
                   choices=("tiny", "demo", "ma52", "diagnostic", "diagnostic_tiny", "recordings_tiny", "recordings",
                            "recordings_long"),
                   help="size and difficulty: tiny (tests), demo (mar demo), ma52 (MA-52's split sizes); "
                        "diagnostic(_tiny): classes only the time course tells apart (label set synth_diagnostic); "
                        "recordings*: long recordings with temporal ground truth (annotations.json, MMA-52 format)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (the dataset is a function of it)")
    p.add_argument("--render", action="store_true", help="also write mannequin videos (H.264) and region masks")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    p.add_argument("--scenes", type=int, default=0,
                   help="instead: this many rendered scenes with 2-4 people each (tracking, per-person ground "
                        "truth; see docs/synthetic.md)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from microaction.data.synth import generate_dataset
    from microaction.data.synth.recording import RECORDING_PRESETS, generate_recordings

    if args.scenes:
        from microaction.data.synth.scene import generate_scenes

        stems = generate_scenes(args.out, args.scenes, seed=args.seed)
        print(f"wrote {args.out}: {len(stems)} scenes with several people (manifest.csv: one row per person)")
        return 0

    if args.preset in RECORDING_PRESETS:
        if args.render:
            raise ValueError(f"--render is not available for the {args.preset!r} preset (keypoints only)")
        r = generate_recordings(args.out, args.preset, seed=args.seed, workers=args.workers)
        n, a = r["recordings"], r["actions"]
        print(
            f"wrote {args.out}: preset {r['preset']}, seed {r['seed']}, {r['hours']} h; recordings (actions) "
            f"train {n['train']} ({a['train']}) / val {n['val']} ({a['val']}) / test {n['test']} ({a['test']})"
        )
        return 0
    rec = generate_dataset(args.out, args.preset, seed=args.seed, render=args.render, workers=args.workers)
    c = rec["clips"]
    print(f"wrote {args.out}: preset {rec['preset']}, seed {rec['seed']}, train {c['train']} / val {c['val']} / test {c['test']} clips"
          f"{' (rendered)' if rec['rendered'] else ''}")  # fmt: skip
    return 0
