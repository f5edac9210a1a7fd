"""Large values against memcached -t 1, and the system calls they cost (issue 14 part 1).

Load: memaslap as in daemon_throughput.py (1 thread, 16 connections, 90% get / 10% set,
server on CPU 0 and memaslap on CPU 1), with 16-byte keys and values of 16 KiB, 64 KiB,
200 KiB, 500 KiB and 1 MiB (both servers given ``-I 2m`` for that row, as a 1 MiB value does not fit
memcached's default 1 MiB item). ``memcached -t 1`` and pycache-d (native backend) run in turn, fresh
servers alternating for ``--rounds`` rounds; the median is printed with the server's CPU per op.
The defaults (8 s x 5 rounds) are what it takes here: at 5 s x 3 each server's own rounds spread
by 20-40% and the medians swung 0.86x-1.07x; at 8 s x 5 they held within a few percent.
``--baseline DIR`` adds a pycache-d checkout built in place (e.g. ``git archive main``
extracted and ``setup.py build_clib build_ext --inplace``) as a third server, for before/after.

System calls: each pycache-d is run once more with ``strace -f -c`` attached, at 200 KiB for
``--strace-seconds``, and its counts of mremap, sendto, sendmsg, recvfrom and brk are printed
per 1,000 memaslap ops (strace slows the server: these are counts, not times).

Bar (issue 14): native >= 1.0x memcached -t 1 at every size.

Usage: python benchmarks/large_values.py [--seconds S] [--rounds R] [--sizes KiB,...] [--baseline DIR]
       [--skip-strace]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from daemon_throughput import cpu_seconds, memaslap
from procs import free_port, stop, wait_port

SIZES = [16 * 1024, 64 * 1024, 200 * 1024, 500 * 1024, 1024 * 1024]
#: Values this large need a larger item size limit than both servers' default (1 MiB).
BIG = 1024 * 1024
CALLS = ["mremap", "sendto", "sendmsg", "recvfrom", "brk"]


def config(size: int) -> str:
    return f"key\n16 16 1\nvalue\n{size} {size} 1\ncmd\n0 0.1\n1 0.9\n"


def command(server: str, port: int, baseline: str | None, size: int) -> tuple[list[str], str | None]:
    """The server's command line and working directory."""
    big = ["-I", "2m"] if size >= BIG else []
    if server == "memcached":
        cmd = ["memcached", "-p", str(port), "-U", "0", "-t", "1", "-l", "127.0.0.1", "-m", "2048"]
        return cmd + big + (["-u", "root"] if os.geteuid() == 0 else []), None
    cmd = [sys.executable, "-m", "pycache_d", "-p", str(port), "-l", "127.0.0.1", "-m", "2048"]
    return cmd + big + ["--backend", "native"], (baseline if server == "pycache-d baseline" else None)


def start(server: str, port: int, baseline: str | None, wrap: list[str], size: int) -> subprocess.Popen:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    cmd, cwd = command(server, port, baseline, size)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    if cwd:
        env["PYTHONPATH"] = cwd  # the baseline's package, not this checkout's
    proc = subprocess.Popen(
        pin + wrap + cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if wrap else subprocess.DEVNULL,
        cwd=cwd,
        env=env,
    )
    wait_port("127.0.0.1", port, proc)
    return proc


def strace_counts(server: str, baseline: str | None, seconds: int, cfg: str) -> dict[str, float]:
    """System calls per 1,000 ops of one memaslap run at 200 KiB, counted by ``strace -f -c -p``."""
    port = free_port()
    proc = start(server, port, baseline, [], 200 * 1024)
    with tempfile.NamedTemporaryFile(suffix=".strace") as out:
        try:
            tracer = subprocess.Popen(
                ["strace", "-f", "-c", "-o", out.name, "-p", str(proc.pid)], stderr=subprocess.DEVNULL
            )
            time.sleep(1)  # attached to every thread
            _, ops = memaslap(port, seconds, [], cfg)
            tracer.send_signal(signal.SIGINT)  # detaches and writes the summary
            tracer.wait(30)
        finally:
            stop(proc)
        text = Path(out.name).read_text()
    counts = {}
    for call in CALLS:
        m = re.search(rf"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?{call}$", text, re.M)
        counts[call] = 1000 * int(m.group(1)) / ops if m else 0.0
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="a pycache-d checkout built in place, run as well")
    parser.add_argument("--skip-strace", action="store_true")
    parser.add_argument("--strace-seconds", type=int, default=5)
    parser.add_argument(
        "--sizes", help="value sizes in KiB, comma-separated (default: every row)", default=""
    )
    args = parser.parse_args()
    sizes = [int(k) * 1024 for k in args.sizes.split(",") if k.strip()] or SIZES
    missing = [t for t in ("memcached", "memcaslap") if not shutil.which(t)]
    if missing:
        print(
            f"large values: skipped, {' and '.join(missing)} not installed "
            "(Debian: memcached, libmemcached-tools)"
        )
        return 0
    servers = ["memcached", "pycache-d native"] + (["pycache-d baseline"] if args.baseline else [])
    ok = True
    print(
        f"large values, memaslap -T 1 -c 16 90% get, {args.seconds}s x {args.rounds} rounds, median; "
        "server CPU per op (user + system):"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            cfg = str(Path(tmp) / f"memaslap-{size}.cfg")
            Path(cfg).write_text(config(size))
            tps: dict[str, list[float]] = {s: [] for s in servers}
            cpu: dict[str, list[float]] = {s: [] for s in servers}
            for _ in range(args.rounds):
                for server in servers:
                    port = free_port()
                    proc = start(server, port, args.baseline, [], size)
                    try:
                        user0, sys0 = cpu_seconds(proc.pid)
                        rate, ops = memaslap(port, args.seconds, [], cfg)
                        user1, sys1 = cpu_seconds(proc.pid)
                    finally:
                        stop(proc)
                    tps[server].append(rate)
                    cpu[server].append(1e6 * (user1 - user0 + sys1 - sys0) / ops)
            base = statistics.median(tps["memcached"])
            print(f"  {size // 1024} KiB values{' (-I 2m)' if size >= BIG else ''}:")
            for server in servers:
                med = statistics.median(tps[server])
                verdict = ""
                if server == "pycache-d native":
                    verdict = " ok" if med >= base else " BELOW BAR 1.0x"
                    ok &= med >= base
                rounds = " ".join(f"{r:,.0f}" for r in tps[server])
                print(
                    f"    {server:<19} {med:9,.0f} ops/s  {med / base:5.2f}x  "
                    f"{statistics.median(cpu[server]):7.1f} us/op{verdict}  (rounds: {rounds})"
                )
        if not args.skip_strace and shutil.which("strace"):
            cfg = str(Path(tmp) / "memaslap-strace.cfg")
            Path(cfg).write_text(config(200 * 1024))
            print(f"system calls per 1,000 ops at 200 KiB (strace -f -c, {args.strace_seconds}s):")
            for server in servers[1:]:
                counts = strace_counts(server, args.baseline, args.strace_seconds, cfg)
                print(f"    {server:<19} " + "  ".join(f"{c} {counts[c]:7.1f}" for c in CALLS))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
