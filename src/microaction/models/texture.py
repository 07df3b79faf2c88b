"""Texture descriptors for face crops: LBP and LDP code maps, batched in torch (CPU or GPU).

Both functions take grey images ``[N, H, W]`` (or one ``[H, W]``) as a torch tensor or a numpy
array, uint8 / integer / float, and return a ``torch.uint8`` code map of the same shape on the
input's device. ``lbp_reference`` and ``ldp_reference`` are plain numpy versions of the same
definitions for one image (what the tests and the benchmark compare against).

Border, both descriptors (``border=``): ``"edge"`` (the default, and what the texture-MAE targets
use) repeats the outermost pixels (replicate padding), so the outer ring of a crop gets targets of
the same kind as its interior and no artificial step edge; ``"constant"`` reads pixels outside the
image as 0 (scikit-image's constant mode, ``cval=0``). Face crops are themselves warped with a
replicated border (``face.crops``), so "edge" continues them the way they were made.

LBP (``lbp``): 8 neighbours on a circle of radius 1, computed like
``skimage.feature.local_binary_pattern(image, 8, 1, method)`` (exactly, with ``border="constant"``;
with ``"edge"`` only the outer ring differs):

* neighbour ``i`` (``i = 0..7``) sits at row offset ``round(-sin(2πi/8), 5)`` and column offset
  ``round(cos(2πi/8), 5)``: 0 = right, then counter-clockwise (1 = up-right, 2 = up, ...,
  7 = down-right). The four diagonal neighbours are *bilinearly interpolated* at ±0.70711,
  not read from the 3 × 3 corners;
* bit ``i`` is 1 when ``neighbour_i - centre >= 0`` (all arithmetic in float64, in the same
  operation order as scikit-image, so the codes are bit-identical, ties included);
* ``"default"``: code = ``Σ bit_i · 2^i`` (0..255); ``"uniform"``: the number of set bits when the
  pattern has at most two 0/1 transitions, else 9 (codes 0..9, rotation invariant).

LDP (``ldp``, Jabid, Kabir & Chae 2010): the 8 Kirsch compass masks ``M0..M7`` (East, North-East,
North, North-West, West, South-West, South, South-East: ``KIRSCH_MASKS``) are correlated with each
3 × 3 neighbourhood; bit ``i`` of the 8-bit code is set for the ``k`` (default 3) largest absolute
responses ``|m_i|``. Choices the paper leaves open, made here:

* exactly ``k`` bits are set at every pixel: equal ``|m_i|`` are ranked by direction index (the lower
  index wins), so a flat region gives bits 0..k-1 (code 7 for k = 3). With k = 3 there are
  C(8, 3) = 56 possible codes (``LDP_CODES``; ``ldp_code_index`` maps a code to 0..55);
* responses are computed as ``m_i = 8 · (n_{i-1} + n_i + n_{i+1}) - 3 · Σ n`` (the same sum as the
  mask, in integers: exact for uint8 / integer inputs, in int16 for uint8); float inputs keep their
  precision (float64 stays float64, others float32), and near-ties there can resolve differently
  from the numpy reference by rounding.

Targets for the auxiliary task (``texture_targets``): the 8 bit-planes as floats ``[N, 8, H, W]``
(binary cross-entropy) or the code as a class index ``[N, H, W]`` (softmax: 56 classes for LDP
k = 3, 10 for uniform LBP, 256 for default LBP).
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "KIRSCH_MASKS",
    "LBP_NUM_CODES",
    "LDP_CODES",
    "bit_planes",
    "code_count",
    "lbp",
    "lbp_reference",
    "ldp",
    "ldp_code_index",
    "ldp_codes",
    "ldp_reference",
    "texture_map",
    "texture_targets",
    "to_grey",
]

LbpMethod = Literal["default", "uniform"]
Border = Literal["edge", "constant"]
TextureKind = Literal["ldp", "lbp", "lbp_uniform"]

_P = 8
# scikit-image's sampling points for P=8, R=1 (rounded to 5 decimals exactly as it does)
_ANGLES = 2 * np.pi * np.arange(_P, dtype=np.float64) / _P
_RP: tuple[float, ...] = tuple(float(v) for v in np.round(-1.0 * np.sin(_ANGLES), 5))
_CP: tuple[float, ...] = tuple(float(v) for v in np.round(1.0 * np.cos(_ANGLES), 5))

LBP_NUM_CODES = {"default": 256, "uniform": _P + 2}

# (row, column) offsets of the 8 neighbours in Kirsch compass order
_COMPASS: tuple[tuple[int, int], ...] = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))

# Kirsch compass masks, M0 = East then counter-clockwise in 45° steps (row 0 is the top row).
KIRSCH_MASKS: np.ndarray = np.array(
    [
        [[-3, -3, 5], [-3, 0, 5], [-3, -3, 5]],  # M0 East
        [[-3, 5, 5], [-3, 0, 5], [-3, -3, -3]],  # M1 North-East
        [[5, 5, 5], [-3, 0, -3], [-3, -3, -3]],  # M2 North
        [[5, 5, -3], [5, 0, -3], [-3, -3, -3]],  # M3 North-West
        [[5, -3, -3], [5, 0, -3], [5, -3, -3]],  # M4 West
        [[-3, -3, -3], [5, 0, -3], [5, 5, -3]],  # M5 South-West
        [[-3, -3, -3], [-3, 0, -3], [5, 5, 5]],  # M6 South
        [[-3, -3, -3], [-3, 0, 5], [-3, 5, 5]],  # M7 South-East
    ],
    dtype=np.int64,
)


def _check_k(k: int) -> None:
    if not 1 <= int(k) <= _P - 1:
        raise ValueError(f"ldp: k must be in 1..{_P - 1}, got {k}")


def ldp_codes(k: int = 3) -> tuple[int, ...]:
    """All LDP codes with exactly ``k`` of 8 bits set, ascending (56 for k = 3)."""
    _check_k(k)
    return tuple(sorted(sum(1 << i for i in c) for c in combinations(range(_P), k)))


LDP_CODES: tuple[int, ...] = ldp_codes(3)


def code_count(kind: str, k: int = 3) -> int:
    """Number of classes of the code of ``kind`` ("ldp", "lbp", "lbp_uniform") for a softmax target."""
    if kind == "ldp":
        return math.comb(_P, k)
    if kind == "lbp":
        return LBP_NUM_CODES["default"]
    if kind == "lbp_uniform":
        return LBP_NUM_CODES["uniform"]
    raise ValueError(f"unknown texture kind {kind!r} (known: ldp, lbp, lbp_uniform)")


def ldp_code_index(codes: torch.Tensor, k: int = 3) -> torch.Tensor:
    """Map LDP codes (uint8) to class indices ``0..C(8,k)-1`` (long); a code without exactly ``k``
    bits set is an error."""
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[list(ldp_codes(k))] = torch.arange(math.comb(_P, k))
    out = lut.to(codes.device)[codes.long()]
    if bool((out < 0).any()):
        raise ValueError(f"not an LDP code with exactly {k} bits set")
    return out


def _as_batch(images: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    """A ``[N, H, W]`` tensor and whether the input was a single ``[H, W]`` image."""
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch tensor or numpy array, got {type(images).__name__}")
    if x.dim() == 2:
        return x.unsqueeze(0), True
    if x.dim() != 3:
        raise ValueError(f"expected grey images [N, H, W] or [H, W], got shape {tuple(x.shape)}")
    if x.dtype == torch.bool or x.is_complex():
        raise TypeError(f"expected a real-valued image, got {x.dtype}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"empty image of shape {tuple(x.shape)}")
    return x, False


def _check_border(border: str, fn: str) -> None:
    if border not in ("edge", "constant"):
        raise ValueError(f"{fn}: unknown border {border!r} (known: edge, constant)")


def _pad1(x: torch.Tensor, border: Border) -> torch.Tensor:
    """``[N, H, W]`` padded by one pixel: replicated (``"edge"``) or zeros (``"constant"``)."""
    if border == "constant":
        return F.pad(x, (1, 1, 1, 1), value=0)
    p = torch.cat([x[:, :1], x, x[:, -1:]], dim=1)  # F.pad's replicate mode has no integer kernels
    return torch.cat([p[:, :, :1], p, p[:, :, -1:]], dim=2)


def lbp(images: torch.Tensor | np.ndarray, method: LbpMethod = "default", border: Border = "edge") -> torch.Tensor:
    """LBP code maps (P = 8, R = 1) of grey ``images`` ``[N, H, W]`` or ``[H, W]``; returns uint8 of
    the same shape. With ``border="constant"`` identical to
    ``skimage.feature.local_binary_pattern(img, 8, 1, method)``; ``"edge"`` replicates the border."""
    if method not in LBP_NUM_CODES:
        raise ValueError(f"lbp: unknown method {method!r} (known: default, uniform)")
    _check_border(border, "lbp")
    x, single = _as_batch(images)
    # on finite images an on-axis neighbour (zero fractional offsets) interpolates to the pixel itself
    finite = not x.is_floating_point() or bool(torch.isfinite(x).all())
    x = x.to(torch.float64)
    n, h, w = x.shape
    pad = _pad1(x, border)  # "constant": outside reads 0 (skimage mode 'C', cval 0)
    rows = torch.arange(h, dtype=torch.float64, device=x.device)
    cols = torch.arange(w, dtype=torch.float64, device=x.device)
    bits = []
    for rp, cp in zip(_RP, _CP):
        if finite and rp == int(rp) and cp == int(cp):
            r0, c0 = 1 + int(rp), 1 + int(cp)
            bits.append(pad[:, r0 : r0 + h, c0 : c0 + w] >= x)
            continue
        # same float64 operations as scikit-image's bilinear_interpolation at (r + rp, c + cp)
        rr, cc = rows + rp, cols + cp
        dr = (rr - torch.floor(rr)).view(1, h, 1)
        dc = (cc - torch.floor(cc)).view(1, 1, w)
        r0, r1 = 1 + math.floor(rp), 1 + math.ceil(rp)  # padded index of floor / ceil rows
        c0, c1 = 1 + math.floor(cp), 1 + math.ceil(cp)
        top = (1 - dc) * pad[:, r0 : r0 + h, c0 : c0 + w] + dc * pad[:, r0 : r0 + h, c1 : c1 + w]
        bottom = (1 - dc) * pad[:, r1 : r1 + h, c0 : c0 + w] + dc * pad[:, r1 : r1 + h, c1 : c1 + w]
        value = (1 - dr) * top + dr * bottom
        bits.append((value - x) >= 0)
    if method == "default":
        code = torch.zeros((n, h, w), dtype=torch.int32, device=x.device)
        for i, b in enumerate(bits):
            code |= b.to(torch.int32) << i
    else:
        changes = torch.zeros((n, h, w), dtype=torch.int32, device=x.device)
        ones = torch.zeros((n, h, w), dtype=torch.int32, device=x.device)
        for i in range(_P):
            ones += bits[i].to(torch.int32)
            if i < _P - 1:  # transitions counted along the chain 0..7, as scikit-image does
                changes += (bits[i] != bits[i + 1]).to(torch.int32)
        code = torch.where(changes <= 2, ones, torch.full_like(ones, _P + 1))
    out = code.to(torch.uint8)
    return out[0] if single else out


def ldp(images: torch.Tensor | np.ndarray, k: int = 3, border: Border = "edge") -> torch.Tensor:
    """LDP code maps (Kirsch masks, top-``k`` absolute responses) of grey ``images`` ``[N, H, W]``
    or ``[H, W]``; returns uint8 of the same shape with exactly ``k`` bits set per pixel."""
    _check_k(k)
    _check_border(border, "ldp")
    x, single = _as_batch(images)
    if x.dtype == torch.uint8:
        dtype = torch.int16  # every intermediate is within ±6120 for uint8: exact, and fast on CPU
    elif not x.is_floating_point():
        dtype = torch.int64
    else:
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    n, h, w = x.shape
    p = _pad1(x.to(dtype), border)
    # the 8 neighbours in compass order E, NE, N, NW, W, SW, S, SE (row 0 is the top row)
    nb = [p[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in _COMPASS]
    total = nb[0].clone()
    for t in nb[1:]:
        total += t
    total *= 3
    # Kirsch mask M_i puts 5 on neighbours i-1, i, i+1 and -3 on the other five:
    # m_i = 5·T_i - 3·(S - T_i) = 8·T_i - 3·S with T_i = n_{i-1} + n_i + n_{i+1}
    mag = [(8 * (nb[i - 1] + nb[i] + nb[(i + 1) % _P]) - total).abs_() for i in range(_P)]
    # rank of each direction = how many directions beat it (larger |m|, or equal with a lower index)
    rank = [torch.zeros((n, h, w), dtype=torch.uint8, device=x.device) for _ in range(_P)]
    for i in range(_P):
        for j in range(i + 1, _P):
            j_beats_i = mag[j] > mag[i]
            rank[i] += j_beats_i
            rank[j] += ~j_beats_i
    code = torch.zeros((n, h, w), dtype=torch.uint8, device=x.device)
    for i in range(_P):
        code |= (rank[i] < k).to(torch.uint8) << i
    return code[0] if single else code


def texture_map(images: torch.Tensor | np.ndarray, kind: TextureKind = "ldp", *, k: int = 3) -> torch.Tensor:
    """Code map of ``kind``: "ldp" (``ldp(images, k)``), "lbp" (default LBP) or "lbp_uniform"; the
    border is replicated for every kind (``border="edge"``)."""
    if kind == "ldp":
        return ldp(images, k=k, border="edge")
    if kind == "lbp":
        return lbp(images, "default", border="edge")
    if kind == "lbp_uniform":
        return lbp(images, "uniform", border="edge")
    raise ValueError(f"unknown texture kind {kind!r} (known: ldp, lbp, lbp_uniform)")


def bit_planes(codes: torch.Tensor, bits: int = _P) -> torch.Tensor:
    """``[N, H, W]`` integer codes -> ``[N, bits, H, W]`` float 0/1 planes (bit ``i`` in plane ``i``)."""
    dtype = torch.uint8 if codes.dtype == torch.uint8 and bits <= 8 else torch.int64
    c = codes.to(dtype).unsqueeze(1)
    shifts = torch.arange(bits, dtype=dtype, device=codes.device).view(1, bits, 1, 1)
    return ((c >> shifts) & 1).to(torch.float32)


def to_grey(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Grey images ``[N, H, W]`` from ``[N, H, W]`` (returned as is), ``[N, H, W, 3]`` or
    ``[N, 3, H, W]`` RGB. uint8 RGB uses PIL's exact integer ITU-R 601 luma (``Image.convert("L")``);
    float RGB uses 0.299 R + 0.587 G + 0.114 B."""
    x = torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() == 3:
        return x
    if x.dim() != 4:
        raise ValueError(f"expected [N, H, W], [N, H, W, 3] or [N, 3, H, W], got {tuple(x.shape)}")
    if x.shape[1] == 1:
        return x[:, 0]
    if x.shape[-1] == 3:
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
    elif x.shape[1] == 3:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
    else:
        raise ValueError(f"expected 1 or 3 channels, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        r, g, b = (t.to(torch.int32) for t in (r, g, b))
        return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).to(torch.uint8)
    return 0.299 * r.float() + 0.587 * g.float() + 0.114 * b.float()


