"""The meta commands of Session (mg, ms, md, ma, mn, me), byte for byte, on both store backends.

Expected replies are memcached 1.6.18's as observed on the wire (the per-item state, TTL, last
access, fetched, win token and stale marks, is the store's, as memcached keeps it in the item). The
one deliberate difference, a binary key shown in base64 where memcached would write it raw, is
tested in test_reply_injection.py. A fresh store hands out CAS uniques from 1.
"""

# The fixtures imported from session_fixtures are used as parameters, which ruff reads as
# redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import pytest

from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import Session

from session_fixtures import ctx, feed_split, make_session, session  # noqa: F401


def test_mn(session):
    assert session.feed(b"mn\r\nmn q x\r\n") == b"MN\r\nMN\r\n"


def test_mg_miss_and_quiet_miss(session):
    assert session.feed(b"mg a v\r\nmg a\r\n") == b"EN\r\nEN\r\n"
    assert session.feed(b"mg a k O123 q\r\nmn\r\n") == b"MN\r\n"
    # a miss still echoes the opaque and the key
    assert session.feed(b"mg a O5 k v\r\n") == b"EN O5 ka\r\n"


def test_mg_hit_flags_in_request_order(session):
    session.feed(b"set a 7 0 3\r\nabc\r\n")
    assert session.feed(b"mg a v\r\n") == b"VA 3\r\nabc\r\n"
    assert session.feed(b"mg a\r\n") == b"HD\r\n"
    assert session.feed(b"mg a k v f s t c O9 q\r\n") == b"VA 3 ka f7 s3 t-1 c1 O9\r\nabc\r\n"
    assert session.feed(b"mg a O1 c s\r\n") == b"HD O1 c1 s3\r\n"
    # P and L are proxy hints: accepted and ignored
    assert session.feed(b"mg a Pfoo Lbar v\r\n") == b"VA 3\r\nabc\r\n"


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"mg a zz", b"CLIENT_ERROR invalid flag"),
        (b"mg a !", b"CLIENT_ERROR invalid flag"),
        (b"mg a v v", b"CLIENT_ERROR duplicate flag"),
        (b"mg a O1 O2", b"CLIENT_ERROR duplicate flag"),
        (b"mg a O" + b"x" * 32, b"CLIENT_ERROR opaque token too long"),
        (b"mg a Tabc", b"CLIENT_ERROR bad token in command line format"),
        (b"mg a T", b"CLIENT_ERROR bad token in command line format"),
        (b"mg a Fx", b"CLIENT_ERROR bad command line format"),
        (b"mg a b", b"CLIENT_ERROR error decoding key"),
        (b"mg " + b"k" * 251 + b" v", b"CLIENT_ERROR bad command line format"),
        (b"mg a" + b" k" * 25, b"CLIENT_ERROR options flags are too long"),
        (b"mg", b"ERROR"),
        (b"ms", b"ERROR"),
        (b"md", b"ERROR"),
        (b"ma", b"ERROR"),
        (b"me", b"CLIENT_ERROR bad command line format"),
        (b"mz a", b"ERROR"),
        (b"ms a", b"CLIENT_ERROR bad command line format"),
        (b"ms a -1", b"CLIENT_ERROR bad command line format"),
        (b"md a x", b"CLIENT_ERROR invalid or duplicate flag"),
        (b"ma a D-1", b"CLIENT_ERROR invalid or duplicate flag"),
        (b"ma a MX", b"CLIENT_ERROR invalid mode for ma M token"),
    ],
)
def test_meta_errors(session, line, reply):
    session.feed(b"set a 0 0 1\r\nx\r\n")
    assert session.feed(line + b"\r\n") == reply + b"\r\n"


def test_opaque_of_32_bytes_is_fine(session):
    opaque = b"O" + b"x" * 31
    assert session.feed(b"mg a %s\r\n" % opaque) == b"EN %s\r\n" % opaque


