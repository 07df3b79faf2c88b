"""``videomae``: a transformers ``VideoMAEModel`` from a local checkpoint directory.

Each stream's clip is cut into sliding windows of the model's ``num_frames`` (16) frames every
``stride`` frames (a short clip repeats its last frame); a window's feature is the mean of the
last hidden states, passed through the checkpoint's ``fc_norm`` when it has one (the VideoMAE-V2
convention for pre-logit features). Preprocessing is plain torch: crops already at the model's
``image_size``, scaled to [0, 1] and normalised with the ImageNet mean/std.
Nothing is downloaded: the directory must hold ``config.json`` and the weights (see
``videomae_convert`` for OpenGVLab VideoMAE-V2 checkpoints).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from microaction.extract.encoders.base import Encoded, Encoder, EncoderInput, window_times, windows
from microaction.extract.regions import GLOBAL

__all__ = ["VideoMAEEncoder", "checkpoint_sha256"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def checkpoint_sha256(directory: str | os.PathLike[str]) -> str:
    """sha256 of a checkpoint directory's weights file (what the manifest records)."""
    from microaction.data.store import sha256_file

    d = Path(directory)
    for name in WEIGHT_FILES:
        if (d / name).is_file():
            return sha256_file(d / name)
    raise FileNotFoundError(f"{d}: no {' or '.join(WEIGHT_FILES)}")


class VideoMAEEncoder(Encoder):
    name = "videomae"

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        stride: int = 8,
        device: str = "cuda",
        batch_size: int = 8,
        half: bool | None = None,
    ) -> None:
        import torch
        from transformers import VideoMAEConfig, VideoMAEModel

        if not checkpoint:
            raise ValueError("the videomae encoder needs --checkpoint DIR (a local transformers VideoMAE directory)")
        self.checkpoint = Path(checkpoint)
        if not (self.checkpoint / "config.json").is_file():
            raise FileNotFoundError(
                f"{self.checkpoint}: no config.json (convert a VideoMAE-V2 checkpoint with videomae_convert)"
            )
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        self.device = torch.device(device)
        self.half = bool(half) if half is not None else self.device.type == "cuda"
        cfg = VideoMAEConfig.from_pretrained(self.checkpoint, local_files_only=True)
        self.model = VideoMAEModel.from_pretrained(self.checkpoint, local_files_only=True).eval().to(self.device)
        self.fc_norm = self._load_fc_norm(cfg)
        if self.half:
            self.model = self.model.half()
        self.config = cfg
        self.input_size = int(cfg.image_size)  # type: ignore[arg-type]
        self.window = int(cfg.num_frames)
        self.stride = int(stride)
        self.batch_size = int(batch_size)
        self.hidden = int(cfg.hidden_size)
        self.sha256 = checkpoint_sha256(self.checkpoint)

    def _load_fc_norm(self, cfg):
        import torch

        state: dict[str, Any] = {}
        st = self.checkpoint / "model.safetensors"
        if st.is_file():
            from safetensors import safe_open

            with safe_open(str(st), framework="pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys() if k.startswith("fc_norm.")}  # noqa: SIM118
        elif (self.checkpoint / "pytorch_model.bin").is_file():
            sd = torch.load(self.checkpoint / "pytorch_model.bin", map_location="cpu", weights_only=True)
            state = {k: v for k, v in sd.items() if k.startswith("fc_norm.")}
        if "fc_norm.weight" not in state:
            return None
        ln = torch.nn.LayerNorm(int(cfg.hidden_size), eps=float(cfg.layer_norm_eps))
        ln.load_state_dict({"weight": state["fc_norm.weight"], "bias": state["fc_norm.bias"]})
        return ln.eval().to(self.device)

    def dims(self, regions: tuple[str, ...]) -> tuple[int, int]:
        return self.hidden, self.hidden

    def embed(self, windows_: np.ndarray) -> np.ndarray:
        """``[N, F, S, S, 3]`` uint8 windows -> ``[N, hidden]`` float32."""
        import torch

        mean = torch.tensor(MEAN, device=self.device).view(1, 1, 3, 1, 1)
        std = torch.tensor(STD, device=self.device).view(1, 1, 3, 1, 1)
        out = []
        dtype = torch.float16 if self.half else torch.float32
        with torch.inference_mode():
            for a in range(0, len(windows_), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(windows_[a : a + self.batch_size])).to(self.device)
                x = x.permute(0, 1, 4, 2, 3).float().div_(255.0)
                x = ((x - mean) / std).to(dtype)
                h = self.model(pixel_values=x).last_hidden_state.float().mean(1)
                if self.fc_norm is not None:
                    h = self.fc_norm(h)
                out.append(h.cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def encode(self, inp: EncoderInput) -> Encoded:
        clips = inp.clips[int(self.input_size or 0)]
        T = len(inp.timestamps)
        grid = windows(T, self.window, self.stride, tail=not inp.partial)
        names = [*inp.layout.regions, GLOBAL]
        idx = np.stack([np.minimum(np.arange(a, a + self.window), T - 1) for a, _ in grid])  # [T', F]
        batch = np.concatenate([clips[n][idx] for n in names])  # [(R+1)·T', F, S, S, 3]
        feats = self.embed(batch).reshape(len(names), len(grid), -1)
        return Encoded(feats[:-1], feats[-1], window_times(inp.timestamps, grid))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": self.sha256,
            "fc_norm": self.fc_norm is not None,
        }
