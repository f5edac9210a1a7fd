"""HTTP throughput of a cache-backed route against a route that never touches the cache.

Starts a cache daemon (pycache-d, else memcached) and ``pycache-http`` on free loopback ports,
stores ``k1``, then runs wrk once against each of::

    GET /api/storage/?key=k1     (one cache round trip per request)
    GET /healthz                 (no cache at all: the framework's own cost)

and prints both throughputs and their ratio. The bar is ratio >= 0.7: the cache round trip
through the pooled AsyncClient may cost at most 30% of the requests a worker can serve.
``--check`` exits 1 below the bar. wrk is Debian's ``wrk`` package; this script installs
nothing and says so (exit 0, "SKIPPED") when wrk is missing.

Usage: python client/benchmarks/http_bench.py [--duration 5] [--connections 32] [--backend native]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from daemon_procs import Daemon, free_port, start_daemon, wait_for_port  # noqa: E402

from pycache_client import Client  # noqa: E402

BAR = 0.7


def run_wrk(wrk: str, url: str, duration: int, connections: int, threads: int) -> float:
    """Run wrk once and return its Requests/sec (raises if it reports errors or non-2xx)."""
    out = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"no Requests/sec in wrk output:\n{out}")
    return float(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: 2-core machines)")
    parser.add_argument("--backend", default="native", help="pycache-d backend (default native)")
    parser.add_argument("--check", action="store_true", help=f"exit 1 if the ratio is under {BAR}")
    args = parser.parse_args()

    wrk = shutil.which("wrk")
    if wrk is None:
        print("http_bench: SKIPPED: wrk is not installed (Debian package 'wrk': apt-get install wrk)")
        return 0

    daemon: Daemon
    daemon, reason = start_daemon(args.backend)
    if reason:
        print(f"http_bench: {reason}")
    port = free_port()
    http = subprocess.Popen(
        [str(Path(sys.executable).parent / "pycache-http"), "--port", str(port), "--cache", daemon.address,
         "--log-level", "warning"],
        stdin=subprocess.DEVNULL,
        env=dict(os.environ),
    )  # fmt: skip
    try:
        wait_for_port(port, 20, http)
        base = f"http://127.0.0.1:{port}"
        with Client(daemon.address) as cache:
            cache.set("k1", "v1")
        # Warm up both routes (pool connections, imports) before measuring.
        run_wrk(wrk, f"{base}/healthz", 1, args.connections, args.threads)
        run_wrk(wrk, f"{base}/api/storage/?key=k1", 1, args.connections, args.threads)
        time.sleep(0.5)
        plain = run_wrk(wrk, f"{base}/healthz", args.duration, args.connections, args.threads)
        cached = run_wrk(wrk, f"{base}/api/storage/?key=k1", args.duration, args.connections, args.threads)
    finally:
        http.terminate()
        http.wait(10)
        daemon.stop()

    ratio = cached / plain
    wrk_args = f"-t{args.threads} -c{args.connections} -d{args.duration}s"
    print(f"daemon: {daemon.kind}; wrk {wrk_args}; one uvicorn worker")
    print(f"GET /healthz (no cache)         {plain:10.0f} req/s")
    print(f"GET /api/storage/?key=k1        {cached:10.0f} req/s")
    verdict = "ok" if ratio >= BAR else "BELOW BAR"
    print(f"ratio cache-backed / no-cache   {ratio:10.2f}   (bar >= {BAR}: {verdict})")
    return 1 if args.check and ratio < BAR else 0


if __name__ == "__main__":
    sys.exit(main())
