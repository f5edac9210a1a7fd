"""A long loop of operations must keep the process's memory flat (no leaks, C or Python)."""

from __future__ import annotations

import gc
import resource

import pytest

from conftest import FakeClock


def rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def churn(store, clock, rounds: int) -> None:
    for i in range(rounds):
        k = b"k%d" % (i % 5000)
        store.set(k, b"v" * (i % 300), i & 0xFFFF, i % 7)
        store.get_item(k)
        store.get_many([k, b"missing"])
        store.append(k, b"tail")
        store.incr(b"n%d" % (i % 50), 3) or store.set(b"n%d" % (i % 50), b"1")
        store.touch(k, 3)
        store.gat(k, 0)
        store.delete(b"k%d" % ((i * 7) % 5000))
        if i % 1000 == 0:
            clock.advance(5)
            store.reclaim(500)
            store.flush_all(0 if i % 7000 else 2)
            list(store.items())


@pytest.mark.slow
def test_memory_stays_flat(make_store, clock: FakeClock):
    store = make_store(max_bytes=2 * 1024 * 1024)
    churn(store, clock, 60_000)  # warm up: tables, heaps and allocator pools reach their size
    gc.collect()
    before = rss_kib()
    churn(store, clock, 120_000)
    gc.collect()
    grown = rss_kib() - before
    assert grown < 2048, f"RSS grew by {grown} KiB over 120k rounds of operations"
