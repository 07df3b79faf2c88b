"""LBP / LDP texture descriptors: exact agreement with scikit-image, hand-checked LDP, invariants."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from microaction.models.texture import (
    KIRSCH_MASKS,
    LDP_CODES,
    bit_planes,
    code_count,
    lbp,
    lbp_reference,
    ldp,
    ldp_code_index,
    ldp_reference,
    texture_map,
    texture_targets,
    to_grey,
)

skfeature = pytest.importorskip("skimage.feature")


def _sk_lbp(img: np.ndarray, method: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image warns about float images
        return skfeature.local_binary_pattern(img, 8, 1, method=method)


def _random_images(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (37, 53)).astype(np.uint8),  # generic
        (rng.integers(0, 3, (41, 29)) * 100).astype(np.uint8),  # many exact ties
        np.full((9, 11), 77, np.uint8),  # all ties
        rng.integers(0, 256, (1, 1)).astype(np.uint8),  # one pixel: every neighbour is outside
        rng.integers(0, 256, (2, 64)).astype(np.uint8),
        rng.integers(0, 256, (203, 157)).astype(np.uint8),  # rows/cols far from 0: float rounding differs
        rng.random((31, 33)),  # float64
        rng.random((19, 23)).astype(np.float32),
        np.round(rng.normal(size=(40, 40)) * 2) / 2,  # negative floats with ties
    ]


@pytest.mark.parametrize("method", ["default", "uniform"])
@pytest.mark.parametrize("seed", [0, 1])
def test_lbp_equals_skimage_exactly(method: str, seed: int) -> None:
    for img in _random_images(seed):
        ref = _sk_lbp(img, method)
        got = lbp(img, method, border="constant")
        assert got.dtype == torch.uint8 and got.shape == img.shape
        np.testing.assert_array_equal(got.numpy(), ref, err_msg=f"{method} {img.shape} {img.dtype}")
        np.testing.assert_array_equal(lbp_reference(img, method, border="constant"), ref)
        # the default replicates the border: same interior, its own reference
        edge = lbp(img, method)
        np.testing.assert_array_equal(edge.numpy(), lbp_reference(img, method), err_msg=f"edge {img.shape}")
        if min(img.shape) > 2:
            np.testing.assert_array_equal(edge[1:-1, 1:-1].numpy(), ref[1:-1, 1:-1])


@pytest.mark.parametrize("method", ["default", "uniform"])
def test_lbp_batched_equals_per_image(method: str) -> None:
    rng = np.random.default_rng(3)
    batch = rng.integers(0, 256, (6, 24, 20)).astype(np.uint8)
    got = lbp(torch.from_numpy(batch), method, border="constant")
    assert got.shape == (6, 24, 20)
    for i in range(6):
        np.testing.assert_array_equal(got[i].numpy(), _sk_lbp(batch[i], method))
    if method == "uniform":
        assert int(got.max()) <= 9


def test_lbp_is_monotonic_invariant() -> None:
    rng = np.random.default_rng(4)
    img = rng.integers(0, 120, (30, 30)).astype(np.uint8)
    # an affine grey change leaves the codes unchanged (not interpolated diagonals in general: check
    # on axis-only bits); with the replicated border the outer ring too, with zero padding not
    a = lbp(img, "default")
    b = lbp((img.astype(np.int64) * 2 + 10).astype(np.uint8), "default")
    axis_bits = sum(1 << i for i in (0, 2, 4, 6))
    np.testing.assert_array_equal((a & axis_bits).numpy(), (b & axis_bits).numpy())
    a0 = lbp(img, "default", border="constant")
    b0 = lbp((img.astype(np.int64) * 2 + 10).astype(np.uint8), "default", border="constant")
    np.testing.assert_array_equal((a0[1:-1, 1:-1] & axis_bits).numpy(), (b0[1:-1, 1:-1] & axis_bits).numpy())


def test_lbp_and_ldp_treat_the_border_alike() -> None:
    """The texture targets replicate the border for both descriptors: a flat crop gets the flat
    code everywhere, its outer ring included (zero padding would give the ring other codes)."""
    flat = np.full((6, 7), 90, np.uint8)
    for kind, flat_code in (("lbp", 255), ("lbp_uniform", 8), ("ldp", 7)):
        codes = texture_map(flat, kind)
        assert bool((codes == flat_code).all()), (kind, codes)
    assert int(lbp(flat, border="constant")[0, 0]) != 255
    assert int(ldp(flat, border="constant")[0, 0]) != 7
    with pytest.raises(ValueError, match="border"):
        lbp(flat, border="reflect")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="border"):
        lbp_reference(flat, border="wrap")  # type: ignore[arg-type]


def test_ldp_hand_checked_3x3() -> None:
    # Jabid et al. 2010's example neighbourhood; responses by hand (m_i = 8·T_i - 3·S, S = 349):
    # E -399, NE -503, N 97, NW 313, W 537, SW 161, S 97, SE -303.
    # |m| top-3: W 537 (bit 4), NE 503 (bit 1), E 399 (bit 0) -> 0b00010011 = 19
    nb = np.array([[85, 32, 26], [53, 50, 10], [60, 38, 45]], dtype=np.uint8)
    responses = [(KIRSCH_MASKS[i] * nb.astype(np.int64)).sum() for i in range(8)]
    assert responses == [-399, -503, 97, 313, 537, 161, 97, -303]
    assert int(ldp(nb)[1, 1]) == 0b00010011 == 19
    assert int(ldp_reference(nb)[1, 1]) == 19
    assert int(ldp(nb, k=1)[1, 1]) == 1 << 4
    assert int(ldp(nb, k=2)[1, 1]) == (1 << 4) | (1 << 1)


def test_ldp_exactly_k_bits_and_matches_reference() -> None:
    rng = np.random.default_rng(5)
    for dtype in (np.uint8, np.int32, np.float64):
        for border in ("edge", "constant"):
            imgs = (rng.integers(0, 4, (4, 21, 26)) * 60).astype(dtype)  # many ties
            for k in (1, 3, 6):
                codes = ldp(imgs, k=k, border=border)
                assert codes.shape == imgs.shape and codes.dtype == torch.uint8
                assert bool((bit_planes(codes).sum(1) == k).all())
                for i in range(len(imgs)):
                    np.testing.assert_array_equal(codes[i].numpy(), ldp_reference(imgs[i], k=k, border=border))
    flat = ldp(np.zeros((5, 5), np.uint8))
    assert bool((flat == 7).all())  # ties: lowest direction indices win
    assert len(LDP_CODES) == 56 == code_count("ldp")
    assert set(np.unique(ldp(rng.integers(0, 256, (64, 64)).astype(np.uint8)).numpy())) <= set(LDP_CODES)


def test_ldp_brightness_and_contrast_invariance() -> None:
    rng = np.random.default_rng(6)
    img = rng.integers(0, 100, (3, 32, 32))
    base = ldp(img.astype(np.uint8))
    np.testing.assert_array_equal(ldp((img + 50).astype(np.uint8)).numpy(), base.numpy())
    np.testing.assert_array_equal(ldp((img * 2 + 7).astype(np.uint8)).numpy(), base.numpy())


def test_ldp_code_index_and_targets() -> None:
    codes = torch.tensor(list(LDP_CODES), dtype=torch.uint8)
    assert ldp_code_index(codes).tolist() == list(range(56))
    with pytest.raises(ValueError, match="exactly 3 bits"):
        ldp_code_index(torch.tensor([0b1111], dtype=torch.uint8))
    rgb = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    bits = texture_targets(rgb, "ldp")
    assert bits.shape == (2, 8, 16, 16) and bits.dtype == torch.float32
    assert bool((bits.sum(1) == 3).all())
    idx = texture_targets(rgb.permute(0, 3, 1, 2), "ldp", loss="code")
    assert idx.shape == (2, 16, 16) and int(idx.max()) < 56
    uni = texture_targets(rgb, "lbp_uniform", loss="code")
    assert int(uni.max()) <= 9
    # grey conversion is PIL's exact "L" conversion
    from PIL import Image

    img = rgb[0].numpy()
    np.testing.assert_array_equal(to_grey(rgb)[0].numpy(), np.asarray(Image.fromarray(img).convert("L")))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="N, H, W"):
        lbp(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="unknown method"):
        lbp(np.zeros((4, 4)), "ror")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        ldp(np.zeros((4, 4)), k=8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_texture_on_gpu_matches_cpu() -> None:
    x = torch.randint(0, 256, (4, 40, 30), dtype=torch.uint8)
    for method in ("default", "uniform"):
        assert torch.equal(lbp(x.cuda(), method).cpu(), lbp(x, method))  # type: ignore[arg-type]
    assert torch.equal(ldp(x.cuda()).cpu(), ldp(x))
