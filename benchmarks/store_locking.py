"""The store's one lock under threads: hold times, contention, throughput (issue 14 part 2).

tests/c/store_threads.c (bench mode) is built with -O2 and run with 1 and 2 threads on one native
store behind its mutex (csrc/store_lock.h): 100,000 keys of 100-byte values, 90% get (the value
copied under the lock) / 10% set, each request with WORK_NS of work outside the lock standing for
what a worker spends on its socket and parsing. Printed per case: requests per second, the share
of acquisitions that found the lock held, and the mean time it is held (timed runs: two clock
reads per acquisition, so throughput is taken from untimed runs).

Reading it: one lock serves at most 1 / hold requests per second however many threads wait on
it; with W ns of work per request outside the lock, N threads need N / (W + hold) of it, so the
design saturates at about N = (W + hold) / hold threads. The figures this script prints on the
machine at hand are what the closing note of issue 14 quotes.

Usage: python benchmarks/store_locking.py [--seconds S] [--work NS,...]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CSRC = ["siphash.c", "slabs.c", "assoc.c", "expiry.c", "store.c"]


def build(out: Path) -> None:
    cmd = ["gcc", "-std=c11", "-O2", "-pthread", f"-I{ROOT / 'csrc'}", str(ROOT / "tests/c/store_threads.c")]
    subprocess.run(cmd + [str(ROOT / "csrc" / c) for c in CSRC] + ["-o", str(out)], check=True)


def run(binary: Path, threads: int, seconds: float, timed: bool, work: int) -> dict[str, float]:
    args = [str(binary), "bench", str(threads), "100000", "100", str(seconds), str(int(timed)), str(work)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    return {k: float(v) for k, v in (f.split("=") for f in out.split())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--work", default="0,2000,5000", help="ns of work outside the lock per request")
    args = parser.parse_args()
    if not shutil.which("gcc"):
        print("store locking: skipped, gcc not installed")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "store_threads"
        build(binary)
        print("store locking, one mutex, 100,000 keys x 100 B, 90% get / 10% set:")
        for work in (int(w) for w in args.work.split(",")):
            one = run(binary, 1, args.seconds, False, work)["ops_per_s"]
            two = run(binary, 2, args.seconds, False, work)["ops_per_s"]
            timed = run(binary, 2, args.seconds, True, work)
            hold = timed["hold_ns"]
            saturates = (work + hold) / hold if hold else float("inf")
            print(
                f"  work {work:5d} ns/request: 1 thread {one:10,.0f}/s, 2 threads {two:10,.0f}/s "
                f"({two / one:4.2f}x); at 2 threads held {hold:5.0f} ns, contended "
                f"{100 * timed['contended']:4.1f}%; one lock saturates near {saturates:4.1f} threads"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
