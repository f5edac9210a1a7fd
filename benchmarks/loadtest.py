"""Load test that checks every reply: a mix of commands from several processes for a set time.

Each worker process runs ``--connections`` asyncio connections; each connection owns its keys
(a per-run, per-process, per-connection prefix) and keeps a model of what each must hold, so every
reply to a command on them is checked exactly: values and flags, STORED / NOT_STORED / EXISTS /
NOT_FOUND / DELETED / TOUCHED, counters (incr wraps at 2^64, decr stops at 0, a shorter result is
padded with spaces, as memcached does), meta replies (HD / NS / EX / NF / EN / VA), and CAS
values (the same while an item is not written, larger after each write). noreply and quiet
(``q``) commands are checked by what follows them on the stream. Mixed in: pipelined batches of
checked commands, and a small shared key range every connection hammers at once, where replies
are checked for form (VALUE framing, keys requested, values made of whole written tokens) plus
one shared counter that only ever goes up by one: each connection must see it increase, and its
final value must equal the number of increments all workers made. At the end every connection
reads all its keys back and compares them with its model.

Commands: get, multi-get, gets, cas, set, add, replace, append, prepend, incr, decr, delete,
touch, gat, gats, mg, ms, md, ma, mn. Throughput counts commands; latency is per round trip
(a pipelined batch is one). A wrong reply or an error (timeout, reset, bad framing) stops that
connection and is reported; the exit status is 1 if there was any (the bar is zero of each).

By default a daemon is started per backend (``-m 1024``, plenty for the key space, so nothing
is evicted: an eviction would make a miss on an owned key legitimate, and is reported as an
error); ``--host``/``--port`` test a running server instead. The model follows memcached 1.6:
``memcached`` itself passes with ``--loose-counters`` (see its help for the two ways memcached's
counters are not deterministic).

Usage: python benchmarks/loadtest.py [--seconds 30] [--processes 4] [--connections 8]
                                     [--backends native,python | --host H --port P]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest_model import Check, Owned, Planned, Wrong, exact, parse_values, value_reply
from procs import free_port, stats, stop, wait_port

ROOT = Path(__file__).resolve().parent.parent
SHARED_KEYS = 32
#: What the shared keys hold: whole tokens written by set, append and cas (w<proc>.<conn>.<seq>;).
SHARED_VALUE = re.compile(rb"(?:w\d+\.\d+\.\d+;)+")
#: A round trip taking longer than this is an error.
TIMEOUT = 15.0


@dataclass
class Tally:
    """What one worker process did and saw."""

    commands: Counter[str] = field(default_factory=Counter)
    latencies_ns: array = field(default_factory=lambda: array("q"))
    wrong: int = 0
    errors: int = 0
    examples: list[str] = field(default_factory=list)
    counter_incrs: int = 0
    seconds: float = 0.0  # from the connections opening to the last one finishing


class Client:
    """One connection: its owned keys, and its share of the shared ones."""

    def __init__(self, run: bytes, proc: int, conn: int, tally: Tally, seed: int, loose: bool) -> None:
        self.rng = random.Random(seed)
        self.owned = Owned(b"%s.%d.%d." % (run, proc, conn), self.rng, loose)
        self.shared = [b"%s.shared%d" % (run, i) for i in range(SHARED_KEYS)]
        self.counter = b"%s.counter" % run
        self.token = b"w%d.%d.%%d;" % (proc, conn)
        self.seq = 0
        self.last_count = -1
        self.tally = tally
        #: The starts of the last exchanges, shown with a wrong reply.
        self.history: deque[tuple[bytes, bytes]] = deque(maxlen=2000)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def read(self, kind: str) -> bytes:
        r = self.reader
        if kind == "none":
            return b""
        line = await r.readuntil(b"\r\n")
        if kind == "line":
            return line
        if kind == "values":
            out = bytearray(line)
            while line.startswith(b"VALUE "):
                out += await r.readexactly(int(line.split(b" ")[3]) + 2)
                line = await r.readuntil(b"\r\n")
                out += line
            return bytes(out)
        out = bytearray()
        while True:  # meta replies: one, or (kind mn) all of them up to MN
            out += line
            if line.startswith(b"VA "):
                out += await r.readexactly(int(line.split(b" ")[1]) + 2)
            if kind == "meta" or line == b"MN\r\n":
                return bytes(out)
            line = await r.readuntil(b"\r\n")

    async def round_trip(self, request: bytes, kinds: list[str]) -> list[bytes]:
        """Send ``request`` and read one reply per kind; the time taken is one latency sample."""
        t0 = time.perf_counter_ns()
        async with asyncio.timeout(TIMEOUT):
            self.writer.write(request)
            replies = [await self.read(kind) for kind in kinds]
        self.tally.latencies_ns.append(time.perf_counter_ns() - t0)
        return replies

    async def run_planned(self, batch: list[Planned]) -> None:
        # Commands that answer nothing are checked by the reply of the next one on the stream.
        if batch[-1].kind == "none":
            batch.append(Planned("mn", b"mn\r\n", "meta", exact(b"MN\r\n")))
        replies = await self.round_trip(b"".join(p.request for p in batch), [p.kind for p in batch])
        for p, got in zip(batch, replies, strict=True):
            self.tally.commands[p.name] += 1
            self.history.append((p.request[:200], got[:200]))
            self.verify(p.name, p.request, got, p.check)

    def verify(self, name: str, request: bytes, got: bytes, check: Check) -> None:
        try:
            why = check(got)
        except (Wrong, ValueError, IndexError) as e:
            why = f"malformed: {e}"
        if why:
            self.tally.wrong += 1
            if len(self.tally.examples) < 10:
                self.tally.examples.append(f"{name}: sent {request[:200]!r}, got {got[:300]!r}: {why}")
                # What this connection did to the same key before (owned keys only).
                key = request.split(b" ")[1] if request.count(b" ") else b""
                before = [(r, g) for r, g in list(self.history)[:-1] if key and key in r]
                for r, g in before[-6:]:
                    self.tally.examples.append(f"    earlier: sent {r[:120]!r}, got {g[:120]!r}")
            raise Wrong(why)

    async def shared_op(self) -> None:
        """A command on the shared keys, checked for form."""
        op = self.rng.randrange(7)
        key = self.rng.choice(self.shared)
        if op == 0:
            self.seq += 1
            value = self.token % self.seq
            (got,) = await self.round_trip(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value), ["line"])
            self.tally.commands["set"] += 1
            self.verify("shared set", key, got, exact(b"STORED\r\n"))
        elif op == 1:
            self.seq += 1
            value = self.token % self.seq
            (got,) = await self.round_trip(b"append %s 0 0 %d\r\n%s\r\n" % (key, len(value), value), ["line"])
            self.tally.commands["append"] += 1
            self.verify(
                "shared append", key, got, lambda g: None if g in (b"STORED\r\n", b"NOT_STORED\r\n") else "?"
            )
        elif op == 2:
            keys = self.rng.sample(self.shared, self.rng.randint(1, 8))
            (got,) = await self.round_trip(b"get %s\r\n" % b" ".join(keys), ["values"])
            self.tally.commands["multi-get" if len(keys) > 1 else "get"] += 1
            self.verify("shared get", b" ".join(keys), got, lambda g: self.shared_values(keys, g))
        elif op == 3:
            (got,) = await self.round_trip(b"delete %s\r\n" % key, ["line"])
            self.tally.commands["delete"] += 1
            self.verify(
                "shared delete", key, got, lambda g: None if g in (b"DELETED\r\n", b"NOT_FOUND\r\n") else "?"
            )
        elif op == 4:
            (got,) = await self.round_trip(b"gets %s\r\n" % key, ["values"])
            self.tally.commands["gets"] += 1
            self.verify("shared gets", key, got, lambda g: self.shared_values([key], g))
            entries = parse_values(got)
            if entries:
                self.seq += 1
                value = self.token % self.seq
                req = b"cas %s 0 0 %d %d\r\n%s\r\n" % (key, len(value), entries[0][3] or 0, value)
                (got,) = await self.round_trip(req, ["line"])
                self.tally.commands["cas"] += 1
                ok = (b"STORED\r\n", b"EXISTS\r\n", b"NOT_FOUND\r\n")
                self.verify("shared cas", req, got, lambda g: None if g in ok else "?")
        elif op == 5:
            (got,) = await self.round_trip(b"incr %s 1\r\n" % self.counter, ["line"])
            self.tally.commands["incr"] += 1
            self.verify("shared incr", self.counter, got, lambda g: self.counted(g.rstrip(b"\r\n")))
        else:
            (got,) = await self.round_trip(b"ma %s v\r\n" % self.counter, ["meta"])
            self.tally.commands["ma"] += 1
            self.verify("shared ma", self.counter, got, lambda g: self.counted(g.split(b"\r\n")[1]))

    def counted(self, text: bytes) -> str | None:
        """The shared counter only goes up by one at a time: each reply is above the last one seen."""
        if not text.isdigit():
            return "not a number"
        if int(text) <= self.last_count:
            return f"shared counter went from {self.last_count} to {int(text)}"
        self.last_count = int(text)
        self.tally.counter_incrs += 1
        return None

    def shared_values(self, keys: list[bytes], got: bytes) -> str | None:
        entries = parse_values(got)
        rest = iter(keys)
        for key, flags, data, _ in entries:
            if key not in rest:  # consumes the iterator: hits come in the order asked
                return f"{key!r} not asked for, or out of order"
            if flags != 0 or not SHARED_VALUE.fullmatch(data):
                return f"value {data[:100]!r} flags {flags} is not made of written tokens"
        return None

    async def final_check(self) -> None:
        keys = self.owned.keys + self.owned.sure_counters()
        for i in range(0, len(keys), 40):
            chunk = keys[i : i + 40]
            want = b"".join(value_reply(k, self.owned.items.get(k)) for k in chunk) + b"END\r\n"
            (got,) = await self.round_trip(b"get %s\r\n" % b" ".join(chunk), ["values"])
            self.tally.commands["multi-get"] += 1
            self.verify("final read-back", b"get ...", got, exact(want))

    async def run(self, host: str, port: int, deadline: float) -> None:
        try:
            self.reader, self.writer = await asyncio.open_connection(host, port, limit=1 << 20)
        except OSError as e:
            self.error(f"connect: {e!r}")
            return
        loop = asyncio.get_running_loop()
        try:
            while loop.time() < deadline:
                r = self.rng.random()
                if r < 0.1:
                    await self.shared_op()
                elif r < 0.17:  # a pipelined batch
                    await self.run_planned([self.owned.plan() for _ in range(self.rng.randint(2, 10))])
                else:
                    await self.run_planned([self.owned.plan()])
            await self.final_check()
        except Wrong:
            pass  # counted; the model may no longer match the server, so this connection stops
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as e:
            self.error(repr(e))
        except (ValueError, IndexError) as e:  # a VALUE or VA line whose length is not a number
            self.error(f"unreadable reply: {e!r}")
        finally:
            self.writer.close()

    def error(self, what: str) -> None:
        self.tally.errors += 1
        if len(self.tally.examples) < 10:
            self.tally.examples.append(f"error: {what}")


@dataclass
class Job:
    """What one worker process is to do."""

    host: str
    port: int
    run: bytes  # the key prefix of this run
    proc: int
    connections: int
    seconds: float
    seed: int
    loose_counters: bool


def worker(job: Job) -> Tally:
    """One process: ``job.connections`` clients on one event loop until the time is up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    tally = Tally()

    async def main() -> None:
        start = asyncio.get_running_loop().time()
        deadline = start + job.seconds
        clients = [
            Client(job.run, job.proc, c, tally, job.seed * 1000 + job.proc * 100 + c, job.loose_counters)
            for c in range(job.connections)
        ]
        await asyncio.gather(*(c.run(job.host, job.port, deadline) for c in clients))
        tally.seconds = asyncio.get_running_loop().time() - start

    try:
        import uvloop  # a faster client loop, when the daemon's dependency is here

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return tally


