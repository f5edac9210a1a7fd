"""The store's behaviour, run against both backends (test ids say which)."""

from __future__ import annotations

import pytest

from pycache_d.store.errors import InvalidKey, ItemTooLarge, NonNumericValue, OutOfMemory, Result
from pycache_d.store.semantics import ITEM_OVERHEAD, REALTIME_MAXDELTA, SHRINK_SLICE

pytestmark = pytest.mark.asan


def keys_lru(store):
    return [k for k, *_ in store.items()]


def charge(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + ITEM_OVERHEAD


# -- basic storage commands -------------------------------------------------------------------


def test_set_get_roundtrip(store):
    assert store.set(b"k", b"hello", 42) is Result.STORED
    assert store.get(b"k") == b"hello"
    value, flags, cas = store.get_item(b"k")
    assert (value, flags) == (b"hello", 42)
    assert cas == store.cas_counter
    assert store.get(b"missing") is None


def test_empty_and_binary_values(store):
    store.set(b"e", b"")
    store.set(b"b", bytes(range(256)) + b"\r\n")
    assert store.get(b"e") == b""
    assert store.get(b"b") == bytes(range(256)) + b"\r\n"


def test_bytes_like_values_are_copied(store):
    buf = bytearray(b"abc")
    store.set(b"k", buf)
    buf[0] = ord("z")
    assert store.get(b"k") == b"abc"
    store.set(b"m", memoryview(b"xyz"))
    assert store.get(b"m") == b"xyz"


def test_cas_changes_on_every_modification(store):
    store.set(b"k", b"1")
    seen = {store.get_item(b"k")[2]}
    for op in (
        lambda: store.set(b"k", b"2"),
        lambda: store.append(b"k", b"3"),
        lambda: store.prepend(b"k", b"4"),
        lambda: store.replace(b"k", b"5"),
        lambda: store.incr(b"k", 1),
    ):
        op()
        cas = store.get_item(b"k")[2]
        assert cas not in seen
        seen.add(cas)


def test_add_and_replace(store):
    assert store.replace(b"k", b"v") is Result.NOT_STORED
    assert store.add(b"k", b"v1") is Result.STORED
    assert store.add(b"k", b"v2") is Result.NOT_STORED
    assert store.get(b"k") == b"v1"
    assert store.replace(b"k", b"v3", 7) is Result.STORED
    assert store.get_item(b"k")[:2] == (b"v3", 7)


def test_append_prepend_keep_flags_and_expiry(store, clock):
    assert store.append(b"k", b"x") is Result.NOT_STORED
    assert store.prepend(b"k", b"x") is Result.NOT_STORED
    store.set(b"k", b"mid", 5, 100)
    assert store.append(b"k", b"-end") is Result.STORED
    assert store.prepend(b"k", b"start-") is Result.STORED
    assert store.get_item(b"k")[:2] == (b"start-mid-end", 5)
    clock.advance(100)
    assert store.get(b"k") is None


def test_cas_command(store):
    assert store.cas(b"k", b"v", 0, 0, 1) is Result.NOT_FOUND
    store.set(b"k", b"v")
    cas = store.get_item(b"k")[2]
    assert store.cas(b"k", b"w", 0, 0, cas + 1) is Result.EXISTS
    assert store.cas(b"k", b"w", 3, 0, cas) is Result.STORED
    assert store.get_item(b"k")[:2] == (b"w", 3)
    assert store.cas(b"k", b"again", 0, 0, cas) is Result.EXISTS
    st = store.stats()
    assert (st["cas_misses"], st["cas_badval"], st["cas_hits"]) == (1, 2, 1)


def test_delete(store):
    assert store.delete(b"k") is Result.NOT_FOUND
    store.set(b"k", b"v")
    assert store.delete(b"k") is Result.DELETED
    assert store.get(b"k") is None
    assert store.stats()["curr_items"] == 0


def test_get_many_in_request_order(store):
    store.set(b"a", b"1")
    store.set(b"c", b"3", 9)
    got = store.get_many([b"c", b"b", b"a"])
    assert list(got) == [b"c", b"a"]
    assert got[b"c"][:2] == (b"3", 9)


# -- incr / decr ------------------------------------------------------------------------------


def test_incr_decr_basics(store):
    assert store.incr(b"n", 1) is None
    store.set(b"n", b"10")
    assert store.incr(b"n", 5) == 15
    assert store.decr(b"n", 20) == 0  # decr stops at 0
    assert store.get(b"n") == b"0 "  # memcached pads in place with spaces
    assert store.incr(b"n", 123) == 123
    assert store.get(b"n") == b"123"


def test_incr_wraps_at_2_64(store):
    store.set(b"n", b"18446744073709551615")
    assert store.incr(b"n", 2) == 1
    assert store.get(b"n") == b"1" + b" " * 19


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"5", 6),
        (b" 5", 6),
        (b"+5", 6),
        (b"5 ", 6),
        (b"5\r\n", 6),
        (b"-0", 1),
        (b"007", 8),
        (b"18446744073709551614", 2**64 - 1),
    ],
)
def test_incr_accepts_what_memcached_accepts(store, value, expected):
    store.set(b"n", value)
    assert store.incr(b"n", 1) == expected


