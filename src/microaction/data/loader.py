"""From a feature store and a sample list to model batches.

``ClipDataset`` turns one clip of a store into fixed-length arrays: ``T`` feature steps sampled
from the clip's ``L`` steps (uniform segment centres for evaluation, a random step inside each
segment for training; clips shorter than ``T`` are padded and masked, never repeated), the
region-visibility flags, the labels, and (training only) augmentation. It fetches whole batches
(``__getitems__``) and returns them collated as tensors (the batch contract in
``docs/architecture.md``): ``regions`` [B, R, T, D], ``global`` [B, T, Dg], ``mask`` [B, T],
``region_valid`` [B, R], ``action`` [B], ``body`` [B], ``index`` [B] (+ ``labels`` [B, C] multi-hot
for multi-label taxonomies; + ``face`` [B, T, S, S] uint8 and ``face_valid`` [B, T] with
``face_size=S``, from a store extracted with that ``face_size``: the head-box crops at the same
sampled steps, mirrored with the clip when it is flipped; + ``region_valid_steps`` [B, R, T] bool
from a store whose extraction wrote per-step region validity (extra ``step_valid``): the same
sampled steps, False at padded steps and for invisible regions, its regions swapped with the
others when the clip is flipped; older stores have none and models use ``region_valid`` at every
step).

Reading: a packed store (``mar pack``) is read with positioned reads (``os.pread``) of exactly the
rows a clip needs from its ``packed/*.npy`` arrays (``data.packed.NpyRows``: RSS stays flat
whatever the store size); its files' headers and sizes are checked when it is opened. Unpacked
stores are read item by item from ``items/<key>.npz``. Features that are not finite (NaN, inf:
no extraction stores them) are refused naming the item and its file.

Determinism: every random choice of a training clip (temporal jitter, flip, region drop, noise)
comes from a generator seeded with ``(seed, epoch, position in the epoch)``, and the order of an
epoch from ``(seed, epoch)``; nothing depends on worker processes, their number or their timing.
So an epoch can be resumed from any batch (``data.samplers.TrainBatchSampler.set_epoch(epoch, start_batch)``)
and reproduces what an uninterrupted run would have seen. Under ``torchrun`` every process draws
the same global order and takes its own slice of each global batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from microaction.data.packed import PackedArrays, all_finite
from microaction.data.prefetch import background
from microaction.data.readers.annotations import UNKNOWN, Sample
from microaction.data.samplers import Key
from microaction.data.standardize import FeatureStats
from microaction.data.store import FeatureStore, StoreError, StoreMismatch
from microaction.taxonomy import Taxonomy

__all__ = [
    "ClipDataset",
    "PrefetchLoader",
    "check_store",
    "make_loader",
    "sample_steps",
    "select_samples",
    "store_face_size",
    "store_has_step_valid",
    "store_keys",
]


def sample_steps(
    length: int, num_steps: int, mode: str = "uniform", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Indices (sorted, into ``[0, length)``) of the steps that make a ``num_steps`` input.

    ``length <= num_steps``: every step once (the caller pads). Otherwise the clip is cut into
    ``num_steps`` equal segments and one step taken from each: its centre (``uniform``) or a random
    step inside it (``jitter``, needs ``rng``).
    """
    if length <= 0:
        raise ValueError("a clip needs at least one feature step")
    if length <= num_steps:
        return np.arange(length, dtype=np.int64)
    edges = np.arange(num_steps + 1, dtype=np.float64) * (length / num_steps)
    if mode == "uniform":
        pos = (edges[:-1] + edges[1:]) / 2.0
    elif mode == "jitter":
        if rng is None:
            raise ValueError("jitter sampling needs a random generator")
        pos = edges[:-1] + rng.random(num_steps) * (edges[1:] - edges[:-1])
    else:
        raise ValueError(f"unknown sampling mode {mode!r} (uniform | jitter)")
    return np.clip(np.floor(pos).astype(np.int64), 0, length - 1)


def check_store(store: FeatureStore, expected: dict[str, Any], *, source: str) -> None:
    """Refuse a store whose manifest differs from ``expected`` (a full or partial signature).

    ``expected`` may list encoders by name only (``encoders: [videomae]``).
    """
    got = store.manifest.signature()
    diffs = []
    for k, want in expected.items():
        if k not in got:
            raise StoreMismatch(f"{source}: unknown manifest field {k!r} (known: {sorted(got)})")
        have = got[k]
        if k == "encoders" and isinstance(want, list) and all(isinstance(w, str) for w in want):
            have = [e.get("name") for e in have]
        if k in ("region_dim", "global_dim") and want is not None:
            want = int(want)
        if k == "fps" and want is not None and have is not None and abs(float(want) - float(have)) < 1e-6:
            continue
        if have != want:
            diffs.append(f"{k}: the store has {have!r}, expected {want!r}")
    if diffs:
        raise StoreMismatch(
            f"feature store {store.root} does not match {source}:\n  "
            + "\n  ".join(diffs)
            + "\n(re-extract the features with the parameters the run was made with, or use a matching store)"
        )


