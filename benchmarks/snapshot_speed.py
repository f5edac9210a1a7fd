"""Snapshot speed: save and load of a full store, per backend (pycache_d/daemon/snapshot.py).

Measures, per backend, the best of several repeats of:
  save   snapshot.save of N items of 100 bytes (write, fsync, rename, fsync of the directory)
  load   snapshot.load of that file into an empty store (checksum pass, then insert pass)
and, for the native backend, where a load's time goes: the checksum pass, parsing the records
alone, and ``Store.load`` fed from a ready list (the store's own share, which no file format
can remove).

Bar (warm-restart issue): 1,000,000 items saved in at most 1 s and loaded in at most 1 s with the
native backend. The file goes to --dir (default: the system's temporary directory): fsync costs
what that file system's disk costs.

Usage: python benchmarks/snapshot_speed.py [--items N] [--repeat R] [--dir DIR]
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
    args = parser.parse_args()
    value = b"v" * 100
    print(f"snapshot speed: {args.items:,} items of 100 bytes, seconds (best of {args.repeat})")
    ok = "native" in BACKENDS
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "pycache-d.snapshot")
        for name, cls in BACKENDS.items():
            store = filled(cls, args.items, value)
            t_save = best(lambda store=store: snapshot.save(store, path), args.repeat)
            size = os.path.getsize(path)
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
                fast = t_save <= BAR_SECONDS and t_load <= BAR_SECONDS
                ok &= fast
                verdict = "ok" if fast else f"BAR MISSED (<= {BAR_SECONDS:g} s each)"
            print(
                f"  {name:<7} save {t_save:.3f} s ({size / t_save / 1e6:.0f} MB/s)   "
                f"load {t_load:.3f} s ({size / t_load / 1e6:.0f} MB/s)   file {size / 1e6:.0f} MB  {verdict}"
            )
            if name == "native":
                breakdown(cls, path, args.items, args.repeat)
            del store
    if "native" not in BACKENDS:
        print("  native backend not built: bar not checked")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