@pytest.mark.parametrize(
    "value", [b"", b" ", b"\t", b"abc", b"5a", b"-5", b"0x10", b"18446744073709551616", b"+", b"1.5", b"x 5"]
)
def test_incr_rejects_non_numbers_and_leaves_item(store, value):
    store.set(b"n", value, 3)
    before = store.get_item(b"n")
    with pytest.raises(NonNumericValue) as err:
        store.incr(b"n", 1)
    assert err.value.wire == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    with pytest.raises(NonNumericValue):
        store.decr(b"n", 1)
    assert store.get_item(b"n") == before


def test_incr_counters(store):
    store.incr(b"x", 1)
    store.decr(b"x", 1)
    store.set(b"x", b"1")
    store.incr(b"x", 1)
    store.decr(b"x", 1)
    st = store.stats()
    assert (st["incr_misses"], st["decr_misses"], st["incr_hits"], st["decr_hits"]) == (1, 1, 1, 1)


# -- expiry -----------------------------------------------------------------------------------


def test_relative_expiry(store, clock):
    store.set(b"k", b"v", 0, 10)
    clock.advance(9)
    assert store.get(b"k") == b"v"
    clock.advance(1)
    assert store.get(b"k") is None
    st = store.stats()
    assert st["get_expired"] == 1 and st["get_misses"] == 1 and st["curr_items"] == 0


def test_zero_never_expires_and_negative_is_expired(store, clock):
    store.set(b"forever", b"v", 0, 0)
    store.set(b"gone", b"v", 0, -1)
    clock.advance(10 * REALTIME_MAXDELTA)
    assert store.get(b"forever") == b"v"
    assert store.get(b"gone") is None


def test_thirty_days_is_relative_beyond_is_absolute(store, clock):
    store.set(b"rel", b"v", 0, REALTIME_MAXDELTA)
    store.set(b"abs", b"v", 0, clock.now + 50)
    store.set(b"past", b"v", 0, REALTIME_MAXDELTA + 1)  # an absolute time in 1970
    assert store.get(b"past") is None
    clock.advance(49)
    assert store.get(b"abs") == b"v"
    clock.advance(1)
    assert store.get(b"abs") is None
    clock.advance(REALTIME_MAXDELTA - 51)
    assert store.get(b"rel") == b"v"
    clock.advance(1)
    assert store.get(b"rel") is None


def test_absolute_times_follow_a_stepped_wall_clock_relative_ones_do_not(store, clock):
    """The wall clock was set forward an hour after the store's clock was taken (clock.py)."""
    store.wall_skew = 3600
    wall = clock.now + 3600
    store.set(b"abs", b"v", 0, wall + 50)  # a client's "now + 50" in Unix time
    store.set(b"rel", b"v", 0, 50)
    store.set(b"touched", b"v")
    assert store.touch(b"touched", wall + 20) is Result.TOUCHED
    assert store.gat(b"rel", 50) is not None
    clock.advance(20)
    assert store.get(b"touched") is None
    clock.advance(29)
    assert store.get(b"abs") == b"v" and store.get(b"rel") == b"v"
    clock.advance(1)
    assert store.get(b"abs") is None and store.get(b"rel") is None
    store.set(b"past", b"v", 0, wall)  # the wall clock's now: already gone
    assert store.get(b"past") is None
    store.wall_skew = -3600  # set back instead: absolute times land later on the store clock
    store.set(b"later", b"v", 0, clock.now - 3600 + 10)
    clock.advance(9)
    assert store.get(b"later") == b"v"
    with pytest.raises(ValueError):
        store.wall_skew = 2**31


