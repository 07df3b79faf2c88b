"""Files written so that a reader never sees a part of one, and their checksums.

In a module of its own so that the feature store (``data.store``) and its packed arrays
(``data.packed``) share them without importing each other.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "atomic_write_bytes", "new_file_mode", "process_umask", "sha256_file"]

_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """The process's file-mode creation mask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (``mkstemp`` gives 0o600)."""
    return 0o666 & ~process_umask()


@contextmanager
def atomic_file(path: Path, *, sync: bool = True) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: readers see the old file or the complete new one (a
    temporary file, renamed when the block ends; removed on an error). The file gets the mode of
    any other new file (the process umask), not mkstemp's 0600. ``sync``: the data reaches the
    disk before the file appears (survives a power cut too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    with atomic_file(path, sync=sync) as f:
        f.write(data)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
