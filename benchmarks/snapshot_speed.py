"""Snapshot speed: save and load of a full store, per backend (pycache_d/daemon/snapshot.py).

Measures, per backend, the best of several repeats of:
  save   snapshot.save of N items of 100 bytes (write, fsync, rename, fsync of the directory)
  load   snapshot.load of that file into an empty store (checksum pass, then insert pass)
and, for the native backend, where a load's time goes: the checksum pass, parsing the records
alone, and ``Store.load`` fed from a ready list (the store's own share, which no file format
can remove).

Bar (warm-restart issue): 1,000,000 items saved in at most 1 s and loaded in at most 1 s with the
native backend (a rate: 10M items in 10 s). The file goes to --dir (default: the system's
temporary directory): fsync costs what that file system's disk costs. The store is freed before
the loads, so a run needs the memory of one full store (10M items: about 1.6 GB native, more
than twice that python) plus, for the native breakdown, a list of every record (skipped above
2M items).

Usage: python benchmarks/snapshot_speed.py [--items N] [--repeat R] [--dir DIR] [--backend B]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from pycache_d.daemon import snapshot
from pycache_d.store import BACKENDS

BAR_SECONDS = 1.0


def filled(cls, items: int, value: bytes):
    store = cls(max_bytes=4 * (len(value) + 100) * items)  # room to spare: nothing is evicted
    for i in range(items):
        store.set(b"key:%010d" % i, value)
    return store


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def breakdown(cls, path: str, items: int, repeat: int) -> None:
    """Print the parts of a native load: checksum pass, record parsing, Store.load itself."""

    def verify() -> None:
        with open(path, "rb", buffering=0) as f:
            snapshot._verify(f)

    def parse() -> None:
        with open(path, "rb", buffering=0) as f:
            f.seek(snapshot.HEADER_SIZE)
            for _ in snapshot._records(f, items):
                pass

    with open(path, "rb", buffering=0) as f:
        f.seek(snapshot.HEADER_SIZE)
        ready = list(snapshot._records(f, items))
    t_verify = best(verify, repeat)
    t_parse = best(parse, repeat)
    t_store = float("inf")
    for _ in range(repeat):
        fresh = cls(max_bytes=4 * 200 * items)
        t0 = time.perf_counter()
        fresh.load(ready, 0)
        t_store = min(t_store, time.perf_counter() - t0)
        del fresh
    print(
        f"    load parts: checksum pass {t_verify:.3f} s, parse records {t_parse:.3f} s, "
        f"Store.load from a list {t_store:.3f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where to write the snapshot (default: a temp dir)")
    parser.add_argument("--backend", choices=["all", *BACKENDS], default="all")
    args = parser.parse_args()
    value = b"v" * 100
    print(f"snapshot speed: {args.items:,} items of 100 bytes, seconds (best of {args.repeat})")
    ok = "native" in BACKENDS or args.backend == "python"
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "pycache-d.snapshot")
        for name, cls in BACKENDS.items():
            if args.backend not in ("all", name):
                continue
            store = filled(cls, args.items, value)
            t_save = best(lambda store=store: snapshot.save(store, path), args.repeat)
            size = os.path.getsize(path)
            del store  # one full store in memory at a time
            loaded = []
            t_load = float("inf")
            for _ in range(args.repeat):
                fresh = cls(max_bytes=4 * 200 * args.items)
                t0 = time.perf_counter()
                loaded.append(snapshot.load(fresh, path))
                t_load = min(t_load, time.perf_counter() - t0)
                del fresh  # outside the timing: freeing a million items is not part of a load
            assert all(r.status == "loaded" and r.loaded == args.items for r in loaded), loaded
            verdict = ""
            if name == "native":
                bar = BAR_SECONDS * args.items / 1_000_000  # the bar is a rate: 1M items a second
                fast = t_save <= bar and t_load <= bar
                ok &= fast
                verdict = "ok" if fast else f"BAR MISSED (<= {bar:g} s each)"
            print(
                f"  {name:<7} save {t_save:.3f} s ({size / t_save / 1e6:.0f} MB/s, "
                f"{args.items / t_save / 1e6:.2f}M items/s)   load {t_load:.3f} s "
                f"({size / t_load / 1e6:.0f} MB/s, {args.items / t_load / 1e6:.2f}M items/s)   "
                f"file {size / 1e6:.0f} MB  {verdict}"
            )
            if name == "native" and args.items <= 2_000_000:
                breakdown(cls, path, args.items, args.repeat)
    if "native" not in BACKENDS:
        print("  native backend not built: bar not checked")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