def test_touch_and_gat(store, clock):
    assert store.touch(b"k", 10) is Result.NOT_FOUND
    assert store.gat(b"k", 10) is None
    store.set(b"k", b"v", 4, 5)
    assert store.touch(b"k", 100) is Result.TOUCHED
    clock.advance(50)
    value, flags, _cas = store.gat(b"k", 10)
    assert (value, flags) == (b"v", 4)
    clock.advance(10)
    assert store.get(b"k") is None
    store.set(b"p", b"v", 0, 5)
    assert store.touch(b"p", 0) is Result.TOUCHED  # now never expires
    clock.advance(1000)
    assert store.get(b"p") == b"v"
    st = store.stats()
    assert (st["touch_hits"], st["touch_misses"], st["cmd_touch"]) == (3, 2, 5)


def test_expired_items_are_reclaimed_without_reads(store, clock):
    for i in range(100):
        store.set(b"t%d" % i, b"x" * 100, 0, 1 + i % 10)
    store.set(b"keep", b"v")
    full = store.stats()["bytes"]
    clock.advance(5)
    assert store.reclaim(1000) == 50
    clock.advance(5)
    assert store.reclaim(20) == 20  # bounded slices
    assert store.reclaim(1000) == 30
    st = store.stats()
    assert st["curr_items"] == 1 and st["reclaimed"] == 100 and st["expired_unfetched"] == 100
    assert st["bytes"] == charge(b"keep", b"v") < full
    assert keys_lru(store) == [b"keep"]


def test_touch_and_rewrite_move_the_reclaim_order(store, clock):
    store.set(b"a", b"v", 0, 10)
    store.set(b"b", b"v", 0, 10)
    store.touch(b"a", 100)
    store.set(b"b", b"v2", 0, 200)
    clock.advance(10)
    assert store.reclaim() == 0
    clock.advance(90)
    assert store.reclaim() == 1
    assert keys_lru(store) == [b"b"]


# -- flush_all --------------------------------------------------------------------------------


def test_flush_all_immediate(store, clock):
    for i in range(10):
        store.set(b"k%d" % i, b"v")
    store.flush_all()
    store.set(b"new", b"v")
    assert store.get(b"k3") is None
    assert store.get(b"new") == b"v"
    assert store.stats()["get_flushed"] == 1
    assert store.reclaim() == 9  # flushed items wait at the LRU tail
    assert keys_lru(store) == [b"new"]
    assert store.stats()["curr_items"] == 1


def test_flush_all_delayed(store, clock):
    store.set(b"old", b"v")
    store.flush_all(10)
    clock.advance(8)
    store.set(b"mid", b"v")
    assert store.get(b"old") == b"v"
    clock.advance(1)  # memcached flushes at realtime(delay) - 1
    assert store.get(b"old") is None
    assert store.get(b"mid") is None
    clock.advance(1)
    store.set(b"after", b"v")
    clock.advance(100)
    assert store.get(b"after") == b"v"


def test_flush_all_1_flushes_what_is_stored_in_the_same_second(store, clock):
    # memcached: oldest_live = realtime(1) - 1 = now, and an item is flushed once oldest_live
    # <= current_time if its time <= oldest_live: every item stored during this second too.
    store.set(b"before", b"v")
    store.flush_all(1)
    assert store.set(b"right-after", b"v") is Result.STORED
    assert store.get(b"right-after") is None
    assert store.get(b"before") is None
    assert store.stats()["get_flushed"] == 2
    clock.advance(1)  # the next second: stored now means stored after the flush
    store.set(b"next-second", b"v")
    assert store.get(b"next-second") == b"v"
    assert store.get(b"right-after") is None
    assert keys_lru(store) == [b"next-second"]


def test_flush_all_delayed_flushes_everything_stored_up_to_the_end_of_its_second(store, clock):
    store.set(b"old", b"v")
    store.flush_all(2)  # oldest_live = now + 2 - 1
    store.set(b"same-second", b"v")
    assert store.get(b"old") == store.get(b"same-second") == b"v"
    clock.advance(1)  # oldest_live: every item is flushed, those stored now as well
    assert store.get(b"old") is None
    for i in range(3):
        assert store.set(b"during%d" % i, b"v") is Result.STORED
        assert store.get(b"during%d" % i) is None
    assert store.add(b"during0", b"again") is Result.STORED  # the flushed one counts as gone
    assert store.get(b"during0") is None
    assert list(store.items()) == []
    clock.advance(1)  # past oldest_live: only what was stored up to it stays flushed
    assert store.set(b"after", b"v") is Result.STORED
    assert store.get(b"after") == b"v"
    assert [store.get(b"during%d" % i) for i in range(3)] == [None] * 3
    assert store.get(b"same-second") is None
    clock.advance(1000)
    assert store.get(b"after") == b"v"
    assert store.reclaim() == 0 and keys_lru(store) == [b"after"]