def test_base64_keys(session):
    assert session.feed(b"ms YQ== 3 T0 F5 c k O1 b\r\nabc\r\n") == b"HD c1 kYQ== b O1\r\n"
    assert session.feed(b"mg YQ== b k v\r\n") == b"VA 3 kYQ== b\r\nabc\r\n"
    assert session.feed(b"get a\r\n") == b"VALUE a 5 3\r\nabc\r\nEND\r\n"
    # k shows the key as it was stored: a plain key stays plain under b
    session.feed(b"set c 0 0 1\r\nx\r\n")
    assert session.feed(b"mg Yw== b k\r\n") == b"HD kc\r\n"
    assert session.feed(b"mg YQ b v\r\n") == b"CLIENT_ERROR error decoding key\r\n"


def test_ms_modes(session):
    assert session.feed(b"ms a 2 ME\r\nxx\r\nms a 2 ME\r\nyy\r\n") == b"HD\r\nNS\r\n"
    assert session.feed(b"ms a 1 MA\r\ny\r\nms a 1 MP\r\nz\r\n") == b"HD\r\nHD\r\n"
    assert session.feed(b"ms zz 1 MR\r\nz\r\nms zz 1 MA\r\nz\r\n") == b"NS\r\nNS\r\n"
    assert session.feed(b"mg a v\r\n") == b"VA 4\r\nzxxy\r\n"
    assert session.feed(b"ms a 1 MS\r\nq\r\nms a 1 MR\r\nr\r\nmg a v\r\n") == b"HD\r\nHD\r\nVA 1\r\nr\r\n"


def test_ms_invalid_mode_and_flag_errors_swallow_the_data(session):
    err = b"CLIENT_ERROR invalid mode for ms M token\r\n"
    assert session.feed(b"ms a 1 MX\r\nz\r\nms a 1 Ms\r\nz\r\n") == err * 2
    assert session.feed(b"ms a 1 MEE\r\nz\r\n") == b"CLIENT_ERROR incorrect length for M token\r\n"
    assert session.feed(b"ms a 1 C-1\r\nz\r\n") == b"CLIENT_ERROR bad token in command line format\r\n"
    # the first message set wins over F's unnamed error
    assert session.feed(b"ms a 1 Mxx Fx\r\nz\r\n") == b"CLIENT_ERROR incorrect length for M token\r\n"
    assert session.feed(b"ms a 1 Fx\r\nz\r\nmg a\r\n") == b"CLIENT_ERROR bad command line format\r\nEN\r\n"
    # a bad length is not swallowed: the data reads as a command
    assert session.feed(b"ms a x\r\nabc\r\n") == b"CLIENT_ERROR bad command line format\r\nERROR\r\n"


def test_ms_flags_ttl_and_quiet(session, clock):
    assert session.feed(b"ms a 3 F9 T100 q\r\nabc\r\nmn\r\n") == b"MN\r\n"
    assert session.feed(b"mg a f t v\r\n") == b"VA 3 f9 t100\r\nabc\r\n"
    clock.advance(40)
    assert session.feed(b"mg a t\r\n") == b"HD t60\r\n"
    clock.advance(60)
    assert session.feed(b"mg a t\r\n") == b"EN\r\n"
    # S, t, v, h and l mean nothing to ms but are accepted
    assert session.feed(b"ms a 1 s f t v h l\r\nx\r\n") == b"HD\r\n"


def test_ms_cas(session):
    assert session.feed(b"ms a 1 c\r\nx\r\n") == b"HD c1\r\n"
    assert session.feed(b"ms a 1 C1 c\r\ny\r\n") == b"HD c2\r\n"
    assert session.feed(b"ms a 1 C1 c\r\nz\r\n") == b"EX c0\r\n"
    assert session.feed(b"ms a 1 C999 q\r\nz\r\n") == b"EX\r\n"  # q hides only HD
    assert session.feed(b"ms zz 1 C5 c O5\r\nz\r\n") == b"NF c0 O5\r\n"
    assert session.feed(b"ms a 1 C0\r\nz\r\n") == b"EX\r\n"
    # append compares a nonzero CAS; on a miss it is NS
    assert (
        session.feed(b"ms a 1 MA C0\r\nz\r\nms a 1 MA C1\r\nz\r\nms q 1 MA C9\r\nz\r\n")
        == b"HD\r\nEX\r\nNS\r\n"
    )


