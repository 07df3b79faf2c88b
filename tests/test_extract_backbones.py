"""GPU backbones on tiny checkpoints made here: VideoMAE (both layouts, conversion exact) and a
Sapiens-contract TorchScript module (loading, normalisation, class → region grouping)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from microaction.extract.encoders.videomae_convert import convert_state_dict, convert_videomae_v2

D, HEADS, LAYERS, MLP, PATCH, TUB, FRAMES, SIZE = 32, 4, 2, 64, 8, 2, 16, 32


def _timm_state(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int, s: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * s

    sd = {"patch_embed.proj.weight": r(D, 3, TUB, PATCH, PATCH), "patch_embed.proj.bias": r(D)}
    for i in range(LAYERS):
        b = f"blocks.{i}."
        sd.update({
            b + "norm1.weight": 1 + r(D), b + "norm1.bias": r(D),
            b + "attn.qkv.weight": r(3 * D, D), b + "attn.q_bias": r(D), b + "attn.v_bias": r(D),
            b + "attn.proj.weight": r(D, D), b + "attn.proj.bias": r(D),
            b + "norm2.weight": 1 + r(D), b + "norm2.bias": r(D),
            b + "mlp.fc1.weight": r(MLP, D), b + "mlp.fc1.bias": r(MLP),
            b + "mlp.fc2.weight": r(D, MLP), b + "mlp.fc2.bias": r(D),
        })  # fmt: skip
    sd.update({"fc_norm.weight": 1 + r(D), "fc_norm.bias": r(D), "head.weight": r(5, D), "head.bias": r(5)})
    return sd


def _sinusoid(n: int, d: int) -> torch.Tensor:
    pos = np.arange(n)[:, None] / np.power(10000, 2 * (np.arange(d) // 2) / d)[None]
    pos[:, 0::2] = np.sin(pos[:, 0::2])
    pos[:, 1::2] = np.cos(pos[:, 1::2])
    return torch.tensor(pos, dtype=torch.float32)[None]


def _timm_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Reference VideoMAE-V2 ViT forward (timm-style weights): x [B, C, T, H, W] -> fc_norm(mean tokens)."""
    h = F.conv3d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(TUB, PATCH, PATCH))
    h = h.flatten(2).transpose(1, 2)
    h = h + _sinusoid(h.shape[1], D)
    B, N, _ = h.shape
    for i in range(LAYERS):
        b = f"blocks.{i}."
        y = F.layer_norm(h, (D,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], eps=1e-6)
        bias = torch.cat([sd[b + "attn.q_bias"], torch.zeros(D), sd[b + "attn.v_bias"]])
        qkv = F.linear(y, sd[b + "attn.qkv.weight"], bias).reshape(B, N, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // HEADS)
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, N, D)
        h = h + F.linear(y, sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        y = F.layer_norm(h, (D,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], eps=1e-6)
        y = F.linear(
            F.gelu(F.linear(y, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])),
            sd[b + "mlp.fc2.weight"],
            sd[b + "mlp.fc2.bias"],
        )
        h = h + y
    return F.layer_norm(h.mean(1), (D,), sd["fc_norm.weight"], sd["fc_norm.bias"], eps=1e-6)


@pytest.fixture(scope="module")
def videomae_dirs(tmp_path_factory) -> tuple[dict[str, torch.Tensor], Path, Path]:
    root = tmp_path_factory.mktemp("videomae")
    sd = _timm_state()
    pth = root / "vit_tiny_timm.pth"
    torch.save({"model": sd}, pth)
    converted = convert_videomae_v2(pth, root / "converted", num_heads=HEADS, num_frames=FRAMES, image_size=SIZE)
    # the transformers layout made directly (as a user with a native checkpoint would have it)
    from transformers import VideoMAEConfig, VideoMAEModel

    native = root / "native"
    cfg = VideoMAEConfig(hidden_size=D, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=MLP,
                         patch_size=PATCH, tubelet_size=TUB, num_frames=FRAMES, image_size=SIZE, use_mean_pooling=False)  # fmt: skip
    torch.manual_seed(0)
    VideoMAEModel(cfg).save_pretrained(native)
    return sd, converted, native


def test_conversion_maps_every_weight() -> None:
    sd = _timm_state()
    out, cfg = convert_state_dict({"module": sd})
    assert cfg["hidden_size"] == D and cfg["num_hidden_layers"] == LAYERS and cfg["patch_size"] == PATCH
    assert cfg["use_mean_pooling"] and "head.weight" not in out
    assert torch.equal(out["encoder.layer.1.attention.attention.key.weight"], sd["blocks.1.attn.qkv.weight"][D : 2 * D])
    assert torch.equal(out["encoder.layer.0.attention.attention.value.bias"], sd["blocks.0.attn.v_bias"])
    with pytest.raises(ValueError, match="layer-scale"):
        convert_state_dict({**sd, "blocks.0.gamma_1": torch.ones(D)})