# -- the parent: servers, workers, the report ------------------------------------------------------


def command(host: str, port: int, request: bytes, until: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(request)
        got = b""
        while not got.endswith(until):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6


def run_load(host: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Drive one server; return the figures and the failures."""
    run = b"lt%s" % os.urandom(3).hex().encode()
    counter = b"%s.counter" % run
    assert command(host, port, b"set %s 0 0 1\r\n0\r\n" % counter, b"\r\n") == b"STORED\r\n"
    before = stats(host, port)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(args.processes) as pool:
        jobs = [
            Job(host, port, run, p, args.connections, args.seconds, args.seed, args.loose_counters)
            for p in range(args.processes)
        ]
        tallies = pool.map(worker, jobs)
    after = stats(host, port)
    total = Tally()
    for t in tallies:
        total.commands.update(t.commands)
        total.latencies_ns.extend(t.latencies_ns)
        total.wrong += t.wrong
        total.errors += t.errors
        total.counter_incrs += t.counter_incrs
        total.examples += t.examples
    final = command(host, port, b"get %s\r\n" % counter, b"END\r\n")
    want = b"VALUE %s 0 %d\r\n%d\r\nEND\r\n" % (
        counter,
        len(b"%d" % total.counter_incrs),
        total.counter_incrs,
    )
    if final != want:
        total.wrong += 1
        total.examples.append(f"shared counter: expected {want!r}, got {final!r}")
    evicted = int(after.get("evictions", 0)) - int(before.get("evictions", 0))
    if evicted:
        total.errors += 1
        total.examples.append(f"{evicted} evictions: the exact checks assume none (raise -m)")
    lat = sorted(total.latencies_ns)
    return {
        "commands": sum(total.commands.values()),
        "round_trips": len(lat),
        "seconds": max(t.seconds for t in tallies),
        "p50": percentile(lat, 0.50),
        "p99": percentile(lat, 0.99),
        "wrong": total.wrong,
        "errors": total.errors,
        "examples": total.examples,
        "mix": total.commands,
        "counter": total.counter_incrs,
        "evictions": evicted,
    }


def start_daemon(
    backend: str, memory: int, connections: int, log: Any
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    cmd = [sys.executable, "-m", "pycache_d", "-l", "127.0.0.1", "-p", str(port), "-m", str(memory)]
    cmd += ["-c", str(connections), "--backend", backend, "--no-snapshot"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCACHE_D_")}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    wait_port("127.0.0.1", port, proc)
    return proc, port


def report(label: str, r: dict[str, Any]) -> None:
    print(
        f"{label}: {r['commands']:,} commands in {r['seconds']:.1f} s "
        f"= {r['commands'] / r['seconds']:,.0f}/s; "
        f"{r['round_trips']:,} round trips, latency p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms; "
        f"wrong replies {r['wrong']}, errors {r['errors']}",
        flush=True,
    )
    mix = ", ".join(f"{name} {n:,}" for name, n in sorted(r["mix"].items(), key=lambda kv: -kv[1]))
    print(f"  mix: {mix}")
    print(f"  shared counter: {r['counter']:,} increments, all seen rising; evictions {r['evictions']}")
    for line in r["examples"]:
        print(f"  ! {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8, help="per process")
    parser.add_argument("--backends", default="native,python", help="daemons to start, one after the other")
    parser.add_argument("--host", help="test a running server instead of starting daemons")
    parser.add_argument("--port", type=int, default=11211)
    parser.add_argument("--memory", type=int, default=1024, help="-m of the daemons started (MiB)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--loose-counters",
        action="store_true",
        help="for memcached itself, whose counters are not deterministic: it pads a shrunk counter "
        "only when no other thread holds the item, and now and then finds a value of 2^63 or more "
        "non-numeric (its minus-sign check reads past the value); such a counter is left alone "
        "until set again",
    )
    args = parser.parse_args()
    print(
        f"load test: {args.processes} processes x {args.connections} connections, "
        f"{args.seconds:g} s per server",
        flush=True,
    )
    failed = False
    if args.host:
        r = run_load(args.host, args.port, args)
        report(f"{args.host}:{args.port}", r)
        return 1 if r["wrong"] or r["errors"] else 0
    for backend in [b for b in args.backends.split(",") if b]:
        with tempfile.TemporaryFile() as log:
            proc, port = start_daemon(backend, args.memory, args.processes * args.connections + 64, log)
            try:
                r = run_load("127.0.0.1", port, args)
            finally:
                stop(proc)
            if proc.returncode != 0:
                r["errors"] += 1
                log.seek(0)
                r["examples"].append(
                    f"daemon exit status {proc.returncode}; log tail:\n{log.read()[-3000:].decode()}"
                )
        report(f"pycache-d {backend}", r)
        failed |= bool(r["wrong"] or r["errors"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
