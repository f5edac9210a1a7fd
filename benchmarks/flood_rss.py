"""Resident memory under a write flood: how far past -m does the daemon's RSS go?

A fresh daemon per backend and memory limit (``-m 64`` and ``-m 256`` by default; memcached too
when installed, as a reference) receives pipelined ``set ... noreply`` of unique keys from
``--connections`` connections, in phases that change the value size, because an allocator with
size classes can keep the pages of one class when the sizes move on (compaction in csrc/slabs.h
is there to return them):

    100 B, 1 KB, 10 KB, 100 KB, a mix of all four, then 100 B again

Each phase writes ``--fill`` times -m (or stops after ``--phase-seconds``), so the store fills
and evicts in every phase. RSS is sampled every 20 ms. Reported per server: RSS at start, peak
RSS, peak minus -m (the overhead: interpreter, tables, per-connection buffers, allocator slack),
peak / -m, and the peak of each phase. A benchmark, not a test: it asserts nothing
(tests/test_overload.py holds the bound that must not be crossed).

Usage: python benchmarks/flood_rss.py [--memory 64,256] [--backends native,python]
                                      [--fill 2] [--phase-seconds 15] [--connections 4]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from procs import free_port, rss_bytes, stats, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
#: (name, value sizes drawn from, uniformly by count)
PHASES = [
    ("100 B", [100]),
    ("1 KB", [1000]),
    ("10 KB", [10_000]),
    ("100 KB", [100_000]),
    ("mixed", [100, 1000, 10_000, 100_000]),
    ("100 B again", [100]),
]
#: Bytes of requests sent per sendall().
BATCH = 256 * 1024
NOISE = random.Random(3).randbytes(256 * 1024)


def start(server: str, port: int, memory: int) -> subprocess.Popen[bytes]:
    if server == "memcached":
        cmd = ["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-m", str(memory), "-t", "1"]
        cmd += ["-u", "root"] if os.geteuid() == 0 else []
    else:
        backend = server.split()[-1]
        cmd = [sys.executable, "-m", "pycache_d", "-l", "127.0.0.1", "-p", str(port), "-m", str(memory)]
        cmd += ["--backend", backend, "--no-snapshot"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCACHE_D_")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port, proc)
    except RuntimeError as e:
        proc.kill()
        raise RuntimeError(f"{server} did not start: {e}") from None
    return proc


class Sampler(threading.Thread):
    """Samples a process's RSS; ``peak`` since the last ``reset()``, and ``overall``."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = self.overall = rss_bytes(pid)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            rss = rss_bytes(self.pid)
            self.peak = max(self.peak, rss)
            self.overall = max(self.overall, rss)

    def reset(self) -> int:
        peak, self.peak = self.peak, rss_bytes(self.pid)
        return peak


