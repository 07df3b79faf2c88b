"""The named steps of one stage of the training loop (``engine.trainer``), each on its own:
``build_stage`` (resumes a snapshot), ``train_epoch`` (mid-epoch resume), ``optimizer_step``
(schedule, frozen parameters), ``update_best`` (best / patience) and ``end_epoch`` (checkpoints,
early stopping)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from microaction.engine import distributed as dist_
from microaction.engine.checkpoint import load_state, read_meta
from microaction.engine.config import experiment_from_dict
from microaction.engine.experiment import Experiment, Stage
from microaction.engine.optim import lr_at
from microaction.engine.stages import plan_stages
from microaction.engine.testing import make_random_dataset
from microaction.engine.trainer import (
    build_stage,
    end_epoch,
    fresh_state,
    optimizer_step,
    snapshot,
    train_epoch,
    update_best,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _experiment(tmp_path: Path, **run: Any) -> Experiment:
    ds = make_random_dataset(tmp_path / "data", splits={"train": 24, "val": 8}, seed=2)
    cfg = experiment_from_dict(
        {
            "data": {"store": str(ds["store"]), "taxonomy": str(ds["taxonomy"]), "manifest": str(ds["manifest"]),
                     "num_steps": 4, "flip_prob": 0.5, "feature_noise": 0.05},
            "model": {"name": "mean_mlp", "preset": "tiny", "kwargs": {"dropout": 0.2}},
            "optim": {"lr": 3e-3, "warmup_epochs": 1, "ema": True},
            "run": {"name": "r", "out_dir": str(tmp_path), "epochs": 3, "batch_size": 8, "progress": False,
                    "precision": "fp32", **run},
        }
    )  # fmt: skip
    (tmp_path / "r").mkdir(exist_ok=True)
    return Experiment(cfg, tmp_path / "r", dist_.DistInfo(), torch.device("cpu"))


def _main(exp: Experiment) -> Stage:
    return plan_stages(exp)[-1]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_update_best_keeps_the_best_and_counts_patience() -> None:
    state = fresh_state("main", store="s")

    def entry(epoch: int, val: dict[str, float], stage: str = "main") -> dict[str, Any]:
        return {"epoch": epoch, "stage": stage, "val": val}

    assert update_best(state, entry(1, {"acc": 0.5}), primary="acc", early_stopping=2, best_by="val") == (True, False)
    assert json.loads(state["best"]) == {"epoch": 1, "stage": "main", "metric": "acc", "value": 0.5,
                                         "val": {"acc": 0.5}, "by": "val"}  # fmt: skip
    assert update_best(state, entry(2, {"acc": 0.5}), primary="acc", early_stopping=2) == (False, False)  # not better
    assert state["patience"] == 1
    assert update_best(state, entry(3, {"acc": 0.4}), primary="acc", early_stopping=2) == (False, True)  # stop
    assert json.loads(state["best"])["epoch"] == 1
    assert update_best(state, entry(4, {"acc": 0.6}), primary="acc", early_stopping=2) == (True, False)
    assert state["patience"] == 0 and json.loads(state["best"])["value"] == 0.6
    # no validation labels: every epoch is the best we know
    assert update_best(state, entry(5, {}), primary="acc", early_stopping=2) == (True, False)
    assert json.loads(state["best"])["epoch"] == 5 and json.loads(state["best"])["value"] is None
    # the pre-training stage does not compete
    pre = fresh_state("pretrain", store="s")
    assert update_best(pre, entry(1, {"acc": 0.9}, "pretrain"), primary="acc", early_stopping=1) == (False, False)
    assert pre["best"] == "null" and pre["patience"] == 0


def test_build_stage_resumes_a_snapshot(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    stage = _main(exp)
    state = fresh_state("main", store="s")
    run = build_stage(exp, stage, state)
    train_epoch(run, state, 0, 0.0)
    snap = snapshot(run, state)
    again = build_stage(exp, stage, snap)  # also restores the global RNG state of the snapshot
    assert _same(again.model.state_dict(), run.model.state_dict())
    assert again.ema is not None and run.ema is not None and again.ema.updates == run.ema.updates
    assert _same(again.ema.model.state_dict(), run.ema.model.state_dict())
    sa, sb = again.opt.state_dict()["state"], run.opt.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(_same(sa[k], sb[k]) for k in sa)
    fresh = build_stage(exp, stage, fresh_state("main", store="s"))  # a fresh state: the seed's initial weights
    assert not _same(fresh.model.state_dict(), run.model.state_dict())
    assert (run.num_batches, run.total, run.warmup) == (3, 9, 3)


def test_train_epoch_resumed_mid_epoch_ends_like_one_pass(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, save_every_steps=1)
    stage = _main(exp)
    state = fresh_state("main", store="s")
    run = build_stage(exp, stage, state)
    train_epoch(run, state, 0, 0.0)
    assert (state["step"], state["batch"], state["loss_count"]) == (3, 3, 3)
    saved = load_state(exp.run_dir / "last_state.pt")  # the last state saved inside the epoch
    assert (saved["epoch"], saved["batch"], saved["step"]) == (0, 2, 2)
    rest = build_stage(exp, stage, saved)
    state2 = {k: v for k, v in saved.items() if k not in ("model", "loss", "optimizer", "rng", "ema")}
    train_epoch(rest, state2, 0, 0.0)
    assert _same(rest.model.state_dict(), run.model.state_dict())
    assert state2["loss_sum"] == state["loss_sum"] and state2["step"] == 3


def test_optimizer_step_follows_the_schedule_and_keeps_frozen_parameters(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    stage = _main(exp)
    n_frozen = len(list(stage.build().parameters())) // 2
    stage = replace(stage, freeze=lambda m: list(m.parameters())[:n_frozen], freeze_epochs=1)
    state = fresh_state("main", store="s")
    run = build_stage(exp, stage, state)
    before = [p.detach().clone() for p in run.model.parameters()]
    batch = exp.train_ds.__getitems__([(i, 0, i) for i in range(8)])
    loss, _ = run.net(batch)
    loss.backward()
    optimizer_step(run, state, freeze_now=True)
    after = list(run.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before[:n_frozen], after[:n_frozen], strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before[n_frozen:], after[n_frozen:], strict=True))
    assert state["step"] == 1
    assert run.opt.param_groups[0]["lr"] == lr_at(0, run.total, run.warmup, stage.lr)
    assert all(p.grad is None for p in run.model.parameters())  # gradients cleared for the next step


def test_end_epoch_writes_checkpoints_and_stops_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = _experiment(tmp_path, early_stopping=1)
    stage = _main(exp)
    state = fresh_state("main", store="s")
    run = build_stage(exp, stage, state)
    values = iter([0.5, 0.4])
    monkeypatch.setattr(exp, "validate", lambda model: {exp.primary: next(values)})
    for epoch in (0, 1):
        train_epoch(run, state, epoch, 0.0)
        stop = end_epoch(run, state, epoch, 0.0)
    assert stop and state["epoch"] == stage.epochs  # the stage is over: a resumed run goes straight on
    assert read_meta(exp.run_dir / "best.safetensors")["epoch"] == 1
    assert read_meta(exp.run_dir / "last.safetensors")["epoch"] == 2
    metrics = json.loads((exp.run_dir / "metrics.json").read_text())
    assert [e["val"][exp.primary] for e in metrics["epochs"]] == [0.5, 0.4] and metrics["best"]["epoch"] == 1
    saved = load_state(exp.run_dir / "last_state.pt")
    assert saved["epoch"] == stage.epochs and saved["batch"] == 0 and saved["loss_count"] == 0
    assert "early stopping" in (exp.run_dir / "log.txt").read_text()