def test_a_flush_never_brings_back_what_an_earlier_one_flushed(store, clock):
    store.set(b"k", b"v")
    store.flush_all(1)  # k and anything stored this second are flushed...
    store.set(b"this-second", b"v")
    store.flush_all(100)  # ...and a later deadline (memcached moves oldest_live) keeps them so
    assert store.get(b"k") is None and store.get(b"this-second") is None
    store.set(b"new", b"v")
    assert store.get(b"new") == b"v"
    clock.advance(98)
    assert store.get(b"new") == b"v"
    clock.advance(1)
    assert store.get(b"new") is None


def test_flush_all_with_an_absolute_time_takes_effect_a_second_before_it(store, clock):
    store.flush_all(clock.now + 3)  # more than 30 days: a Unix time
    clock.advance(1)
    store.set(b"k", b"v")
    assert store.get(b"k") == b"v"
    clock.advance(1)  # realtime(N) - 1
    assert store.get(b"k") is None
    store.set(b"k", b"v")
    assert store.get(b"k") is None
    clock.advance(1)
    store.set(b"k", b"v")
    assert store.get(b"k") == b"v"


def test_flush_all_negative_delay_is_immediate(store):
    store.set(b"k", b"v")
    store.flush_all(-5)
    assert store.get(b"k") is None


# -- LRU and bounds ---------------------------------------------------------------------------


def test_eviction_is_lru_by_bytes(make_store):
    item = charge(b"k0", b"x" * 100)
    store = make_store(max_bytes=3 * item)
    for i in range(3):
        store.set(b"k%d" % i, b"x" * 100)
    store.get(b"k0")  # a read makes k0 the most recent
    store.set(b"k3", b"x" * 100)
    assert keys_lru(store) == [b"k2", b"k0", b"k3"]
    st = store.stats()
    assert st["evictions"] == 1 and st["evicted_unfetched"] == 1
    assert st["bytes"] == 3 * item <= st["limit_maxbytes"]


def test_writes_and_touches_make_items_recent(make_store):
    store = make_store(max_bytes=10_000)
    for k in (b"a", b"b", b"c", b"d", b"e"):
        store.set(k, b"1")
    store.touch(b"a", 0)
    store.incr(b"b", 1)
    store.append(b"c", b"2")
    store.add(b"d", b"x")  # a failed add still bumps the item, as in memcached
    assert keys_lru(store) == [b"e", b"a", b"b", b"c", b"d"]


def test_max_items(make_store):
    store = make_store(max_items=2)
    store.set(b"a", b"1")
    store.set(b"b", b"1")
    store.set(b"c", b"1")
    assert keys_lru(store) == [b"b", b"c"]
    store.set(b"c", b"2")  # replacing does not evict
    assert keys_lru(store) == [b"b", b"c"]


def test_eviction_prefers_dead_tail_items_as_reclaims(make_store, clock):
    item = charge(b"k0", b"v")
    store = make_store(max_bytes=2 * item)
    store.set(b"k0", b"v", 0, 5)
    store.set(b"k1", b"v")
    clock.advance(5)
    store.set(b"k2", b"v")
    st = store.stats()
    assert (st["evictions"], st["reclaimed"]) == (0, 1)


def test_lowering_the_limit_evicts_now(store):
    for i in range(10):
        store.set(b"k%d" % i, b"x" * 100)
    store.max_bytes = 3 * charge(b"k0", b"x" * 100)
    assert keys_lru(store) == [b"k7", b"k8", b"k9"]
    store.max_items = 1
    assert keys_lru(store) == [b"k9"]


