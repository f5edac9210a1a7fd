"""The native store's slab pages hold about what -m allows, whatever the item sizes do.

Pages belong to one size class, so survivors scattered over a class's pages would pin memory
no other size can use; the store moves them together and releases the emptied pages (see
csrc/slabs.h). These tests build exactly that pattern and check both the memory and that the
moved items are intact, in the same LRU order as the python backend's.
"""

from __future__ import annotations

import os
import random

import pytest

from conftest import FakeClock, backend_class

pytestmark = pytest.mark.asan

if os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
    pytest.skip("extensions disabled on purpose", allow_module_level=True)

MiB = 1024 * 1024
PAGE = 64 * 1024


def scatter_then_flood(store, rng: random.Random, small: int, large: int) -> None:
    """Fill with small items, keep a scattered tenth recently used, then flood with large ones."""
    n = 0
    while store.stats()["evictions"] == 0:
        store.set(b"s%d" % n, b"%d" % n * (small // len(b"%d" % n) + 1), n % 7, 0)
        n += 1
    for i in rng.sample(range(n), n // 10):
        store.get(b"s%d" % i)  # bumped: these outlive the flood, spread over every page
    for i in range(store.max_bytes // large + 100):
        store.set(b"L%d" % i, bytes([i % 256]) * large, 0, 3600 if i % 2 else 0)


def test_survivors_are_compacted_and_pages_come_back():
    store = backend_class("native")(8 * MiB, clock=FakeClock())
    scatter_then_flood(store, random.Random(1), 100, 2000)
    mem = store.memory()
    assert mem["pages_compacted"] > 0
    # Without compaction the small class keeps all its pages (about 8 MiB) beside the flood's.
    classes = 2
    assert mem["slab_bytes"] <= store.max_bytes + classes * 2 * PAGE + store.max_bytes // 8


def test_moved_items_keep_their_values_links_and_order():
    clock = FakeClock()
    native = backend_class("native")(4 * MiB, clock=clock)
    python = backend_class("python")(4 * MiB, clock=clock)
    for store in (native, python):
        scatter_then_flood(store, random.Random(2), 60, 900)
    assert native.memory()["pages_compacted"] > 0
    assert list(native.items()) == list(python.items())
    # The expiry heap still finds the moved items: half of the flood expires.
    clock.advance(3601)
    assert native.reclaim(10**6) == python.reclaim(10**6) > 0
    assert list(native.items()) == list(python.items())
    table = {"hash_power_level", "hash_bytes", "hash_is_expanding"}
    strip = lambda st: {k: v for k, v in st.items() if k not in table}  # noqa: E731
    assert strip(native.stats()) == strip(python.stats())
    # And the hash chains: every key is found, with its value.
    for key, value, flags, _exptime, cas in python.items():
        assert native.get_item(key) == (value, flags, cas)
