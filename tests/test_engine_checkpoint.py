"""Checkpoints: safetensors + metadata round trip, weights-only state files, RNG states, schedule."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from microaction.engine.checkpoint import (
    CheckpointError,
    build_model,
    get_rng_state,
    load_state,
    load_weights,
    read_meta,
    save_state,
    save_weights,
    set_rng_state,
)
from microaction.engine.optim import lr_at
from microaction.models import create_model
from microaction.taxonomy import load_taxonomy


def test_weights_round_trip(tmp_path: Path) -> None:
    kwargs = {
        "num_classes": 52,
        "num_body": 7,
        "regions": ["head", "body"],
        "region_dim": 8,
        "global_dim": 6,
        "hidden": 16,
    }
    model = create_model("mean_mlp", **kwargs)
    meta = {"model": "mean_mlp", "model_kwargs": kwargs, "taxonomy": load_taxonomy("ma52").to_dict(), "num_steps": 16}
    save_weights(tmp_path / "w.safetensors", model.state_dict(), meta)
    state, back = load_weights(tmp_path / "w.safetensors")
    assert back == meta and read_meta(tmp_path / "w.safetensors") == meta
    rebuilt = build_model(back)
    rebuilt.load_state_dict(state)
    batch = {
        "regions": torch.randn(3, 2, 5, 8),
        "global": torch.randn(3, 5, 6),
        "mask": torch.ones(3, 5, dtype=torch.bool),
        "region_valid": torch.ones(3, 2, dtype=torch.bool),
    }
    model.eval(), rebuilt.eval()
    assert torch.equal(model(batch)["action"], rebuilt(batch)["action"])


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="without microaction metadata"):
        read_meta(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        read_meta(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="no training state"):
        load_state(tmp_path / "missing.pt")
    torch.save({"obj": Path("x")}, tmp_path / "evil.pt")  # a pickled arbitrary object
    with pytest.raises(CheckpointError, match="unreadable training state"):
        load_state(tmp_path / "evil.pt")  # weights_only=True refuses to unpickle it


def test_state_and_rng_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    save_state(tmp_path / "s.pt", {"optimizer": opt.state_dict(), "rng": get_rng_state(), "epoch": 3, "history": "[]"})
    expect = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    st = load_state(tmp_path / "s.pt")
    set_rng_state(st["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expect[0], got[0]) and np.array_equal(expect[1], got[1]) and expect[2] == got[2]
    opt2 = torch.optim.AdamW(model.parameters())
    opt2.load_state_dict(st["optimizer"])
    assert st["epoch"] == 3 and torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"]
    )


def test_lr_schedule() -> None:
    lrs = [lr_at(s, 100, 10, 1.0, min_ratio=0.01) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:]))  # cosine decreases after the warm-up
    assert lrs[-1] == pytest.approx(0.01, abs=1e-3)
    assert lr_at(50, 100, 0, 0.5, schedule="constant") == 0.5
