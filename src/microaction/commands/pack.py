"""``mar pack STORE``: consolidate a feature store into memory-mappable arrays (``STORE/packed``).

The arrays are always made from the item files. An existing ``packed/`` is checked first (every
file hashed against ``packed/pack.json``, every packed item against its status): one that is intact
and holds every extracted item is kept, any other is rebuilt; ``--force`` rebuilds without
checking."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="feature store folder")
    p.add_argument(
        "--force",
        action="store_true",
        help="rebuild packed/ from the item files without checking it first (by default an intact, "
        "up-to-date pack is kept and a damaged or stale one rebuilt)",
    )


def run(args: argparse.Namespace) -> int:
    from microaction.data.packed import packed_keys
    from microaction.data.store import FeatureStore, StoreError

    store = FeatureStore.open(args.store)
    keys = store.keys()
    packed = store.root / "packed"
    lost = sorted(set(packed_keys(store.root)) - set(keys))
    if lost:  # a pack whose items were removed: rebuilding would drop these clips
        shown = ", ".join(lost[:5]) + (" ..." if len(lost) > 5 else "")
        raise StoreError(
            f"{store.root}: packed/ holds {len(lost)} clip(s) with no extracted item file ({shown}); "
            "it cannot be rebuilt without them: re-extract them first (mar extract --verify STORE --repair)"
        )
    if not packed.is_dir():
        reason = ""
    elif args.force:
        reason = "--force"
    else:
        verdict = store.verify_packed()
        if verdict.damaged:
            reason = "damaged: " + "; ".join(why for _, why in sorted(verdict.damaged.items()))
        elif verdict.note:
            reason = "packed without checksums"
        elif verdict.keys != keys:
            reason = f"the items changed: {len(verdict.keys)} packed, {len(keys)} extracted"
        else:
            print(f"mar pack: {packed} is up to date ({len(keys)} videos, checksums verified; --force rebuilds it)")
            return 0
    if reason:
        print(f"mar pack: rebuilding {packed} ({reason})")
    out = store.pack(keys)
    left = []
    if failed := store.failures():
        left.append(f"{len(failed)} failed")
    if nobody := store.no_person():
        left.append(f"{len(nobody)} with no person found, read from items/ when kept")
    print(f"mar pack: {len(keys)} videos packed into {out}" + (f" ({'; '.join(left)} left out)" if left else ""))
    return 0