def store_face_size(store: FeatureStore) -> int:
    """Side of the head-box face crops the store holds (its extraction's ``face_size``; 0: none)."""
    extract = store.manifest.params.get("extract")
    return int(extract.get("face_size", 0) or 0) if isinstance(extract, dict) else 0


def store_has_step_valid(store: FeatureStore) -> bool:
    """The store's extraction wrote per-step region validity (extra ``step_valid`` [R, T])."""
    extras = store.manifest.params.get("extras")
    return isinstance(extras, dict) and "step_valid" in extras


def store_keys(store: FeatureStore) -> list[str]:
    """Keys of every clip the store can serve: extracted items and packed clips, sorted."""
    have = set(store.keys())
    packed = store.root / "packed" / "keys.json"
    if packed.is_file():
        import json

        have |= set(json.loads(packed.read_text(encoding="utf-8")))
    return sorted(have)


def select_samples(
    store: FeatureStore,
    samples: Sequence[Sample],
    *,
    allow_missing: bool = False,
    source: str = "annotations",
    keep_no_person: bool = False,
) -> tuple[list[Sample], list[str]]:
    """Samples whose clip the store holds; the others fail the run unless ``allow_missing``. Clips
    extracted with no person found (status ``no_person``) fail it unless ``keep_no_person``."""
    have = set(store_keys(store))
    nobody = set(store.no_person()) - have
    hit = [s.key for s in samples if s.key in nobody]
    if hit and not keep_no_person:
        shown = ", ".join(hit[:5]) + (" ..." if len(hit) > 5 else "")
        raise StoreError(
            f"{store.root}: {len(hit)} of {len(samples)} clips of {source} were extracted with no person found "
            f"(status no_person: no body region seen in enough frames, all-zero features): {shown}. Check those "
            "videos and drop them from the annotations, or set data.keep_no_person: true to use them anyway"
        )
    if keep_no_person:
        have |= nobody
    kept = [s for s in samples if s.key in have]
    missing = [s.key for s in samples if s.key not in have]
    if missing and not allow_missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise StoreError(
            f"{store.root}: {len(missing)} of {len(samples)} clips of {source} are not in the feature store "
            f"({shown}); extract them, or set data.allow_missing: true to skip them"
        )
    return kept, missing


