"""``mar predict RUN video.mp4`` on a run whose store used the ``groundtruth`` parser (the
synthetic benchmark's sidecar keypoints): a real video has none, so it is refused with the flag
that parses it (``--parser mediapipe``), not with a missing-file error from deep in extraction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microaction.cli import main as mar
from microaction.data.store import StoreManifest


def _video(path: Path, frames: int = 4) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        for i in range(frames):
            img = np.full((32, 32, 3), 40 * i, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path


def _groundtruth_run(tmp_path: Path) -> Path:
    from microaction.engine.checkpoint import save_weights
    from microaction.engine.testing import write_tiny_taxonomy
    from microaction.models import create_model, model_entry
    from microaction.taxonomy import load_taxonomy

    tax = load_taxonomy(str(write_tiny_taxonomy(tmp_path / "tax.yaml", 4, 2, ("head", "body"))))
    manifest = StoreManifest(regions=["head", "body"], region_dim=6, global_dim=8, parser="groundtruth",
                             encoders=[{"name": "pose", "dim": 6}], fps=24.0)  # fmt: skip
    kw = {"num_classes": 4, "num_body": 2, "regions": ["head", "body"], "region_dim": 6, "global_dim": 8}
    kw |= model_entry("mean_mlp").presets["tiny"]
    meta = {"model": "mean_mlp", "model_kwargs": kw, "taxonomy": tax.to_dict(), "store_manifest": manifest.to_dict(),
            "num_steps": 8, "primary_metric": "f1_mean"}  # fmt: skip
    ckpt = tmp_path / "run" / "best.safetensors"
    ckpt.parent.mkdir()
    save_weights(ckpt, create_model("mean_mlp", **kw).state_dict(), meta)
    return ckpt


def test_real_video_on_a_groundtruth_run_names_the_parser(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _groundtruth_run(tmp_path)
    video = _video(tmp_path / "real" / "interview.mp4")
    assert mar(["predict", str(ckpt), str(video)]) == 1
    err = capsys.readouterr().err
    assert "interview.mp4" in err and "groundtruth parser" in err and "--parser mediapipe" in err
    _video(tmp_path / "real" / "second.mp4")
    assert mar(["predict", str(ckpt), str(tmp_path / "real")]) == 1  # a folder of real videos: the same
    err = capsys.readouterr().err
    assert "2 of the videos have not" in err and "--parser mediapipe" in err


def test_the_hint_stays_out_of_the_way(tmp_path: Path) -> None:
    from microaction.commands.predict import check_groundtruth_parser

    gt = StoreManifest(regions=["head"], region_dim=2, global_dim=2, parser="groundtruth", encoders=[])
    data = tmp_path / "synth"
    video = _video(data / "videos" / "clip.mp4")  # the synthetic benchmark's layout: its sidecar is there
    (data / "keypoints").mkdir()
    (data / "keypoints" / "clip.npz").write_bytes(b"")
    check_groundtruth_parser(gt, video, None)
    real = _video(tmp_path / "real.mp4")
    check_groundtruth_parser(gt, real, "mediapipe")  # the parser is given
    check_groundtruth_parser(StoreManifest(regions=["head"], region_dim=2, global_dim=2, parser="mediapipe",
                                           encoders=[]), real, None)  # fmt: skip
    with pytest.raises(ValueError, match="--parser mediapipe"):
        check_groundtruth_parser(gt, real, None)
