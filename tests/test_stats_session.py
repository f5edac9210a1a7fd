"""``stats`` and the admin commands in the sans-IO session, on both backends, against memcached.

memcached (``/usr/bin/memcached``) is the oracle for every admin reply (bad arguments included),
``stats detail``, and the names and shape of ``stats``, ``stats items`` and ``stats slabs``; the
dump and watch lines are checked against memcached 1.6.18's formats. The daemon end to end (the
tools, the traffic counters, -X and -A, a dump of many keys beside another client) is in
test_stats_admin.py.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Callable, Iterator

import pytest

from pycache_d.protocol.context import ServerContext
from pycache_d.protocol.session import Session
from pycache_d.protocol.stats import GENERAL_ORDER
from pycache_d.store import BACKENDS
from pycache_d.store.semantics import SLAB_SIZES

from conftest import FakeClock

pytest.register_assert_rewrite("daemon")
from binproto import Conn as BinaryConn  # noqa: E402

from daemon import MEMCACHED, past_the_crawler  # noqa: E402
from daemon import memcached as run_memcached  # noqa: E402

needs_memcached = pytest.mark.skipif(MEMCACHED is None, reason="memcached is not installed (make apt)")


def read_until(s: socket.socket, suffix: bytes) -> bytes:
    data = b""
    while not data.endswith(suffix):
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    return data


def _frame(opcode: int, key: bytes, extras: bytes = b"", value: bytes = b"", cas: int = 0) -> bytes:
    body = extras + key + value
    return struct.pack(">BBHBBHIIQ", 0x80, opcode, len(key), len(extras), 0, 0, len(body), 0, cas) + body


@pytest.fixture
def memcached() -> Iterator[int]:
    """A fresh memcached on an ephemeral port (its port)."""
    with run_memcached() as port:
        yield port


def _alone(line: bytes) -> bool:
    # memcached reads nothing after a metadump (the crawler thread takes the connection).
    return line.startswith(b"lru_crawler metadump")


def exchange(port: int, lines: list[bytes]) -> list[bytes]:
    """Send each command followed by ``mn``; return each reply (everything before ``MN``).

    A metadump goes alone, on a connection of its own, and is read to its last line.
    """
    out = []
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        for line in lines:

            def ask(line: bytes = line) -> bytes:
                if _alone(line):
                    return _dump_reply(port, line)
                s.sendall(line + b"mn\r\n")
                return read_until(s, b"MN\r\n")[:-4]

            out.append(past_the_crawler(line, ask))
    finally:
        s.close()
    return out


def _dump_reply(port: int, line: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as d:
        d.sendall(line)
        reply = d.recv(65536)
        while not reply.endswith(b"\r\n") or (reply.startswith(b"key=") and not reply.endswith(b"END\r\n")):
            chunk = d.recv(65536)
            assert chunk, reply
            reply += chunk
    return reply


def session_exchange(backend: str, lines: list[bytes], clock: FakeClock | None = None) -> list[bytes]:
    store = BACKENDS[backend]() if clock is None else BACKENDS[backend](clock=clock)
    session = Session(store, ServerContext(store))
    out = []
    for line in lines:
        reply = session.feed(line + b"mn\r\n")
        while session.more:
            reply += session.feed(b"")
        assert reply.endswith(b"MN\r\n"), reply
        out.append(reply[:-4])
    return out


# Every reply here is memcached's word for word. In this order: some change settings, and no
# crawl runs while another is asked for (memcached's crawler thread would answer BUSY).
ADMIN = [
    b"lru_crawler metadump all\r\n",
    b"lru_crawler metadump hash\r\n",
    b"lru_crawler metadump 1,2\r\n",
    b"lru_crawler metadump 0\r\n",
    b"lru_crawler metadump 64\r\n",
    b"lru_crawler metadump x\r\n",
    b"lru_crawler metadump\r\n",
    b"lru_crawler crawl 99\r\n",
    b"lru_crawler tocrawl 5\r\n",
    b"lru_crawler tocrawl x\r\n",
    b"lru_crawler sleep 2000000\r\n",
    b"lru_crawler sleep 10\r\n",
    b"lru_crawler foo\r\n",
    b"lru_crawler\r\n",
    b"lru_crawler enable\r\n",
    b"lru mode flat\r\n",
    b"lru mode bad\r\n",
    b"lru mode\r\n",
    b"lru tune 10 20 0.1 2\r\n",
    b"lru tune 50 40 0.1 2\r\n",
    b"lru tune 10 20 0 2\r\n",
    b"lru temp_ttl 5\r\n",
    b"lru x\r\n",
    b"lru\r\n",
    b"slabs automove 1\r\n",
    b"slabs automove 3\r\n",
    b"slabs automove x\r\n",
    b"slabs automove ratio 0.5\r\n",
    b"slabs automove ratio\r\n",
    b"slabs reassign 1 2\r\n",
    b"slabs reassign -1 2\r\n",
    b"slabs reassign x 2\r\n",
    b"slabs reassign 1 1\r\n",
    b"slabs reassign 1 99\r\n",
    b"slabs reassign 99 99\r\n",
    b"slabs reassign 0 1\r\n",
    b"slabs foo\r\n",
    b"shutdown\r\n",
    b"shutdown graceful\r\n",
    b"stats cachedump 1 0\r\n",
    b"stats cachedump 64 0\r\n",
    b"stats cachedump x 0\r\n",
    b"stats cachedump 1\r\n",
    b"stats detail\r\n",
    b"stats detail foo\r\n",
    b"stats detail dump\r\n",
    b"stats sizes\r\n",
    b"stats nonsense\r\n",
    b"watch foo\r\n",
    b"cache_memlimit 100\r\n",
    b"cache_memlimit 2\r\n",
    b"lru_crawler disable\r\n",
    b"lru_crawler metadump all\r\n",
    b"lru_crawler crawl all\r\n",
    b"lru_crawler enable\r\n",
]


@needs_memcached
@pytest.mark.parametrize("backend", BACKENDS)
def test_admin_replies_are_memcacheds(memcached: int, backend: str) -> None:
    ours, theirs = session_exchange(backend, ADMIN), exchange(memcached, ADMIN)
    assert list(zip(ADMIN, ours, strict=True)) == list(zip(ADMIN, theirs, strict=True))


@needs_memcached
@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_detail_counts_as_memcached(memcached: int, backend: str) -> None:
    lines = [
        b"stats detail on\r\n",
        b"set user:1 0 0 1\r\nx\r\n",
        b"set user:2 0 0 1\r\nx\r\n",
        b"set plain 0 0 1\r\nx\r\n",
        b"get user:1 user:9 plain\r\n",
        b"gets session:1\r\n",
        b"delete user:2\r\n",
        b"delete user:7\r\n",
        b"stats detail off\r\n",
        b"get user:1\r\n",  # not counted any more
        b"stats detail dump\r\n",
    ]
    ours, theirs = session_exchange(backend, lines), exchange(memcached, lines)
    assert ours[:-1] == theirs[:-1]
    # memcached lists the prefixes in its hash table's order, we in the order they came.
    assert sorted(ours[-1].splitlines()) == sorted(theirs[-1].splitlines())
    assert b"PREFIX user get 2 hit 1 set 2 del 2" in ours[-1]


# The binary protocol counts in stats detail as memcached's does: gets (and touch, gat) with
# their hits, stores (set, add, replace, append, prepend) and deletes (before: none of it).
DETAIL_BINARY = b"".join(
    (
        _frame(0x01, b"bin:1", struct.pack(">II", 0, 0), b"x"),  # set
        _frame(0x02, b"bin:1", struct.pack(">II", 0, 0), b"x"),  # add, not stored: still a set
        _frame(0x0E, b"bin:2", b"", b"x"),  # append to nothing: a set
        _frame(0x00, b"bin:1"),  # get, a hit
        _frame(0x0C, b"bin:3"),  # getk, a miss
        _frame(0x1C, b"bin:1", struct.pack(">I", 60)),  # touch, a hit
        _frame(0x1D, b"bin:9", struct.pack(">I", 60)),  # gat, a miss
        _frame(0x04, b"bin:1"),  # delete
        _frame(0x04, b"bin:1"),  # delete, not found: still counted
        _frame(0x05, b"bin:5", struct.pack(">QQI", 1, 0, 0)),  # increment: not counted
        _frame(0x00, b"bin:done"),
    )
)


@needs_memcached
@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_detail_counts_binary_requests_as_memcached(memcached: int, backend: str) -> None:
    def dump_of(text_feed: Callable[[bytes], bytes], binary_feed: Callable[[bytes], object]) -> set[bytes]:
        assert text_feed(b"stats detail on\r\n") == b"OK\r\n"
        binary_feed(DETAIL_BINARY)
        return set(text_feed(b"stats detail dump\r\n").splitlines())

    b = BinaryConn(memcached)
    try:
        with socket.create_connection(("127.0.0.1", memcached), timeout=10) as t:

            def text(line: bytes) -> bytes:
                t.sendall(line)
                return read_until(t, b"END\r\n" if b"dump" in line else b"\r\n")

            theirs = dump_of(text, b.ask)
    finally:
        b.close()
    store = BACKENDS[backend]()
    ctx = ServerContext(store)
    ts, bs = Session(store, ctx), Session(store, ctx)
    ours = dump_of(ts.feed, bs.feed)
    assert ours == theirs
    assert b"PREFIX bin get 5 hit 2 set 3 del 2" in ours  # bin:done is the fifth get


@needs_memcached
@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_names_in_memcacheds_order(memcached: int, backend: str) -> None:
    (theirs,) = exchange(memcached, [b"stats\r\n"])
    (ours,) = session_exchange(backend, [b"stats\r\n"])
    their_names = [line.split()[1].decode() for line in theirs.splitlines()[:-1]]
    our_names = [line.split()[1].decode() for line in ours.splitlines()[:-1]]
    # GENERAL_ORDER is memcached's list (the TLS fields show with TLS on, idle_kicks with -o
    # idle_timeout).
    shown = [n for n in GENERAL_ORDER if not n.startswith(("ssl_", "time_since_server", "idle_kicks"))]
    assert their_names == shown
    known = [n for n in our_names if n in GENERAL_ORDER]
    assert known == [n for n in their_names if n in known]  # the same relative order
    assert len(known) >= 70  # of memcached's 92: those that have a meaning here
    assert our_names[len(known) :] == ["limit_maxitems"]  # ours, after memcached's


@needs_memcached
@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_items_and_slabs_have_memcacheds_shape(memcached: int, backend: str) -> None:
    sizes = (1, 100, 1000, 5000, 300000)
    lines = [b"set k%d 0 0 %d\r\n%s\r\n" % (i, n, b"v" * n) for i, n in enumerate(sizes)]
    lines += [b"stats items\r\n", b"stats slabs\r\n"]
    ours, theirs = session_exchange(backend, lines), exchange(memcached, lines)
    assert ours[:5] == theirs[:5]

    def fields(reply: bytes) -> dict[bytes, list[bytes]]:
        per: dict[bytes, list[bytes]] = {}
        for line in reply.splitlines()[:-1]:
            name = line.split()[1]
            cls, _, field = name.rpartition(b":")
            per.setdefault(cls, []).append(field)
        return per

    for mine_reply, real_reply in ((ours[5], theirs[5]), (ours[6], theirs[6])):
        mine, real = fields(mine_reply), fields(real_reply)
        assert len([c for c in mine if c]) == len(sizes)  # one class per size
        assert {tuple(v) for c, v in mine.items() if c} == {tuple(v) for c, v in real.items() if c}
        assert mine.get(b"") == real.get(b"")  # active_slabs, total_malloced
    for reply in (ours[6], theirs[6]):  # one table of class sizes
        for cls, size in re.findall(rb"STAT (\d+):chunk_size (\d+)", reply):
            assert SLAB_SIZES[int(cls) - 1] == int(size)


@pytest.mark.asan
def test_both_backends_report_the_same_classes() -> None:
    if len(BACKENDS) < 2:
        pytest.skip("the native backend is not built")
    lines = [
        b"set key%d %d 0 %d\r\n%s\r\n" % (i, i % 3, i * 37 % 9000, b"x" * (i * 37 % 9000)) for i in range(600)
    ]
    lines += [b"stats items\r\n", b"stats slabs\r\n", b"lru_crawler metadump all\r\n"]
    # on one fake clock each: ages are not left to where a second turns
    native, python = (session_exchange(b, lines, FakeClock()) for b in ("native", "python"))
    assert native[-3:-1] == python[-3:-1]
    times = re.compile(rb" la=\d+ cas=\d+")
    assert sorted(times.sub(b"", native[-1]).splitlines()) == sorted(times.sub(b"", python[-1]).splitlines())


@pytest.mark.parametrize("backend", BACKENDS)
def test_dump_lines(backend: str) -> None:
    replies = session_exchange(
        backend,
        [
            b"set a%20b 0 0 1\r\nx\r\n",
            b"set ttl 7 100 3\r\nabc\r\n",
            b"get ttl\r\n",
            b"lru_crawler metadump all\r\n",
            b"stats cachedump 1 0\r\n",
            b"stats cachedump 1 1\r\n",
            b"stats cachedump 2 0\r\n",
        ],
    )
    meta = replies[3].split(b"\n")
    assert meta[-2:] == [b"END\r", b""]
    rows = sorted(meta[:-2])
    assert re.fullmatch(rb"key=a%2520b exp=-1 la=\d+ cas=\d+ fetch=no cls=1 size=48", rows[0]), rows
    assert re.fullmatch(rb"key=ttl exp=\d+ la=\d+ cas=\d+ fetch=yes cls=1 size=48", rows[1]), rows
    items = sorted(replies[4].split(b"\r\n")[:-2])
    assert items[0] == b"ITEM a%20b [1 b; 0 s]" and re.fullmatch(rb"ITEM ttl \[3 b; \d+ s\]", items[1])
    assert replies[4].endswith(b"\r\nEND\r\n")
    assert replies[5].count(b"ITEM ") == 1 and replies[6] == b"END\r\n"


@pytest.mark.asan
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dump_goes_a_slice_per_feed_and_pipelined_input_waits(backend: str) -> None:
    store = BACKENDS[backend]()
    session = Session(store, ServerContext(store))
    session.feed(b"".join(b"set k%05d 0 0 1 noreply\r\nx\r\n" % i for i in range(20000)))
    first = session.feed(b"lru_crawler metadump all\r\nget k00007\r\n")
    assert session.more and first.startswith(b"key=") and b"END" not in first
    busy = Session(store, session.ctx)
    assert busy.feed(b"lru_crawler metadump all\r\n") == b"BUSY currently processing crawler request\r\n"
    slices = [first]
    while session.more:
        slices.append(session.feed(b""))
    assert len(slices) > 5  # not in one go
    assert all(len(s) < 200_000 for s in slices)
    whole = b"".join(slices)
    assert whole.count(b"\n") == 20000 + 1 + 3
    assert whole.endswith(b"END\r\nVALUE k00007 0 1\r\nx\r\nEND\r\n")  # the get after it, after it
    assert session.ctx.dumps == 0 and session.idle


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_closed_dump_frees_the_crawler(backend: str) -> None:
    store = BACKENDS[backend]()
    ctx = ServerContext(store)
    session = Session(store, ctx)
    session.feed(b"".join(b"set k%05d 0 0 1 noreply\r\nx\r\n" % i for i in range(20000)))
    session.feed(b"lru_crawler metadump all\r\n")
    assert ctx.dumps == 1
    session.close()
    assert ctx.dumps == 0
    other = Session(store, ctx)
    reply = other.feed(b"lru_crawler metadump 2\r\n")  # no item in class 2: slices of nothing
    while other.more:
        reply += other.feed(b"")
    assert reply == b"END\r\n"


@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_lines(backend: str) -> None:
    store = BACKENDS[backend]()
    ctx = ServerContext(store)
    watcher, client = Session(store, ctx), Session(store, ctx)
    assert watcher.feed(b"watch fetchers mutations\r\nget ignored\r\n") == b"OK\r\n"
    client.feed(b"set k 0 0 2\r\nhi\r\nget k nope\r\nadd k 0 0 1\r\nx\r\n")
    lines = watcher.feed(b"").decode().splitlines()
    head = r"ts=\d+\.\d+ gid=\d+ "
    expected = [
        r"type=item_get key=k status=not_found clsid=0 cfd=-1 size=0",  # the set's lookup
        r"type=item_store key=k status=stored cmd=set ttl=0 clsid=1 cfd=-1 size=2",
        r"type=item_get key=k status=found clsid=1 cfd=-1 size=2",
        r"type=item_get key=nope status=not_found clsid=0 cfd=-1 size=0",
        r"type=item_get key=k status=found clsid=1 cfd=-1 size=2",  # the add's lookup
        # as memcached: the class of the item the add would have made
        r"type=item_store key=k status=not_stored cmd=add ttl=0 clsid=1 cfd=-1 size=1",
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(head + pattern, line), (line, pattern)
    assert watcher.feed(b"") == b""
    gids = [int(m.group(1)) for m in (re.search(r"gid=(\d+)", line) for line in lines) if m]
    assert gids == sorted(set(gids)) and len(gids) == len(expected)
    watcher.close()
    client.feed(b"get k\r\n")
    assert watcher.feed(b"") == b"" and not ctx.watchers


# Every command memcached logs to its fetchers and mutations watchers, in the text, meta and
# binary protocols: the fetches, the lookup inside stores, touch, deltas and deletes, and the
# stores themselves (before: only the classic text get and store were reported).
WATCH_TEXT = (
    b"set a 0 0 1\r\nx\r\nget a zz\r\ntouch a 10\r\nincr a 1\r\nset n 0 100 1\r\n5\r\n"
    b"incr n 2\r\ndecr nope 1\r\ndelete a\r\ndelete a\r\nadd n 0 0 1\r\nx\r\n"
    b"append n 0 0 1\r\nx\r\nprepend none 0 0 1\r\nx\r\ncas n 0 0 1 1\r\nx\r\n"
    b"replace none 3 0 2\r\nab\r\ngets n\r\ngat 50 n\r\ngats 50 none\r\n"
    b"mg n v t\r\nmg q v\r\nms m 2 T5\r\nab\r\nms m 1 MA\r\nc\r\nms none 1 ME F7\r\nz\r\n"
    b"md m\r\nmd m q\r\nma n\r\nma ctr N0 J5\r\nmn\r\nme n\r\nget __text_done__\r\n"
)


WATCH_BINARY = b"".join(
    (
        _frame(0x00, b"n"),  # get
        _frame(0x0C, b"zz"),  # getk, a miss
        _frame(0x01, b"bs", struct.pack(">II", 3, 100), b"vv"),  # set
        _frame(0x02, b"bs", struct.pack(">II", 0, 0), b"no"),  # add, not stored
        _frame(0x01, b"bs", struct.pack(">II", 0, 0), b"no", cas=12345),  # set with a wrong CAS
        _frame(0x0E, b"bs", b"", b"++"),  # append
        _frame(0x03, b"none", struct.pack(">II", 0, 0), b"x"),  # replace, not found
        _frame(0x05, b"n", struct.pack(">QQI", 1, 0, 0)),  # increment
        _frame(0x05, b"bctr", struct.pack(">QQI", 1, 10, 0)),  # increment creating the counter
        _frame(0x1C, b"bs", struct.pack(">I", 60)),  # touch
        _frame(0x1D, b"bs", struct.pack(">I", 60)),  # gat
        _frame(0x04, b"bs"),  # delete
        _frame(0x04, b"bs"),  # delete, not found
        _frame(0x0A, b""),  # noop: nothing logged
        _frame(0x00, b"__binary_done__"),
    )
)
_TTL = re.compile(rb"ttl=(\d+)")
_WATCH_VARYING = re.compile(rb"^ts=\S+ gid=\d+ | cfd=-?\d+", re.M)


def _watch_events(lines: bytes) -> list[bytes]:
    """The lines without what differs between runs (time, gid, socket number)."""
    return _WATCH_VARYING.sub(b"", lines).splitlines()


def _oracle_watch(port: int) -> list[bytes]:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as w,
        socket.create_connection(("127.0.0.1", port), timeout=10) as c,
        socket.create_connection(("127.0.0.1", port), timeout=10) as b,
    ):
        w.sendall(b"watch fetchers mutations\r\n")
        assert read_until(w, b"OK\r\n") == b"OK\r\n"
        got = b""
        for traffic, done in ((c, b"key=__text_done__"), (b, b"key=__binary_done__")):
            traffic.sendall(WATCH_TEXT if traffic is c else WATCH_BINARY)
            while done not in got or not got.endswith(b"\n"):
                chunk = w.recv(65536)
                assert chunk, got
                got += chunk
    return _watch_events(got)


@needs_memcached
@pytest.mark.parametrize("backend", BACKENDS)
def test_watch_reports_every_protocol_as_memcached(memcached: int, backend: str) -> None:
    expected = _oracle_watch(memcached)
    store = BACKENDS[backend](clock=FakeClock())  # our TTLs exact; memcached's clock ticks
    ctx = ServerContext(store)
    watcher, text, binary = Session(store, ctx), Session(store, ctx), Session(store, ctx)
    assert watcher.feed(b"watch fetchers mutations\r\n") == b"OK\r\n"
    text.feed(WATCH_TEXT)
    binary.feed(WATCH_BINARY)
    got = _watch_events(watcher.feed(b""))
    # memcached's second may turn between two commands: its ttl= may be one lower
    assert [_TTL.sub(b"ttl=?", line) for line in got] == [_TTL.sub(b"ttl=?", line) for line in expected]
    for ours, theirs in zip(got, expected, strict=True):
        a, b = _TTL.search(ours), _TTL.search(theirs)
        assert (a is None) == (b is None) and (a is None or 0 <= int(a[1]) - int(b[1]) <= 1), (ours, theirs)
    # Lines that were missing before, one per kind:
    assert b"type=item_get key=m status=not_found clsid=0 size=0" in got  # inside ms
    assert b"type=item_store key=m status=stored cmd=set ttl=5 clsid=1 size=2" in got
    assert b"type=item_store key=m status=stored cmd=append ttl=5 clsid=1 size=3" in got
    assert b"type=item_store key=bs status=exists cmd=cas ttl=0 clsid=1 size=2" in got
    assert b"type=item_store key=bctr status=stored cmd=add ttl=0 clsid=1 size=2" in got


def test_a_slow_watcher_skips_lines_and_says_how_many() -> None:
    store = BACKENDS["python"]()
    ctx = ServerContext(store)
    watcher, client = Session(store, ctx), Session(store, ctx)
    watcher.feed(b"watch\r\n")
    client.feed(b"get k\r\n" * 5000)  # more lines than the watcher's 256 KiB hold
    first = watcher.feed(b"")
    assert 200_000 < len(first) <= 256 * 1024
    client.feed(b"get k\r\n")
    assert re.fullmatch(rb"skipped=\d+", watcher.feed(b"").split(b"\n")[0])
    assert ctx.counters["log_watcher_skipped"] > 0


@pytest.mark.asan
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dump_cursor_survives_writes_and_growth(backend: str) -> None:
    store = BACKENDS[backend]()
    for i in range(3000):
        store.set(b"old%05d" % i, b"v")
    cursor = store.dump_cursor()
    seen: list[bytes] = []
    step = 0
    while True:
        entries = cursor.next(100)
        if entries is None:
            continue
        if not entries:
            break
        seen += [e[0] for e in entries]
        step += 1
        if step <= 40:  # between steps: the table grows twice, some listed and unlisted go
            for j in range(300):
                store.set(b"new%d-%d" % (step, j), b"w")
            store.delete(b"old%05d" % (step * 7))
    olds = {k for k in seen if k.startswith(b"old")}
    deleted = {b"old%05d" % (s * 7) for s in range(1, 41)}
    assert store.stats()["evictions"] == 0 and store.stats()["hash_power_level"] in (0, 14)
    # Every item there for the whole walk is listed (a deleted one may have been before it went).
    assert {b"old%05d" % i for i in range(3000)} - deleted <= olds


def test_stats_items_counts_what_each_class_lost(make_store, clock) -> None:
    # Per size class, as memcached's stats items: evictions (with a TTL, never fetched, the
    # last one's idle age) and reclaimed expired items (before: all of them were 0).
    store = make_store(max_bytes=2 * 1024 * 1024)
    session = Session(store, ServerContext(store))
    big = b"v" * 50_000
    for i in range(100):
        ttl = 100 if i % 2 == 0 else 0
        assert session.feed(b"set big%d 0 %d %d\r\n%s\r\n" % (i, ttl, len(big), big)) == b"STORED\r\n"
    clock.advance(7)
    assert session.feed(b"set big100 0 0 %d\r\n%s\r\n" % (len(big), big)) == b"STORED\r\n"
    for i in range(10):
        assert session.feed(b"set small%d 0 1 1\r\nx\r\n" % i) == b"STORED\r\n"
    assert session.feed(b"get small0\r\n").startswith(b"VALUE small0")
    clock.advance(5)
    assert store.reclaim() >= 10
    assert session.feed(b"set keep 0 0 1\r\nx\r\n") == b"STORED\r\n"

    reply = session.feed(b"stats items\r\n").decode()
    items = {k: int(v) for k, v in re.findall(r"STAT items:(\d+:\w+) (\d+)", reply)}
    totals = {k: int(v) for k, v in re.findall(r"STAT (\w+) (\d+)", session.feed(b"stats\r\n").decode())}
    evicted = [i for i in range(101) if session.feed(b"mg big%d\r\n" % i) == b"EN\r\n"]
    assert evicted and totals["evictions"] == len(evicted)
    assert items["29:evicted"] == len(evicted)
    assert items["29:evicted_nonzero"] == sum(1 for i in evicted if i % 2 == 0)
    assert items["29:evicted_unfetched"] == len(evicted)
    assert items["29:evicted_time"] == 7  # big100 pushed out one set 7 s before
    assert items["1:reclaimed"] == 10 and items["1:expired_unfetched"] == 9
    assert items["1:evicted"] == 0 and items["1:number"] == 1
    assert totals["reclaimed"] == 10
    session.feed(b"stats reset\r\n")
    reply = session.feed(b"stats items\r\n").decode()
    assert "items:29:evicted 0\r\n" in reply and "items:1:reclaimed 0\r\n" in reply