class ClipDataset(torch.utils.data.Dataset):
    """Clips of a feature store as fixed-length model inputs (see the module docstring)."""

    def __init__(
        self,
        store: FeatureStore,
        samples: Sequence[Sample],
        taxonomy: Taxonomy,
        *,
        num_steps: int,
        sampling: str = "uniform",
        seed: int = 0,
        flip_prob: float = 0.0,
        region_drop_prob: float = 0.0,
        feature_noise: float = 0.0,
        keys: Sequence[str] | None = None,
        face_size: int = 0,
        stats: FeatureStats | None = None,
    ) -> None:
        self.store = store
        self.samples = list(samples)
        self.taxonomy = taxonomy
        self.num_steps = int(num_steps)
        self.sampling = sampling
        self.seed = int(seed)
        self.flip_prob = float(flip_prob)
        self.region_drop_prob = float(region_drop_prob)
        self.feature_noise = float(feature_noise)
        m = store.manifest
        self.R, self.D, self.Dg = len(m.regions), int(m.region_dim), int(m.global_dim)
        self.stats = stats  # per-feature standardisation (data.standardize), before augmentation
        if stats is not None:
            stats.check(self.R, self.D, self.Dg, source=f"feature statistics for {store.root}")
        from microaction.skeleton import flip_names

        self.flip_perm = np.asarray(flip_names(list(m.regions)), dtype=np.int64)
        self.keys = list(keys) if keys is not None else [s.key for s in self.samples]  # store keys
        if len(self.keys) != len(self.samples):
            raise ValueError("keys and samples differ in length")
        self.action = np.asarray([s.label for s in self.samples], dtype=np.int64)
        body = []
        for s in self.samples:
            if s.body != UNKNOWN:
                body.append(s.body)
            elif taxonomy.has_body and s.label != UNKNOWN:
                body.append(int(taxonomy.body_of(s.label)))
            else:
                body.append(UNKNOWN)
        self.body = np.asarray(body, dtype=np.int64)
        self.multi_hot: np.ndarray | None = None
        if taxonomy.multi_label:
            self.multi_hot = np.zeros((len(self.samples), taxonomy.num_classes), dtype=np.float32)
            for i, s in enumerate(self.samples):
                self.multi_hot[i, list(s.labels)] = 1.0
        self._packed: PackedArrays | bool | None = None  # None: not looked yet; False: no packed arrays
        self.step_valid = store_has_step_valid(store)  # batches carry region_valid_steps
        self.face_size = int(face_size)
        if self.face_size:
            have = store_face_size(store)
            if have != self.face_size:
                raise StoreMismatch(
                    f"feature store {store.root} holds "
                    + (f"{have}-pixel face crops" if have else "no face crops")
                    + f", the model needs {self.face_size}-pixel ones (mar extract --face-size {self.face_size})"
                )

    # -- reading -------------------------------------------------------------------------------
    def _packed_index(self) -> PackedArrays | None:
        if self._packed is None:
            self._packed = PackedArrays.open(self.store.root, self.store.manifest) or False
        return self._packed if isinstance(self._packed, PackedArrays) else None

    def _read(
        self, key: str, rng: np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """(regions [R, n, D] f16, global [n, Dg] f16, region_valid [R], the sampled steps [n],
        per-step validity [R, n] or None) (n <= T); the last only when the dataset uses it."""
        mode = self.sampling if rng is not None else "uniform"
        packed = self._packed_index()
        if packed is not None and key in packed.index:
            i = packed.index[key]
            a, b = packed.span(key)
            idx = sample_steps(b - a, self.num_steps, mode, rng)
            reg = packed.regions.take(a, idx).transpose(1, 0, 2)
            glo = packed.global_.take(a, idx)
            steps = None
            if self.step_valid:
                if packed.step_valid is not None:
                    steps = packed.step_valid.take(a, idx).T
                else:
                    steps = self._step_valid(key, self.store.read_extras(key).get("step_valid"), b - a, idx)
            return reg, glo, packed.region_valid[i], idx, steps
        item = self.store.read(key)
        idx = sample_steps(item.length, self.num_steps, mode, rng)
        steps = self._step_valid(key, item.extras.get("step_valid"), item.length, idx) if self.step_valid else None
        return item.regions[:, idx], item.global_[idx], item.region_valid, idx, steps

    def _refuse_non_finite(self, keys: Sequence[str], regions: np.ndarray, glob: np.ndarray) -> None:
        """Raise for the first clip of a batch with NaN or inf features, naming it and its file
        (items refuse them when read, so such a clip comes from the packed arrays)."""
        j = next(j for j in range(len(keys)) if not (all_finite(regions[j]) and all_finite(glob[j])))
        packed = self._packed_index()
        if packed is not None and keys[j] in packed.index:
            packed.check_finite(keys[j], {"regions.npy": regions[j], "global.npy": glob[j]})
        raise StoreError(f"{self.store.root}: item {keys[j]!r}: non-finite features (NaN or inf)")

    def _step_valid(self, key: str, steps: np.ndarray | None, length: int, idx: np.ndarray) -> np.ndarray | None:
        """A clip's per-step validity at the sampled steps; None for an item written without it."""
        if steps is None:
            return None
        if steps.shape != (self.R, length):
            raise StoreError(
                f"{self.store.root}: item {key!r}: extra step_valid {steps.shape} does not fit "
                f"{self.R} regions x {length} steps (re-extract it: mar extract --verify {self.store.root} --repair)"
            )
        return steps[:, idx]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | Key) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([key])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, keys: Sequence[int | Key]) -> dict[str, torch.Tensor]:
        B, R, T = len(keys), self.R, self.num_steps
        # gathered as float16 (the store's type); one vectorised conversion to float32 at the end
        regions = np.zeros((B, R, T, self.D), dtype=np.float16)
        glob = np.zeros((B, T, self.Dg), dtype=np.float16)
        mask = np.zeros((B, T), dtype=bool)
        valid = np.zeros((B, R), dtype=bool)
        index = np.zeros(B, dtype=np.int64)
        S = self.face_size
        face = np.zeros((B, T, S, S), dtype=np.uint8) if S else None
        face_valid = np.zeros((B, T), dtype=bool)
        steps = np.zeros((B, R, T), dtype=bool) if self.step_valid else None  # padded steps: False
        rngs: list[np.random.Generator | None] = []
        for j, key in enumerate(keys):
            i, epoch, pos = (int(key), -1, -1) if isinstance(key, int | np.integer) else key
            rng = np.random.default_rng((self.seed, epoch, pos)) if epoch >= 0 else None
            reg, glo, rv, idx, sv = self._read(self.keys[i], rng)
            n = glo.shape[0]
            if steps is not None:  # an item without per-step validity: its clip-level flags at every step
                steps[j, :, :n] = sv if sv is not None else rv[:, None]
            if face is not None:
                ex = self.store.read_extras(self.keys[i], ("face", "face_valid"))
                face[j, :n], face_valid[j, :n] = ex["face"][idx], ex["face_valid"][idx]
            regions[j, :, :n] = reg
            glob[j, :n] = glo
            mask[j, :n] = True
            valid[j] = rv
            index[j] = i
            rngs.append(rng)
        if not (all_finite(regions) and all_finite(glob)):  # one check per batch; the culprit named
            self._refuse_non_finite([self.keys[i] for i in index], regions, glob)
        if self.stats is not None:  # standardised valid steps; padded steps stay zero
            regions = (self.stats.apply_regions(regions.astype(np.float32)) * mask[:, None, :, None]).astype(np.float32)
            glob = (self.stats.apply_global(glob.astype(np.float32)) * mask[:, :, None]).astype(np.float32)
        regions_t = torch.from_numpy(regions).float()
        glob_t = torch.from_numpy(glob).float()
        if any(r is not None for r in rngs):
            reg_np, glob_np = regions_t.numpy(), glob_t.numpy()
            for j, rng in enumerate(rngs):
                if rng is not None:
                    self._augment(
                        rng,
                        reg_np[j],
                        glob_np[j],
                        mask[j],
                        valid[j],
                        None if face is None else face[j],
                        None if steps is None else steps[j],
                    )
        if not valid.all():  # invisible regions carry zeros whatever the store holds
            regions_t[torch.from_numpy(~valid)] = 0.0
        out = {
            "regions": regions_t,
            "global": glob_t,
            "mask": torch.from_numpy(mask),
            "region_valid": torch.from_numpy(valid),
            "action": torch.from_numpy(self.action[index]),
            "body": torch.from_numpy(self.body[index]),
            "index": torch.from_numpy(index),
        }
        if self.multi_hot is not None:
            out["labels"] = torch.from_numpy(self.multi_hot[index])
        if face is not None:
            out["face"] = torch.from_numpy(face)
            out["face_valid"] = torch.from_numpy(face_valid)
        if steps is not None:
            out["region_valid_steps"] = torch.from_numpy(steps & valid[:, :, None])
        return out

    def _augment(
        self,
        rng: np.random.Generator,
        regions: np.ndarray,
        glob: np.ndarray,
        mask: np.ndarray,
        valid: np.ndarray,
        face: np.ndarray | None = None,
        steps: np.ndarray | None = None,
    ) -> None:
        """In place, one clip: horizontal flip (region swap with their per-step validity ``steps``,
        face crops mirrored), region drop, feature noise.

        Random numbers are drawn in a fixed order whatever is enabled, so switching one option
        does not change the draws of the others.
        """
        u_flip = rng.random()
        u_drop = rng.random(len(valid))
        if self.flip_prob > 0 and u_flip < self.flip_prob:
            regions[:] = regions[self.flip_perm]
            valid[:] = valid[self.flip_perm]
            if steps is not None:
                steps[:] = steps[self.flip_perm]
            if face is not None:
                face[:] = face[:, :, ::-1]
        if self.region_drop_prob > 0 and valid.any():
            drop = valid & (u_drop < self.region_drop_prob)
            if drop.sum() >= valid.sum():  # keep at least one visible region
                drop[np.flatnonzero(valid)[np.argmax(u_drop[valid])]] = False
            valid &= ~drop
        if self.feature_noise > 0:
            regions += self.feature_noise * rng.standard_normal(regions.shape, dtype=np.float32) * mask[None, :, None]
            glob += self.feature_noise * rng.standard_normal(glob.shape, dtype=np.float32) * mask[:, None]


def _collated(batch: Any) -> Any:
    return batch  # ClipDataset.__getitems__ returns a collated batch already


class PrefetchLoader:
    """Batches of a DataLoader made by a background thread of this process, ``depth`` ahead.

    Loading is mostly system calls and numpy / torch copies that release the GIL, so a thread
    overlaps it with the model's step without the inter-process transfer of worker processes
    (which costs more than the loading itself at these batch sizes, and much more on a busy
    machine). The order of batches is the DataLoader's; exceptions reach the consumer.
    """

    def __init__(self, loader: torch.utils.data.DataLoader, depth: int = 2) -> None:
        self.loader, self.depth = loader, depth

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        return background(self.loader, self.depth)


def make_loader(dataset: ClipDataset, batch_sampler: Any, *, workers: int = 0, prefetch: int = 2) -> Any:
    """An iterable of batches that leaves the global torch RNG alone (so resuming cannot shift it).

    ``workers`` > 0: DataLoader worker processes; 0: a prefetching thread of this process
    (``prefetch`` batches ahead; 0: load in line).
    """
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batch_sampler,
        collate_fn=_collated,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    if workers == 0 and prefetch > 0:
        return PrefetchLoader(loader, prefetch)
    return loader
