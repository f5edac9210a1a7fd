"""Store speed through the Python API, side by side with other in-process LRU caches.

Measures, per implementation, in one run:
  get-hit             lookups of present keys (the key objects already exist)
  set-with-eviction   inserts of new keys into a full cache, each evicting the LRU item

Compared: pycache-d native and python backends, an OrderedDict LRU (the textbook recipe),
lru-dict (C) and cachebox (Rust). Bar (issue 2): native faster than OrderedDict and lru-dict on
both. Times are the best of several repeats, in nanoseconds per operation.

Usage: python benchmarks/store_speed.py [--items N] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import OrderedDict

from pycache_d.store import BACKENDS
from pycache_d.store.semantics import ITEM_OVERHEAD


class OrderedDictLRU:
    """The usual OrderedDict LRU: move_to_end on hit, popitem(last=False) when full."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.data: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, key: bytes) -> bytes | None:
        try:
            self.data.move_to_end(key)
        except KeyError:
            return None
        return self.data[key]

    def set(self, key: bytes, value: bytes) -> None:
        data = self.data
        data[key] = value
        data.move_to_end(key)
        if len(data) > self.capacity:
            data.popitem(last=False)


def contenders(items: int, value: bytes) -> dict:
    made: dict = {}
    # Room for exactly `items` items, so every new key evicts one.
    room = (len(b"key:%010d" % 0) + len(value) + ITEM_OVERHEAD) * items
    for name, cls in BACKENDS.items():
        made[f"pycache-d {name}"] = lambda cls=cls: cls(max_bytes=room)
    made["OrderedDict LRU"] = lambda: OrderedDictLRU(items)
    try:
        from lru import LRU

        made["lru-dict"] = lambda: LRU(items)
    except ImportError:
        print("  (lru-dict not installed)")
    try:
        import cachebox

        made["cachebox LRUCache"] = lambda: cachebox.LRUCache(items)
    except ImportError:
        print("  (cachebox not installed)")
    return made


def setter(cache):
    if hasattr(cache, "set") and not hasattr(cache, "insert"):
        return cache.set
    if hasattr(cache, "insert"):
        return cache.insert
    return cache.__setitem__


def getter(cache):
    return cache.get


def bench(make, items: int, value: bytes, repeat: int) -> tuple[float, float]:
    keys = [b"key:%010d" % i for i in range(items)]
    fresh = [b"key:%010d" % i for i in range(items, 2 * items)]
    # Read in a shuffled order: a cache is read in no particular order, and reading keys in
    # insertion order would only measure how well each structure streams through memory.
    reads = keys[:]
    random.Random(42).shuffle(reads)
    best_get = best_set = float("inf")
    for _ in range(repeat):
        cache = make()
        put = setter(cache)
        for k in keys:
            put(k, value)
        get = getter(cache)
        t0 = time.perf_counter_ns()
        for k in reads:
            get(k)
        best_get = min(best_get, (time.perf_counter_ns() - t0) / items)
        assert get(keys[-1]) == value
        t0 = time.perf_counter_ns()
        for k in fresh:
            put(k, value)
        best_set = min(best_set, (time.perf_counter_ns() - t0) / items)
        assert get(keys[0]) is None and get(fresh[-1]) == value
    return best_get, best_set


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    value = b"v" * 100
    print(f"store speed: {args.items:,} items of 100 bytes, ns/op (best of {args.repeat})")
    results = {}
    for name, make in contenders(args.items, value).items():
        results[name] = bench(make, args.items, value, args.repeat)
        g, s = results[name]
        print(f"  {name:<20} get-hit {g:7.1f}   set-with-eviction {s:7.1f}")
    native = results.get("pycache-d native")
    if native is None:
        print("  native backend not built: bar not checked")
        return 1
    ok = True
    for rival in ("OrderedDict LRU", "lru-dict"):
        if rival in results:
            faster = native[0] < results[rival][0] and native[1] < results[rival][1]
            ok &= faster
            print(
                f"  native vs {rival}: get x{results[rival][0] / native[0]:.2f}, "
                f"set x{results[rival][1] / native[1]:.2f} {'ok' if faster else 'NOT FASTER'}"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
