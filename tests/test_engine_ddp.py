"""The same entry point under torchrun: 2 CPU processes (gloo, DistributedSampler-style sharding)
give the result of one process within float tolerance, and only rank 0 writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from microaction.engine import train
from microaction.engine.testing import make_random_dataset

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_match_one(tmp_path: Path) -> None:
    ds = make_random_dataset(tmp_path / "data", splits={"train": 48, "val": 20}, seed=5)
    cfg = {
        "data": {
            "store": str(ds["store"]),
            "taxonomy": str(ds["taxonomy"]),
            "manifest": str(ds["manifest"]),
            "num_steps": 8,
            "flip_prob": 0.5,
            "feature_noise": 0.05,
        },
        "model": {"name": "mean_mlp", "preset": "tiny", "kwargs": {"dropout": 0.0}},  # dropout differs per process
        "optim": {"lr": 3e-3, "warmup_epochs": 1, "ema": True},
        "run": {
            "name": "ddp",
            "out_dir": str(tmp_path),
            "epochs": 2,
            "batch_size": 12,
            "progress": False,
            "threads": 1,
        },
    }
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        "-m",
        "microaction.cli",
        "train",
        str(path),
    ]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = (tmp_path / "ddp" / "log.txt").read_text()
    assert "2 process(es)" in log and log.count("epoch 2/2") == 1  # one writer

    single = train(path, ["run.name=single"])
    a, b = load_file(str(tmp_path / "ddp" / "last.safetensors")), load_file(str(single / "last.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    ma = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    mb = json.loads((single / "metrics.json").read_text())
    assert len(ma["epochs"]) == 2
    for ea, eb in zip(ma["epochs"], mb["epochs"], strict=True):
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-4)
        assert ea["val"] == pytest.approx(eb["val"], abs=1e-6)
