"""Large values without copies: a get's value is sent from the pinned item, a set's block is kept once.

The native backend sends values of STORE_PIN_MIN (16 KiB) and more from the item's memory with
sendmsg, the item pinned until its last byte is taken by the kernel (csrc/store.h, "Pins"). These
tests run a real server in-process on the compiled socket driver, with the real session, so
that the store can be changed and its pin counters read while a slow reader's reply is
half-sent: whatever happens to the item meanwhile (overwrite, delete, eviction, flush, incr,
slab compaction), the reader gets exactly the bytes it asked for, and the pinned bytes stay
within their bound. The daemon-level tests check the same through a client on both backends,
and a set split at many byte boundaries stores exactly.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import uvloop

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from pycache_d.daemon.config import load  # noqa: E402
from pycache_d.daemon.server import Server  # noqa: E402
from pycache_d.net.connection import HIGH_WATER  # noqa: E402
from pycache_d.protocol.session import REPLY_BUDGET, Session  # noqa: E402
from pycache_d.store import BACKENDS  # noqa: E402

from daemon import read_until  # noqa: E402

pytestmark = pytest.mark.asan

native = pytest.mark.skipif("native" not in BACKENDS, reason="native backend not built")
KiB = 1024
#: Every wait for the server to act is bounded by this many seconds.
WAIT = 30.0


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes in which every offset differs from its neighbours, so a shifted or torn copy shows."""
    return bytes((i * 7 + seed * 13 + (i >> 8)) & 0xFF for i in range(n))


def value_reply(key: bytes, value: bytes, flags: int = 0) -> bytes:
    return b"VALUE %s %d %d\r\n%s\r\nEND\r\n" % (key, flags, len(value), value)


# -- in-process: a real server, its store at hand ------------------------------------------------


def serve(body: Callable[[Server, Any], Awaitable[None]], *argv: str) -> None:
    """Run ``body(server, store)`` against a native server on the compiled socket driver."""

    async def main() -> None:
        _, cfg = load(["-p", "0", "-l", "127.0.0.1", "--backend", "native", *argv], {})
        store = BACKENDS["native"](cfg.memory_limit, max_item_size=cfg.max_item_size)
        srv = Server(cfg, store)
        await srv.start()
        try:
            await asyncio.wait_for(body(srv, store), 120)
        finally:
            srv.stop()
            await srv.serve_until_stopped()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
        r.run(main())