def test_ms_bad_data_chunk_is_reported_even_quiet(session):
    err = b"CLIENT_ERROR bad data chunk\r\n"
    assert session.feed(b"ms b 2\r\nxyz\r\nmn\r\n") == err + b"ERROR\r\nMN\r\n"
    assert session.feed(b"ms b 2 q\r\nxyz\r\nmn\r\n") == err + b"ERROR\r\nMN\r\n"


def test_ms_too_large(store, session):
    session.feed(b"ms a 1\r\nx\r\n")
    size = store.max_item_size
    assert session.feed(b"ms a %d ME\r\n" % size + b"v" * size + b"\r\nmg a\r\n") == (
        b"SERVER_ERROR object too large for cache\r\nEN\r\n"
    )


def test_ms_invalidate_with_an_older_cas_stores_a_stale_item(session):
    session.feed(b"ms a 1\r\nx\r\nms a 1\r\ny\r\n")  # CAS 2
    assert session.feed(b"ms a 1 I C1\r\nz\r\n") == b"HD\r\n"
    assert session.feed(b"mg a v c\r\n") == b"VA 1 c3 X W\r\nz\r\n"
    assert session.feed(b"mg a v\r\n") == b"VA 1 Z X\r\nz\r\n"
    # without I, or with C0, an older CAS is refused
    assert session.feed(b"ms a 1 C1\r\nq\r\nms a 1 I C0\r\nq\r\n") == b"EX\r\nEX\r\n"


def test_md(session):
    assert session.feed(b"md a\r\nmd a q\r\n") == b"NF\r\nNF\r\n"  # q hides only HD
    session.feed(b"ms a 1\r\nx\r\n")
    assert session.feed(b"md a C9 k O2\r\n") == b"EX ka O2\r\n"
    assert session.feed(b"md a C1 k O2 c\r\n") == b"HD ka O2\r\n"  # c means nothing to md
    session.feed(b"ms a 1\r\nx\r\n")
    assert session.feed(b"md a q\r\nmn\r\nmg a\r\n") == b"MN\r\nEN\r\n"


def test_md_invalidate_marks_stale_and_the_next_reader_wins(session, clock):
    session.feed(b"ms a 1 T100\r\nx\r\n")
    assert session.feed(b"md a I T30\r\n") == b"HD\r\n"
    # a new CAS, the new TTL, stale (X) and the win token (W) for the first reader
    assert session.feed(b"mg a v c t\r\n") == b"VA 1 c2 t30 X W\r\nx\r\n"
    assert session.feed(b"mg a v c\r\n") == b"VA 1 c2 Z X\r\nx\r\n"
    clock.advance(30)
    assert session.feed(b"mg a\r\n") == b"EN\r\n"


def test_mg_vivify_on_miss(session):
    assert session.feed(b"mg zz N30 v c t\r\n") == b"VA 0 c1 t30 W\r\n\r\n"
    assert session.feed(b"mg zz N30 v c t\r\n") == b"VA 0 c1 t30 Z\r\n\r\n"
    assert session.feed(b"mg zz v\r\n") == b"VA 0 Z\r\n\r\n"
    # the winner recaches it: a new item, no longer marked
    assert session.feed(b"ms zz 2\r\nok\r\nmg zz v\r\n") == b"HD\r\nVA 2\r\nok\r\n"


def test_mg_vivify_takes_the_last_of_t_and_n(session):
    assert session.feed(b"mg a N0 T-1\r\nmg a\r\n") == b"HD W\r\nEN\r\n"
    assert session.feed(b"mg b T-1 N0\r\nmg b\r\n") == b"HD W\r\nHD Z\r\n"


def test_mg_touch_and_recache(session, clock):
    session.feed(b"ms a 1 T0\r\nx\r\n")
    assert session.feed(b"mg a t T100\r\nmg a t\r\n") == b"HD t-1\r\nHD t100\r\n"
    # R: the TTL left (100) is below 200, so this reader wins; the next one sees Z
    assert session.feed(b"mg a R200 t v\r\n") == b"VA 1 t100 W\r\nx\r\n"
    assert session.feed(b"mg a R200 t v\r\nmg a R20 t\r\n") == b"VA 1 t100 Z\r\nx\r\nHD t100 Z\r\n"
    clock.advance(100)
    assert session.feed(b"mg a\r\n") == b"EN\r\n"


