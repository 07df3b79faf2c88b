"""The feature store: region feature sequences on disk, with the parameters that made them.

Layout (documented for users in ``docs/feature_store.md``)::

    STORE/
      manifest.json          extraction parameters; fixed when the store is created
      items/<key>.npz        one video: regions [R, T, D] f16, global [T, Dg] f16,
                             region_valid [R] bool, timestamps [T] f32 (+ optional extras)
      status/<key>.json      {"status": "ok" | "no_person" | "failed", "error": ..., "sha256": ...,
                             "bytes": ..., ...} written after the item (sha256 / bytes: the item file's);
                             "people": a video extracted person by person, items <key>#<id>
      packed/                consolidated memory-mappable arrays (``FeatureStore.pack``) with their
                             checksums in packed/pack.json (``data.packed``: what is checked when)

Every file is written to a temporary name and renamed into place, so a process killed at any
instant leaves either the complete entry or none; ``status/<key>.json`` is the commit record of a
video (an item without a status is an interrupted write and is redone).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microaction.data.errors import StoreError, StoreMismatch, readable_text
from microaction.data.fileio import atomic_file, atomic_write_bytes, sha256_file
from microaction.data.packed import ClipArrays, PackedArrays, PackVerdict, all_finite, verify_pack, write_pack

__all__ = [
    "FORMAT_VERSION",
    "READABLE_STATUSES",
    "FeatureStore",
    "Item",
    "StoreError",
    "StoreManifest",
    "StoreMismatch",
    "atomic_file",
    "atomic_write_bytes",
    "sha256_file",
    "video_key",
]

FORMAT_VERSION = 1
# statuses whose item file holds features; "no_person": extracted, but no person in any frame
READABLE_STATUSES = ("ok", "no_person")
DEFAULT_REGIONS = ("head", "body", "upper_limbs", "lower_limbs")
FACE_REGION = "head"  # the region whose box the face crops (extraction's ``face_size``) are cut from


@dataclass
class StoreManifest:
    """Extraction parameters shared by every item of a store."""

    regions: list[str]
    region_dim: int
    global_dim: int
    parser: str
    encoders: list[dict[str, Any]]  # [{name, dim, window, stride, checkpoint, checkpoint_sha256}, ...]
    fps: float | None = None  # frames per second the videos were sampled at (None: native)
    params: dict[str, Any] = field(default_factory=dict)
    tool_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "manifest") -> StoreManifest:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise StoreError(f"{source}: unknown manifest keys {sorted(unknown)}")
        missing = {"regions", "region_dim", "global_dim", "parser", "encoders"} - set(d)
        if missing:
            raise StoreError(f"{source}: manifest lacks {sorted(missing)}")
        return cls(**d)

    def signature(self) -> dict[str, Any]:
        """What must agree between a store and a model trained on another store."""
        return {
            "regions": list(self.regions),
            "region_dim": int(self.region_dim),
            "global_dim": int(self.global_dim),
            "parser": self.parser,
            "encoders": [
                {k: e.get(k) for k in ("name", "dim", "window", "stride", "checkpoint_sha256")} for e in self.encoders
            ],
            "fps": self.fps,
        }


def check_compatible(have: StoreManifest, want: dict[str, Any], *, source: str) -> None:
    """Raise ``StoreMismatch`` listing every field of ``want`` (a signature) that ``have`` differs in."""
    got = have.signature()
    diffs = [f"{k}: store has {got.get(k)!r}, expected {v!r}" for k, v in want.items() if got.get(k) != v]
    if diffs:
        raise StoreMismatch(f"{source}: feature store does not match the run:\n  " + "\n  ".join(diffs))


@dataclass
class Item:
    """One video's features."""

    key: str
    regions: np.ndarray  # [R, T, D]
    global_: np.ndarray  # [T, Dg]
    region_valid: np.ndarray  # [R] bool
    timestamps: np.ndarray  # [T] seconds
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def length(self) -> int:
        return int(self.global_.shape[0])


_KEY_BAD = re.compile(r"[^A-Za-z0-9._=+@-]")


def video_key(
    name: str | os.PathLike[str], start: int | None = None, end: int | None = None, person: str | None = None
) -> str:
    """Store key of a video as named in its annotation (a file name or a relative path).

    Suffix dropped, '/' → '__', other unsafe characters → '_'; a frame window of a long video
    appends ``@start-end``; a person other than the video's main one appends ``#person`` (the
    track key ``video#person``; '#' appears nowhere else in a key). Keys are identifiers only: no
    model input is ever derived from them (MA-52 file names carry the body label).
    """
    text = str(name).replace("\\", "/").strip("/")
    stem = str(Path(text).with_suffix("")) if Path(text).suffix else text
    key = _KEY_BAD.sub("_", stem.replace("/", "__"))
    if start is not None or end is not None:
        key += f"@{'' if start is None else int(start)}-{'' if end is None else int(end)}"
    if person is not None and str(person) != "":
        key += "#" + _KEY_BAD.sub("_", str(person))
    if not key or key in {".", ".."}:
        raise StoreError(f"cannot make a store key from video name {name!r}")
    return key


