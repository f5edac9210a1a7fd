"""CPU per 10-key multi-get in the pure-Python session over the python store (no sockets).

The shape of memaslap's ``-d 10`` load on ``pycache-d --backend python``: 16-byte keys, 100-byte
values with flags 0, nearly every key a hit. Each connection sends one multi-get and waits for
its reply, so the usual feed holds a single command: ``feed`` is timed per command ("one per
feed") and, as a second figure, for commands pipelined in one feed. Also ``gets`` (CAS values).

Figures are the best of several repeats, in microseconds per multi-get. In-process only: it
measures the session and store, not the event loop or the kernel.

Usage: python benchmarks/session_multiget.py [--items N] [--gets N] [--repeat R] [--keys K]
"""

from __future__ import annotations

import argparse
import random
import time

from pycache_d.protocol.session import Session
from pycache_d.store._pystore import Store


def populate(items: int, value_size: int) -> tuple[Session, list[bytes]]:
    store = Store(max_bytes=1 << 30)
    keys = [b"%016x" % random.getrandbits(64) for _ in range(items)]
    value = bytes(value_size)
    for key in keys:
        store.set(key, value)
    return Session(store), keys


def commands(keys: list[bytes], count: int, per_get: int, word: bytes, miss: float) -> list[bytes]:
    made = []
    for _ in range(count):
        picked = random.sample(keys, per_get)
        if miss and random.random() < miss * per_get:
            picked[0] = b"m%015x" % random.getrandbits(60)  # a key nobody set
        made.append(word + b" " + b" ".join(picked) + b"\r\n")
    return made


def time_feeds(session: Session, feeds: list[bytes], repeat: int) -> float:
    """Best seconds for feeding every item of ``feeds`` in turn."""
    feed = session.feed
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for data in feeds:
            feed(data)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--gets", type=int, default=20_000, help="multi-gets per repeat")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keys", type=int, default=10, help="keys per multi-get")
    parser.add_argument("--value", type=int, default=100, help="value size in bytes")
    parser.add_argument("--miss", type=float, default=0.01, help="share of keys that miss")
    args = parser.parse_args()
    random.seed(1)
    session, keys = populate(args.items, args.value)
    for word in (b"get", b"gets"):
        cmds = commands(keys, args.gets, args.keys, word, args.miss)
        assert session.feed(cmds[0]).endswith(b"END\r\n")
        one = time_feeds(session, cmds, args.repeat)
        batch = 16  # like memaslap's -c16 connections' worth, when they land in one read
        piped = [b"".join(cmds[i : i + batch]) for i in range(0, len(cmds), batch)]
        many = time_feeds(session, piped, args.repeat)
        name = word.decode()
        per_one = one / len(cmds) * 1e6
        per_many = many / len(cmds) * 1e6
        print(
            f"{name:4} {args.keys}-key: {per_one:6.2f} us one per feed, {per_many:6.2f} us pipelined x{batch}"
        )
    stats = session.store.stats()
    print(f"hit ratio {stats['get_hits'] / stats['cmd_get']:.3f}")


if __name__ == "__main__":
    main()
