"""SAPIENS body-part segmentation (GPU users): a TorchScript checkpoint from a local path.

Contract of the checkpoint: input ``[B, 3, 1024, 768]`` float, RGB normalised with the ImageNet
mean/std in 0-255 units (``MEAN``/``STD``); output ``[B, 28, h, w]`` per-class logits at any
resolution. The 28 classes are grouped into the four mask regions by ``SAPIENS_REGION`` (data).
Segmentation gives no landmarks: keypoints come from a companion parser (``keypoints=
"mediapipe"``, default) or are left unseen (``keypoints="none"``: boxes then come from the masks).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from microaction.extract.parsers.base import ParseError, Parser, ParseResult
from microaction.skeleton import MASK_REGIONS, NUM_LANDMARKS

__all__ = ["INPUT_SIZE", "SAPIENS_CLASSES", "SAPIENS_REGION", "SapiensParser", "class_to_label"]

INPUT_SIZE = (1024, 768)  # (H, W)
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)

# Sapiens body-part segmentation classes (Goliath 28), in output-channel order.
SAPIENS_CLASSES: tuple[str, ...] = (
    "background", "apparel", "face_neck", "hair", "left_foot", "left_hand", "left_lower_arm",
    "left_lower_leg", "left_shoe", "left_sock", "left_upper_arm", "left_upper_leg", "lower_clothing",
    "right_foot", "right_hand", "right_lower_arm", "right_lower_leg", "right_shoe", "right_sock",
    "right_upper_arm", "right_upper_leg", "torso", "upper_clothing", "lower_lip", "upper_lip",
    "lower_teeth", "upper_teeth", "tongue",
)  # fmt: skip

# class -> mask region (None: background)
SAPIENS_REGION: dict[str, str | None] = {
    "background": None,
    "face_neck": "head", "hair": "head", "lower_lip": "head", "upper_lip": "head",
    "lower_teeth": "head", "upper_teeth": "head", "tongue": "head",
    "torso": "body", "apparel": "body", "upper_clothing": "body",
    "left_hand": "upper_limbs", "right_hand": "upper_limbs", "left_lower_arm": "upper_limbs",
    "right_lower_arm": "upper_limbs", "left_upper_arm": "upper_limbs", "right_upper_arm": "upper_limbs",
    "left_foot": "lower_limbs", "right_foot": "lower_limbs", "left_lower_leg": "lower_limbs",
    "right_lower_leg": "lower_limbs", "left_upper_leg": "lower_limbs", "right_upper_leg": "lower_limbs",
    "left_shoe": "lower_limbs", "right_shoe": "lower_limbs", "left_sock": "lower_limbs",
    "right_sock": "lower_limbs", "lower_clothing": "lower_limbs",
}  # fmt: skip


def class_to_label() -> np.ndarray:
    """``[28]`` uint8 lookup: Sapiens class id -> mask label (0 background, 1+i MASK_REGIONS[i])."""
    return np.array(
        [0 if SAPIENS_REGION[c] is None else MASK_REGIONS.index(SAPIENS_REGION[c]) + 1 for c in SAPIENS_CLASSES],  # type: ignore[arg-type]
        dtype=np.uint8,
    )


class SapiensParser(Parser):
    name = "sapiens"
    needs_pixels = True

    def __init__(
        self,
        checkpoint: str | os.PathLike[str] | None = None,
        device: str = "cuda",
        batch_size: int = 4,
        keypoints: str = "mediapipe",
        mask_side: int = 160,
        half: bool | None = None,
    ) -> None:
        import torch

        if not checkpoint:
            raise ParseError("the sapiens parser needs --checkpoint PATH (a TorchScript .pt2/.pt file)")
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise ParseError(f"{self.checkpoint}: no such Sapiens TorchScript checkpoint")
        if device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"
        self.device = torch.device(device)
        self.half = bool(half) if half is not None else self.device.type == "cuda"
        try:
            self.model = torch.jit.load(str(self.checkpoint), map_location=self.device).eval()
        except Exception as e:
            raise ParseError(f"{self.checkpoint}: cannot load TorchScript ({type(e).__name__}: {e})") from None
        if self.half:
            self.model = self.model.half()
        self.batch_size = int(batch_size)
        self.mask_side = int(mask_side)
        self.keypoint_source = keypoints
        self._kp_parser: Parser | None = None
        if keypoints == "mediapipe":
            from microaction.extract.parsers.mediapipe import MediaPipeParser

            self._kp_parser = MediaPipeParser(mask_side=mask_side)
        elif keypoints != "none":
            raise ParseError(f"sapiens keypoints source {keypoints!r}: use 'mediapipe' or 'none'")
        self._lut = class_to_label()

    def segment(self, frames: np.ndarray) -> np.ndarray:
        """``[T, H, W, 3]`` uint8 -> label maps ``[T, h, w]`` uint8 at the mask resolution."""
        import torch
        import torch.nn.functional as F

        T, H, W = frames.shape[:3]
        s = min(1.0, self.mask_side / max(H, W))
        mh, mw = max(1, round(H * s)), max(1, round(W * s))
        mean = torch.tensor(MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=self.device).view(1, 3, 1, 1)
        out = np.zeros((T, mh, mw), dtype=np.uint8)
        dtype = torch.float16 if self.half else torch.float32
        with torch.inference_mode():
            for a in range(0, T, self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(frames[a : a + self.batch_size])).to(self.device)
                x = x.permute(0, 3, 1, 2).float()
                x = F.interpolate(x, size=INPUT_SIZE, mode="bilinear", align_corners=False)
                x = ((x - mean) / std).to(dtype)
                logits = self.model(x)
                if isinstance(logits, (tuple, list)):
                    logits = logits[0]
                if logits.ndim != 4 or logits.shape[1] != len(SAPIENS_CLASSES):
                    raise ParseError(f"{self.checkpoint}: output {tuple(logits.shape)}, expected [B, 28, h, w]")
                logits = F.interpolate(logits.float(), size=(mh, mw), mode="bilinear", align_corners=False)
                cls = logits.argmax(1).to(torch.uint8).cpu().numpy()
                out[a : a + len(cls)] = self._lut[cls]
        return out

    def parse(self, frames: np.ndarray | None, video_path: str | os.PathLike[str]) -> ParseResult:
        if frames is None:
            raise ParseError("the sapiens parser needs decoded frames")
        labels = self.segment(frames)
        H, W = frames.shape[1:3]
        if self._kp_parser is not None:
            kp = self._kp_parser.parse(frames, video_path).keypoints
        else:
            kp = np.zeros((len(frames), NUM_LANDMARKS, 3), dtype=np.float32)
        return ParseResult(kp, (H, W), labels, MASK_REGIONS, (labels > 0).astype(np.uint8))

    def describe(self) -> dict[str, Any]:
        from microaction.data.store import sha256_file

        return {
            "name": self.name,
            "checkpoint": str(self.checkpoint),
            "checkpoint_sha256": sha256_file(self.checkpoint),
            "keypoints": self.keypoint_source,
            "mask_side": self.mask_side,
            "classes_to_regions": SAPIENS_REGION,
        }
