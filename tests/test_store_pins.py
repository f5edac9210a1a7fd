"""The native store's pins, driven at random against a model (csrc/store.h, "Pins").

Replies being sent hold PinnedValue objects; here the test holds them, many at once (far more
than a few connections would), and meanwhile overwrites, deletes, flushes and evicts their
items. After every step the store's pin counters must equal the model's, and every held value
must still read as the bytes it was pinned with; once all are released nothing stays pinned
and no chunk of a detached item is left behind. Thousands of pins taken and dropped in random
order also exercise the index that finds an item's pin (its growth and its deletions).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pycache_d.store import BACKENDS

pytestmark = [
    pytest.mark.asan,
    pytest.mark.skipif("native" not in BACKENDS, reason="native backend not built"),
]

KiB = 1024


def value_of(key: int, version: int, size: int) -> bytes:
    stamp = b"%d.%d:" % (key, version)
    return (stamp * (size // len(stamp) + 1))[:size]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_pins_match_a_model_through_overwrites_deletes_flushes_and_evictions(seed: int) -> None:
    rng = random.Random(seed)
    store: Any = BACKENDS["native"](max_bytes=64 * 1024 * KiB)
    store.pin_limit = 2**40  # the bound is tested elsewhere; here every pin must be granted
    keys = 200
    version = [0] * keys
    live: dict[int, bytes] = {}
    held: list[tuple[tuple[int, int], Any, bytes]] = []  # (instance, pin, its bytes)

    def check() -> None:
        mem = store.memory()
        assert mem["pinned_items"] == len({inst for inst, _, _ in held})
        assert (mem["pinned_bytes"] > 0) == bool(held)
        for i in rng.sample(range(len(held)), min(len(held), 5)):
            assert bytes(held[i][1]) == held[i][2]

    for _ in range(20000):
        op = rng.random()
        k = rng.randrange(keys)
        if op < 0.35:
            pin = store.pin(b"k%d" % k)
            if k in live:
                assert pin is not None and bytes(pin) == live[k]
                held.append(((k, version[k]), pin, live[k]))
            else:
                assert pin is None
            del pin  # only `held` may keep it pinned
        elif op < 0.65 and held:
            held.pop(rng.randrange(len(held)))  # dropping the last reference unpins
        elif op < 0.85:
            version[k] += 1
            live[k] = value_of(k, version[k], rng.choice([5 * KiB, 20 * KiB, 70 * KiB]))
            store.set(b"k%d" % k, live[k])
        elif op < 0.97:
            store.delete(b"k%d" % k)
            live.pop(k, None)
        elif op < 0.99:
            store.flush_all()
            live.clear()
        else:
            # Evict: lower the limit below what is held, then restore it.
            store.max_bytes = max(1, store.memory()["slab_bytes"] // 3)
            while store.reclaim(1000):
                pass
            store.max_bytes = 64 * 1024 * KiB
            live = {k: v for k, v in live.items() if store.peek(b"k%d" % k) is not None}
        check()

    rng.shuffle(held)
    while held:
        held.pop()
        check()
    assert store.memory()["pinned_bytes"] == 0
    for k in range(keys):
        store.delete(b"k%d" % k)
    # Every chunk, detached ones included, went back: large chunks alone are malloc()ed, and
    # every value here is large, so nothing at all is held.
    assert store.memory()["slab_bytes"] == 0
