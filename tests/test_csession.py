"""The compiled session answers exactly as the Python session does, byte for byte.

The Python session is the definition of the protocol; the compiled one takes shortcuts for the
hot commands and hands everything else over. Same bytes in, same bytes out, same store after.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycache_d.protocol.session import Session

from conftest import FakeClock, backend_class

pytestmark = pytest.mark.asan

if os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
    pytest.skip("extensions disabled on purpose", allow_module_level=True)

from pycache_d.protocol._csession import NativeSession  # noqa: E402

# Between the commands around it, each session's clock moves on 7 s (TTLs run out, t shrinks).
TICK = b"<tick>"


KEYS = [b"a", b"b", b"ctr", b"k" * 250, b"k" * 251, b"tab\tkey", b"\xc3\xa9"]
key = st.sampled_from(KEYS)
value = st.binary(max_size=24)
noreply = st.sampled_from([b"", b"", b"", b" noreply", b" noreplyx"])
number = st.one_of(
    st.sampled_from(
        [b"0", b"1", b"5", b"100", b"-1", b"+3", b"007", b"4294967296", b"x", b"18446744073709551615"]
    ),
    st.integers(0, 2**32).map(lambda i: b"%d" % i),
)


@st.composite
def storage(draw):
    name = draw(st.sampled_from([b"set", b"add", b"replace", b"append", b"prepend", b"cas"]))
    v = draw(value)
    length = len(v) if draw(st.integers(0, 9)) else len(v) + draw(st.sampled_from([-1, 1, 3]))
    cas = b" " + draw(number) if name == b"cas" else b""
    flags = draw(st.sampled_from([b"0", b"7", b"4294967295", b"x"]))
    exptime = draw(st.sampled_from([b"0", b"0", b"10", b"-1", b"2592001"]))
    sep = draw(st.sampled_from([b" ", b" ", b"  "]))
    line = b"%s%s%s %s %s %d%s%s\r\n" % (
        name,
        sep,
        draw(key),
        flags,
        exptime,
        max(length, 0),
        cas,
        draw(noreply),
    )
    return line + v + draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"xx", b"\n"]))


# mg with the flags the compiled session answers itself, and others it hands over (T, N, u,
# h, l, b, duplicates, long opaques); items made stale (md I), won (mg W) and stored under a
# base64 key, so every state bit shows.
MG_FLAGS = [b"v", b"k", b"f", b"s", b"c", b"t", b"q", b"Oabc", b"O" + b"x" * 31, b"O" + b"x" * 32]
MG_OTHER = [b"T30", b"N30", b"u", b"h", b"l", b"b", b"vv", b"R30", b"E5", b"x"]


@st.composite
def meta_get(draw):
    flags = draw(st.lists(st.sampled_from(MG_FLAGS), max_size=6))
    if draw(st.integers(0, 4)) == 0:
        flags.insert(draw(st.integers(0, len(flags))), draw(st.sampled_from(MG_OTHER)))
    return b" ".join([b"mg", draw(key), *flags]) + b"\r\n"


MS_FLAGS = [b"T100", b"T0", b"F5", b"F4294967295", b"q", b"k", b"c", b"Oab", b"O" + b"y" * 32]
MS_OTHER = [b"T-1", b"T", b"F", b"MA", b"ME", b"C1", b"I", b"b", b"x", b"+5"]


@st.composite
def meta_set(draw):
    flags = draw(st.lists(st.sampled_from(MS_FLAGS), max_size=5))
    if draw(st.integers(0, 4)) == 0:
        flags.insert(draw(st.integers(0, len(flags))), draw(st.sampled_from(MS_OTHER)))
    v = draw(value)
    length = len(v) if draw(st.integers(0, 9)) else len(v) + draw(st.sampled_from([-1, 1]))
    head = b" ".join([b"ms", draw(key), b"%d" % max(length, 0), *flags]) + b"\r\n"
    return head + v + draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"xx"]))


command = st.one_of(
    st.just(TICK),
    storage(),
    meta_get(),
    meta_get(),
    meta_set(),
    st.sampled_from(
        [
            b"md a I T30\r\n",
            b"md b I\r\n",
            b"ms a 3 T100 F5\r\nabc\r\n",
            b"ms YQ== 2 b\r\nhi\r\n",  # the key "a", stored through base64
            b"ms big 3000 T0\r\n" + b"y" * 3000 + b"\r\n",
            b"mg big v s\r\n",
        ]
    ),
    st.lists(key, max_size=4).map(lambda ks: b"get " + b" ".join(ks) + b"\r\n"),
    st.lists(key, min_size=1, max_size=3).map(lambda ks: b"gets " + b" ".join(ks) + b"\r\n"),
    st.tuples(st.sampled_from([b"gat", b"gats"]), number, st.lists(key, max_size=3)).map(
        lambda t: b"%s %s %s\r\n" % (t[0], t[1], b" ".join(t[2]))
    ),
    st.tuples(key, noreply).map(lambda t: b"delete %s%s\r\n" % t),
    st.tuples(st.sampled_from([b"incr", b"decr"]), key, number, noreply).map(lambda t: b"%s %s %s%s\r\n" % t),
    st.just(b"set ctr 0 0 2\r\n42\r\n"),
    st.sampled_from(
        [
            b"get\r\n",
            b"bogus\r\n",
            b"GET a\r\n",
            b"version\r\n",
            b"touch a 100\r\n",
            b"gat 100 a b\r\n",
            b"gats 0 ctr\r\n",
            b"mg a v f c\r\n",
            b"ms a 2\r\nhi\r\n",
            b"flush_all\r\n",
            b"delete a 0\r\n",
            b"set big 0 0 3000\r\n" + b"x" * 3000 + b"\r\n",
            b"get a\x00b\r\n",
            b"\r\n",
            b"stats settings\r\n",
        ]
    ),
)


def run_ticking(session, clock, commands: list[bytes], cuts: list[int]) -> bytes:
    """run() over the commands, the clock moved on at every TICK (cuts fall within each part)."""
    out, part = [], []
    for c in [*commands, TICK]:
        if c != TICK:
            part.append(c)
            continue
        stream = b"".join(part)
        out.append(run(session, stream, [cut for cut in cuts if cut < len(stream)]))
        part = []
        clock.advance(7)
        if session.closing:
            break
    return b"".join(out)


def run(session, stream: bytes, cuts: list[int]) -> bytes:
    out = []
    start = 0
    for cut in sorted(set(cuts)) + [len(stream)]:
        if cut <= start:
            continue
        out.append(session.feed(stream[start:cut]))
        while session.more:  # what a connection does once the reply went out
            out.append(session.feed(b""))
        start = cut
        if session.closing:
            break
    return b"".join(out)


def pair(clock, fast_clock=None):
    store_cls = backend_class("native")
    slow = Session(store_cls(6000, max_item_size=2048, clock=clock))
    return slow, NativeSession(store_cls(6000, max_item_size=2048, clock=fast_clock or clock))


# "stats" output carries a process id and times, and the session's own counters; compare what
# must be equal and leave the rest to the exact-bytes tests of each command.
def normalise(reply: bytes) -> bytes:
    return b"\r\n".join(line for line in reply.split(b"\r\n") if not line.startswith(b"STAT "))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    commands=st.lists(command, min_size=1, max_size=25),
    cuts=st.lists(st.integers(0, 4000), max_size=8),
)
def test_compiled_session_matches_python_session(commands, cuts):
    slow_clock, fast_clock = FakeClock(), FakeClock()
    slow, fast = pair(slow_clock, fast_clock)
    expected = run_ticking(slow, slow_clock, commands, [])
    got = run_ticking(fast, fast_clock, commands, cuts)
    assert normalise(got) == normalise(expected)
    assert fast.ctx.counters == slow.ctx.counters  # store_too_large, store_no_memory, ...
    assert fast.closing == slow.closing
    assert fast.commands == slow.commands  # what --idle-timeout counts idleness from
    assert list(fast.store.items()) == list(slow.store.items())
    fast_stats, slow_stats = fast.store.stats(), slow.store.stats()
    assert fast_stats == slow_stats


def test_split_at_every_byte_boundary():
    stream = (
        b"set a 0 0 5\r\nhello\r\nget a b\r\ngets a\r\nset n 3 0 2\r\n10\r\nincr n 5\r\n"
        b"decr n 100\r\nappend a 0 0 1\r\n!\r\nget a n\r\ndelete a\r\nbogus\r\ndelete a noreply\r\n"
        b"cas n 0 0 1 999\r\nx\r\nget n\r\n"
    )
    slow, _ = pair(FakeClock())
    expected = slow.feed(stream)
    assert expected.count(b"END\r\n") == 4 and b"ERROR\r\n" in expected
    for cut in range(1, len(stream)):
        _, fast = pair(FakeClock())
        assert fast.feed(stream[:cut]) + fast.feed(stream[cut:]) == expected, cut
    _, fast = pair(FakeClock())
    assert b"".join(fast.feed(stream[i : i + 1]) for i in range(len(stream))) == expected


def test_commands_count_complete_commands_only():
    """A partial line or data block is not a command, however many bytes of it arrive."""
    for session in pair(FakeClock()):
        counts = []
        for chunk in [b"get a", b" b", b"\r\nset k 0 0 5\r\nhe", b"ll", b"o\r\n", b"version\r\nmn\r\nge"]:
            session.feed(chunk)
            counts.append(session.commands)
        assert counts == [0, 0, 1, 1, 2, 4], type(session).__name__


def test_hands_over_and_takes_back():
    """An odd line goes to the Python session; once it is idle the fast path resumes."""
    _, fast = pair(FakeClock())
    assert fast.feed(b"set a 0 0 1\r\nx\r\nms b 2 T0\r\n") == b"STORED\r\n"  # ms awaits its block
    assert fast.feed(b"hi\r\n") == b"HD\r\n"
    assert fast.feed(b"get a b\r\n") == b"VALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nhi\r\nEND\r\n"
    assert fast.feed(b"quit\r\n") == b""
    assert fast.closing


def test_flush_all_moment_with_one_clock_reading_per_read():
    """The compiled session reads the clock once per feed: the flush still covers every item
    stored in its second, within that one read as well."""
    clock = FakeClock()
    for session in pair(clock):
        clock.now = 1_700_000_000
        assert session.feed(b"set a 0 0 1\r\nx\r\nflush_all 1\r\nset b 0 0 1\r\ny\r\nget a b\r\n") == (
            b"STORED\r\nOK\r\nSTORED\r\nEND\r\n"
        )
        assert session.feed(b"flush_all 2\r\n") == b"OK\r\n"
        clock.advance(1)
        assert session.feed(b"set c 0 0 1\r\nz\r\nget c\r\n") == b"STORED\r\nEND\r\n"
        clock.advance(1)
        assert session.feed(b"set d 0 0 1\r\nw\r\nget c d\r\n") == b"STORED\r\nVALUE d 0 1\r\nw\r\nEND\r\n"