def test_a_much_lower_limit_is_reached_a_slice_at_a_time(store, backend):
    n = 3 * SHRINK_SLICE + 10
    for i in range(n):
        store.set(b"k%05d" % i, b"x" * 100)
    store.get(b"k00000")  # the most recent now: evicted last
    target = 5 * charge(b"k00001", b"x" * 100)
    store.max_bytes = target  # one slice now, not 3,000 evictions in one call
    assert len(store) == n - SHRINK_SLICE
    st = store.stats()
    assert st["limit_maxbytes"] == target and st["evictions"] == SHRINK_SLICE
    assert keys_lru(store)[:2] == [b"k%05d" % (SHRINK_SLICE + 1), b"k%05d" % (SHRINK_SLICE + 2)]
    # Meanwhile writes make room for themselves and the store does not grow back.
    held = st["bytes"]
    store.set(b"new", b"x" * 100)
    assert store.get(b"new") == b"x" * 100
    assert store.stats()["bytes"] <= held and len(store) == n - SHRINK_SLICE
    # The reclaimer's slices evict the rest, LRU tail first.
    slices = 0
    while store.reclaim(500):
        slices += 1
    assert slices == (n - SHRINK_SLICE - 5 + 499) // 500
    assert keys_lru(store) == [b"k%05d" % i for i in range(n - 3, n)] + [b"k00000", b"new"]
    st = store.stats()
    assert st["bytes"] <= target and st["evictions"] == n + 1 - 5
    assert store.reclaim(500) == 0
    store.set(b"more", b"x" * 100)  # the full limit applies again
    assert len(store) == 5 and store.stats()["bytes"] <= target


def test_a_much_lower_item_limit_is_reached_a_slice_at_a_time(store):
    for i in range(2 * SHRINK_SLICE + 1):
        store.set(b"k%d" % i, b"v")
    store.max_items = 1
    assert len(store) == SHRINK_SLICE + 1 and store.stats()["limit_maxitems"] == 1
    store.set(b"new", b"v")
    assert len(store) == SHRINK_SLICE + 1
    assert store.reclaim(SHRINK_SLICE) == SHRINK_SLICE
    assert keys_lru(store) == [b"new"]
    store.set(b"newer", b"v")
    assert keys_lru(store) == [b"newer"]


def test_raising_the_limit_during_a_shrink_stops_it(store):
    for i in range(2 * SHRINK_SLICE):
        store.set(b"k%d" % i, b"v")
    store.max_items = 10
    store.max_items = 0  # no limit again: nothing left to evict
    assert store.reclaim(500) == 0 and len(store) == SHRINK_SLICE
    for i in range(5):
        store.set(b"more%d" % i, b"v")
    assert len(store) == SHRINK_SLICE + 5


def test_item_too_large_disturbs_nothing_else(make_store):
    store = make_store(max_item_size=1000)
    store.set(b"other", b"v")
    store.set(b"k", b"old")
    with pytest.raises(ItemTooLarge) as err:
        store.set(b"k", b"x" * 1000)
    assert err.value.wire == b"SERVER_ERROR object too large for cache\r\n"
    assert store.get(b"k") is None  # memcached drops the stale value of a failed set
    with pytest.raises(ItemTooLarge):
        store.add(b"other", b"x" * 1000)
    assert store.get(b"other") == b"v"
    store.set(b"a", b"x" * 900)
    assert store.append(b"a", b"y" * 100) is Result.NOT_STORED  # combined too large
    assert store.get(b"a") == b"x" * 900
    assert store.set(b"fits", b"x" * (1000 - ITEM_OVERHEAD - 4)) is Result.STORED


def test_item_larger_than_memory_is_out_of_memory(make_store):
    store = make_store(max_bytes=200)
    store.set(b"k", b"v")
    with pytest.raises(OutOfMemory) as err:
        store.set(b"big", b"x" * 200)
    assert err.value.wire == b"SERVER_ERROR out of memory storing object\r\n"
    assert store.get(b"k") == b"v"


def test_default_max_item_size_is_one_mib(store):
    with pytest.raises(ItemTooLarge):
        store.set(b"k", b"x" * (1024 * 1024))


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [b"", b"a" * 251])
def test_invalid_keys(store, key):
    with pytest.raises(InvalidKey):
        store.set(key, b"v")
    with pytest.raises(InvalidKey):
        store.get(key)


def test_any_byte_may_be_in_a_key(store):
    """memcached stores any bytes; protocol.txt's rule is the clients' (meta keys are binary)."""
    for key in (b"sp ace", b"tab\t", b"nl\n", b"nul\x00", b"del\x7f", bytes(range(1, 200))):
        assert store.set(key, key) is Result.STORED
        assert store.get(key) == key


