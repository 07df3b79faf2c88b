"""``mar pack STORE``: consolidate a feature store into memory-mappable arrays (``STORE/packed``)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="feature store folder")


def run(args: argparse.Namespace) -> int:
    from microaction.data.store import FeatureStore

    store = FeatureStore.open(args.store)
    keys = store.keys()
    out = store.pack(keys)
    left = []
    if failed := store.failures():
        left.append(f"{len(failed)} failed")
    if nobody := store.no_person():
        left.append(f"{len(nobody)} with no person found, read from items/ when kept")
    print(f"mar pack: {len(keys)} videos packed into {out}" + (f" ({'; '.join(left)} left out)" if left else ""))
    return 0
