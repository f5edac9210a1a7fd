"""A feed's reply is bounded: a multi-get asking for gigabytes is answered a budget at a time.

``get k k k ...`` costs the client two bytes per key and may ask for ``-I`` bytes per key; both
sessions stop after about REPLY_BUDGET bytes of values, keep the rest, and set ``more`` until
fed again. The bytes, once drained, are exactly those of an unbounded answer.
"""

# ruff: noqa: F811

from __future__ import annotations

import os

import pytest

from pycache_d.protocol.session import MAX_LINE, REPLY_BUDGET, Session

from conftest import FakeClock, backend_class
from session_fixtures import ctx, session  # noqa: F401

VALUE = b"v" * 100_000  # a few of these pass the budget


def sessions():
    """Both sessions: the Python one on each store, and the compiled one where built."""
    made = [pytest.param("python", id="python")]
    made.append(pytest.param("native", id="native"))
    if not os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
        made.append(pytest.param("compiled", id="compiled"))
    return made


@pytest.fixture(params=sessions())
def any_session(request):
    clock = FakeClock()
    if request.param == "python":
        return Session(backend_class("python")(64 << 20, clock=clock))
    store = backend_class("native")(64 << 20, clock=clock)
    if request.param == "native":
        return Session(store)
    from pycache_d.protocol._csession import NativeSession

    return NativeSession(store)


def drain(session, data: bytes) -> tuple[bytes, list[int]]:
    """Feed ``data``, then feed nothing while ``more``; return the reply and each feed's size."""
    sizes = []
    out = [session.feed(data)]
    sizes.append(len(out[-1]))
    while session.more:
        out.append(session.feed(b""))
        sizes.append(len(out[-1]))
        assert len(sizes) < 10_000
    return b"".join(out), sizes


def test_a_huge_multiget_is_answered_a_budget_at_a_time(any_session):
    any_session.feed(b"set k 7 0 %d\r\n%s\r\n" % (len(VALUE), VALUE))
    keys = 500
    reply, sizes = drain(any_session, b"get" + b" k" * keys + b"\r\nget k\r\n")
    block = b"VALUE k 7 %d\r\n%s\r\n" % (len(VALUE), VALUE)
    assert reply == block * keys + b"END\r\n" + block + b"END\r\n"
    assert len(sizes) > 10  # it really was cut
    assert max(sizes) <= REPLY_BUDGET + 2 * len(block)
    assert not any_session.more and any_session.idle


@pytest.mark.parametrize(
    "command, head",
    [(b"gets", b"VALUE k 0 %d 1\r\n"), (b"gat 0", b"VALUE k 0 %d\r\n"), (b"gats 0", b"VALUE k 0 %d 1\r\n")],
)
def test_gets_gat_gats_are_cut_the_same_way(any_session, command, head):
    any_session.feed(b"set k 0 0 %d\r\n%s\r\n" % (len(VALUE), VALUE))
    keys = (MAX_LINE - 10) // 2  # gat lines may not pass MAX_LINE
    reply, sizes = drain(any_session, command + b" k" * keys + b"\r\n")
    assert reply == (head % len(VALUE) + VALUE + b"\r\n") * keys + b"END\r\n"
    assert max(sizes) <= REPLY_BUDGET + 2 * (len(VALUE) + 30)


@pytest.mark.parametrize("command", [b"gat", b"gats"])
def test_a_gat_cut_at_the_budget_touches_every_key_past_the_cut(any_session, command):
    keys = [b"k%d" % i for i in range(30)]
    for k in keys:
        any_session.feed(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(VALUE), VALUE))
    reply, sizes = drain(any_session, command + b" 500 " + b" ".join(keys) + b"\r\n")
    assert len(sizes) > 3  # cut, and the keys after the cut asked for again as a gat
    assert reply.count(b"VALUE ") == len(keys) and reply.endswith(b"END\r\n")
    now = any_session.store.now
    for k in keys:
        assert any_session.store.peek(k)[3] == now + 500, k  # (value, flags, cas, exptime, ...)


def test_input_after_the_multiget_waits_its_turn_even_in_pieces(any_session):
    any_session.feed(b"set k 0 0 %d\r\n%s\r\n" % (len(VALUE), VALUE))
    first = any_session.feed(b"get" + b" k" * 20 + b"\r\nset n 0 0 1\r\n")
    assert any_session.more
    # More input arrives before the rest was asked for: it queues behind the multi-get.
    rest = [any_session.feed(b"5\r\nincr n 1\r\nget n\r\n")]
    while any_session.more:
        rest.append(any_session.feed(b""))
    reply = first + b"".join(rest)
    assert reply.count(b"VALUE k 0 100000\r\n") == 20
    assert reply.endswith(b"END\r\nSTORED\r\n6\r\nVALUE n 0 1\r\n6\r\nEND\r\n")


def test_a_too_long_key_late_in_a_huge_multiget_drops_every_value(any_session):
    """memcached stops at the bad key and drops what it had gathered: nothing may be sent early."""
    any_session.feed(b"set k 0 0 %d\r\n%s\r\n" % (len(VALUE), VALUE))
    reply, _ = drain(any_session, b"get" + b" k" * 100 + b" " + b"x" * 251 + b"\r\n")
    assert reply == b"CLIENT_ERROR bad command line format\r\n"
    stats = any_session.store.stats()
    assert stats["get_hits"] == 100  # fetched, as memcached does, but not sent


def test_small_replies_never_set_more(any_session):
    reply, sizes = drain(any_session, b"set a 0 0 1\r\n1\r\n" + b"get a a a\r\n" * 1000)
    assert reply.count(b"END\r\n") == 1000
    assert len(sizes) == 1