def test_mg_hit_before_and_last_access(session, clock):
    """As memcached's do_item_bump: the first fetch marks the item, later ones set its last access;
    h and l show the item as it was before this mg fetched it."""
    session.feed(b"set a 0 0 1\r\nx\r\n")
    assert session.feed(b"mg a h l\r\n") == b"HD h0 l0\r\n"
    clock.advance(5)
    assert session.feed(b"mg a h l\r\n") == b"HD h1 l5\r\n"  # the first mg only marked it
    clock.advance(3)
    assert session.feed(b"mg a h l\r\n") == b"HD h1 l3\r\n"
    # classic reads fetch alike; a write starts over
    session.feed(b"set b 0 0 1\r\nx\r\n")
    clock.advance(2)
    assert session.feed(b"get b\r\nmg b h l\r\n") == b"VALUE b 0 1\r\nx\r\nEND\r\nHD h1 l2\r\n"
    assert session.feed(b"set b 0 0 1\r\ny\r\nmg b h l\r\n") == b"STORED\r\nHD h0 l0\r\n"


def test_u_neither_fetches_nor_bumps(make_store, clock):
    store = make_store(max_items=2)
    session = Session(store, ServerContext(store, clock=clock))
    session.feed(b"set x 0 0 1\r\nx\r\nset y 0 0 1\r\ny\r\n")
    clock.advance(4)
    assert session.feed(b"mg x u h l v\r\nmg x u h l\r\n") == b"VA 1 h0 l4\r\nx\r\nHD h0 l4\r\n"
    assert session.feed(b"me x\r\n").startswith(b"ME x exp=-1 la=4 cas=1 fetch=no ")
    # x stayed the least recently used: the next write evicts it, not y
    assert session.feed(b"set z 0 0 1\r\nz\r\nmg x u\r\nmg y u\r\n") == b"STORED\r\nEN\r\nHD\r\n"
    # without u the read counts: y is fetched and made the most recent
    assert session.feed(b"mg y h\r\nset w 0 0 1\r\nw\r\nmg y h\r\nmg z\r\n") == (
        b"HD h0\r\nSTORED\r\nHD h1\r\nEN\r\n"
    )


def test_mg_shows_the_ttl_whichever_command_set_it(session, clock):
    session.feed(b"set a 0 100 1\r\nx\r\n")
    assert session.feed(b"mg a t\r\n") == b"HD t100\r\n"
    # R: a TTL from a classic set is a TTL too, so an early recache is won
    assert session.feed(b"mg a R200 t\r\nmg a R200 t\r\n") == b"HD t100 W\r\nHD t100 Z\r\n"
    assert session.feed(b"touch a 50\r\nmg a t\r\n") == b"TOUCHED\r\nHD t50 Z\r\n"
    assert session.feed(b"gat 20 a\r\nmg a t\r\n") == b"VALUE a 0 1\r\nx\r\nEND\r\nHD t20 Z\r\n"
    clock.advance(5)
    assert session.feed(b"ma a\r\n") == b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    session.feed(b"set n 0 100 2\r\n10\r\nincr n 5\r\nappend n 0 0 1\r\n0\r\n")
    assert session.feed(b"mg n t v\r\n") == b"VA 3 t100\r\n150\r\n"
    assert session.feed(b"me n\r\n").startswith(b"ME n exp=-100 la=0 ")


def test_ms_invalidate_keeps_the_old_ttl_and_the_win_mark(session, clock):
    """ms I with an older CAS stores a stale value: memcached keeps the TTL and the W mark."""
    session.feed(b"ms a 1 T100\r\nx\r\n")
    assert session.feed(b"mg a R200 c\r\n") == b"HD c1 W\r\n"
    session.feed(b"ms a 1\r\ny\r\n")  # CAS 2, a fresh item
    assert session.feed(b"mg a R200\r\n") == b"HD\r\n"  # no TTL left to recache early
    session.feed(b"ms a 1 T100\r\ny\r\nmg a R200\r\n")  # CAS 3, won
    clock.advance(10)
    assert session.feed(b"ms a 1 I C1 T90\r\nz\r\n") == b"HD\r\n"
    assert session.feed(b"mg a t c v\r\n") == b"VA 1 t90 c4 Z X\r\nz\r\n"