def test_longest_key_and_high_bytes_are_fine(store):
    assert store.set(b"a" * 250, b"v") is Result.STORED
    assert store.set("ключ".encode(), b"v") is Result.STORED
    assert store.get("ключ".encode()) == b"v"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.set(b"k", b"v", -1),
        lambda s: s.set(b"k", b"v", 2**32),
        lambda s: s.set(b"k", b"v", 0, 2**31),
        lambda s: s.incr(b"k", -1),
        lambda s: s.incr(b"k", 2**64),
        lambda s: s.cas(b"k", b"v", 0, 0, -1),
    ],
)
def test_out_of_range_arguments(store, call):
    with pytest.raises(ValueError):
        call(store)


# -- stats, walking and loading ---------------------------------------------------------------


def test_stats_names_and_counts(store):
    store.set(b"a", b"1")
    store.get(b"a")
    store.get(b"b")
    store.delete(b"a")
    store.delete(b"a")
    st = store.stats()
    for name in (
        "curr_items total_items bytes limit_maxbytes evictions expired_unfetched evicted_unfetched "
        "reclaimed get_hits get_misses get_expired get_flushed cmd_get cmd_set cmd_touch "
        "delete_hits delete_misses incr_hits incr_misses decr_hits decr_misses cas_hits cas_misses "
        "cas_badval touch_hits touch_misses"
    ).split():
        assert name in st
    assert (st["get_hits"], st["get_misses"], st["cmd_get"], st["cmd_set"]) == (1, 1, 2, 1)
    assert (st["delete_hits"], st["delete_misses"], st["total_items"]) == (1, 1, 1)
    store.reset_stats()
    assert store.stats()["get_hits"] == 0


def test_items_and_load_roundtrip(make_store, clock):
    src = make_store()
    src.set(b"a", b"1", 1)
    src.set(b"b", b"2", 2, 100)
    src.set(b"c", b"3", 3)
    src.get(b"a")
    src.set(b"dead", b"x", 0, -1)
    dumped = list(src.items())
    assert [d[0] for d in dumped] == [b"b", b"c", b"a"]
    assert dumped[0][3] == clock.now + 100  # absolute expiry
    dst = make_store()
    assert dst.load(dumped, src.cas_counter) == 3
    assert list(dst.items()) == dumped
    assert dst.cas_counter == src.cas_counter
    dst.set(b"new", b"v")
    assert dst.get_item(b"new")[2] == src.cas_counter + 1
    clock.advance(100)
    assert dst.load([(b"late", b"v", 0, clock.now, 7)]) == 0  # already expired


def test_items_refuses_concurrent_modification(store):
    for i in range(5):
        store.set(b"k%d" % i, b"v")
    walk = store.items()
    next(walk)
    store.delete(b"k1")
    with pytest.raises(RuntimeError):
        list(walk)


def test_hash_table_grows_and_keeps_every_item(store):
    n = 20_000
    for i in range(n):
        store.set(b"key:%d" % i, b"%d" % i)
    assert all(store.get(b"key:%d" % i) == b"%d" % i for i in range(0, n, 7))
    assert store.stats()["curr_items"] == n
    for i in range(0, n, 2):
        store.delete(b"key:%d" % i)
    assert store.get(b"key:1") == b"1" and store.get(b"key:2") is None
    assert len(store) == n // 2


def test_native_hash_table_expands_in_slices():
    """Growth moves a few buckets per insert: no single call rehashes the whole table."""
    from conftest import backend_class

    store = backend_class("native")(1 << 30)
    i = 0
    while not store.stats()["hash_is_expanding"]:
        store.set(b"k%d" % i, b"v")
        i += 1
    power = store.stats()["hash_power_level"]
    assert power > 10 and i > 2 ** (power - 1)  # grown past one item per bucket
    store.set(b"one-more", b"v")
    assert store.stats()["hash_is_expanding"] == 1  # still migrating after another insert
    while store.stats()["hash_is_expanding"]:
        store.set(b"k%d" % i, b"v")
        i += 1
    assert all(store.get(b"k%d" % j) == b"v" for j in range(i))


