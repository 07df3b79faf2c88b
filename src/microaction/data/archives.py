"""Bounded reading of zip archives that come from outside: submission zips, ``.npz`` keypoint and
mask files.

A deflate stream inflates up to ~1000x: a 2 MB submission zip can hold a 2 GB ``prediction.csv``
(``zf.read()`` took 12 GB of memory for one). So every member read here is bounded:

- an archive with more than ``MAX_MEMBERS`` members is refused;
- a member whose size, as the central directory declares it, exceeds the cap is refused before
  anything is inflated; the cap is ``DEFAULT_MAX_UNZIPPED_MB`` MB per member, raised with
  ``mar score --max-unzipped-mb N`` or the environment variable ``MAR_MAX_UNZIPPED_MB``;
- the member is then inflated through a read that stops at the cap, so a header that lies cannot
  go past it either (``zipfile`` itself stops at the declared size and checks the CRC);
- an ``.npy`` member's own header (shape x item size) must match its bytes exactly before an
  array is made, so a header cannot ask for more memory than the member holds; object arrays
  are refused (they would be unpickled).
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_UNZIPPED_MB",
    "ENV_MAX_UNZIPPED_MB",
    "MAX_MEMBERS",
    "ArchiveError",
    "load_npz",
    "max_unzipped_bytes",
    "read_member",
    "set_max_unzipped_mb",
    "zip_members",
]

DEFAULT_MAX_UNZIPPED_MB = 256
ENV_MAX_UNZIPPED_MB = "MAR_MAX_UNZIPPED_MB"
MAX_MEMBERS = 1000
_MB = 1 << 20
_override_mb: float | None = None
# what a damaged zip raises while read (RuntimeError: encrypted; NotImplementedError: a method)
_ZIP_ERRORS = (OSError, EOFError, RuntimeError, NotImplementedError, ValueError, zlib.error, zipfile.BadZipFile)


class ArchiveError(ValueError):
    """An archive that is refused or cannot be read; the message names the file (and member)."""


def set_max_unzipped_mb(mb: float | None) -> None:
    """The per-member cap for this process (``None``: the environment's, else the default)."""
    global _override_mb
    if mb is not None and not (mb > 0 and math.isfinite(mb)):
        raise ValueError(f"--max-unzipped-mb must be a positive number, not {mb}")
    _override_mb = mb


def max_unzipped_bytes() -> int:
    """The cap on one member's inflated size, in bytes."""
    mb: float = DEFAULT_MAX_UNZIPPED_MB
    if _override_mb is not None:
        mb = _override_mb
    elif os.environ.get(ENV_MAX_UNZIPPED_MB):
        try:
            mb = float(os.environ[ENV_MAX_UNZIPPED_MB])
        except ValueError:
            raise ValueError(
                f"{ENV_MAX_UNZIPPED_MB}={os.environ[ENV_MAX_UNZIPPED_MB]!r} is not a number of MB"
            ) from None
        if not (mb > 0 and math.isfinite(mb)):
            raise ValueError(f"{ENV_MAX_UNZIPPED_MB} must be a positive number of MB")
    return int(mb * _MB)


def _too_large(where: str, size: int, limit: int) -> ArchiveError:
    return ArchiveError(
        f"{where}: inflates to {size} bytes, over the {limit / _MB:.4g} MB limit for one archive member "
        f"(a zip bomb?); raise it with --max-unzipped-mb or {ENV_MAX_UNZIPPED_MB} if the file is genuine"
    )


def _open(path: str | os.PathLike[str]) -> zipfile.ZipFile:
    """A zip, refused when its central directory lists too many members."""
    try:
        zf = zipfile.ZipFile(path)
    except _ZIP_ERRORS as e:
        raise ArchiveError(f"{path}: not a readable zip ({type(e).__name__}: {_clip(e)})") from None
    if len(zf.infolist()) > MAX_MEMBERS:
        zf.close()
        raise ArchiveError(
            f"{path}: {len(zf.infolist())} members, more than the {MAX_MEMBERS} a zip read here may hold"
        )
    return zf


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, limit: int) -> bytes:
    if info.file_size > limit:  # refused before anything is inflated
        raise _too_large(where, info.file_size, limit)
    # inflated a chunk at a time with a hard stop, whatever the header said (one read(n) inflates
    # up to n bytes before zipfile cuts them to the declared size)
    data = bytearray()
    try:
        with zf.open(info) as f:
            while len(data) <= limit and (chunk := f.read(_MB)):
                data += chunk
    except _ZIP_ERRORS as e:
        raise ArchiveError(f"{where}: cannot read ({type(e).__name__}: {_clip(e)})") from None
    if len(data) > limit:
        raise _too_large(where, len(data), limit)
    return bytes(data)


def zip_members(path: str | os.PathLike[str]) -> list[str]:
    """The member names of a zip (refused when there are too many)."""
    with _open(path) as zf:
        return zf.namelist()


def read_member(path: str | os.PathLike[str], name: str, *, limit: int | None = None) -> bytes:
    """The inflated bytes of member ``name``, refused (before inflating) when it would exceed
    ``limit`` (default ``max_unzipped_bytes()``)."""
    limit = max_unzipped_bytes() if limit is None else limit
    with _open(path) as zf:
        try:
            info = zf.getinfo(name)
        except KeyError:
            raise ArchiveError(f"{path}: no member {name!r}") from None
        return _read(zf, info, f"{path}!{name}", limit)


def _npy_array(raw: bytes, where: str) -> np.ndarray[Any, Any]:
    """An array from the bytes of one ``.npy``, its header checked against its length first."""
    fp = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f".npy format version {version} is not read here")
    except (ValueError, SyntaxError, TypeError, EOFError) as e:
        raise ArchiveError(f"{where}: not a readable .npy array ({_clip(e)})") from None
    if dtype.hasobject:
        raise ArchiveError(f"{where}: an object array (it would be unpickled); not read")
    size = math.prod(shape) * dtype.itemsize
    if size != len(raw) - fp.tell():
        raise ArchiveError(f"{where}: the header says {shape} {dtype} ({size} bytes) but {len(raw) - fp.tell()} follow")
    arr = np.frombuffer(raw, dtype=dtype, offset=fp.tell()).reshape(shape, order="F" if fortran else "C")
    return arr.copy(order="K")


def _clip(e: BaseException) -> str:
    text = str(e)
    return text if len(text) <= 160 else text[:157] + "..."


def load_npz(path: str | os.PathLike[str], *, limit: int | None = None) -> dict[str, np.ndarray[Any, Any]]:
    """Every array of an ``.npz`` (``np.savez`` / ``savez_compressed``), by name, each member bounded
    as ``read_member`` bounds it and each ``.npy`` header checked against its bytes."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ArchiveError(f"{path}: not an .npz (zip) file")
    limit = max_unzipped_bytes() if limit is None else limit
    out = {}
    with _open(path) as zf:
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                where = f"{path}!{info.filename}"
                out[info.filename[:-4]] = _npy_array(_read(zf, info, where, limit), where)
    return out