def test_ma_ttl_follows_memcached(session, clock):
    session.feed(b"ms n 1 T100\r\n5\r\n")
    assert session.feed(b"ma n t T30 v\r\nmg n t\r\n") == b"VA 1 t100\r\n6\r\nHD t30\r\n"
    assert session.feed(b"ma n T40 t\r\nmg n t\r\n") == b"HD t40\r\nHD t40\r\n"
    # memcached sets T on the item do_add_delta returns: for a number that grows, the old one
    session.feed(b"ms g 1 T100\r\n9\r\n")
    assert session.feed(b"ma g T30 t v\r\nmg g t\r\n") == b"VA 2 t30\r\n10\r\nHD t100\r\n"
    # a vivified counter starts without a TTL; N and T set it in request order
    assert session.feed(b"ma v N50 T20 t\r\nmg v t\r\n") == b"HD t20\r\nHD t20\r\n"
    assert session.feed(b"ma w T20 N50 t\r\nmg w t\r\n") == b"HD t50\r\nHD t50\r\n"
    assert session.feed(b"ma x t N50\r\n") == b"HD t-1\r\n"


def test_opaque_too_long_is_refused_where_memcached_checks_it(session):
    long = b"O" + b"x" * 32
    err = b"CLIENT_ERROR opaque token too long\r\n"
    assert session.feed(b"md a %s\r\nmg a %s\r\n" % (long, long)) == err * 2
    session.feed(b"ms n 1\r\n5\r\n")
    # ma writes its reply after the increment: that, and the T before the O, happened
    assert session.feed(b"ma n T30 %s t\r\nmg n t v\r\n" % long) == err + b"VA 1 t30\r\n6\r\n"
    assert session.feed(b"ma zz %s\r\n" % long) == err
    # mg: the item was vivified, and got the TTL of the T before the O
    assert session.feed(b"mg zz N30 T60 %s\r\nmg zz t v\r\n" % long) == err + b"VA 0 t60\r\n\r\n"
    assert session.feed(b"mg n %s T10\r\nmg n t\r\n" % long) == err + b"HD t30\r\n"
    # ms: swallowed with its data; an invalid mode is reported first
    assert session.feed(b"ms a 1 %s\r\nx\r\nmg a\r\n" % long) == err + b"EN\r\n"
    assert session.feed(b"ms a 1 MX %s\r\nx\r\n" % long) == b"CLIENT_ERROR invalid mode for ms M token\r\n"


def test_too_many_flags_as_each_command_words_it(session):
    flags = b" k" * 19
    assert session.feed(b"mg a%s\r\n" % flags) == b"CLIENT_ERROR options flags are too long\r\n"
    for cmd in (b"md", b"ma"):
        assert session.feed(b"%s a%s\r\n" % (cmd, flags)) == b"CLIENT_ERROR options flags too long\r\n"
    # not swallowed: the data reads as a command
    assert (
        session.feed(b"ms a 1%s\r\nx\r\n" % flags[:-2]) == b"CLIENT_ERROR options flags too long\r\nERROR\r\n"
    )


def test_base64_keys_decode_as_leniently_as_memcached(session):
    session.feed(b"set a 0 0 1\r\nx\r\n")
    # bytes outside the alphabet are skipped, and decoding stops after the first padded group
    assert session.feed(b"mg YQ==!! b k\r\nmg Y!Q== b k v\r\nmg YQ==YQ== b v\r\n") == (
        b"HD ka\r\nVA 1 ka\r\nx\r\nVA 1\r\nx\r\n"
    )
    # k shows the key re-encoded, as memcached does
    assert session.feed(b"ms Y!Q== 1 b k\r\nz\r\nmd Y!Q== b k q\r\nmd Y!Q== b k\r\n") == (
        b"HD kYQ== b\r\nNF kYQ== b\r\n"
    )
    err = b"CLIENT_ERROR error decoding key\r\n"
    assert session.feed(b"mg YQ b\r\nmg A=== b\r\nmg !!!! b\r\n") == err * 3
    assert session.feed(b"me YQ b\r\n") == b"CLIENT_ERROR bad command line format\r\n"


