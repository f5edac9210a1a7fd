"""Daemon throughput against memcached, and RSS per item, measured with memaslap.

Load: memaslap (Debian's libmemcached-tools, command ``memcaslap``), 1 client thread,
16 connections, 16-byte keys, 100-byte values, 90% get / 10% set; then the same with 10-key
multi-gets (``-d 10``). ``memcached -t 1`` and pycache-d (native and python backends) run in
turn, alternating for several rounds, each server pinned to CPU 0 and memaslap to CPU 1.
Bars (issue 3): native >= 1.0x memcached on both workloads, python >= 0.5x.

The server's CPU time per memaslap op (user + system, from /proc) is printed beside each figure:
it shows where a gap comes from, and moves less than throughput on a noisy machine.
``--prefill N`` sets N items first, as in a long-running daemon (a larger hash table, colder
caches).

RSS per item: each server, fresh, receives 1,000,000 pipelined ``set`` of 100-byte values
(``noreply``); RSS growth divided by the item count.

Usage: python benchmarks/daemon_throughput.py [--seconds S] [--rounds R] [--prefill N] [--skip-rss]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from procs import free_port, rss_bytes, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """key
16 16 1
value
100 100 1
cmd
0 0.1
1 0.9
"""


def start(server: str, port: int) -> subprocess.Popen:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and os.cpu_count() and os.cpu_count() > 1 else []
    if server == "memcached":
        cmd = ["memcached", "-p", str(port), "-U", "0", "-t", "1", "-l", "127.0.0.1", "-m", "2048"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]
    else:
        backend = server.split()[-1]
        cmd = [sys.executable, "-m", "pycache_d", "-p", str(port), "-m", "2048", "--backend", backend]
    proc = subprocess.Popen(pin + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, proc)
    return proc


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds the process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    hz = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / hz, int(fields[12]) / hz


def memaslap(
    port: int,
    seconds: int,
    extra: list[str],
    cfg: str,
    threads: int = 1,
    conns: int = 16,
    pinned: bool = True,
) -> tuple[float, int]:
    """Run memaslap against ``port`` (on CPU 1 when ``pinned``); return its ops per second and op count."""
    pin = ["taskset", "-c", "1"] if pinned and shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    cmd = pin + [
        "memcaslap",
        "-s",
        f"127.0.0.1:{port}",
        "-T",
        str(threads),
        "-c",
        str(conns),
        "-F",
        cfg,
        "-t",
        f"{seconds}s",
    ]
    out = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=seconds + 60).stdout
    match = re.search(r"Run time: [\d.]+s Ops: (\d+) TPS: (\d+)", out)
    if not match:
        raise RuntimeError(f"memaslap printed no TPS:\n{out[-2000:]}")
    return float(match.group(2)), int(match.group(1))


def load_items(port: int, count: int) -> None:
    value = b"v" * 100
    with socket.create_connection(("127.0.0.1", port)) as s:
        batch = []
        for i in range(count):
            batch.append(b"set key:%010d 0 0 100 noreply\r\n%s\r\n" % (i, value))
            if len(batch) == 2000:
                s.sendall(b"".join(batch))
                batch = []
        s.sendall(b"".join(batch) + b"get key:0000000000\r\n")
        got = b""
        while not got.endswith(b"END\r\n"):
            got += s.recv(65536)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument(
        "--prefill", type=int, default=0, help="items set before each run, as in a long-running daemon"
    )
    parser.add_argument("--backends", default="native,python", help="pycache-d backends to run")
    args = parser.parse_args()
    missing = [tool for tool in ("memcached", "memcaslap") if not shutil.which(tool)]
    if missing:
        why = " and ".join(missing)
        print(f"daemon throughput: skipped, {why} not installed (Debian: memcached, libmemcached-tools)")
        return 0
    servers = ["memcached"] + [f"pycache-d {b}" for b in args.backends.split(",") if b]
    bars = {"pycache-d native": 1.0, "pycache-d python": 0.5}
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        cfg = str(Path(tmp) / "memaslap.cfg")
        Path(cfg).write_text(CONFIG)
        for label, extra in (("get/set 90/10", []), ("10-key multi-get", ["-d", "10"])):
            tps: dict[str, list[float]] = {s: [] for s in servers}
            cpu: dict[str, list[tuple[float, float]]] = {s: [] for s in servers}
            for _ in range(args.rounds):
                for server in servers:
                    port = free_port()
                    proc = start(server, port)
                    try:
                        if args.prefill:
                            load_items(port, args.prefill)
                        user0, sys0 = cpu_seconds(proc.pid)
                        rate, ops = memaslap(port, args.seconds, extra, cfg)
                        user1, sys1 = cpu_seconds(proc.pid)
                        tps[server].append(rate)
                        cpu[server].append((1e6 * (user1 - user0) / ops, 1e6 * (sys1 - sys0) / ops))
                    finally:
                        stop(proc)
            base = statistics.median(tps["memcached"])
            filled = f", {args.prefill:,} items set first" if args.prefill else ""
            print(
                f"throughput, {label} (memaslap -T 1 -c 16, {args.seconds}s x {args.rounds} rounds, "
                f"median{filled}; server CPU per op, user + system):"
            )
            for server in servers:
                med = statistics.median(tps[server])
                ratio = med / base
                bar = bars.get(server)
                verdict = "" if bar is None else (" ok" if ratio >= bar else f" BELOW BAR {bar}x")
                ok &= bar is None or ratio >= bar
                user = statistics.median(u for u, _ in cpu[server])
                system = statistics.median(k for _, k in cpu[server])
                print(
                    f"  {server:<17} {med:10,.0f} ops/s  {ratio:5.2f}x  "
                    f"{user:.2f} + {system:.2f} us/op{verdict}"
                )
    if not args.skip_rss:
        print(f"RSS per item after {args.items:,} sets of 100-byte values:")
        for server in servers:
            port = free_port()
            proc = start(server, port)
            try:
                before = rss_bytes(proc.pid)
                load_items(port, args.items)
                time.sleep(0.5)
                after = rss_bytes(proc.pid)
            finally:
                stop(proc)
            print(f"  {server:<17} {(after - before) / args.items:7.1f} bytes/item")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
