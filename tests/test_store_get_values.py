"""The python store's ``get_values`` (the session's get path) is ``get_items`` plus VALUE lines.

Two python stores on one fake clock take the same random operations; wherever one answers a
multi-get with ``get_values`` the other calls ``get_items`` and the test spells out the reply
parts itself. Reply bytes, the keys looked up, raised errors, counters and the LRU order must
stay identical, with and without a budget and for ``gets``.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_store_differential import KEYS, OPS, apply

from pycache_d.store._pystore import Store
from pycache_d.store.errors import InvalidKey

from conftest import FakeClock

# Keys the store refuses (too long) stop a multi-get part way; the session never passes b"".
BATCH_KEYS = st.one_of(KEYS, KEYS, KEYS, st.just(b"k" * 251))
# Values around the session's preformatted sizes (< 1024 bytes) and flags that skip them.
BIG_SETS = st.tuples(
    st.just("set"),
    KEYS,
    st.integers(0, 1500).map(lambda n: b"v" * n),
    st.sampled_from([0, 0, 5]),
    st.sampled_from([0, 0, 2]),
)
GET_VALUES = st.tuples(
    st.just("get_values"),
    st.lists(BATCH_KEYS, min_size=1, max_size=8),
    st.sampled_from([None, None, 1, 100, 1100, 3000]),
    st.booleans(),
)
STEPS = st.tuples(st.one_of(OPS, BIG_SETS), GET_VALUES)


def get_values(store: Store, keys: list[bytes], budget: int | None, with_cas: bool) -> tuple:
    out = [b"before"]
    try:
        looked_up, spent = store.get_values(keys, budget, out, with_cas)
    except InvalidKey:
        return "InvalidKey", b"".join(out)
    return looked_up, spent, b"".join(out)


def by_get_items(store: Store, keys: list[bytes], budget: int | None, with_cas: bool) -> tuple:
    """What get_values must do, from get_items and the reply format spelt out."""
    bad = next((i for i, key in enumerate(keys) if len(key) > 250), len(keys))
    items = store.get_items(keys[:bad], budget)
    reply = b"before"
    for key, item in zip(keys, items):  # noqa: B905 (items may be shorter)
        if item is not None:
            value, flags, cas = item
            tail = b" %d" % cas if with_cas else b""
            reply += b"VALUE %s %d %d%s\r\n%s\r\n" % (key, flags, len(value), tail, value)
    spent = sum(len(item[0]) for item in items if item)
    if bad < len(keys) and (budget is None or spent < budget):
        return "InvalidKey", reply  # the budget did not stop it before the bad key
    return len(items), spent, reply


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEPS, min_size=5, max_size=40),
    max_bytes=st.integers(60, 6000),
    max_items=st.sampled_from([0, 0, 1, 3]),
)
def test_get_values_is_get_items_with_value_lines(steps, max_bytes, max_items):
    clock = FakeClock()
    fused = Store(max_bytes, max_items=max_items, clock=clock)
    plain = Store(max_bytes, max_items=max_items, clock=clock)
    for step, op in enumerate(op for pair in steps for op in pair):
        if op[0] == "get_values":
            got, want = get_values(fused, *op[1:]), by_get_items(plain, *op[1:])
        else:
            got, want = apply(fused, clock, op), apply(plain, clock, op)
        assert got == want, f"step {step}: {op}"
        assert fused.stats() == plain.stats(), f"step {step}: {op}"
        assert list(fused.items()) == list(plain.items()), f"step {step}: {op}"


def test_get_values_formats_flags_sizes_and_cas():
    store = Store(clock=FakeClock())
    store.set(b"small", b"s" * 3)
    store.set(b"flagged", b"f", 9)
    store.set(b"big", b"b" * 1024)
    out: list[bytes] = []
    assert store.get_values([b"small", b"nope", b"flagged", b"big"], None, out) == (4, 1028)
    assert b"".join(out) == (
        b"VALUE small 0 3\r\nsss\r\nVALUE flagged 9 1\r\nf\r\nVALUE big 0 1024\r\n" + b"b" * 1024 + b"\r\n"
    )
    out = []
    assert store.get_values([b"flagged", b"small"], 1, out, True) == (1, 1)
    assert b"".join(out) == b"VALUE flagged 9 1 2\r\nf\r\n"
    stats = store.stats()
    assert (stats["cmd_get"], stats["get_hits"], stats["get_misses"]) == (5, 4, 1)
    assert [key for key, *_ in store.items()] == [b"small", b"big", b"flagged"]
