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

Then the same store and lock on real sockets (unless ``--skip-server``):
benchmarks/c/worker_probe.c (N worker threads, each an epoll loop over its share of the clients,
text get/gets/set/delete answered in C under the one mutex; a probe of the design, not the
daemon) and ``memcached -t N`` are driven in turn by memaslap ``-T 2 -c 64`` (nothing pinned:
the load generator shares the 2 cores, as in issue 14's bar), get/set 90/10 and 10-key
multi-gets, fresh servers alternating; the median rate, the server's CPU per op and the probe's
lock figures (timed: two clock reads per lock).

Usage: python benchmarks/store_locking.py [--seconds S] [--work NS,...] [--rounds R] [--skip-server]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from daemon_throughput import cpu_seconds, memaslap
from procs import free_port, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
CSRC = sorted(str(c) for c in (ROOT / "csrc").glob("*.c"))  # the store, as setup.py builds it


def build(out: Path, source: str = "tests/c/store_threads.c") -> None:
    cmd = ["gcc", "-std=c11", "-O2", "-pthread", f"-I{ROOT / 'csrc'}", str(ROOT / source)]
    subprocess.run(cmd + CSRC + ["-o", str(out)], check=True)


def run(binary: Path, threads: int, seconds: float, timed: bool, work: int) -> dict[str, float]:
    args = [str(binary), "bench", str(threads), "100000", "100", str(seconds), str(int(timed)), str(work)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    return {k: float(v) for k, v in (f.split("=") for f in out.split())}


def serve_once(
    cmd: list[str], port: int, seconds: float, extra: list[str], cfg: str
) -> tuple[float, float, str]:
    """One fresh server under memaslap: its rate, its CPU per op (us) and what it printed at exit."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port("127.0.0.1", port, proc)
        user0, sys0 = cpu_seconds(proc.pid)
        rate, ops = memaslap(port, int(seconds), extra, cfg, threads=2, conns=64, pinned=False)
        user1, sys1 = cpu_seconds(proc.pid)
    finally:
        stop(proc)
    said = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    return rate, 1e6 * (user1 - user0 + sys1 - sys0) / ops, said


def servers(probe: Path, rounds: int, seconds: float) -> None:
    """The probe against memcached at 1 and 2 threads (see the module docstring)."""
    root = ["-u", "nobody"] if os.geteuid() == 0 else []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = str(Path(tmp) / "memaslap.cfg")
        Path(cfg).write_text("key\n16 16 1\nvalue\n100 100 1\ncmd\n0 0.1\n1 0.9\n")
        print("worker probe vs memcached, memaslap -T 2 -c 64, nothing pinned, 100 B values:")
        for threads in (1, 2):
            for label, extra in (("get/set 90/10", []), ("10-key multi-get", ["-d", "10"])):
                runs: dict[str, list[tuple[float, float, str]]] = {"memcached": [], "probe": []}
                for _ in range(rounds):
                    for name, runs_of in runs.items():
                        port = free_port()
                        cmd = [str(probe), str(port), str(threads)]
                        if name == "memcached":
                            cmd = ["memcached", "-p", str(port), "-U", "0", "-t", str(threads)]
                            cmd += ["-l", "127.0.0.1", "-m", "2048", *root]
                        runs_of.append(serve_once(cmd, port, seconds, extra, cfg))
                mc = statistics.median(r[0] for r in runs["memcached"])
                pr = statistics.median(r[0] for r in runs["probe"])
                mc_cpu = statistics.median(r[1] for r in runs["memcached"])
                pr_cpu = statistics.median(r[1] for r in runs["probe"])
                print(
                    f"  -t {threads} {label:<17} memcached {mc:9,.0f}/s {mc_cpu:5.2f} us/op; "
                    f"probe {pr:9,.0f}/s {pr_cpu:5.2f} us/op ({pr / mc:4.2f}x); {runs['probe'][-1][2]}"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--work", default="0,2000,5000", help="ns of work outside the lock per request")
    parser.add_argument("--skip-server", action="store_true", help="not the worker probe against memcached")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the worker probe runs")
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
        if args.skip_server:
            return 0
        missing = [t for t in ("memcached", "memcaslap") if not shutil.which(t)]
        if missing:
            print(f"worker probe: skipped, {' and '.join(missing)} not installed")
            return 0
        probe = Path(tmp) / "worker_probe"
        build(probe, "benchmarks/c/worker_probe.c")
        servers(probe, args.rounds, max(args.seconds, 5.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
