"""Configs, training loop, checkpoints, evaluation, prediction.

The Python API in a few lines::

    from microaction.engine import train, load_run, evaluate_run, Predictor

    run_dir = train("configs/demo_bmoe.yaml", ["run.epochs=5"])       # = mar train ... --set run.epochs=5
    report = evaluate_run(run_dir, "val")                              # = mar eval RUN --split val
    print(report["metrics"]["f1_mean"])
    p = Predictor.from_run(run_dir)                                    # = mar predict RUN INPUT
    preds = p.predict_store("runs/demo/store")                         # or p.predict_video("clip.mp4")
    run = load_run(run_dir)                                            # model + taxonomy + store manifest
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ExperimentConfig",
    "LoadedRun",
    "Prediction",
    "Predictor",
    "evaluate_run",
    "load_experiment",
    "load_run",
    "predict_video",
    "train",
]

_LAZY = {
    "ExperimentConfig": "microaction.engine.config",
    "load_experiment": "microaction.engine.config",
    "LoadedRun": "microaction.engine.runs",
    "load_run": "microaction.engine.runs",
    "evaluate_run": "microaction.engine.evaluate",
    "Prediction": "microaction.engine.predict",
    "Predictor": "microaction.engine.predict",
    "train": "microaction.engine.trainer",
}


def predict_video(run_dir: str, video: str, checkpoint: str = "best") -> Any:
    """One video's ``Prediction`` with a run's best checkpoint (features extracted as in training)."""
    from microaction.engine.predict import Predictor

    return Predictor.from_run(run_dir, checkpoint).predict_video(video)


def __getattr__(name: str) -> Any:  # imports on first use: `import microaction.engine` stays light
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'microaction.engine' has no attribute {name!r}")
