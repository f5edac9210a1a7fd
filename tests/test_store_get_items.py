"""The python backend's ``get_items`` (the session's get path) is ``get_item`` on each key in turn.

Two python stores on one fake clock take the same random operations; wherever one answers a
multi-get with ``get_items`` the other calls ``get_item`` key by key. Results, raised errors,
counters and the LRU order must stay identical. (The native backend has no ``get_items``: its
session drives the C store directly.)
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store_differential import KEYS, OPS, apply

from pycache_d.store._pystore import Store
from pycache_d.store.errors import StoreError

from conftest import FakeClock

# Keys the store refuses (empty, too long) stop a multi-get part way.
BATCH_KEYS = st.one_of(KEYS, KEYS, KEYS, st.sampled_from([b"", b"k" * 251]))
GET_ITEMS = st.tuples(st.just("get_items"), st.lists(BATCH_KEYS, min_size=1, max_size=8))
# Each step: one of the differential test's operations, then a multi-get.
STEPS = st.tuples(OPS, GET_ITEMS)


def get_items(store: Store, keys: list[bytes]) -> object:
    try:
        return store.get_items(keys)
    except StoreError as exc:
        return type(exc).__name__


def get_item_in_turn(store: Store, keys: list[bytes]) -> object:
    try:
        return [store.get_item(key) for key in keys]
    except StoreError as exc:
        return type(exc).__name__


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEPS, min_size=5, max_size=40),
    max_bytes=st.integers(60, 600),
    max_items=st.sampled_from([0, 0, 1, 3]),
)
def test_get_items_is_get_item_on_each_key_in_turn(steps, max_bytes, max_items):
    clock = FakeClock()
    batch = Store(max_bytes, max_items=max_items, clock=clock)
    single = Store(max_bytes, max_items=max_items, clock=clock)
    for step, op in enumerate(op for pair in steps for op in pair):
        if op[0] == "get_items":
            got, want = get_items(batch, op[1]), get_item_in_turn(single, op[1])
        else:
            got, want = apply(batch, clock, op), apply(single, clock, op)
        assert got == want, f"step {step}: {op}"
        assert batch.stats() == single.stats(), f"step {step}: {op}"
        assert list(batch.items()) == list(single.items()), f"step {step}: {op}"


def test_get_items_marks_fetched_and_bumps_in_request_order():
    store = Store(clock=FakeClock())
    for key in (b"a", b"b", b"c"):
        store.set(key, key.upper(), 7)
    got = store.get_items([b"b", b"zz", b"a", b"b"])
    assert [item and item[:2] for item in got] == [(b"B", 7), None, (b"A", 7), (b"B", 7)]
    assert [key for key, *_ in store.items()] == [b"c", b"a", b"b"]
    stats = store.stats()
    assert (stats["cmd_get"], stats["get_hits"], stats["get_misses"]) == (4, 3, 1)


def test_get_items_takes_bytes_subclasses_the_careful_way():
    class Key(bytes):
        pass

    store = Store(clock=FakeClock())
    store.set(b"k", b"v")
    assert store.get_items([Key(b"k"), Key(b"nope")]) == [(b"v", 0, 1), None]
    assert store.stats()["get_hits"] == 1


def test_a_budget_stops_after_the_hit_that_reaches_it():
    store = Store(1 << 20, clock=FakeClock())
    for name, size in ((b"a", 10), (b"b", 20), (b"c", 30)):
        store.set(name, b"x" * size)
    found = store.get_items([b"a", b"nope", b"b", b"c", b"a"], 30)
    assert [None if f is None else len(f[0]) for f in found] == [10, None, 20]
    stats = store.stats()
    assert (stats["cmd_get"], stats["get_hits"], stats["get_misses"]) == (3, 2, 1)
    assert len(store.get_items([b"c", b"a"], 1)) == 1  # at least one key, always
    assert len(store.get_items([b"nope", b"nope", b"a"], 1)) == 3  # misses cost nothing