async def until(cond: Callable[[], object], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not cond():
        assert loop.time() < deadline, f"not reached in time: {what}"
        await asyncio.sleep(0.01)


async def client(srv: Server, rcvbuf: int | None = None) -> socket.socket:
    """A non-blocking client socket; a small ``rcvbuf`` makes the server's replies queue on its side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (srv.bound[0].host, srv.bound[0].port))
    if rcvbuf is not None:
        # ... and a small send buffer on the server's side (loopback would take megabytes).
        port = sock.getsockname()[1]

        def server_side() -> Any:
            for c in srv.connections:
                peer = c.transport.get_extra_info("peername") if c.transport else None
                if peer and peer[1] == port:
                    return c.transport.get_extra_info("socket")
            return None

        await until(server_side, "the server accepted the client")
        server_side().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    return sock


async def request(sock: socket.socket, line: bytes, reply_end: bytes = b"\r\n") -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, line)
    got = b""
    while not got.endswith(reply_end):
        data = await loop.sock_recv(sock, 65536)
        assert data, "connection closed"
        got += data
    return got


async def read_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    got = bytearray()
    while len(got) < n:
        data = await loop.sock_recv(sock, min(65536, n - len(got)))
        assert data, f"connection closed after {len(got)} of {n} bytes"
        got += data
    return bytes(got)


def pinned(store: Any) -> int:
    return int(store.memory()["pinned_items"])


def unsent(srv: Server) -> int:
    return sum(c.transport.get_write_buffer_size() for c in srv.connections if c.transport)


def overwrite(store: Any, key: bytes) -> None:
    assert store.set(key, b"new") == 0


def delete(store: Any, key: bytes) -> None:
    store.delete(key)


def evict(store: Any, key: bytes) -> None:
    for i in range(60):  # 60 x 200 KiB through an 8 MiB cache: the key is evicted
        store.set(b"filler%d" % i, b"f" * (200 * KiB))
    assert store.stats()["evictions"] > 0


def flush(store: Any, key: bytes) -> None:
    store.flush_all()
    assert store.get(key) is None  # the lookup frees the flushed item


def incr(store: Any, key: bytes) -> None:
    # An in-place rewrite would change bytes being sent: a pinned item gets a new one instead.
    assert store.incr(key, 1) == 8


def compact(store: Any, key: bytes) -> None:
    before = store.memory()["pages_compacted"]
    for i in range(20000):
        store.set(b"small%d" % i, b"s" * 100)
    for i in range(20000):
        if i % 8:
            store.delete(b"small%d" % i)
    assert store.memory()["pages_compacted"] > before  # slab pages were emptied by moves


@native
@pytest.mark.parametrize("change", [overwrite, delete, evict, flush, incr, compact], ids=lambda f: f.__name__)
def test_slow_reader_gets_the_original_bytes(change: Callable[[Any, bytes], None]) -> None:
    value = b"7" + b" " * (199 * KiB) if change is incr else pattern(200 * KiB)
    expected = value_reply(b"big", value, 5) * 2

    async def body(srv: Server, store: Any) -> None:
        assert store.set(b"big", value, 5) == 0
        slab_bytes = store.memory()["slab_bytes"]
        reader = await client(srv, rcvbuf=4096)
        await asyncio.get_running_loop().sock_sendall(reader, b"get big\r\nget big\r\n")
        await until(lambda: unsent(srv) > 100 * KiB, "the reply queued on the server's side")
        assert pinned(store) == 1
        assert store.memory()["pinned_bytes"] >= len(value)
        change(store, b"big")
        got = await read_exactly(reader, len(expected))
        assert got == expected
        await until(lambda: pinned(store) == 0, "the item unpinned once sent")
        assert store.memory()["pinned_bytes"] == 0
        if change in (delete, flush):
            # the detached item was freed by its last unpin
            assert store.memory()["slab_bytes"] < slab_bytes
        reader.close()

    serve(body, "-m", "8")


@native
def test_pinned_bytes_stay_within_the_limit_under_many_slow_readers() -> None:
    size = 100 * KiB
    values = {b"k%d" % i: pattern(size, i) for i in range(12)}

    async def body(srv: Server, store: Any) -> None:
        for key, value in values.items():
            store.set(key, value)
        store.pin_limit = 3 * (size + 1024)  # room for three pinned items
        readers = []
        peak = 0
        for key in values:
            sock = await client(srv, rcvbuf=4096)
            await asyncio.get_running_loop().sock_sendall(sock, b"get %s\r\n" % key)
            readers.append((sock, key))
            await until(lambda: len(srv.connections) >= len(readers) and unsent(srv) > 0, "a reply queued")
            peak = max(peak, store.memory()["pinned_bytes"])
        await asyncio.sleep(0.1)
        mem = store.memory()
        peak = max(peak, mem["pinned_bytes"])
        assert peak <= store.pin_limit
        assert mem["pinned_items"] == 3
        assert mem["pin_refused"] >= len(values) - 3  # those replies were copied instead
        for sock, key in readers:
            got = await read_exactly(sock, len(value_reply(key, values[key])))
            assert got == value_reply(key, values[key])
            sock.close()
        await until(lambda: pinned(store) == 0, "every item unpinned")

    serve(body)


@native
def test_one_slow_reader_of_many_large_values_pins_a_bounded_amount() -> None:
    size = 100 * KiB
    keys = [b"v%d" % i for i in range(40)]
    values = {k: pattern(size, i) for i, k in enumerate(keys)}

    async def body(srv: Server, store: Any) -> None:
        for k, v in values.items():
            store.set(k, v)
        sock = await client(srv, rcvbuf=4096)
        await asyncio.get_running_loop().sock_sendall(sock, b"".join(b"get %s\r\n" % k for k in keys))
        await until(lambda: any(c.state() == "conn_mwrite" for c in srv.connections), "backpressure")
        await asyncio.sleep(0.2)
        # Backpressure stops reading the pipeline: what is pinned is what is unsent, at most
        # HIGH_WATER plus one feed's reply (REPLY_BUDGET plus one value), not the 4 MB asked for.
        assert store.memory()["pinned_bytes"] <= HIGH_WATER + REPLY_BUDGET + 2 * size
        expected = b"".join(value_reply(k, values[k]) for k in keys)
        assert await read_exactly(sock, len(expected)) == expected
        await until(lambda: pinned(store) == 0, "every item unpinned")
        sock.close()

    serve(body)


@native
def test_pinned_values_of_a_closed_connection_are_unpinned() -> None:
    async def body(srv: Server, store: Any) -> None:
        store.set(b"big", pattern(300 * KiB))
        sock = await client(srv, rcvbuf=4096)
        await asyncio.get_running_loop().sock_sendall(sock, b"get big\r\n")
        await until(lambda: pinned(store) == 1, "the item pinned")
        store.delete(b"big")
        sock.close()
        await until(lambda: pinned(store) == 0, "the item unpinned by the close")
        assert store.memory()["pinned_bytes"] == 0

    serve(body)


@native
@pytest.mark.parametrize("change", [overwrite, delete, compact], ids=lambda f: f.__name__)
def test_slow_meta_get_reader_gets_the_original_bytes(change: Callable[[Any, bytes], None]) -> None:
    # mg's value leaves from the pinned item too (before: mg was answered by the Python
    # session, which copies the value into its reply).
    value = pattern(200 * KiB)
    one = b"VA %d f5 kbig s%d\r\n" % (len(value), len(value)) + value + b"\r\n"

    async def body(srv: Server, store: Any) -> None:
        assert store.set(b"big", value, 5) == 0
        reader = await client(srv, rcvbuf=4096)
        await asyncio.get_running_loop().sock_sendall(reader, b"mg big v f k s\r\nmg big v f k s\r\n")
        await until(lambda: unsent(srv) > 100 * KiB, "the reply queued on the server's side")
        assert pinned(store) == 1
        change(store, b"big")
        assert await read_exactly(reader, 2 * len(one)) == one * 2
        await until(lambda: pinned(store) == 0, "the item unpinned once sent")
        reader.close()

    serve(body, "-m", "8")


@native
@pytest.mark.parametrize("command", [b"gat", b"gats"])
@pytest.mark.parametrize("change", [overwrite, delete, flush], ids=lambda f: f.__name__)
def test_slow_gat_reader_gets_the_original_bytes(
    change: Callable[[Any, bytes], None], command: bytes
) -> None:
    # gat and gats send a large value from the pinned item too, as get does.
    value = pattern(200 * KiB)

    async def body(srv: Server, store: Any) -> None:
        assert store.set(b"big", value, 5) == 0
        cas = store.get_item(b"big")[2]
        head = b"VALUE big 5 %d" % len(value) + (b" %d" % cas if command == b"gats" else b"")
        one = head + b"\r\n" + value + b"\r\nEND\r\n"
        reader = await client(srv, rcvbuf=4096)
        try:
            before = store.now  # (the store's clock may tick on while the server works)
            await asyncio.get_running_loop().sock_sendall(reader, b"%s 300 big\r\n" % command * 2)
            await until(lambda: unsent(srv) > 100 * KiB, "the reply queued on the server's side")
            assert pinned(store) == 1
            assert before + 300 <= store.peek(b"big")[3] <= store.now + 300  # touched as it was fetched
            change(store, b"big")
            assert await read_exactly(reader, 2 * len(one)) == one * 2
            await until(lambda: pinned(store) == 0, "the item unpinned once sent")
        finally:
            reader.close()

    serve(body, "-m", "8")


@native
def test_multiget_and_binary_get_mix_pinned_and_copied_values() -> None:
    small, large = pattern(100), pattern(50 * KiB, 3)

    async def body(srv: Server, store: Any) -> None:
        store.set(b"s", small, 1)
        store.set(b"l", large, 2)
        sock = await client(srv)
        want = value_reply(b"s", small, 1)[:-5] + value_reply(b"l", large, 2)
        assert await request(sock, b"get s l\r\n", b"END\r\n") == want
        # binary getk of the large value: header, flags, key, then the value from the item
        req = bytes([0x80, 0x0C, 0, 1, 0, 0, 0, 0]) + (1).to_bytes(4, "big") + b"\xaa" * 4 + bytes(8) + b"l"
        sock.close()
        sock = await client(srv)  # a connection is text or binary from its first byte
        await asyncio.get_running_loop().sock_sendall(sock, req)
        reply = await read_exactly(sock, 24 + 4 + 1 + len(large))
        assert reply[0] == 0x81 and reply[6:8] == b"\x00\x00"
        assert int.from_bytes(reply[8:12], "big") == 4 + 1 + len(large)
        assert reply[12:16] == b"\xaa" * 4
        assert reply[24:28] == (2).to_bytes(4, "big") and reply[28:29] == b"l"
        assert reply[29:] == large
        sock.close()

    serve(body)


# -- the set path: a data block split anywhere is stored exactly ---------------------------------


def session_cases() -> list[Any]:
    params = [pytest.param("python", id="python")]
    if "native" in BACKENDS:
        params.append(pytest.param("native", id="native"))
    return params


def new_session(backend: str) -> Any:
    store = BACKENDS[backend](64 * 1024 * 1024)
    if backend == "native":
        from pycache_d.protocol._csession import NativeSession

        return NativeSession(store), store
    return Session(store), store


def cuts_through(request_bytes: bytes) -> list[int]:
    """Where to split a storage request: every byte around its command line, every 4 KiB or so
    through its block, and every byte of its end."""
    line = request_bytes.index(b"\n") + 1
    return sorted(
        set(range(1, line + 3))
        | set(range(line + 3, len(request_bytes), 4093))
        | set(range(len(request_bytes) - 16, len(request_bytes)))
    )


@pytest.mark.parametrize("backend", session_cases())
def test_large_set_split_at_many_boundaries_stores_exactly(backend: str) -> None:
    value = pattern(90 * KiB, 1)
    request_bytes = b"set key 3 0 %d\r\n%s\r\nget key\r\n" % (len(value), value)
    for cut in cuts_through(request_bytes):
        session, store = new_session(backend)
        reply = session.feed(request_bytes[:cut]) + session.feed(request_bytes[cut:])
        assert reply == b"STORED\r\n" + value_reply(b"key", value, 3), cut
        assert store.get(b"key") == value
        assert session.idle
    # And in many small pieces, with a second command behind the block in the same piece.
    session, store = new_session(backend)
    out = b""
    for i in range(0, len(request_bytes), 1000):
        out += session.feed(request_bytes[i : i + 1000])
    assert out == b"STORED\r\n" + value_reply(b"key", value, 3)
    assert session.idle
    if backend == "native":
        assert session.buffered == 0  # nothing kept once the commands are answered


@pytest.mark.parametrize("backend", session_cases())
def test_large_meta_set_split_at_many_boundaries_stores_exactly(backend: str) -> None:
    # ms takes the set's path on the native backend (its block kept once, then copied into the
    # item), and mg answers from the item: the same bytes whatever the split.
    value = pattern(90 * KiB, 2)
    request_bytes = b"ms key %d T0 F3 c\r\n%s\r\nmg key v f s\r\n" % (len(value), value)
    expected_tail = b"VA %d f3 s%d\r\n" % (len(value), len(value)) + value + b"\r\n"
    for cut in cuts_through(request_bytes):
        session, store = new_session(backend)
        reply = session.feed(request_bytes[:cut]) + session.feed(request_bytes[cut:])
        assert reply.startswith(b"HD c") and reply.endswith(expected_tail), cut
        assert store.get(b"key") == value
        assert session.idle
    session, store = new_session(backend)
    out = b"".join(session.feed(request_bytes[i : i + 1000]) for i in range(0, len(request_bytes), 1000))
    assert out.endswith(expected_tail) and session.idle
    if backend == "native":
        assert session.buffered == 0


@pytest.mark.parametrize("backend", session_cases())
def test_large_binary_set_split_stores_exactly(backend: str) -> None:
    value = pattern(80 * KiB, 2)
    key = b"bk"
    body = (7).to_bytes(4, "big") + bytes(4) + key + value
    req = bytes([0x80, 0x01, 0, len(key), 8, 0, 0, 0]) + len(body).to_bytes(4, "big") + bytes(12) + body
    for cut in [1, 23, 24, 33, 34, 1000, 65536, 70000, len(req) - 1]:
        session, store = new_session(backend)
        reply = session.feed(req[:cut]) + session.feed(req[cut:])
        assert reply[:2] == b"\x81\x01" and reply[6:8] == b"\x00\x00", cut
        assert store.get(key) == value


# -- the daemon, both backends: what a client sees -----------------------------------------------


@pytest.mark.usefixtures("both_transports")
def test_slow_reader_of_a_changed_item_over_the_daemon(daemon: Any) -> None:
    value = pattern(500 * KiB, 4)
    writer = daemon.connect()
    writer.sendall(b"set big 9 0 %d\r\n%s\r\n" % (len(value), value))
    assert read_until(writer, b"\r\n") == b"STORED\r\n"
    reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.settimeout(WAIT)
    reader.connect(daemon.address)
    reader.sendall(b"get big\r\n")
    first = reader.recv(100)  # the get was answered: its reply is on its way
    # Whatever part of the reply is still on the server's side when these run, the reader
    # must get the value it asked for, whole.
    for line in (b"set big 0 0 1\r\nx\r\n", b"delete big\r\n", b"flush_all\r\n"):
        writer.sendall(line)
        assert read_until(writer, b"\r\n") in (b"STORED\r\n", b"DELETED\r\n", b"OK\r\n")
    expected = value_reply(b"big", value, 9)
    got = bytearray(first)
    while len(got) < len(expected):
        try:
            data = reader.recv(65536)
        except TimeoutError:
            raise AssertionError(f"{len(got)} of {len(expected)}: {bytes(got[-40:])!r}") from None
        assert data
        got += data
    assert bytes(got) == expected
    reader.close()
    writer.close()
