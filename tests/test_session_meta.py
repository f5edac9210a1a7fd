"""The meta commands of Session (mg, ms, md, ma, mn, me), byte for byte, on both store backends.

Expected replies are memcached 1.6.18's as observed on the wire, except where a test says it checks
one of the approximations documented in pycache_d/protocol/meta.py. A fresh store hands out CAS uniques
from 1.
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


def test_mg_hit_before_and_last_access_approximation(session, clock):
    """h and l reflect meta reads only (the store keeps neither); see meta.py."""
    session.feed(b"set a 0 0 1\r\nx\r\n")
    assert session.feed(b"mg a h l\r\n") == b"HD h0 l0\r\n"
    clock.advance(5)
    assert session.feed(b"mg a h l\r\n") == b"HD h1 l5\r\n"


def test_classic_touch_updates_a_meta_ttl(session):
    session.feed(b"ms a 1 T100\r\nx\r\n")
    assert session.feed(b"touch a 50\r\nmg a t\r\n") == b"TOUCHED\r\nHD t50\r\n"
    assert session.feed(b"gat 20 a\r\nmg a t\r\n") == b"VALUE a 0 1\r\nx\r\nEND\r\nHD t20\r\n"


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
    """exp and size as memcached prints them; fetch and la as far as meta.py can tell."""
    assert session.feed(b"me a\r\n") == b"EN\r\n"
    session.feed(b"ms a 1 T100\r\nx\r\n")
    clock.advance(10)
    assert session.feed(b"me a\r\n") == b"ME a exp=-90 la=10 cas=1 fetch=no cls=1 size=61\r\n"
    assert session.feed(b"me YQ== b\r\n") == b"ME a exp=-90 la=10 cas=1 fetch=no cls=1 size=61\r\n"
    assert session.feed(b"me a b\r\n") == b"CLIENT_ERROR bad command line format\r\n"
    session.feed(b"set c 0 0 2\r\nxy\r\nmg c h\r\n")  # a meta read that records the fetch
    assert session.feed(b"me c x\r\n") == b"ME c exp=-1 la=0 cas=2 fetch=yes cls=1 size=62\r\n"


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


def test_meta_state_table_is_bounded(session, monkeypatch):
    from pycache_d.protocol import meta

    monkeypatch.setattr(meta, "MAX_MARKS", 10)
    for i in range(30):
        session.feed(b"ms k%d 1 T100\r\nx\r\n" % i)
    assert len(session.ctx.marks) == 10
    assert session.feed(b"mg k29 t\r\n") == b"HD t100\r\n"


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
