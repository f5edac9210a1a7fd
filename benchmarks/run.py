"""Run every benchmark in turn (make bench). Each script prints its figures and its bars.

Benchmarks run on whatever else the machine is doing: for figures worth quoting, run them on a
quiet machine. A benchmark that misses its bar is reported, not fatal, so the others still run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "store_memory.py",
    "store_speed.py",
    "session_multiget.py",
    "snapshot_speed.py",
    "daemon_throughput.py",
    "large_values.py",
    "store_locking.py",
    "flood_rss.py",
    "idle_connections.py",
    "shutdown_time.py",
]


def main() -> int:
    missed = []
    for name in SCRIPTS:
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(HERE / name)])
        if rc:
            missed.append(name)
        print(flush=True)
    if missed:
        print("bars missed: " + ", ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
