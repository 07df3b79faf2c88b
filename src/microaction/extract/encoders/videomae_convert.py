"""Convert an OpenGVLab VideoMAE-V2 checkpoint (timm-style keys) to a transformers VideoMAE dir.

VideoMAE-V2 ``.pth`` files (e.g. ViT-g/14, 1408-d, 40 blocks) hold a state dict (possibly under
``model`` or ``module``) with keys ``patch_embed.proj.*``, ``blocks.N.{norm1, attn.qkv,
attn.q_bias, attn.v_bias, attn.proj, norm2, mlp.fc1, mlp.fc2}.*`` and ``fc_norm.*`` / ``norm.*``
(and ``head.*``). They map onto ``VideoMAEModel`` keys; ``qkv`` is split into query/key/value,
``q_bias``/``v_bias`` become the query/value biases. ``fc_norm`` is kept (the encoder applies it
after mean pooling); ``head`` is dropped. The number of heads cannot be read from the weights:
give it, or a standard width implies it (``HEADS_BY_WIDTH``). Layer-scale checkpoints (``gamma``)
are refused: transformers' VideoMAE has no layer scale.

    python -m microaction.extract.encoders.videomae_convert vit_g_hybrid_pt_1200e_k710_ft.pth OUT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["HEADS_BY_WIDTH", "convert_state_dict", "convert_videomae_v2"]

HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}


def _unwrap(obj: Any) -> dict[str, Any]:
    for k in ("model", "module", "state_dict"):
        if isinstance(obj, dict) and k in obj and isinstance(obj[k], dict):
            obj = obj[k]
    if not isinstance(obj, dict):
        raise ValueError("checkpoint holds no state dict")
    return {re.sub(r"^(module\.|encoder\.|backbone\.)", "", k): v for k, v in obj.items()}


def convert_state_dict(sd: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """timm-style VideoMAE-V2 state dict -> (transformers state dict, config kwargs)."""
    import torch

    sd = _unwrap(sd)
    if any(".gamma_" in k or k.endswith(".gamma") for k in sd):
        raise ValueError("layer-scale (gamma) checkpoints are not supported by transformers' VideoMAE")
    if "patch_embed.proj.weight" not in sd:
        raise ValueError("not a VideoMAE-V2 encoder checkpoint (no patch_embed.proj.weight)")
    w = sd["patch_embed.proj.weight"]  # [D, C, tubelet, p, p]
    D, C, tub, p, _ = w.shape
    layers = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    inter = sd["blocks.0.mlp.fc1.weight"].shape[0]
    out: dict[str, Any] = {
        "embeddings.patch_embeddings.projection.weight": w,
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
    }
    for i in range(layers):
        b, t = f"blocks.{i}.", f"encoder.layer.{i}."
        q, k, v = sd[b + "attn.qkv.weight"].chunk(3, dim=0)
        out[t + "attention.attention.query.weight"] = q
        out[t + "attention.attention.key.weight"] = k
        out[t + "attention.attention.value.weight"] = v
        if b + "attn.q_bias" in sd:
            out[t + "attention.attention.query.bias"] = sd[b + "attn.q_bias"]
            out[t + "attention.attention.value.bias"] = sd[b + "attn.v_bias"]
        elif b + "attn.qkv.bias" in sd:
            qb, _, vb = sd[b + "attn.qkv.bias"].chunk(3, dim=0)
            out[t + "attention.attention.query.bias"] = qb
            out[t + "attention.attention.value.bias"] = vb
        for src, dst in (
            ("attn.proj", "attention.output.dense"),
            ("norm1", "layernorm_before"),
            ("norm2", "layernorm_after"),
            ("mlp.fc1", "intermediate.dense"),
            ("mlp.fc2", "output.dense"),
        ):
            out[t + dst + ".weight"] = sd[b + src + ".weight"]
            out[t + dst + ".bias"] = sd[b + src + ".bias"]
    mean_pool = "fc_norm.weight" in sd
    if mean_pool:
        out["fc_norm.weight"] = sd["fc_norm.weight"]
        out["fc_norm.bias"] = sd["fc_norm.bias"]
    elif "norm.weight" in sd:
        out["layernorm.weight"] = sd["norm.weight"]
        out["layernorm.bias"] = sd["norm.bias"]
    qkv_bias = any(k.endswith("attn.q_bias") or k.endswith("attn.qkv.bias") for k in sd)
    cfg = {
        "hidden_size": int(D),
        "num_hidden_layers": int(layers),
        "intermediate_size": int(inter),
        "patch_size": int(p),
        "tubelet_size": int(tub),
        "num_channels": int(C),
        "qkv_bias": bool(qkv_bias),
        "use_mean_pooling": bool(mean_pool),
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
    }
    return {k: torch.as_tensor(v).contiguous() for k, v in out.items()}, cfg


def convert_videomae_v2(
    src: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    num_heads: int | None = None,
    num_frames: int = 16,
    image_size: int = 224,
) -> Path:
    """Read ``src`` (.pth / .pt / .bin / .safetensors), write ``out_dir`` with config.json and
    model.safetensors loadable by ``VideoMAEModel.from_pretrained(out_dir)``."""
    import torch
    from safetensors.torch import save_file
    from transformers import VideoMAEConfig

    src = Path(src)
    if src.suffix == ".safetensors":
        from safetensors.torch import load_file

        raw: Any = load_file(str(src))
    else:
        raw = torch.load(src, map_location="cpu", weights_only=True)
    sd, kw = convert_state_dict(raw)
    heads = num_heads or HEADS_BY_WIDTH.get(kw["hidden_size"])
    if heads is None:
        raise ValueError(f"width {kw['hidden_size']}: give num_heads (standard widths: {HEADS_BY_WIDTH})")
    cfg = VideoMAEConfig(num_attention_heads=int(heads), num_frames=int(num_frames), image_size=int(image_size), **kw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(out)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "conversion.json").write_text(json.dumps({"source": src.name, "num_heads": heads}, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("out_dir")
    ap.add_argument("--num-heads", type=int)
    ap.add_argument("--num-frames", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=224)
    a = ap.parse_args(argv)
    print(
        convert_videomae_v2(a.src, a.out_dir, num_heads=a.num_heads, num_frames=a.num_frames, image_size=a.image_size)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
