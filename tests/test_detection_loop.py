"""Detection on the engine's one loop: a detection run SIGKILLed mid-run and resumed with
``mar train --resume`` ends bit for bit like an uninterrupted one; under torchrun (2 gloo
processes) it trains, only rank 0 writes, the validation shared between the processes scores
what one process scores, and a detector whose loss is a plain mean trains as in one process; the
windows of an epoch are shared out exactly."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from microaction.engine.checkpoint import load_state
from test_engine_resume import assert_same_run

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "demo_bmoe_tridet.yaml"


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(annotations, store) of the tiny synthetic recordings (train / val / test)."""
    from microaction.data.synth.recording import generate_recordings
    from microaction.extract.jobs.job_list import collect_jobs
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import ExtractParams

    root = tmp_path_factory.mktemp("det_loop")
    generate_recordings(root / "synth", "recordings_tiny", seed=0, workers=1, progress=False)
    params = ExtractParams(
        parser="groundtruth", encoders=["pose"], fps=24.0, encoder_options={"pose": {"window": 4, "stride": 4}}
    )
    run_extraction(collect_jobs(root / "synth" / "manifest.csv"), params, root / "store", progress=False)
    return root / "synth" / "annotations.json", root / "store"


def _sets(recordings: tuple[Path, Path], out: Path, name: str, *extra: str) -> list[str]:
    ann, store = recordings
    return [f"data.store={store}", f"data.manifest={ann}", f"run.out_dir={out}", f"run.name={name}",
            "run.epochs=4", "detection.window=64", "detection.windows_per_epoch=8", "run.batch_size=4",
            "run.progress=false", "run.precision=fp32", *extra]  # fmt: skip


def _argv(sets: list[str]) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}


def test_detection_sigkill_then_resume_is_exact(recordings: tuple[Path, Path], tmp_path: Path) -> None:
    from microaction.cli import main as mar
    from microaction.engine.trainer import train

    # EMA on, a state every optimizer step: 4 epochs x 8 steps (batches of 1 window: on a free core
    # a step takes a few ms, and fewer, larger steps could all be done before the kill lands)
    extra = ("optim.ema=true", "optim.ema_decay=0.9", "run.save_every_steps=1", "run.batch_size=1")
    killed = _sets(recordings, tmp_path, "killed", *extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "microaction.cli", "train", str(CONFIG), *_argv(killed)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    state_file = tmp_path / "killed" / "last_state.pt"
    target = random.randint(1, 20)  # of 32 optimizer steps: mid-epoch or at an epoch's end
    deadline = time.monotonic() + 240
    while proc.poll() is None and time.monotonic() < deadline:
        if state_file.exists() and load_state(state_file)["step"] >= target:
            break
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.05))  # and then anywhere: mid-step, mid-write, during validation ...
    assert proc.poll() is None, "the run ended before it could be killed: " + (
        proc.stderr.read().decode()[-2000:] if proc.stderr else ""
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_state(state_file)
    assert not killed_at["done"] and killed_at["step"] < 32
    print(f"killed at epoch {killed_at['epoch']} batch {killed_at['batch']} step {killed_at['step']}")

    assert mar(["train", "--resume", str(tmp_path / "killed")]) == 0
    ref = train(CONFIG, _sets(recordings, tmp_path, "ref", *extra))
    ma, sa, sb = assert_same_run(tmp_path / "killed", ref)
    assert len(ma["epochs"]) == 4
    assert sa["done"] and sb["done"] and sa["step"] == sb["step"] == 32
    assert torch.equal(sa["loss"]["normalizer"], sb["loss"]["normalizer"])  # TriDet's running normaliser
    assert "resuming after epoch" in (tmp_path / "killed" / "log.txt").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_detection_under_torchrun_two_processes(recordings: tuple[Path, Path], tmp_path: Path) -> None:
    from microaction.engine.detection import evaluate_detection_run

    sets = _sets(recordings, tmp_path, "ddp", "run.epochs=2")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "microaction.cli", "train", str(CONFIG), *_argv(sets)]  # fmt: skip
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run = tmp_path / "ddp"
    log = (run / "log.txt").read_text()
    assert "2 process(es)" in log and log.count("epoch 2/2") == 1  # one writer
    for name in ("config.yaml", "metrics.json", "best.safetensors", "last.safetensors"):
        assert (run / name).is_file(), name
    state = load_state(run / "last_state.pt")
    assert state["world"] == 2 and len(state["rng"]) == 2 and state["done"] and state["step"] == 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2] and metrics["best"]["by"] == "val"
    # the validation each process did a share of scores what one process scores on the same weights
    report = evaluate_detection_run(run, "val", checkpoint="last", out=tmp_path / "eval")
    assert metrics["epochs"][-1]["val"] == pytest.approx(report["metrics"], abs=1e-12)
    assert report["metrics"]["mAP"] > 0