def test_meta_commands_count_as_memcached_counts_them(session):
    """Observed on memcached 1.6.18: mg counts a get, or with T a touch (a miss is a get); me
    counts cmd_meta; md, ma and ms compare CAS values without counting a get."""
    session.feed(b"mg a v\r\nmg a T30\r\nmg a N30\r\nmg a T30 v\r\nmg b N30 T30\r\nme a\r\nme zz\r\n")
    session.feed(b"md a C1\r\nmd a I\r\nmd a I C99\r\nmd zz\r\nmd a\r\n")
    session.feed(b"ms c 1\r\n5\r\nms c 1 C5\r\n6\r\nms c 1 C99\r\n6\r\nms c 1 MA C99\r\n6\r\n")
    session.feed(b"ms zz 1 C3\r\n6\r\nms c 1 I C1\r\n7\r\nms c 1 ME\r\n7\r\n")
    session.feed(b"ma c\r\nma c C1\r\nma zz\r\nma zz N0\r\nma zz2 N0 MD\r\nma c MD\r\n")
    stats = session.store.stats()
    counters = session.ctx.counters
    # the figures memcached 1.6.18 shows after the same commands
    assert (stats["cmd_get"], stats["get_hits"], stats["get_misses"]) == (3, 1, 2)
    assert (stats["cmd_touch"], stats["touch_hits"], stats["touch_misses"]) == (2, 2, 0)
    assert counters["cmd_meta"] == 2
    assert (stats["delete_hits"], stats["delete_misses"]) == (1, 4)
    assert (stats["cmd_set"], stats["cas_hits"], stats["cas_badval"], stats["cas_misses"]) == (7, 1, 2, 1)
    assert (stats["incr_hits"], stats["incr_misses"], stats["decr_hits"], stats["decr_misses"]) == (
        1,
        1,
        1,
        0,
    )
    assert (stats["total_items"], stats["curr_items"]) == (6, 4)


def test_meta_state_outlives_any_number_of_other_meta_writes(session):
    """The state is the item's: no side table to overflow (it held 65,536 entries)."""
    session.feed(b"ms k 1 T100\r\nx\r\nmd k I\r\n")
    session.feed(b"".join(b"ms o%d 1 T100 q\r\nx\r\n" % i for i in range(70_000)))
    assert session.feed(b"mg k v\r\n") == b"VA 1 X W\r\nx\r\n"


def test_ma(session):
    assert session.feed(b"ma n\r\nma n q\r\n") == b"NF\r\nNF\r\n"
    assert session.feed(b"ma n N0 J10 v\r\n") == b"VA 2\r\n10\r\n"
    assert session.feed(b"ma n v\r\nma n D5 v\r\n") == b"VA 2\r\n11\r\nVA 2\r\n16\r\n"
    assert session.feed(b"ma n MD D20 v\r\n") == b"VA 1\r\n0\r\n"
    assert session.feed(b"ma n M- D3 v t c k O3\r\n") == b"VA 1 t-1 c5 kn O3\r\n0\r\n"
    assert session.feed(b"ma n M+ q\r\nma n MI q v\r\nmn\r\n") == b"MN\r\n"  # q hides success
    assert session.feed(b"mg n v\r\n") == b"VA 2\r\n2 \r\n"  # rewritten in place, padded


def test_ma_vivify_answers_even_quiet_and_wraps(session):
    assert session.feed(b"ma m N0 q\r\n") == b"HD\r\n"
    assert session.feed(b"ma w N0 J18446744073709551615 v\r\nma w v\r\n") == (
        b"VA 20\r\n18446744073709551615\r\nVA 1\r\n0\r\n"
    )
    assert session.feed(b"mg w s v\r\n") == b"VA 20 s20\r\n0" + b" " * 19 + b"\r\n"


def test_ma_cas_and_ttl(session, clock):
    session.feed(b"ms n 1\r\n5\r\n")
    assert session.feed(b"ma n C9\r\nma n C1 v c\r\n") == b"EX\r\nVA 1 c2\r\n6\r\n"
    assert session.feed(b"ma n T50 t\r\n") == b"HD t50\r\n"
    clock.advance(50)
    assert session.feed(b"ma n\r\n") == b"NF\r\n"
    # a miss with C still vivifies
    assert session.feed(b"ma n N0 C77 v\r\n") == b"VA 1\r\n0\r\n"


