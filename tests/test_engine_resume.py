"""Exact resume: a run SIGKILLed at a seeded random moment and resumed ends bit for bit like an
uninterrupted one (weights, best checkpoint, per-epoch metrics)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import load_file

from microaction.engine import train
from microaction.engine.checkpoint import load_state
from microaction.engine.testing import make_random_dataset

REPO = Path(__file__).resolve().parents[1]
EPOCHS, STEPS_PER_EPOCH = 8, 3  # 48 train clips, batch 8, accumulate 2
KILL_SEED = 22  # the kill point (step and delay) is drawn from this seed: a failure can be replayed


def _config(ds: dict[str, Any], out: Path, name: str) -> Path:
    cfg = {
        "data": {
            "store": str(ds["store"]),
            "taxonomy": str(ds["taxonomy"]),
            "manifest": str(ds["manifest"]),
            "num_steps": 8,
            "flip_prob": 0.5,
            "region_drop_prob": 0.2,
            "feature_noise": 0.05,
        },
        "model": {"name": "mean_mlp", "preset": "tiny", "kwargs": {"dropout": 0.2}},
        "optim": {"lr": 3e-3, "warmup_epochs": 1, "ema": True, "ema_decay": 0.9, "accumulate": 2},
        "run": {
            "name": name,
            "out_dir": str(out),
            "epochs": EPOCHS,
            "batch_size": 8,
            "progress": False,
            "threads": 1,
            "save_every_steps": 1,
        },
    }
    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _strip(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in metrics["epochs"]]


def assert_same_run(killed: Path, ref: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A resumed run equals the uninterrupted one: weights bit for bit, the epochs' metrics but
    their times, the best epoch. Returns (the resumed run's metrics, its last state, the reference's)."""
    for name in ("last.safetensors", "best.safetensors"):
        a, b = load_file(str(killed / name)), load_file(str(ref / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    ma = json.loads((killed / "metrics.json").read_text())
    mb = json.loads((ref / "metrics.json").read_text())
    assert _strip(ma) == _strip(mb) and ma["best"] == mb["best"]
    return ma, load_state(killed / "last_state.pt"), load_state(ref / "last_state.pt")


def test_sigkill_then_resume_is_exact(tmp_path: Path) -> None:
    ds = make_random_dataset(tmp_path / "data", splits={"train": 48, "val": 24}, seed=3)
    cfg = _config(ds, tmp_path, "killed")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "microaction.cli", "train", str(cfg)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state_file = tmp_path / "killed" / "last_state.pt"
    rng = random.Random(KILL_SEED)
    # within the first half of the run: the rest (> 12 steps, 4 validations) outlasts the delay below
    target = rng.randint(1, EPOCHS * STEPS_PER_EPOCH // 2)
    delay = rng.uniform(0.0, 0.15)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if state_file.exists() and load_state(state_file)["step"] >= target:
            break
        time.sleep(0.03)
    time.sleep(delay)  # and then anywhere: mid-step, mid-write, during validation ...
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    err = proc.stderr.read().decode() if proc.stderr else ""
    # the kill landed: a run that finished (or failed) first would test nothing
    assert proc.returncode == -signal.SIGKILL, f"exit {proc.returncode}, not killed at step {target}: {err}"
    killed_at = load_state(state_file)
    print(f"killed at stage {killed_at['stage']} epoch {killed_at['epoch']} batch {killed_at['batch']}")
    assert not killed_at["done"] and target <= killed_at["step"] < EPOCHS * STEPS_PER_EPOCH, killed_at["step"]
    partial = tmp_path / "killed" / "metrics.json"
    assert not partial.is_file() or len(json.loads(partial.read_text())["epochs"]) < EPOCHS

    train(resume=tmp_path / "killed")
    ref = train(_config(ds, tmp_path, "ref"))
    _, sa, sb = assert_same_run(tmp_path / "killed", ref)
    assert sa["done"] and sb["done"] and sa["step"] == sb["step"] == EPOCHS * STEPS_PER_EPOCH
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sb["model"])