def test_converted_checkpoint_equals_reference(videomae_dirs) -> None:
    from microaction.extract.encoders.videomae import VideoMAEEncoder

    sd, converted, _ = videomae_dirs
    enc = VideoMAEEncoder(converted, device="cpu", batch_size=2)
    assert enc.input_size == SIZE and enc.window == FRAMES and enc.fc_norm is not None
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, (2, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    got = enc.embed(clips)
    x = torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1, 1)
    want = _timm_forward(sd, (x - mean) / std).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_videomae_encoder_on_a_clip(videomae_dirs) -> None:
    from microaction.extract.encoders import EncoderInput
    from microaction.extract.parsers import ParseResult
    from microaction.extract.regions import RegionLayout

    _, converted, native = videomae_dirs
    for d in (converted, native):
        from microaction.extract.encoders.videomae import VideoMAEEncoder

        enc = VideoMAEEncoder(d, stride=4, device="cpu")
        T = 20
        rng = np.random.default_rng(1)
        clips = {n: rng.integers(0, 256, (T, SIZE, SIZE, 3), dtype=np.uint8) for n in ("head", "body", "global")}
        layout = RegionLayout(("head", "body"), np.zeros((3, 4), np.float32), np.ones(2, bool), np.ones((T, 2), bool))
        parse = ParseResult(np.zeros((T, 33, 3), np.float32), (64, 64))
        out = enc.encode(EncoderInput({SIZE: clips}, parse, layout, np.arange(T, dtype=np.float32) / 30))
        assert out.regions.shape == (2, 2, D) and out.global_.shape == (2, D) and np.isfinite(out.regions).all()
        assert len(enc.sha256) == 64 and enc.describe()["checkpoint_sha256"] == enc.sha256


class _TinySapiens(torch.nn.Module):
    """Same contract as a Sapiens seg TorchScript: [B, 3, 1024, 768] normalised -> [B, 28, 256, 192].
    Class = a function of the input's (normalised) red level, so the grouping can be checked."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(x, 4)
        r = x[:, 0:1]
        centres = torch.linspace(-2.0, 2.2, 28).view(1, 28, 1, 1)
        return -((r - centres) ** 2) * 50.0


def test_sapiens_torchscript_grouping(tmp_path: Path) -> None:
    from microaction.extract.parsers import make_parser
    from microaction.extract.parsers.sapiens import MEAN, SAPIENS_CLASSES, STD, class_to_label

    ts = torch.jit.script(_TinySapiens())
    path = tmp_path / "tiny_sapiens.pt"
    ts.save(str(path))
    parser = make_parser("sapiens", checkpoint=path, device="cpu", keypoints="none", mask_side=64)
    centres = np.linspace(-2.0, 2.2, 28)
    frames = np.zeros((3, 96, 72, 3), np.uint8)
    want = []
    for t, cls in enumerate([SAPIENS_CLASSES.index("hair"), SAPIENS_CLASSES.index("left_shoe"), 0]):
        red = np.clip(centres[cls] * STD[0] + MEAN[0], 0, 255)
        frames[t, ..., 0] = round(float(red))
        want.append(class_to_label()[cls])
    res = parser.parse(frames, "clip.mp4")
    assert res.region_masks is not None and res.region_masks.shape[0] == 3
    assert [int(np.bincount(m.ravel()).argmax()) for m in res.region_masks] == want == [1, 4, 0]
    assert parser.describe()["classes_to_regions"]["hair"] == "head"


def test_videomae_in_the_pipeline(videomae_dirs, tmp_path: Path) -> None:
    from extract_helpers import make_dataset
    from microaction.data.store import FeatureStore
    from microaction.extract.jobs.job_list import collect_jobs
    from microaction.extract.jobs.runner import run_extraction
    from microaction.extract.pipeline import ExtractParams

    _, converted, _ = videomae_dirs
    manifest = make_dataset(tmp_path / "d", n=2, T=20, render_videos=True)
    params = ExtractParams(parser="groundtruth", encoders=["videomae", "pose"], checkpoint=str(converted),
                           encoder_options={"videomae": {"stride": 4}})  # fmt: skip
    s = run_extraction(collect_jobs(manifest), params, tmp_path / "st", progress=False)
    assert (s.done, s.failed) == (2, 0), s.errors
    store = FeatureStore.open(tmp_path / "st")
    enc = store.manifest.encoders
    assert (
        [e["name"] for e in enc] == ["videomae", "pose"]
        and enc[0]["dim"] == D
        and len(enc[0]["checkpoint_sha256"]) == 64
    )
    it = store.read("videos__clip000")
    assert it.regions.shape == (4, 2, store.manifest.region_dim) and it.region_valid.all()
