"""Zip bombs made in milliseconds: a deflate stream of N zero bytes is one compressed 1 MiB block
(byte-aligned by a full flush, so it can follow itself) repeated, and its CRC-32 is computed
without touching N bytes (the CRC register over zero bytes is a linear map, raised to the Nth
power by squaring). A 2 GiB member compresses to ~2 MB, as the reported submission did.

Shared by ``tests/test_archives.py`` and ``benchmarks/bench_zip_bomb.py``.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_BLOCK = 1 << 20
_POLY = 0xEDB88320


def _apply(op: list[int], vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= op[i]
        vec >>= 1
        i += 1
    return out


def _compose(a: list[int], b: list[int]) -> list[int]:
    """The map ``a`` after ``b`` (each a list of the images of the 32 basis bits)."""
    return [_apply(a, col) for col in b]


def crc32_zeros(n: int, crc: int = 0) -> int:
    """``zlib.crc32(bytes(n), crc)`` in O(log n)."""
    op = [_POLY] + [1 << (i - 1) for i in range(1, 32)]  # one zero bit shifted through the register
    for _ in range(3):
        op = _compose(op, op)  # one zero byte
    state = crc ^ 0xFFFFFFFF
    while n:
        if n & 1:
            state = _apply(op, state)
        op = _compose(op, op)
        n >>= 1
    return state ^ 0xFFFFFFFF


def deflate_zeros(n: int, prefix: bytes = b"") -> bytes:
    """A raw deflate stream that inflates to ``prefix`` followed by ``n`` zero bytes."""
    parts = []
    if prefix:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append(c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)
    parts.extend([block] * (n // _BLOCK))
    if n % _BLOCK:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        parts.append(c.compress(bytes(n % _BLOCK)) + c.flush(zlib.Z_FULL_FLUSH))
    parts.append(zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH))  # the final empty block
    return b"".join(parts)


def write_zip(path: Path, members: list[tuple[str, bytes, int, int]]) -> Path:
    """A zip of deflated members ``(name, deflate stream, crc, declared inflated size)``; the
    declared size may lie."""
    out, central = bytearray(), bytearray()
    for name, data, crc, size in members:
        raw = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw), 0) + raw
        out += data
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0x21,
            crc,
            len(data),
            size,
            len(raw),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += raw
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))
    return path


def zip_bomb(path: Path, name: str = "prediction.csv", size: int = 2 << 30, *, prefix: bytes = b"",
             declared: int | None = None) -> Path:  # fmt: skip
    """A zip whose one member inflates to ``prefix`` + zeros, ``size`` bytes in all (declared as
    ``declared`` when given: a lying header)."""
    zeros = size - len(prefix)
    crc = crc32_zeros(zeros, zlib.crc32(prefix))
    return write_zip(path, [(name, deflate_zeros(zeros, prefix), crc, size if declared is None else declared)])