def texture_targets(
    crops: torch.Tensor | np.ndarray,
    kind: TextureKind = "ldp",
    *,
    loss: Literal["bits", "code"] = "bits",
    k: int = 3,
) -> torch.Tensor:
    """Face crops (grey ``[N, H, W]`` or RGB ``[N, H, W, 3]`` / ``[N, 3, H, W]``, uint8 preferred)
    -> texture-MAE targets: ``loss="bits"`` gives float ``[N, 8, H, W]`` bit-planes (BCE),
    ``loss="code"`` gives long ``[N, H, W]`` class indices (softmax over ``code_count(kind, k)``)."""
    codes = texture_map(to_grey(crops), kind, k=k)
    if loss == "bits":
        return bit_planes(codes)
    if loss == "code":
        return ldp_code_index(codes, k) if kind == "ldp" else codes.long()
    raise ValueError(f"unknown texture loss {loss!r} (known: bits, code)")


# --------------------------------------------------------------------------------------------
# numpy references (one image; readable transcriptions of the definitions above)


def lbp_reference(image: np.ndarray, method: LbpMethod = "default", border: Border = "edge") -> np.ndarray:
    """numpy LBP (P = 8, R = 1) of one ``[H, W]`` image, same definition as ``lbp``; uint8."""
    _check_border(border, "lbp")
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected one [H, W] image, got shape {img.shape}")
    h, w = img.shape

    def pixel(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        value = img[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]  # the nearest pixel: "edge"
        return value if border == "edge" else np.where(inside, value, 0.0)

    r, c = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    signs = []
    for rp, cp in zip(_RP, _CP):
        rr, cc = r + rp, c + cp
        r0, c0 = np.floor(rr), np.floor(cc)
        r1, c1 = np.ceil(rr), np.ceil(cc)
        dr, dc = rr - r0, cc - c0
        r0i, r1i, c0i, c1i = (a.astype(np.int64) for a in (r0, r1, c0, c1))
        top = (1 - dc) * pixel(r0i, c0i) + dc * pixel(r0i, c1i)
        bottom = (1 - dc) * pixel(r1i, c0i) + dc * pixel(r1i, c1i)
        signs.append(((1 - dr) * top + dr * bottom - img) >= 0)
    s = np.stack(signs).astype(np.int64)  # [8, H, W]
    if method == "default":
        return (s * (1 << np.arange(_P))[:, None, None]).sum(0).astype(np.uint8)
    if method == "uniform":
        changes = np.abs(np.diff(s, axis=0)).sum(0)
        return np.where(changes <= 2, s.sum(0), _P + 1).astype(np.uint8)
    raise ValueError(f"lbp: unknown method {method!r} (known: default, uniform)")


def ldp_reference(image: np.ndarray, k: int = 3, border: Border = "edge") -> np.ndarray:
    """numpy LDP of one ``[H, W]`` image, same definition as ``ldp``; uint8."""
    _check_k(k)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected one [H, W] image, got shape {img.shape}")
    img = img.astype(np.int64) if np.issubdtype(img.dtype, np.integer) else img.astype(np.float64)
    h, w = img.shape
    padded = np.pad(img, 1, mode="edge") if border == "edge" else np.pad(img, 1, mode="constant")
    responses = np.zeros((_P, h, w), dtype=img.dtype)
    for i, mask in enumerate(KIRSCH_MASKS):
        for dy in range(3):
            for dx in range(3):
                responses[i] += mask[dy, dx] * padded[dy : dy + h, dx : dx + w]
    order = np.argsort(-np.abs(responses), axis=0, kind="stable")  # ties: lower direction first
    code = np.zeros((h, w), dtype=np.int64)
    for j in range(k):
        code |= 1 << order[j]
    return code.astype(np.uint8)