def flood(
    sock: socket.socket, conn: int, sizes: list[int], budget: int, deadline: float
) -> tuple[int, bytes]:
    """Send pipelined noreply sets of unique keys until ``budget`` bytes or ``deadline``.

    Returns:
        (bytes of values sent, whatever the server answered; a noreply set answers only errors).
    """
    rng = random.Random(conn)
    sent = 0
    n = 0
    while sent < budget and time.monotonic() < deadline:
        parts = []
        size = 0
        while size < BATCH:
            length = rng.choice(sizes)
            at = rng.randrange(len(NOISE) - length) if length < len(NOISE) else 0
            value = NOISE[at : at + length]
            n += 1
            parts.append(b"set f%d:%d:%d 0 0 %d noreply\r\n" % (conn, os.getpid(), n, len(value)))
            parts.append(value)
            parts.append(b"\r\n")
            size += len(value) + 40
        sock.sendall(b"".join(parts))
        sent += size
    # mn answers once everything before it was handled: the phase ends for real.
    sock.sendall(b"mn\r\n")
    got = b""
    while not got.endswith(b"MN\r\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return sent, got[: -len(b"MN\r\n")]


def run_phase(
    socks: list[socket.socket], sizes: list[int], budget: int, deadline: float
) -> list[tuple[int, bytes]]:
    """Flood on every connection at once, one thread each; return each one's flood() result."""
    outcomes: list[tuple[int, bytes]] = [(0, b"")] * len(socks)

    def one(i: int) -> None:
        outcomes[i] = flood(socks[i], i, sizes, budget, deadline)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


@dataclass
class Result:
    server: str
    memory: int
    written: int = 0
    base: int = 0
    peak: int = 0
    final: int = 0
    phase_peaks: list[int] = field(default_factory=list)
    errors: int = 0
    evictions: int = 0
    stored: int = 0


def measure(server: str, memory: int, args: argparse.Namespace) -> Result:
    port = free_port()
    proc = start(server, port, memory)
    result = Result(server, memory)
    try:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=120) for _ in range(args.connections)]
        time.sleep(0.3)
        result.base = rss_bytes(proc.pid)
        sampler = Sampler(proc.pid)
        sampler.start()
        budget = int(args.fill * memory * MiB / args.connections)
        for _name, sizes in PHASES:
            outcomes = run_phase(socks, sizes, budget, time.monotonic() + args.phase_seconds)
            result.written += sum(sent for sent, _ in outcomes)
            result.errors += sum(answer.count(b"\r\n") for _, answer in outcomes)
            result.phase_peaks.append(sampler.reset())
        sampler.done.set()
        sampler.join()
        time.sleep(0.5)
        result.peak = sampler.overall
        result.final = rss_bytes(proc.pid)
        s = stats("127.0.0.1", port)
        result.evictions = int(s.get("evictions", 0))
        result.stored = int(s.get("bytes", 0))
        for sock in socks:
            sock.close()
    finally:
        stop(proc)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory", default="64,256", help="-m values (MiB), comma-separated")
    parser.add_argument("--backends", default="native,python")
    parser.add_argument("--fill", type=float, default=2.0, help="bytes written per phase, in multiples of -m")
    parser.add_argument("--phase-seconds", type=float, default=15.0, help="at most this long per phase")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--no-memcached", action="store_true", help="leave memcached out")
    args = parser.parse_args()
    servers = [f"pycache-d {b}" for b in args.backends.split(",") if b]
    if shutil.which("memcached") and not args.no_memcached:
        servers.append("memcached")
    memories = [int(m) for m in args.memory.split(",")]
    print(
        f"RSS under a write flood: {args.connections} connections of pipelined noreply sets, "
        f"phases {', '.join(name for name, _ in PHASES)}; each phase {args.fill:g} x -m "
        f"or {args.phase_seconds:g} s",
        flush=True,
    )
    results = []
    for memory in memories:
        for server in servers:
            r = measure(server, memory, args)
            results.append(r)
            print(f"  {server} -m {memory}: done, {r.written / 1e9:.2f} GB written", flush=True)

    def mib(n: int) -> str:
        return f"{n / MiB:7.1f}"

    head = f"{'server':<17} {'-m':>4} {'GB':>5} {'start':>7} {'peak':>7} {'peak-m':>7} {'peak/m':>6}"
    head += f" {'end':>7} {'stored':>7} {'evicted':>9} {'errors':>6}"
    print("\nRSS in MiB (start: empty daemon; stored: the stats bytes figure at the end)")
    print(head)
    for r in results:
        print(
            f"{r.server:<17} {r.memory:>4} {r.written / 1e9:5.2f} {mib(r.base)} {mib(r.peak)} "
            f"{mib(r.peak - r.memory * MiB)} {r.peak / (r.memory * MiB):6.2f} {mib(r.final)} "
            f"{mib(r.stored)} {r.evictions:>9,} {r.errors:>6}"
        )
    print("\npeak RSS (MiB) in each phase")
    print(f"{'server':<17} {'-m':>4} " + " ".join(f"{name:>11}" for name, _ in PHASES))
    for r in results:
        print(f"{r.server:<17} {r.memory:>4} " + " ".join(f"{p / MiB:11.1f}" for p in r.phase_peaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