def test_two_processes_train_like_one(recordings: tuple[Path, Path], tmp_path: Path) -> None:
    """A detector whose loss is a mean over equally many terms per window (sliding windows,
    sigmoid; no dropout): 2 processes, each with half of every batch of windows, end where one
    process ends, within float tolerance (as clip runs)."""
    from microaction.engine.trainer import train

    config = REPO / "configs" / "demo_sliding_window.yaml"
    extra = ("run.epochs=2", "model.kwargs.score=sigmoid", "model.kwargs.classifier_kwargs={dropout: 0.0}")
    sets = _sets(recordings, tmp_path, "ddp", *extra)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           "-m", "microaction.cli", "train", str(config), *_argv(sets)]  # fmt: skip
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    single = train(config, _sets(recordings, tmp_path, "single", *extra))
    a, b = load_file(str(tmp_path / "ddp" / "last.safetensors")), load_file(str(single / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two processes did train: float sums differ in order
    ma = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    mb = json.loads((single / "metrics.json").read_text())
    for ea, eb in zip(ma["epochs"], mb["epochs"], strict=True):
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-5)


def test_window_batches_share_every_global_batch() -> None:
    import numpy as np

    from microaction.engine.detection import DetectionRecording, WindowSampler
    from microaction.engine.detection_task import WindowBatches
    from microaction.engine.yamlconfig import ConfigError

    def rec(n: int) -> DetectionRecording:
        return DetectionRecording("v", "k", np.zeros((1, n, 2)), np.zeros((n, 3)), np.ones(1, bool), 0.0, 1.0,
                         np.zeros((0, 2)), np.zeros(0, np.int64))  # fmt: skip

    windows = WindowSampler([rec(100), rec(40)], 32, seed=1)
    one = WindowBatches(windows, 10, 4)
    two = [WindowBatches(windows, 10, 4, rank=r, world=2) for r in (0, 1)]
    for epoch in (0, 3):
        for s in [one, *two]:
            s.set_epoch(epoch)
        full = list(one)
        assert len(full) == one.num_batches() == 3 and [len(b) for b in full] == [4, 4, 2]
        parts = [list(s) for s in two]
        assert [a + b for a, b in zip(*parts, strict=True)] == full  # together, in rank order: one process's batches
        one.set_epoch(epoch, 2)  # resuming mid-epoch: the same windows from batch 2 on
        assert list(one) == full[2:]
    with pytest.raises(ConfigError, match="windows_per_epoch"):
        WindowBatches(windows, 9, 4, world=2)  # a last batch of 1 window for 2 processes


def test_online_windows_end_after_an_action_and_leave_out_unfinished_ones() -> None:
    import numpy as np

    from microaction.engine.detection import DetectionRecording, WindowSampler, collate_windows

    segs = np.array([[10.0, 20.0], [50.0, 58.0], [70.0, 90.0]])
    rec = DetectionRecording("v", "k", np.zeros((1, 120, 2)), np.zeros((120, 3)), np.ones(1, bool), 0.0, 0.5,
                     segs, np.array([1, 2, 3]))  # fmt: skip
    plain = [s for b in WindowSampler([rec], 32, seed=3).epoch(0, 64, 8) for s in b]
    online = [s for b in WindowSampler([rec], 32, seed=3, online=1.0, reach=2.0).epoch(0, 64, 8) for s in b]
    ends = segs[:, 1]
    # every online window's right edge (step b - 0.5) lies 0-2 s (4 steps) after an action's end
    assert all(((b - 0.5 - ends >= -1e-9) & (b - 0.5 - ends <= 4 + 1 + 1e-9)).any() for _, _, b in online)
    assert all(b - a == 32 or a == 0 for _, a, b in online)
    assert sum(((b - 0.5 - ends >= 0) & (b - 0.5 - ends <= 5)).any() for _, _, b in plain) < 32  # not so by chance
    # a window [60, 80): the action 70-90 is cut by the right edge: clipped offline, left out online
    full = collate_windows([rec], [(60, 80)], 0.4)
    assert full["gt_labels"][0].tolist() == [3]
    assert collate_windows([rec], [(60, 80)], 0.4, open_end=True)["gt_labels"][0].tolist() == [-1]
    # cut on the left only ([15, 47) then [55, 100)): kept as before
    assert collate_windows([rec], [(55, 100)], 0.2, open_end=True)["gt_labels"][0].tolist() == [2, 3]
