"""SIGTERM to exit with busy clients: how long does a restart under load hold them?

A fresh daemon per backend gets ``--clients`` connections that pipeline ``get`` requests
without pause (``--batch`` per write, the next batch once its replies are read), half of them
for a 100-byte value and half for a 100 KB one (whose replies fill the socket buffers, so
backpressure pauses those clients), plus ``--idle`` connections that stay silent. After
``--warmup`` seconds SIGTERM is sent and the time until the process has exited is measured.
Every busy client then checks that what it received ends at a reply boundary (a cut reply is
a client error, not a clean end of the connection).

Reported per backend and run: seconds from SIGTERM to exit, clients cut mid-reply, clients whose
connection ended with a reset rather than an EOF (after their last whole reply, if none was
cut: they had sent more than the daemon read), and the replies received in the second before
SIGTERM (the load). Runs the daemon of the tree it sits
in, with this interpreter; ``--root`` runs another checkout's (with that checkout's
interpreter, e.g. ``/work/main/.venv/bin/python benchmarks/shutdown_time.py --root /work/main``).

Usage: python benchmarks/shutdown_time.py [--backends native,python] [--clients 16] [--idle 100]
                                          [--runs 3] [--root DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from procs import free_port, wait_port

SMALL = b"s" * 100
LARGE = b"L" * 100_000


def start(root: Path, backend: str, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "pycache_d", "-l", "127.0.0.1", "-p", str(port), "-I", "1m"]
    cmd += ["--backend", backend, "--no-snapshot"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCACHE_D_")}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port("127.0.0.1", port, proc)
    return proc


class Client(threading.Thread):
    """Pipelines ``batch`` gets of ``key`` until the daemon closes the connection."""

    def __init__(self, port: int, key: bytes, value: bytes, batch: int) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.request = b"get %s\r\n" % key * batch
        self.reply = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)
        self.batch = batch
        self.replies = 0
        self.cut = False
        self.error = ""

    def run(self) -> None:
        got = 0
        try:
            while True:
                self.sock.sendall(self.request)
                want = len(self.reply) * self.batch
                got = 0
                while got < want:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        return  # EOF: the daemon went
                    got += len(chunk)
                self.replies += self.batch
                got = 0
        except (ConnectionResetError, BrokenPipeError) as e:
            # A reset after the replies (the client had sent more than the daemon read).
            self.error = type(e).__name__
        except OSError as e:
            self.error = str(e)
        finally:
            self.cut = got % len(self.reply) != 0  # what came must be whole replies
            self.sock.close()


def run_once(
    root: Path, backend: str, clients: int, idle: int, batch: int, warmup: float
) -> tuple[float, int, int, int]:
    port = free_port()
    proc = start(root, backend, port)
    with socket.create_connection(("127.0.0.1", port)) as s:
        for key, value in ((b"small", SMALL), (b"large", LARGE)):
            s.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
            assert s.recv(100) == b"STORED\r\n"
    quiet = [socket.create_connection(("127.0.0.1", port)) for _ in range(idle)]
    busy = [
        Client(port, *((b"small", SMALL, batch) if i % 2 == 0 else (b"large", LARGE, max(1, batch // 10))))
        for i in range(clients)
    ]
    for c in busy:
        c.start()
    time.sleep(warmup)
    before = sum(c.replies for c in busy)
    time.sleep(1.0)
    load = sum(c.replies for c in busy) - before
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(120)
    took = time.monotonic() - sent
    for c in busy:
        c.join(30)
    for s in quiet:
        s.close()
    cut = sum(1 for c in busy if c.cut)
    reset = sum(1 for c in busy if c.error)
    return took, cut, reset, load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="native,python")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args()
    print(
        f"{args.clients} pipelining clients (half 100 B, half 100 KB values), {args.idle} idle; "
        f"daemon from {args.root}"
    )
    print(
        f"{'backend':>8} {'SIGTERM to exit':>16} {'cut mid-reply':>14} {'reset':>6} {'replies/s before':>17}"
    )
    for backend in [b for b in args.backends.split(",") if b]:
        for _ in range(args.runs):
            took, cut, reset, load = run_once(
                args.root, backend, args.clients, args.idle, args.batch, args.warmup
            )
            print(f"{backend:>8} {took:14.2f} s {cut:>14} {reset:>6} {load:>17}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