def test_a_walk_fed_back_into_load_stops_instead_of_reading_freed_items(make_store):
    store = make_store(max_bytes=3 * charge(b"k0", b"x") + 10)
    for i in range(3):
        store.set(b"k%d" % i, b"x")
    grown = ((k, v + b"1234", f, e, c) for k, v, f, e, c in store.items())
    with pytest.raises(RuntimeError):
        store.load(grown)


def test_load_refuses_cas_values_that_could_wrap_the_counter(store):
    with pytest.raises(ValueError):
        store.load([(b"a", b"1", 0, 0, 2**63)])
    with pytest.raises(ValueError):
        store.load([], cas_counter=2**64)
    store.load([(b"a", b"1", 0, 0, 2**63 - 1)])
    store.set(b"k", b"v")
    store.flush_all()
    assert store.get(b"a") is None and store.get(b"k") is None


def test_reserve_prepares_an_empty_store(store):
    store.reserve(100_000)
    if store.backend == "native":
        assert store.stats()["hash_power_level"] >= 17  # one item per bucket at most
    for i in range(1000):
        store.set(b"k%d" % i, b"v")
    store.reserve(10**9)  # not empty: nothing changes, nothing is lost
    assert all(store.get(b"k%d" % i) == b"v" for i in range(1000))


# -- per-item state (memcached's it->time and it_flags; see semantics.py) -----------------------

FETCHED, WON, STALE, BINARY = 1, 2, 4, 8


def state(store, key):
    """``(atime, bits)`` of ``key`` as records() shows them."""
    return next((a, b) for k, *_, a, b in store.records() if k == key)


def test_first_fetch_marks_later_fetches_set_the_last_access(store, clock):
    start = clock.now
    store.set(b"k", b"v")
    assert state(store, b"k") == (start, 0)
    clock.advance(5)
    store.get(b"k")
    assert state(store, b"k") == (start, FETCHED)  # memcached: the first fetch only marks it
    clock.advance(5)
    store.get_many([b"k"])
    assert state(store, b"k") == (start + 10, FETCHED)
    clock.advance(5)
    store.touch(b"k", 0)
    assert state(store, b"k") == (start + 15, FETCHED)
    store.set(b"k", b"w")  # a write is a fresh item
    assert state(store, b"k") == (start + 15, 0)


def test_counters_and_failed_adds_are_accessed_but_not_fetched(store, clock):
    """memcached's do_add_delta and a failed add look items up without a fetch (DONT_UPDATE),
    then count the access (do_item_update)."""
    start = clock.now
    store.set(b"n", b"10")
    clock.advance(3)
    assert store.incr(b"n", 1) == 11  # in place
    assert state(store, b"n") == (start + 3, 0)
    clock.advance(3)
    assert store.add(b"n", b"x") is Result.NOT_STORED
    assert state(store, b"n") == (start + 6, 0)
    store.get(b"n")
    assert store.incr(b"n", 100) == 111  # longer: a new item, its state gone
    assert state(store, b"n") == (start + 6, 0)


def test_peek_changes_nothing_and_meta_get_reports_the_state_before(store, clock):
    store.set(b"k", b"v", 3, 100)
    before = store.stats()
    value, flags, cas, exptime, atime, bits = store.peek(b"k")
    assert (value, flags, exptime, atime, bits) == (b"v", 3, clock.now + 100, clock.now, 0)
    assert store.stats() == before and state(store, b"k") == (clock.now, 0)
    assert store.meta_get(b"k", bump=False) == (b"v", 3, cas, clock.now + 100, clock.now, 0, False)
    assert state(store, b"k") == (clock.now, 0)  # u: no fetch
    assert store.meta_get(b"k", exptime=50)[3] == clock.now + 100  # T: the TTL before it
    assert store.peek(b"k")[3:] == (clock.now + 50, clock.now, FETCHED)
    stats = store.stats()
    assert (stats["cmd_get"], stats["get_hits"], stats["cmd_touch"], stats["touch_hits"]) == (1, 1, 1, 1)


def test_vivify_and_marks(store, clock):
    got = store.meta_get(b"v", vivify=30)
    assert got[0] == b"" and got[3:] == (clock.now + 30, clock.now, 0, True)
    assert store.peek(b"v")[5] == WON | FETCHED  # the creator won and fetched it
    assert store.stats()["cmd_set"] == 0 and store.stats()["get_hits"] == 1
    assert store.meta_get(b"v", vivify=30)[6] is False
    assert store.mark(b"v", STALE, WON, exptime=0) is True
    assert store.peek(b"v")[3:] == (0, clock.now, FETCHED | STALE)
    assert store.mark(b"nope", WON) is False
    assert store.vivify(b"v", b"1") == 0  # a live item is there
    assert store.vivify(b"n", b"7") == store.cas_counter


