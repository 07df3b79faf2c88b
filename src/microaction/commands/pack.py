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
    failed = store.failures()
    print(
        f"mar pack: {len(keys)} videos packed into {out}"
        + (f" ({len(failed)} failed videos left out)" if failed else "")
    )
    return 0
