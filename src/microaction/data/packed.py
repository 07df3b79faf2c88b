"""Packed feature stores: ``STORE/packed/``, every item's features concatenated in time.

Layout (documented for users in ``docs/feature_store.md``)::

    packed/
      regions.npy       [ΣT, R, D] f16      global.npy      [ΣT, Dg] f16
      timestamps.npy    [ΣT] f32            step_valid.npy  [ΣT, R] bool (optional)
      offsets.npy       [N+1] int64         region_valid.npy [N, R] bool
      keys.json         the N keys, in row order
      pack.json         {"format": 1, "files": {name: {"bytes", "sha256"}}, "items": {key: sha256}}

``pack.json`` is written last, inside the folder that is renamed into place: the size and SHA-256
of every other file, and the checksum of each item file the pack was made from.

What is checked when (a store may be far larger than memory, so the data is hashed only on demand):

- opening (``PackedArrays``: every reader, ``mar train`` / ``eval`` / ``predict``): each array's
  header, dtype and shape against the store manifest and ``offsets``, and each file's size against
  its header and ``pack.json``. Nothing else is read, so a truncated or extended file is refused
  by name at once, while bytes changed in place are not seen here.
- reading a clip: its features are finite (a NaN or inf names the item and the file).
- ``verify_pack`` (``mar extract --verify``, ``mar pack``): the SHA-256 of every file against
  ``pack.json``, and each packed item's checksum against its status (a pack older than its items).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.errors import StoreError
from microaction.data.fileio import atomic_write_bytes, sha256_file

__all__ = [
    "PACK_FILE",
    "NpyRows",
    "PackVerdict",
    "PackedArrays",
    "all_finite",
    "packed_keys",
    "rebuild_hint",
    "verify_pack",
    "write_pack",
]

PACK_FORMAT = 1
PACK_FILE = "pack.json"
KEYS_FILE = "keys.json"
OPTIONAL = ("step_valid.npy",)  # packs made before per-step validity existed lack it

# what a reader of one clip gets: regions [R, T, D], global [T, Dg], timestamps [T], region_valid [R],
# step_valid [R, T] or None
ClipArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def all_finite(a: np.ndarray) -> bool:
    """No NaN or inf in ``a``. float16 (the store's type) by its exponent bits: numpy's isfinite
    has no vectorised float16 loop and costs about 7 times as much."""
    if a.dtype == np.float16:
        bits = np.ascontiguousarray(a).view(np.uint16)
        return bits.size == 0 or int(np.max(bits & 0x7C00)) < 0x7C00
    return bool(np.isfinite(a).all())


def rebuild_hint(root: str | os.PathLike[str]) -> str:
    return f"rebuild it from the items with `mar pack --force {root}` (check the store: `mar extract --verify {root}`)"


def expected_arrays(n: int, total: int, R: int, D: int, Dg: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of each packed array of ``n`` clips, ``total`` steps."""
    f16, b = np.dtype(np.float16), np.dtype(bool)
    return {
        "regions.npy": ((total, R, D), f16),
        "global.npy": ((total, Dg), f16),
        "timestamps.npy": ((total,), np.dtype(np.float32)),
        "step_valid.npy": ((total, R), b),
        "offsets.npy": ((n + 1,), np.dtype(np.int64)),
        "region_valid.npy": ((n, R), b),
    }


@dataclass(frozen=True)
class NpyLayout:
    """Where a C-ordered ``.npy`` file's data lies: its shape, dtype and the data's byte offset."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def file_bytes(self) -> int:
        """The size of a complete file with this header."""
        return self.offset + int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def npy_layout(path: Path) -> NpyLayout:
    """The header of a ``.npy`` file (nothing else is read); a StoreError names the file."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise StoreError(f"{path}: not a .npy array ({type(e).__name__}: {str(e)[:200]})") from None
    if fortran:
        raise StoreError(f"{path}: Fortran-ordered arrays are not supported")
    return NpyLayout(tuple(int(v) for v in shape), np.dtype(dtype), offset)


class NpyRows:
    """Rows ``[a:b]`` of a C-ordered ``.npy`` file by positioned reads (no mapping kept).

    A read-only memory map would do the same I/O, but every page it touches counts towards the
    process's resident set for as long as the map lives; positioned reads leave the caching to
    the kernel's page cache and keep RSS flat whatever the store size.
    """

    def __init__(self, path: Path, layout: NpyLayout | None = None) -> None:
        self.path = path
        layout = layout or npy_layout(path)
        self.offset = layout.offset
        self.shape = layout.shape
        self.dtype = layout.dtype
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._fd: int | None = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:  # worker processes open their own descriptor
        return {**self.__dict__, "_fd": None, "_pid": -1}

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fd

    def rows(self, a: int, b: int) -> np.ndarray:
        n = b - a
        data = os.pread(self._file(), n * self.row_bytes, self.offset + a * self.row_bytes)
        if len(data) != n * self.row_bytes:
            raise StoreError(f"{self.path}: truncated (rows {a}:{b}); {rebuild_hint(self.path.parent.parent)}")
        return np.frombuffer(data, dtype=self.dtype).reshape(n, *self.row_shape)

    def take(self, base: int, idx: np.ndarray) -> np.ndarray:
        """Rows ``base + idx`` (``idx`` sorted): one read of the span when it is short, else one per row."""
        lo, hi = int(idx[0]), int(idx[-1]) + 1
        if hi - lo <= 2 * len(idx) + 8:
            return self.rows(base + lo, base + hi)[idx - lo]
        return np.concatenate([self.rows(base + int(i), base + int(i) + 1) for i in idx])

    def __del__(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StoreError(f"{path}: unreadable ({type(e).__name__}: {e})") from None


def _pack_record(folder: Path) -> dict[str, Any] | None:
    """``pack.json`` (None for a pack made before checksums were recorded)."""
    if not (folder / PACK_FILE).is_file():
        return None
    doc = _read_json(folder / PACK_FILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
        raise StoreError(f"{folder / PACK_FILE}: not a pack record")
    return doc


def _layout_problems(
    folder: Path, dims: tuple[int, int, int], record: dict[str, Any] | None
) -> tuple[dict[str, str], dict[str, NpyLayout], list[str], np.ndarray | None]:
    """Every problem found without reading data (file name -> what is wrong), the layouts of the
    sound arrays, the keys and the offsets (None when unusable)."""
    problems: dict[str, str] = {}
    layouts: dict[str, NpyLayout] = {}
    keys: list[str] = []
    try:
        doc = _read_json(folder / KEYS_FILE)
        if not isinstance(doc, list) or not all(isinstance(k, str) for k in doc):
            raise StoreError(f"{folder / KEYS_FILE}: not a list of keys")
        keys = doc
    except StoreError as e:
        problems[KEYS_FILE] = str(e)
    offsets: np.ndarray | None = None
    try:
        lay = npy_layout(folder / "offsets.npy")
        if lay.shape != (len(keys) + 1,) or lay.dtype.kind not in "iu":
            raise StoreError(
                f"{folder / 'offsets.npy'}: shape {lay.shape} {lay.dtype}, {len(keys)} keys need ({len(keys) + 1},) int"
            )
        got = np.load(folder / "offsets.npy", allow_pickle=False).astype(np.int64)
        if got[0] != 0 or (np.diff(got) < 0).any():
            raise StoreError(f"{folder / 'offsets.npy'}: offsets do not start at 0 and grow")
        offsets = got
    except (StoreError, ValueError, OSError) as e:
        problems["offsets.npy"] = str(e) if isinstance(e, StoreError) else f"{folder / 'offsets.npy'}: {e}"
    total = int(offsets[-1]) if offsets is not None else -1
    files = (record or {}).get("files", {})
    for name, (shape, dtype) in expected_arrays(len(keys), total, *dims).items():
        path = folder / name
        if name == "offsets.npy" or (name in OPTIONAL and not path.exists() and name not in files):
            continue
        try:
            lay = npy_layout(path)
            if lay.dtype != dtype or (offsets is not None and lay.shape != shape):
                raise StoreError(f"{path}: {lay.dtype} {lay.shape}, expected {dtype} {shape}")
            size = path.stat().st_size
            if size != lay.file_bytes:
                raise StoreError(f"{path}: {size} bytes, its header needs {lay.file_bytes} (truncated or cut)")
            layouts[name] = lay
        except StoreError as e:
            problems[name] = str(e)
    for name, rec in files.items():
        path = folder / name
        if name in problems:
            continue
        if not path.is_file():
            problems[name] = f"{path}: missing"
        elif path.stat().st_size != rec.get("bytes"):
            problems[name] = f"{path}: {path.stat().st_size} bytes, {rec.get('bytes')} were packed"
    return problems, layouts, keys, offsets


class PackedArrays:
    """An opened ``packed/`` folder, checked without reading its data (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], regions: int, region_dim: int, global_dim: int) -> None:
        self.root = Path(root)
        folder = self.root / "packed"
        try:
            record = _pack_record(folder)
        except StoreError as e:
            raise StoreError(f"{e}: damaged packed arrays of {self.root}; {rebuild_hint(self.root)}") from None
        problems, layouts, keys, offsets = _layout_problems(folder, (regions, region_dim, global_dim), record)
        if problems or offsets is None:
            first = next(iter(problems.values()))
            raise StoreError(f"{first}: damaged packed arrays of {self.root}; {rebuild_hint(self.root)}")
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        self.offsets = offsets
        self.region_valid = np.load(folder / "region_valid.npy", allow_pickle=False)
        self.regions = NpyRows(folder / "regions.npy", layouts["regions.npy"])  # [total, R, D]
        self.global_ = NpyRows(folder / "global.npy", layouts["global.npy"])  # [total, Dg]
        self.timestamps = NpyRows(folder / "timestamps.npy", layouts["timestamps.npy"])  # [total]
        # per-step region validity [total, R] (packs made before it existed: read from the items)
        sv = layouts.get("step_valid.npy")
        self.step_valid = NpyRows(folder / "step_valid.npy", sv) if sv is not None else None

    @classmethod
    def open(cls, root: str | os.PathLike[str], manifest: Any) -> PackedArrays | None:
        """The packed arrays of the store at ``root`` (``manifest``: its ``StoreManifest``); None
        when it has none."""
        if not (Path(root) / "packed" / KEYS_FILE).is_file():
            return None
        return cls(root, len(manifest.regions), int(manifest.region_dim), int(manifest.global_dim))

    def span(self, key: str) -> tuple[int, int]:
        i = self.index[key]
        return int(self.offsets[i]), int(self.offsets[i + 1])

    def check_finite(self, key: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Refuse NaN or inf in rows of ``key`` read from the named files (``{"regions.npy": rows}``)."""
        for name, rows in arrays.items():
            if not all_finite(rows):
                a, b = self.span(key)
                raise StoreError(
                    f"{self.root / 'packed' / name}: non-finite values (NaN or inf) in item {key!r} (rows {a}:{b}); "
                    f"the packed arrays are damaged: {rebuild_hint(self.root)}"
                )


def write_pack(
    root: str | os.PathLike[str],
    keys: list[str],
    lengths: list[int],
    dims: tuple[int, int, int],
    read: Callable[[str], ClipArrays],
    item_sha256: Mapping[str, str | None],
) -> Path:
    """Write ``root/packed`` from the clips ``read(key)`` gives (into ``packed.tmp``, renamed into
    place when complete), with ``pack.json`` recording every file's size and SHA-256 and the
    checksum of each item file packed (``item_sha256``)."""
    import shutil

    root = Path(root)
    R, D, Dg = dims
    offsets = np.zeros(len(keys) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    total = int(offsets[-1])
    out = root / "packed.tmp"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    reg = np.lib.format.open_memmap(out / "regions.npy", "w+", np.float16, (total, R, D))
    glo = np.lib.format.open_memmap(out / "global.npy", "w+", np.float16, (total, Dg))
    ts = np.lib.format.open_memmap(out / "timestamps.npy", "w+", np.float32, (total,))
    steps = np.lib.format.open_memmap(out / "step_valid.npy", "w+", np.bool_, (total, R))
    valid = np.zeros((len(keys), R), dtype=bool)
    for i, k in enumerate(keys):
        regions, global_, timestamps, region_valid, sv = read(k)
        a, b = offsets[i], offsets[i + 1]
        if sv is not None and sv.shape != (R, b - a):
            raise StoreError(
                f"{root}: item {k!r}: extra step_valid {sv.shape} does not fit {R} regions x {b - a} steps"
            )
        reg[a:b] = regions.transpose(1, 0, 2)
        glo[a:b] = global_
        ts[a:b] = timestamps
        valid[i] = region_valid
        steps[a:b] = (sv.T if sv is not None else region_valid[None]) & region_valid[None]
    for arr in (reg, glo, ts, steps):
        arr.flush()
    del reg, glo, ts, steps
    np.save(out / "offsets.npy", offsets)
    np.save(out / "region_valid.npy", valid)
    (out / KEYS_FILE).write_text(json.dumps(keys), encoding="utf-8")
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(out.iterdir()) if p.is_file()
    }
    record = {"format": PACK_FORMAT, "files": files, "items": {k: item_sha256.get(k) for k in keys}}
    atomic_write_bytes(out / PACK_FILE, json.dumps(record, indent=1).encode())
    final = root / "packed"
    if final.exists():
        shutil.rmtree(final)
    os.replace(out, final)
    return final


@dataclass
class PackVerdict:
    """What ``verify_pack`` found: damaged files (``packed/<name>`` -> what is wrong), the number
    of files hashed, and a note for a pack without checksums."""

    damaged: dict[str, str] = field(default_factory=dict)
    checked: int = 0
    note: str = ""
    keys: list[str] = field(default_factory=list)


def verify_pack(
    root: str | os.PathLike[str], dims: tuple[int, int, int], statuses: Mapping[str, Mapping[str, Any]]
) -> PackVerdict:
    """Check ``root/packed`` in full: layouts and sizes, the SHA-256 of every file against
    ``pack.json``, and each packed item's checksum against its status (``statuses``: key -> status
    record). No ``packed/``: an empty verdict."""
    root = Path(root)
    folder = root / "packed"
    verdict = PackVerdict()
    if not folder.is_dir():
        return verdict
    try:
        record = _pack_record(folder)
    except StoreError as e:
        record = None
        verdict.damaged[f"packed/{PACK_FILE}"] = str(e)
    problems, _, verdict.keys, _ = _layout_problems(folder, dims, record)
    verdict.damaged.update({f"packed/{n}": why for n, why in problems.items()})
    if record is None:
        if f"packed/{PACK_FILE}" not in verdict.damaged:
            verdict.note = f"{folder}: packed without checksums (by an older version); {rebuild_hint(root)} to add them"
        return verdict
    for name, rec in sorted(record["files"].items()):
        path = folder / name
        if f"packed/{name}" in verdict.damaged or not path.is_file():
            continue
        verdict.checked += 1
        if sha256_file(path) != rec.get("sha256"):
            verdict.damaged[f"packed/{name}"] = f"{path}: checksum differs from the one recorded by mar pack"
    stale = [
        k for k, sha in (record.get("items") or {}).items()
        if k in statuses and sha is not None and statuses[k].get("sha256") not in (None, sha)
    ]  # fmt: skip
    if stale:
        shown = ", ".join(stale[:5]) + (" ..." if len(stale) > 5 else "")
        verdict.damaged["packed/"] = f"{folder}: packed from an earlier extraction of {len(stale)} item(s): {shown}"
    return verdict


def packed_keys(root: str | os.PathLike[str]) -> list[str]:
    """The keys ``root/packed`` holds ([] when there is no pack or its key list is unreadable)."""
    path = Path(root) / "packed" / KEYS_FILE
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return []
    return [k for k in doc if isinstance(k, str)] if isinstance(doc, list) else []
