"""RSS per item of the store backends: 1,000,000 items, 14-byte keys, 100-byte values.

Each backend is measured in a fresh child process: RSS after filling minus RSS before, divided
by the item count. Bars (issue 2): native <= 160 bytes per item, python <= 320.

Usage: python benchmarks/store_memory.py [--items N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import gc, json, os, sys
from pycache_d.store import BACKENDS

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

backend, n = sys.argv[1], int(sys.argv[2])
value = b"v" * 100
store = BACKENDS[backend](max_bytes=1 << 40)
gc.collect()
before = rss()
for i in range(n):
    store.set(b"key:%010d" % i, value)  # 14-byte keys
gc.collect()
after = rss()
assert store.stats()["curr_items"] == n
print(json.dumps({"backend": backend, "items": n, "rss_bytes": after - before,
                  "per_item": (after - before) / n}))
"""


def measure(backend: str, items: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, backend, str(items)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    bars = {"native": 160, "python": 320}
    print(f"store memory: {args.items:,} items, 14-byte keys, 100-byte values")
    ok = True
    for backend, bar in bars.items():
        r = measure(backend, args.items)
        verdict = "ok" if r["per_item"] <= bar else "OVER BAR"
        ok &= r["per_item"] <= bar
        mib = r["rss_bytes"] / 2**20
        print(f"  {backend:<7} {r['per_item']:7.1f} bytes/item  (RSS +{mib:.1f} MiB; bar {bar}) {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