class FeatureStore:
    """Read and write a feature store directory (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str], manifest: StoreManifest) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self._packed: PackedArrays | None = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> FeatureStore:
        root = Path(root)
        mpath = root / "manifest.json"
        if not mpath.is_file():
            raise StoreError(f"{root}: not a feature store (no manifest.json)")
        try:
            doc = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StoreError(f"{mpath}: unreadable manifest ({e})") from None
        return cls(root, StoreManifest.from_dict(doc, source=str(mpath)))

    @classmethod
    def create(cls, root: str | os.PathLike[str], manifest: StoreManifest) -> FeatureStore:
        """Create a store, or reopen one made with the same parameters (for resuming)."""
        root = Path(root)
        if (root / "manifest.json").is_file():
            store = cls.open(root)
            if store.manifest.signature() != manifest.signature():
                check_compatible(store.manifest, manifest.signature(), source=str(root))
            return store
        root.mkdir(parents=True, exist_ok=True)
        (root / "items").mkdir(exist_ok=True)
        (root / "status").mkdir(exist_ok=True)
        atomic_write_bytes(root / "manifest.json", json.dumps(manifest.to_dict(), indent=2).encode())
        return cls(root, manifest)

    # -- status --------------------------------------------------------------------------------
    def _item_path(self, key: str) -> Path:
        return self.root / "items" / f"{key}.npz"

    def _status_path(self, key: str) -> Path:
        return self.root / "status" / f"{key}.json"

    def status(self, key: str) -> dict[str, Any] | None:
        p = self._status_path(key)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None  # a torn status file cannot exist (atomic writes); treat as not done

    def statuses(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        sdir = self.root / "status"
        if sdir.is_dir():
            for p in sorted(sdir.glob("*.json")):
                st = self.status(p.stem)
                if st is not None:
                    out[p.stem] = st
        return out

    def is_done(self, key: str) -> bool:
        """The video was extracted (``ok`` or ``no_person``) and its item file is there."""
        st = self.status(key)
        return st is not None and st.get("status") in READABLE_STATUSES and self._item_path(key).is_file()

    def keys(self) -> list[str]:
        """Keys of the videos extracted successfully, sorted (not those with no person found)."""
        return sorted(k for k, st in self.statuses().items() if st.get("status") == "ok")

    def no_person(self) -> list[str]:
        """Keys of the videos extracted with no person found in any frame (status ``no_person``)."""
        return sorted(k for k, st in self.statuses().items() if st.get("status") == "no_person")

    def failures(self) -> dict[str, str]:
        return {k: str(st.get("error", "")) for k, st in self.statuses().items() if st.get("status") == "failed"}

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.is_done(key)

    # -- writing -------------------------------------------------------------------------------
    def write(
        self,
        key: str,
        *,
        regions: np.ndarray,
        global_: np.ndarray,
        region_valid: np.ndarray,
        timestamps: np.ndarray,
        extras: dict[str, np.ndarray] | None = None,
        info: dict[str, Any] | None = None,
        status: str = "ok",
    ) -> None:
        """Store one video's features atomically, then mark it ``status`` (``ok``, or
        ``no_person`` when the parser found no one); the status records the item's checksum."""
        if status not in READABLE_STATUSES:
            raise StoreError(f"{key}: status {status!r} is not one of {READABLE_STATUSES}")
        m = self.manifest
        R, T, D = regions.shape
        if R != len(m.regions) or D != m.region_dim:
            raise StoreError(
                f"{key}: regions {regions.shape} do not fit the manifest (R={len(m.regions)}, D={m.region_dim})"
            )
        if global_.shape != (T, m.global_dim):
            raise StoreError(f"{key}: global {global_.shape} does not fit [T={T}, Dg={m.global_dim}]")
        if region_valid.shape != (R,) or timestamps.shape != (T,):
            raise StoreError(f"{key}: region_valid {region_valid.shape} / timestamps {timestamps.shape} do not fit")
        if not (np.isfinite(regions).all() and np.isfinite(global_).all()):
            raise StoreError(f"{key}: non-finite features")
        arrays = {
            "regions": regions.astype(np.float16),
            "global": global_.astype(np.float16),
            "region_valid": region_valid.astype(bool),
            "timestamps": timestamps.astype(np.float32),
        }
        for name, arr in (extras or {}).items():
            arrays[f"extra_{name}"] = np.asarray(arr)
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        data = buf.getvalue()
        atomic_write_bytes(self._item_path(key), data)
        self._commit(key, info, status, int(T), hashlib.sha256(data).hexdigest(), len(data))

    def _commit(self, key: str, info: dict[str, Any] | None, status: str, frames: int, sha256: str, size: int) -> None:
        """The commit record of an item already on disk. It needs no sync: one lost or torn by a
        power cut reads as "not done", and the item is extracted again."""
        record = {**(info or {}), "status": status, "frames": frames, "sha256": sha256, "bytes": size}
        atomic_write_bytes(self._status_path(key), json.dumps(record).encode(), sync=False)

    def forget(self, key: str) -> None:
        """Remove a video's entry (status first: without it the item counts as never written)."""
        self._status_path(key).unlink(missing_ok=True)
        self._item_path(key).unlink(missing_ok=True)

    def write_pieces(
        self, key: str, arrays: dict[str, tuple[tuple[int, ...], Any, Callable[[], Iterator[np.ndarray]]]],
        info: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        """Store an item given as C-order pieces of each array (``name: (shape, dtype, pieces)``,
        names as in the item file: ``regions``, ``global``, ``region_valid``, ``timestamps``,
        ``extra_*``), written one piece at a time (a long recording joined from its chunks without
        holding it whole); atomic like ``write``, then marked ok."""
        import zipfile

        m = self.manifest
        R, T, D = arrays["regions"][0]
        if R != len(m.regions) or D != m.region_dim or arrays["global"][0] != (T, m.global_dim):
            raise StoreError(f"{key}: regions / global do not fit the manifest (R={len(m.regions)}, D={m.region_dim})")
        with atomic_file(self._item_path(key)) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
            for name, (shape, dtype, pieces) in arrays.items():
                dt = np.dtype(dtype)
                with z.open(f"{name}.npy", "w", force_zip64=True) as member:
                    header = {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False,
                              "shape": tuple(int(v) for v in shape)}  # fmt: skip
                    np.lib.format.write_array_header_2_0(member, header)  # type: ignore[arg-type]
                    n = 0
                    for piece in pieces():
                        a = np.ascontiguousarray(piece, dtype=dt)
                        if a.dtype.kind == "f" and not np.isfinite(a).all():
                            raise StoreError(f"{key}: non-finite values in {name}")
                        member.write(a.tobytes())
                        n += a.size
                    if n != int(np.prod(shape)):
                        raise StoreError(f"{key}: {name} has {n} values, its shape {tuple(shape)} needs more")
        path = self._item_path(key)
        self._commit(key, info, "ok", int(T), sha256_file(path), path.stat().st_size)

    def write_people(self, key: str, people: Sequence[str], info: dict[str, Any] | None = None) -> None:
        """Commit record of a video extracted person by person (``--people all``): its items are
        ``people`` (``key#id``); ``key`` itself is no item."""
        status = {"status": "people", "people": list(people), **(info or {})}
        atomic_write_bytes(self._status_path(key), json.dumps(status).encode())

    def write_failure(self, key: str, error: str, info: dict[str, Any] | None = None) -> None:
        status = {"status": "failed", "error": error, **(info or {})}
        atomic_write_bytes(self._status_path(key), json.dumps(status).encode(), sync=False)

    # -- reading -------------------------------------------------------------------------------
    def read(self, key: str, *, packed: bool = True) -> Item:
        """A clip's features: from ``packed/`` when it holds the clip (unless ``packed=False``),
        else from its item file. NaN or inf, which no extraction stores, is refused as damage."""
        index = self.packed_arrays() if packed else None
        if index is not None and key in index.index:
            a, b = index.span(key)
            rows = {"regions.npy": index.regions.rows(a, b), "global.npy": index.global_.rows(a, b)}
            index.check_finite(key, rows)
            valid = index.region_valid[index.index[key]].copy()
            times = index.timestamps.rows(a, b).copy()
            # extras are not packed: they stay in the item file
            regions = rows["regions.npy"].transpose(1, 0, 2)
            return Item(key, regions, rows["global.npy"], valid, times, self.read_extras(key))
        path = self._item_path(key)
        if not self.is_done(key):
            raise StoreError(f"{self.root}: no finished entry for {key!r}")
        try:
            with np.load(path, allow_pickle=False) as z:
                extras = {k[len("extra_") :]: z[k] for k in z.files if k.startswith("extra_")}
                item = Item(key, z["regions"], z["global"], z["region_valid"], z["timestamps"], extras)
        except Exception as e:  # a cut or overwritten file: zipfile, zlib, numpy and OS errors alike
            raise self.damaged(key, e) from None
        if not (all_finite(item.regions) and all_finite(item.global_)):
            raise self.damaged(key, "non-finite values (NaN or inf) in its features")
        return item

    def damaged(self, key: str, error: BaseException | str) -> StoreError:
        """The error for an item file that cannot be read: names the item and what to run."""
        what = readable_text(error if isinstance(error, str) else f"{type(error).__name__}: {error}", 160)
        return StoreError(
            f"{self._item_path(key)}: damaged item {key!r} of feature store {self.root} ({what}). "
            f"List the damaged items with `mar extract --verify {self.root}`; re-extract them with "
            f"`mar extract --verify {self.root} --repair` (needs the videos)"
        )

    def read_extras(self, key: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """A clip's extra arrays (all, or only ``names``, each of which must be there), without
        reading its features; works on packed stores too (extras stay in the item files)."""
        path = self._item_path(key)
        if not path.is_file():
            if names:
                raise StoreError(f"{self.root}: no item file for {key!r} (its extras {list(names)} are needed)")
            return {}
        try:
            with np.load(path, allow_pickle=False) as z:
                have = [k[len("extra_") :] for k in z.files if k.startswith("extra_")]
                missing = [n for n in names or () if n not in have]
                if missing:
                    raise StoreError(f"{path}: no extra arrays {missing} (it has {have})")
                return {n: z[f"extra_{n}"] for n in (names if names is not None else have)}
        except StoreError:
            raise
        except Exception as e:  # a cut or overwritten file
            raise self.damaged(key, e) from None

    # -- integrity -----------------------------------------------------------------------------
    def verify(self, keys: Sequence[str] | None = None) -> dict[str, str]:
        """Damaged items (key -> what is wrong) among the extracted ones (all, or ``keys``): a missing
        item file, or one whose size or SHA-256 differs from its status record. Items written before
        checksums were recorded are checked by reading every array instead."""
        statuses = self.statuses()
        damaged: dict[str, str] = {}
        for key in sorted(keys if keys is not None else statuses):
            st = statuses.get(key)
            if st is None or st.get("status") not in READABLE_STATUSES:
                continue
            path = self._item_path(key)
            if not path.is_file():
                damaged[key] = "item file missing"
                continue
            size = path.stat().st_size
            if "bytes" in st and size != int(st["bytes"]):
                damaged[key] = f"{size} bytes, {int(st['bytes'])} were written"
            elif "sha256" in st:
                if sha256_file(path) != st["sha256"]:
                    damaged[key] = "checksum differs from the one recorded at extraction"
            else:
                try:
                    with np.load(path, allow_pickle=False) as z:
                        for name in z.files:
                            z[name]
                except Exception as e:
                    damaged[key] = f"unreadable ({type(e).__name__}: {e})"
        return damaged

    def __iter__(self) -> Iterator[Item]:
        for k in self.keys():
            yield self.read(k)

    # -- packing -------------------------------------------------------------------------------
    def pack(self, keys: Sequence[str] | None = None) -> Path:
        """Consolidate items (all extracted ones by default) into memory-mappable arrays under
        ``packed/`` (time-concatenated; ``data.packed``), read from the item files whatever the
        current pack holds, so a damaged pack is rebuilt from its sources."""
        keys = list(keys) if keys is not None else self.keys()
        lengths, shas = [], {}
        for k in keys:
            st = self.status(k)
            if st is None or st.get("status") != "ok" or not self._item_path(k).is_file():
                raise StoreError(f"{self.root}: cannot pack {k!r}: no extracted item file ({self._item_path(k)})")
            lengths.append(int(st["frames"]))
            shas[k] = st.get("sha256")

        def read(key: str) -> ClipArrays:
            it = self.read(key, packed=False)
            return it.regions, it.global_, it.timestamps, it.region_valid, it.extras.get("step_valid")

        m = self.manifest
        self._packed = None
        final = write_pack(self.root, keys, lengths, (len(m.regions), m.region_dim, m.global_dim), read, shas)
        self._packed = None
        return final

    def packed_arrays(self) -> PackedArrays | None:
        """The packed arrays (None: not packed), opened once; a truncated or misshapen file is
        refused here, naming it (``data.packed``: what is checked when)."""
        if self._packed is None:
            self._packed = PackedArrays.open(self.root, self.manifest)
        return self._packed

    def verify_packed(self) -> PackVerdict:
        """The full check of ``packed/`` (every file hashed; ``data.packed.verify_pack``)."""
        m = self.manifest
        return verify_pack(self.root, (len(m.regions), m.region_dim, m.global_dim), self.statuses())
