"""Resident memory of idle connections: what does a client that connected, asked once and went quiet cost?

A fresh server per kind (memcached, as the reference, then pycache-d on each backend) is started
with room for the connections; one key of 100 bytes is set. Then ``--connections`` (10,000)
clients connect, each sends ``get k`` and reads its reply, and all stay open and silent. RSS is
read once the server has settled (``--settle`` seconds after the last reply), before and after,
and the difference per connection is reported (it includes the kernel-side socket memory that
is charged to the process: none; socket buffers are kernel memory, not RSS).

Each server runs single-threaded where it can choose (memcached ``-t 1``), as in the other
benchmarks. A benchmark, not a test: it asserts nothing; the structural property (an idle
session and connection hold no buffer) is tests/test_idle_memory.py's.

Usage: python benchmarks/idle_connections.py [--connections 10000] [--servers memcached,native,python]
                                             [--settle 1.0]
"""

from __future__ import annotations

import argparse
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from procs import free_port, rss_bytes, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
VALUE = b"v" * 100
REPLY = b"VALUE k 0 100\r\n" + VALUE + b"\r\nEND\r\n"


def start(server: str, port: int, connections: int) -> subprocess.Popen[bytes]:
    limit = str(connections + 100)
    if server == "memcached":
        cmd = ["memcached", "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-t", "1", "-c", limit]
        cmd += ["-u", "root"] if os.geteuid() == 0 else []
    else:
        cmd = [sys.executable, "-m", "pycache_d", "-l", "127.0.0.1", "-p", str(port), "-c", limit]
        cmd += ["--backend", server, "--no-snapshot"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCACHE_D_")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port("127.0.0.1", port, proc)
    except RuntimeError as e:
        proc.kill()
        raise RuntimeError(f"{server} did not start: {e}") from None
    return proc


def ask(port: int, request: bytes, expect: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        got = b""
        while not got.endswith(expect):
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError(f"connection closed after {got!r}")
            got += chunk


def open_idle(port: int, n: int) -> list[socket.socket]:
    """Open ``n`` connections, send ``get k`` on each and read the whole reply; return them open."""
    socks: list[socket.socket] = []
    sel = selectors.DefaultSelector()
    pending: dict[socket.socket, bytes] = {}
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(b"get k\r\n")
        s.setblocking(False)
        socks.append(s)
        pending[s] = b""
        sel.register(s, selectors.EVENT_READ)
        if len(pending) >= 256 or i == n - 1:  # read the replies in batches: bounded in flight
            deadline = time.monotonic() + 60
            while pending:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{len(pending)} replies did not come")
                for key, _ in sel.select(1.0):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    chunk = sock.recv(4096)
                    if not chunk:
                        raise RuntimeError("the server closed a connection")
                    got = pending[sock] + chunk
                    if got == REPLY:
                        del pending[sock]
                        sel.unregister(sock)
                    else:
                        pending[sock] = got
    sel.close()
    return socks


def measure(server: str, n: int, settle: float) -> tuple[int, int]:
    """Return (RSS before, RSS after) ``n`` idle connections to a fresh ``server``."""
    port = free_port()
    proc = start(server, port, n)
    try:
        ask(port, b"set k 0 0 %d\r\n%s\r\n" % (len(VALUE), VALUE), b"STORED\r\n")
        ask(port, b"get k\r\n", REPLY)  # warm: the first connection's one-off costs go in `before`
        time.sleep(settle)
        before = rss_bytes(proc.pid)
        socks = open_idle(port, n)
        time.sleep(settle)
        after = rss_bytes(proc.pid)
        for s in socks:
            s.close()
        return before, after
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--servers", default="memcached,native,python")
    parser.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.connections + 100
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            print(f"needs {need} file descriptors; the hard limit is {hard}: use fewer --connections")
            return 1
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    servers = [s for s in args.servers.split(",") if s]
    if "memcached" in servers and shutil.which("memcached") is None:
        print("memcached is not installed: skipping it")
        servers.remove("memcached")
    print(f"{args.connections} idle connections, each after one 'get k' of a 100-byte value")
    print(f"{'server':>10} {'RSS before':>11} {'RSS after':>10} {'per connection':>15}")
    for server in servers:
        before, after = measure(server, args.connections, args.settle)
        per = (after - before) / args.connections
        print(
            f"{server:>10} {before / 2**20:9.1f} M {after / 2**20:8.1f} M {per / 1024:12.2f} KiB", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