def test_meta_update_stale_keeps_ttl_and_win_mark(store, clock):
    assert store.meta_update(0, b"k", b"a", 0, 100) == (Result.STORED, 1)
    store.mark(b"k", WON)
    assert store.meta_update(5, b"k", b"b", 0, 90, 1)[0] is Result.STORED  # C matches
    assert store.peek(b"k")[3] == clock.now + 90 and store.peek(b"k")[5] == 0
    store.mark(b"k", WON)
    # An older CAS with I stores a stale value: the old TTL and the win mark stay.
    assert store.meta_update(5, b"k", b"c", 0, 500, 1, stale=True) == (Result.STORED, 3)
    assert store.peek(b"k")[::3] == (b"c", clock.now + 90) and store.peek(b"k")[5] == STALE | WON
    assert store.meta_update(5, b"k", b"d", 0, 0, 9, stale=True) == (Result.EXISTS, 0)  # newer
    assert store.meta_update(5, b"k", b"d", 0, 0, 0, stale=True) == (Result.EXISTS, 0)
    assert store.meta_update(0, b"b", b"x", 0, 0, binary=True)[0] is Result.STORED
    assert store.peek(b"b")[5] == BINARY
    assert store.meta_update(3, b"b", b"y", 0, 0, 999) == (Result.EXISTS, 0)  # MA with C
    assert store.meta_update(3, b"b", b"y", 0, 0, store.peek(b"b")[2], binary=True)[0] is Result.STORED
    assert store.peek(b"b")[5] == 0  # append builds a fresh item


def test_meta_delete_and_delta(store, clock):
    store.set(b"k", b"5", 0, 100)
    store.mark(b"k", WON)
    cas = store.peek(b"k")[2]
    assert store.meta_delete(b"k", cas + 1) is Result.EXISTS
    assert store.meta_delete(b"k", cas, stale=True, exptime=30) is Result.DELETED
    assert store.peek(b"k")[2:] == (cas + 1, clock.now + 30, clock.now, STALE)
    assert store.meta_delta(b"k", True, 2, cas) == (Result.EXISTS, 0, 0, 0)
    assert store.meta_delta(b"k", True, 2, cas + 1) == (Result.STORED, 7, cas + 2, clock.now + 30)
    assert store.peek(b"k")[5] == STALE  # in place: the state stays
    assert store.meta_delta(b"zz", True, 1, count_miss=False)[0] is Result.NOT_FOUND
    stats = store.stats()
    assert (stats["delete_misses"], stats["delete_hits"], stats["incr_hits"], stats["incr_misses"]) == (
        1,
        0,
        1,
        0,
    )


def test_records_load_the_state_back(make_store, clock):
    src = make_store()
    src.set(b"a", b"1", 9)
    clock.advance(4)
    src.meta_update(0, b"b", b"2", binary=True)
    src.get(b"a")
    clock.advance(4)
    dst = make_store()
    assert dst.load(src.records()) == 2
    assert list(dst.records()) == list(src.records())
    assert dst.load([(b"c", b"3", 0, 0, 99, 0, 0), (b"d", b"4", 0, 0, 100, clock.now + 50, STALE)]) == 2
    assert state(dst, b"c") == (clock.now, 0) and state(dst, b"d") == (clock.now, STALE)
    with pytest.raises(ValueError):
        dst.load([(b"e", b"5", 0, 0, 101, 0, 16)])


def test_gat_counts_as_a_touch_only(store, clock):
    """As memcached's process_get_command with should_touch: cmd_touch and touch_hits or
    touch_misses, never cmd_get."""
    store.set(b"k", b"v")
    before = store.stats()
    assert store.gat(b"k", 100) is not None and store.gat(b"nokey", 100) is None
    after = store.stats()
    grew = {
        k: after[k] - before[k]
        for k in ("cmd_get", "get_hits", "get_misses", "cmd_touch", "touch_hits", "touch_misses")
    }
    assert grew == {
        "cmd_get": 0,
        "get_hits": 0,
        "get_misses": 0,
        "cmd_touch": 2,
        "touch_hits": 1,
        "touch_misses": 1,
    }