def test_ma_keeps_the_meta_ttl_of_the_counter(session, clock):
    session.feed(b"ms n 1 T100\r\n5\r\n")
    clock.advance(10)
    assert session.feed(b"ma n t v\r\nma n t\r\n") == b"VA 1 t90\r\n6\r\nHD t90\r\n"


def test_ma_non_numeric(session):
    session.feed(b"ms s 1\r\nx\r\nms e 0\r\n\r\n")
    err = b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n"
    assert session.feed(b"ma s\r\nma e C99\r\n") == err * 2  # empty is checked before the CAS


def test_me(session, clock):
    """exp, la, fetch and size as memcached prints them."""
    assert session.feed(b"me a\r\n") == b"EN\r\n"
    session.feed(b"ms a 1 T100\r\nx\r\n")
    clock.advance(10)
    assert session.feed(b"me a\r\n") == b"ME a exp=-90 la=10 cas=1 fetch=no cls=1 size=61\r\n"
    assert session.feed(b"me YQ== b\r\n") == b"ME a exp=-90 la=10 cas=1 fetch=no cls=1 size=61\r\n"
    assert session.feed(b"me a b\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    session.feed(b"set c 0 0 2\r\nxy\r\nget c\r\n")  # a fetch
    assert session.feed(b"me c x\r\n") == b"ME c exp=-1 la=0 cas=2 fetch=yes cls=1 size=62\r\n"
    # nonzero client flags take 4 bytes in memcached's item
    assert session.feed(b"set f 5 0 2\r\nxy\r\nme f\r\n") == (
        b"STORED\r\nME f exp=-1 la=0 cas=3 fetch=no cls=1 size=66\r\n"
    )


def test_binary_keys_hold_any_bytes(session):
    """As in memcached: a base64 key may decode to control bytes (here NUL and 0x01)."""
    assert session.feed(b"mg AAE= b v\r\nmd AAE= b\r\nma AAE= b\r\n") == b"EN\r\nNF\r\nNF\r\n"
    assert session.feed(b"ms AAE= 1 b\r\nx\r\n") == b"HD\r\n"
    assert session.feed(b"mg AAE= b v k\r\n") == b"VA 1 kAAE= b\r\nx\r\n"
    assert session.store.get(b"\x00\x01") == b"x"
    assert session.feed(b"md AAE= b\r\n") == b"HD\r\n"


def test_meta_state_is_shared_by_the_sessions_of_one_server(make_session):
    one, two = make_session(), make_session()
    assert one.feed(b"mg k N30\r\n") == b"HD W\r\n"
    assert two.feed(b"mg k N30\r\n") == b"HD Z\r\n"


META_PIPELINE = (
    b"ms a 3 T0 F2 c k O1\r\nabc\r\n"
    b"mg a k v f s c O2\r\n"
    b"mg nope v q\r\n"
    b"mg viv N30 t\r\n"
    b"ms a 2 MA\r\nde\r\n"
    b"ms a 2\r\nxyz\r\n"
    b"md a I\r\n"
    b"mg a v\r\n"
    b"ma cnt N0 J41 v\r\nma cnt v t\r\n"
    b"md cnt q\r\n"
    b"mn\r\n"
)


@pytest.fixture
def fresh_session(make_store, clock):
    return lambda: Session(store := make_store(), ServerContext(store, clock=clock))


def test_meta_pipeline_split_at_every_boundary(fresh_session):
    whole = fresh_session().feed(META_PIPELINE)
    assert whole.startswith(b"HD c1 ka O1\r\nVA 3 ka f2 s3 c1 O2\r\nabc\r\nHD t30 W\r\nHD\r\n")
    assert whole.endswith(b"VA 2\r\n41\r\nVA 2 t-1\r\n42\r\nMN\r\n")
    for cut in range(1, len(META_PIPELINE)):
        assert feed_split(fresh_session(), META_PIPELINE, [cut]) == whole, f"split at {cut}"
    assert feed_split(fresh_session(), META_PIPELINE, [1] * len(META_PIPELINE)) == whole
