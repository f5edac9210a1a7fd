"""The compiled stream transport (_cstream.Poller/StreamTransport) and streams.PlainServer, in process.

Every test runs on a real uvloop loop with real sockets (loopback TCP, unix socket pairs) and
checks the asyncio transport semantics that connection.Connection and server.Server rely on.
Where uvloop's own transport (``loop.connect_accepted_socket``) behaves the same, a test runs the
scenario on both (ids ``compiled``/``uvloop``), so the assertions are known to describe asyncio's
contract and not just our implementation. Busy loops are caught by counting the poller's
wakeups (:class:`CountingLoop`), never by timing. The last test runs a pymemcache workload
against real daemons on the compiled driver and on uvloop's transports and compares the replies.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

if os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
    pytest.skip("PYCACHE_D_NO_EXTENSIONS: the compiled stream transport is off", allow_module_level=True)
try:
    from pycache_d.net._cstream import Poller
except ImportError as e:
    pytest.skip(f"pycache_d.net._cstream is not built ({e})", allow_module_level=True)

import uvloop
from pymemcache.client.base import Client

from pycache_d.net.streams import READ_SIZE, PlainServer

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import TRANSPORT_LOG, Daemon, backend_params, read_until  # noqa: E402

#: Bound on every single wait of a test, in seconds.
WAIT = 5.0
#: A slice of idle loop time in which a busy loop would show (as wakeups, not as time).
IDLE = 0.2
#: More poller wakeups than this in IDLE seconds of quiet would mean a busy loop.
FEW_WAKEUPS = 20
#: Socket buffer sizes that make the kernel refuse a large write at once.
SMALL_BUF = 4096
MiB = 1024 * 1024

KINDS = ["compiled", "uvloop"]

# The transport hands the kernel raw pointers to itself (epoll's data.ptr): make test-asan runs
# this file under ASan and UBSan too.
pytestmark = pytest.mark.asan


# -- helpers -----------------------------------------------------------------------------------


class CountingLoop:
    """The real loop, for a Poller or PlainServer, counting the reader callbacks it runs.

    Everything but add_reader/remove_reader goes straight to the loop; a busy loop shows as a
    large ``wakeups`` count.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakeups = 0
        self.readers: set[int] = set()
        self.removed: list[int] = []

    def add_reader(self, fd: int, callback: Callable[..., Any], *args: Any) -> None:
        def counted(*a: Any) -> None:
            self.wakeups += 1
            callback(*a)

        self.readers.add(fd)
        self.loop.add_reader(fd, counted, *args)

    def remove_reader(self, fd: int) -> bool:
        self.readers.discard(fd)
        self.removed.append(fd)
        return self.loop.remove_reader(fd)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loop, name)


class Recorder(asyncio.Protocol):
    """A protocol that records every call the transport makes to it.

    Args:
        keep_open: what eof_received returns.
        echo: write back whatever arrives.
        on_made: called with the transport at the end of connection_made.
    """

    def __init__(
        self,
        keep_open: bool = False,
        echo: bool = False,
        on_made: Callable[[Any], None] | None = None,
    ) -> None:
        self.keep_open = keep_open
        self.echo = echo
        self.on_made = on_made
        self.transport: Any = None
        self.data = bytearray()
        self.eofs = 0
        self.lost: list[BaseException | None] = []
        self.pauses: list[int] = []  # the transport's buffer size at each pause_writing
        self.resumes: list[int] = []  # ... and at each resume_writing
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self.transport = transport
        if self.on_made is not None:
            self.on_made(transport)

    def data_received(self, data: bytes) -> None:
        assert not self.lost, "data after connection_lost"
        self.data += data
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool:
        assert not self.lost, "EOF after connection_lost"
        self.eofs += 1
        return self.keep_open

    def pause_writing(self) -> None:
        self.pauses.append(self.transport.get_write_buffer_size())

    def resume_writing(self) -> None:
        self.resumes.append(self.transport.get_write_buffer_size())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)
        if not self.done.done():
            self.done.set_result(exc)


async def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` on the loop until it is true; fail after ``timeout`` seconds."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def lost(proto: Recorder) -> BaseException | None:
    """Wait (bounded) for connection_lost, returning its argument."""
    return await asyncio.wait_for(asyncio.shield(proto.done), WAIT)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes from a blocking socket (its timeout bounds each read)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_all(sock: socket.socket) -> bytes:
    """Read a blocking socket until EOF (its timeout bounds each read)."""
    buf = bytearray()
    while chunk := sock.recv(1 << 20):
        buf += chunk
    return bytes(buf)


def pattern(n: int, seed: int = 0) -> bytes:
    """``n`` bytes in which any reordering, loss or duplication of a block is visible."""
    blocks = (f"{seed}:{i:08d};".encode() for i in range(n // 8 + 1))
    return b"".join(blocks)[:n]


def reset(sock: socket.socket) -> None:
    """Close ``sock`` so that the peer gets an RST (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def run(coro_fn: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    """Run one test body on a fresh uvloop loop, bounded as a whole."""

    async def bounded() -> None:
        await asyncio.wait_for(coro_fn(), timeout)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(bounded())


class Pairs:
    """Make connected (transport, peer socket) pairs on the compiled transport or uvloop's.

    The compiled ones share one Poller on a :class:`CountingLoop`; everything is closed at the end.
    """

    def __init__(self, kind: str, read_size: int = READ_SIZE) -> None:
        self.kind = kind
        self.loop = asyncio.get_running_loop()
        self.counting = CountingLoop(self.loop)
        self.poller = Poller(self.counting, read_size)
        self.peers: list[socket.socket] = []
        self.transports: list[Any] = []

    async def open(
        self, proto: asyncio.Protocol, *, small: bool = False, unix: bool = False
    ) -> tuple[Any, socket.socket]:
        """Connect ``proto`` to a new peer; ``small`` shrinks the buffers so writes stay unsent."""
        if unix:
            ours, peer = socket.socketpair()
            peername: Any = ""
        else:
            with socket.create_server(("127.0.0.1", 0)) as listener:
                peer = socket.socket()
                if small:  # set before connect: the TCP window is negotiated from it
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
                peer.connect(listener.getsockname())
                ours, peername = listener.accept()
        if small:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUF)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUF)
        peer.settimeout(WAIT)
        self.peers.append(peer)
        ours.setblocking(False)
        if self.kind == "compiled":
            transport = self.poller.open(ours, proto, peername)
        else:
            transport, _ = await self.loop.connect_accepted_socket(lambda: proto, ours)
        self.transports.append(transport)
        return transport, peer

    async def quiet_wakeups(self) -> int:
        """Poller wakeups during IDLE seconds in which nothing is sent or received."""
        before = self.counting.wakeups
        await asyncio.sleep(IDLE)
        return self.counting.wakeups - before

    async def close(self) -> None:
        for t in self.transports:
            t.abort()
        for peer in self.peers:
            peer.close()
        await asyncio.sleep(0)  # let connection_lost calls run
        self.poller.close()


def scenario(kind: str, body: Callable[[Pairs], Awaitable[None]], read_size: int = READ_SIZE) -> None:
    """Run ``body`` with a :class:`Pairs` of ``kind`` on a fresh loop."""

    async def main() -> None:
        pairs = Pairs(kind, read_size)
        try:
            await body(pairs)
        finally:
            await pairs.close()

    run(main)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The compiled transport, then uvloop's, for a scenario both must pass."""
    return str(request.param)


# -- extra info --------------------------------------------------------------------------------


def test_extra_info(kind: str) -> None:
    async def body(p: Pairs) -> None:
        t, peer = await p.open(Recorder())
        sock = t.get_extra_info("socket")
        assert sock is not None and sock.fileno() >= 0
        assert sock.getpeername() == peer.getsockname()
        assert t.get_extra_info("peername") == peer.getsockname()
        assert t.get_extra_info("sockname") == peer.getpeername()
        assert t.get_extra_info("sslcontext") is None
        assert t.get_extra_info("nonesuch", "default") == "default"
        assert not t.is_closing() and t.is_reading()

    scenario(kind, body)


def test_extra_info_unix_pair_and_protocol() -> None:
    async def body(p: Pairs) -> None:
        proto, other = Recorder(), Recorder()
        t, peer = await p.open(proto, unix=True)
        assert t.get_extra_info("socket").family == socket.AF_UNIX
        assert t.get_extra_info("sockname") == ""
        assert t.get_extra_info("sslcontext") is None
        assert t.get_protocol() is proto
        t.set_protocol(other)
        peer.sendall(b"to the new protocol")
        await wait_until(lambda: other.data == b"to the new protocol", "data at the new protocol")
        assert proto.data == b""
        assert t in p.poller.live and "open" in repr(t)

    scenario("compiled", body)


# -- writing -----------------------------------------------------------------------------------


def test_small_write_is_sent_at_once(kind: str) -> None:
    async def body(p: Pairs) -> None:
        t, peer = await p.open(Recorder())
        t.write(b"hello ")
        t.write(bytearray(b"over "))
        t.write(memoryview(b"there, "))
        t.writelines([b"in ", b"", b"pieces"])
        t.write(b"")
        assert t.get_write_buffer_size() == 0
        want = b"hello over there, in pieces"
        assert await asyncio.to_thread(recv_exactly, peer, len(want)) == want

    scenario(kind, body)


def test_partial_send_keeps_order_and_counts_unsent(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, small=True)
        t.set_write_buffer_limits(high=64 * MiB)  # no pause: this test is about the buffer
        chunks = [pattern(size, seed) for seed, size in enumerate([1, 100_000, 7, 300_000, 4096, 600_001])]
        total = sum(map(len, chunks))
        for c in chunks:
            t.write(c)
        unsent = t.get_write_buffer_size()
        assert 0 < unsent <= total  # the peer reads nothing yet: the kernel took only part
        t.write(b"tail")  # queued behind, never sent ahead of what waits
        assert t.get_write_buffer_size() == unsent + 4
        got = await asyncio.to_thread(recv_exactly, peer, total + 4)
        assert got == b"".join(chunks) + b"tail"
        await wait_until(lambda: t.get_write_buffer_size() == 0, "the buffer to drain")
        assert proto.pauses == [] and proto.lost == []

    scenario(kind, body)


def test_pause_and_resume_writing_once_each(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, small=True)
        low, high = t.get_write_buffer_limits()
        if kind == "compiled":  # asyncio's defaults (uvloop's low mark is 16 bytes)
            assert (low, high) == (16 * 1024, 64 * 1024)
        data = pattern(1 * MiB)
        for i in range(0, len(data), 50_000):
            t.write(data[i : i + 50_000])
        assert len(proto.pauses) == 1  # once, however many writes follow
        assert proto.pauses[0] > high
        assert proto.resumes == []
        got = await asyncio.to_thread(recv_exactly, peer, len(data))
        assert got == data
        await wait_until(lambda: proto.resumes, "resume_writing")
        await asyncio.sleep(0.05)
        assert len(proto.pauses) == 1
        assert len(proto.resumes) == 1 and proto.resumes[0] <= low

    scenario(kind, body)


def test_write_buffer_limits(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, small=True)
        t.set_write_buffer_limits(high=100)
        assert t.get_write_buffer_limits() == (25, 100)
        t.set_write_buffer_limits(low=10)
        assert t.get_write_buffer_limits() == (10, 40)
        t.set_write_buffer_limits()
        assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        t.set_write_buffer_limits(high=0)
        assert t.get_write_buffer_limits() == (0, 0)
        for high, low in [(10, 20), (-1, None), (None, -1)]:
            with pytest.raises(ValueError):
                t.set_write_buffer_limits(high=high, low=low)
        assert t.get_write_buffer_limits() == (0, 0)  # a refused setting changes nothing
        # Lowering the limits below what is buffered pauses the protocol at once.
        t.set_write_buffer_limits(high=64 * MiB)
        t.write(pattern(MiB))
        assert proto.pauses == []
        t.set_write_buffer_limits(high=1000)
        assert len(proto.pauses) == 1
        assert await asyncio.to_thread(recv_exactly, peer, MiB) == pattern(MiB)
        await wait_until(lambda: proto.resumes, "resume_writing")

    scenario(kind, body)


# -- closing -----------------------------------------------------------------------------------


def test_close_sends_everything_then_loses_once(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, small=True)
        data = pattern(2 * MiB, 7)
        t.write(data)
        assert t.get_write_buffer_size() > 0
        t.close()
        assert t.is_closing() and not t.is_reading()
        assert proto.lost == []  # never from inside close()
        t.close()  # twice is harmless
        assert await asyncio.to_thread(recv_all, peer) == data  # everything, then EOF
        assert await lost(proto) is None
        await asyncio.sleep(0.05)
        assert proto.lost == [None]
        assert t.get_write_buffer_size() == 0

    scenario(kind, body)


def test_close_with_nothing_unsent_reports_later(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto)
        t.write(b"bye")
        t.close()
        assert proto.lost == []  # the socket may be closed already; the protocol hears later
        assert await lost(proto) is None
        assert await asyncio.to_thread(recv_all, peer) == b"bye"
        t.close()
        t.abort()
        await asyncio.sleep(0.05)
        assert proto.lost == [None]

    scenario(kind, body)


def test_abort_drops_unsent_and_loses_once(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, small=True)
        data = pattern(2 * MiB, 3)
        t.write(data)
        assert t.get_write_buffer_size() > 0
        t.abort()
        assert proto.lost == []
        assert t.is_closing()
        assert await lost(proto) is None
        got = await asyncio.to_thread(recv_all, peer)
        assert len(got) < len(data) and data.startswith(got)  # what the kernel held, no more
        t.abort()
        t.close()
        await asyncio.sleep(0.05)
        assert proto.lost == [None]

    scenario(kind, body)


def test_write_after_close_is_ignored() -> None:
    """asyncio drops writes to a lost transport; uvloop raises RuntimeError instead (not tested)."""

    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto)
        t.abort()
        t.write(b"into the void")  # the socket is closed, connection_lost not yet called
        assert t.get_write_buffer_size() == 0
        await lost(proto)
        t.write(b"still nothing")
        t.writelines([b"nor", b"this"])
        t.pause_reading()
        t.resume_reading()
        assert t.get_write_buffer_size() == 0 and t.get_protocol() is None
        assert t.fd == -1 and "closed" in repr(t)
        assert await asyncio.to_thread(recv_all, peer) == b""
        assert proto.lost == [None]

    scenario("compiled", body)


# -- end of input ------------------------------------------------------------------------------


def test_eof_with_falsy_reply_closes(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder(keep_open=False)
        t, peer = await p.open(proto)
        peer.sendall(b"last words")
        peer.shutdown(socket.SHUT_WR)
        assert await lost(proto) is None
        assert proto.eofs == 1 and proto.data == b"last words"
        assert await asyncio.to_thread(recv_all, peer) == b""  # we closed our side too

    scenario(kind, body)


def test_eof_kept_open_still_writes_and_does_not_spin(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder(keep_open=True)
        t, peer = await p.open(proto)
        peer.sendall(b"question")
        peer.shutdown(socket.SHUT_WR)
        await wait_until(lambda: proto.eofs, "eof_received")
        assert not t.is_closing() and proto.data == b"question"
        t.write(b"answer")
        assert await asyncio.to_thread(recv_exactly, peer, 6) == b"answer"
        t.resume_reading()
        if kind == "compiled":
            # NOTE: uvloop reads again after resume_reading() and calls eof_received a second
            # time; the compiled transport stops reading for good at EOF, as asyncio does.
            assert await p.quiet_wakeups() <= FEW_WAKEUPS
            assert proto.eofs == 1 and not t.is_reading()
        t.write(b" and more")
        assert await asyncio.to_thread(recv_exactly, peer, 9) == b" and more"
        assert proto.lost == []
        t.close()
        assert await lost(proto) is None
        assert await asyncio.to_thread(recv_all, peer) == b""

    scenario(kind, body)


# -- pausing reading ---------------------------------------------------------------------------


def test_pause_reading_holds_input_until_resumed(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto)
        peer.sendall(b"before;")
        await wait_until(lambda: proto.data == b"before;", "data before the pause")
        t.pause_reading()
        t.pause_reading()  # idempotent
        assert not t.is_reading()
        sent = pattern(100_000, 5)
        peer.sendall(sent)
        await asyncio.sleep(IDLE)
        assert proto.data == b"before;"  # nothing delivered while paused
        peer.sendall(b";after")
        t.resume_reading()
        t.resume_reading()
        assert t.is_reading()
        want = b"before;" + sent + b";after"
        await wait_until(lambda: len(proto.data) >= len(want), "the held input")
        assert proto.data == want
        if kind == "compiled":  # one read of each ready socket per wakeup (and the count works)
            assert p.counting.wakeups >= len(sent) // 1000

    # A tiny read size makes delivery take many wakeups: level-triggered, in order.
    scenario(kind, body, read_size=1000 if kind == "compiled" else READ_SIZE)


def test_paused_then_eof_is_seen_after_resume(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto)
        t.pause_reading()
        peer.sendall(b"queued")
        peer.shutdown(socket.SHUT_WR)
        await asyncio.sleep(IDLE)
        assert proto.eofs == 0 and proto.lost == [] and proto.data == b""
        if kind == "compiled":
            assert await p.quiet_wakeups() <= FEW_WAKEUPS  # the kernel's EOF does not wake us
        t.resume_reading()
        assert await lost(proto) is None
        assert proto.data == b"queued" and proto.eofs == 1

    scenario(kind, body)


# -- peer resets -------------------------------------------------------------------------------


def test_reset_while_paused_for_reading(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto)
        t.pause_reading()
        p.peers.remove(peer)
        reset(peer)
        if kind == "compiled":
            # epoll reports the reset even to a paused socket: it goes at once.
            exc = await lost(proto)
        else:
            # uvloop does not poll a paused socket: it finds out when reading again.
            await asyncio.sleep(IDLE)
            t.resume_reading()
            exc = await lost(proto)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        if kind == "compiled":
            assert await p.quiet_wakeups() <= FEW_WAKEUPS
            assert not p.poller.live
        t.resume_reading()
        await asyncio.sleep(0.05)
        assert len(proto.lost) == 1

    scenario(kind, body)


def test_reset_with_unsent_bytes(kind: str) -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, small=True)
        t.write(pattern(2 * MiB))
        assert t.get_write_buffer_size() > 0
        p.peers.remove(peer)
        reset(peer)
        exc = await lost(proto)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert t.get_write_buffer_size() == 0
        if kind == "compiled":  # uvloop raises RuntimeError on a write to a lost transport
            t.write(b"more")
            assert t.get_write_buffer_size() == 0
            assert await p.quiet_wakeups() <= FEW_WAKEUPS
        await asyncio.sleep(0.05)
        assert len(proto.lost) == 1

    scenario(kind, body)


def test_input_sent_before_a_reset_is_read(kind: str) -> None:
    """A client that sends (noreply) requests and resets at once: every byte still arrives."""

    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto)
        sent = pattern(50_000, 5)
        peer.sendall(sent)
        p.peers.remove(peer)
        reset(peer)  # epoll reports the error with the input still queued
        await lost(proto)
        assert proto.data == sent
        assert len(proto.lost) == 1

    # Reads of 1000 bytes: the input takes many wakeups after the reset.
    scenario(kind, body, read_size=1000 if kind == "compiled" else READ_SIZE)


def test_reset_of_a_unix_peer_with_unsent_bytes() -> None:
    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, unix=True, small=True)
        t.write(pattern(2 * MiB))
        assert t.get_write_buffer_size() > 0
        p.peers.remove(peer)
        peer.close()
        exc = await lost(proto)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError)), exc
        assert await p.quiet_wakeups() <= FEW_WAKEUPS
        assert len(proto.lost) == 1 and not p.poller.live

    scenario("compiled", body)


def test_unix_peer_that_closes_has_all_its_input_read(kind: str) -> None:
    """A unix client that sends and closes at once: every byte arrives, then EOF, as with uvloop."""

    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, unix=True)
        sent = pattern(50_000, 9)
        peer.sendall(sent)
        p.peers.remove(peer)
        peer.close()  # both directions shut: epoll says HUP, with the input still queued
        assert await lost(proto) is None
        assert proto.data == sent and proto.eofs == 1

    # Reads of 1000 bytes: the input takes many wakeups after the HUP.
    scenario(kind, body, read_size=1000 if kind == "compiled" else READ_SIZE)


def test_unix_peer_that_closes_while_paused_is_lost_at_once() -> None:
    """Paused, the compiled transport cannot wait for resume_reading: epoll reports HUP anyway.

    NOTE: uvloop does not watch a paused socket, so it reads the queued input after
    resume_reading() instead. Nothing could be answered to that peer any more either way.
    """

    async def body(p: Pairs) -> None:
        proto = Recorder()
        t, peer = await p.open(proto, unix=True)
        t.pause_reading()
        peer.sendall(b"never read")
        p.peers.remove(peer)
        peer.close()
        assert isinstance(await lost(proto), ConnectionResetError)
        assert await p.quiet_wakeups() <= FEW_WAKEUPS
        t.resume_reading()
        await asyncio.sleep(0.05)
        assert proto.lost and len(proto.lost) == 1 and proto.data == b"" and proto.eofs == 0

    scenario("compiled", body)


# -- connection_made and protocol errors ---------------------------------------------------------


def test_connection_made_that_closes_is_never_registered(kind: str) -> None:
    def refuse(t: Any) -> None:
        t.write(b"ERROR Too many open connections\r\n")
        t.close()

    async def body(p: Pairs) -> None:
        proto = Recorder(on_made=refuse)
        t, peer = await p.open(proto)
        assert t.is_closing()
        if kind == "compiled":  # (uvloop's connect_accepted_socket runs the loop meanwhile)
            assert t not in p.poller.live and t.fd == -1
            assert proto.lost == []
        assert await lost(proto) is None
        assert await asyncio.to_thread(recv_all, peer) == b"ERROR Too many open connections\r\n"
        assert proto.lost == [None]

    scenario(kind, body)


def test_connection_made_that_raises_leaves_nothing_open() -> None:
    """The transport closes itself: nothing can write to a descriptor number reused since."""

    def fail(t: Any) -> None:
        raise RuntimeError("no session")

    async def body(p: Pairs) -> None:
        proto = Recorder(on_made=fail)
        with pytest.raises(RuntimeError, match="no session"):
            await p.open(proto)
        (peer,) = p.peers
        t = proto.transport
        assert t.fd == -1 and t.is_closing() and t not in p.poller.live
        t.write(b"LEAKED")  # ignored
        assert await asyncio.to_thread(recv_all, peer) == b""  # closed, nothing sent
        exc = await lost(proto)
        assert isinstance(exc, RuntimeError) and proto.lost == [exc]

    scenario("compiled", body)


def test_connection_made_that_closes_with_unsent_bytes_flushes_them(kind: str) -> None:
    big = pattern(MiB, 4)

    def refuse(t: Any) -> None:
        t.write(big)
        t.close()

    async def body(p: Pairs) -> None:
        proto = Recorder(on_made=refuse)
        t, peer = await p.open(proto, small=True)
        assert t.is_closing() and t.get_write_buffer_size() > 0
        assert await asyncio.to_thread(recv_all, peer) == big
        assert await lost(proto) is None
        if kind == "compiled":
            assert not p.poller.live

    scenario(kind, body)


def test_data_received_raising_closes_only_that_connection(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ValueError("protocol bug")

    async def body(p: Pairs) -> None:
        good = Recorder(echo=True)
        t_good, peer_good = await p.open(good)
        bad = Broken()
        t_bad, peer_bad = await p.open(bad)
        peer_bad.sendall(b"boom")
        exc = await lost(bad)
        assert isinstance(exc, ValueError) and str(exc) == "protocol bug"
        assert "unexpected error; closing it" in caplog.text
        assert await asyncio.to_thread(recv_all, peer_bad) == b""
        peer_good.sendall(b"still here")
        assert await asyncio.to_thread(recv_exactly, peer_good, 10) == b"still here"
        assert p.poller.live == {t_good} and good.lost == []
        assert len(bad.lost) == 1

    scenario("compiled", body)


def test_registration_failure_closes_and_reports() -> None:
    """If epoll refuses the socket, the protocol that saw connection_made still hears connection_lost."""

    class FileAsSocket:
        """A socket-like object over a regular file, which epoll_ctl refuses (EPERM)."""

        def __init__(self) -> None:
            self.f = open(__file__, "rb")  # noqa: SIM115

        def fileno(self) -> int:
            return -1 if self.f.closed else self.f.fileno()

        def getsockname(self) -> str:
            return "file"

        def close(self) -> None:
            self.f.close()

    async def body(p: Pairs) -> None:
        proto = Recorder()
        fake = FileAsSocket()
        try:
            with pytest.raises(PermissionError):
                p.poller.open(fake, proto, None)
            assert proto.transport is not None  # connection_made ran
            assert isinstance(await lost(proto), PermissionError)
            assert fake.f.closed and not p.poller.live
        finally:
            fake.close()

    scenario("compiled", body)


def test_poller_close_aborts_the_transports_left() -> None:
    """Closed, the poller can drive nothing: a transport still open is aborted, not stranded."""

    async def body(p: Pairs) -> None:
        proto, flushing = Recorder(), Recorder()
        t, peer = await p.open(proto)
        t2, peer2 = await p.open(flushing, small=True)
        t2.write(pattern(MiB))
        t2.close()  # still flushing when the poller goes
        p.poller.close()
        assert not p.poller.live and t.is_closing() and t2.is_closing()
        t.pause_reading()  # no error from the closed epoll set
        t.write(b"ignored")
        assert await lost(proto) is None and await lost(flushing) is None
        assert await asyncio.to_thread(recv_all, peer) == b""
        got = await asyncio.to_thread(recv_all, peer2)  # what the kernel held, then the end
        assert len(got) < MiB and pattern(MiB).startswith(got)
        await asyncio.sleep(0.05)
        assert proto.lost == [None] and flushing.lost == [None]

    scenario("compiled", body)


# -- many connections through PlainServer ------------------------------------------------------


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_plain_server_many_connections_echo(family: str, tmp_path: Any) -> None:
    clients = 200 if family == "tcp" else 50

    async def main() -> None:
        loop = asyncio.get_running_loop()
        counting = CountingLoop(loop)
        poller = Poller(counting, READ_SIZE)
        epfd = next(iter(counting.readers))
        nodelay: list[int] = []  # TCP_NODELAY of each accepted socket, as connection_made sees it

        def made(t: Any) -> None:
            sock = t.get_extra_info("socket")
            assert not sock.getblocking()
            nodelay.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) if family == "tcp" else 1)

        def factory() -> Recorder:
            return Recorder(echo=True, on_made=made)

        if family == "tcp":
            listener = socket.create_server(("127.0.0.1", 0), backlog=clients)
            address: Any = listener.getsockname()
        else:
            address = str(tmp_path / "s.sock")
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(address)
            listener.listen(clients)
        server = PlainServer(counting, poller, [listener], factory)  # type: ignore[arg-type]

        async def client(i: int) -> bytes:
            if family == "tcp":
                reader, writer = await asyncio.open_connection(*address)
            else:
                reader, writer = await asyncio.open_unix_connection(address)
            payload = pattern(1 + (i * 7919) % 200_000, i)
            writer.write(payload)
            got = await reader.readexactly(len(payload))
            writer.close()
            await writer.wait_closed()
            return got if got == payload else b"mismatch"

        try:
            # 120 s: under ASan on a busy machine 200 echoes took more than 20
            results = await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), 120)
            assert all(r != b"mismatch" for r in results)
            assert len(nodelay) == clients and all(nodelay)  # replies go out whole, at once
            await wait_until(lambda: not poller.live, "every connection to be closed")
            server.close()
            assert listener.fileno() == -1
            poller.close()
            poller.close()  # twice is harmless
            assert epfd in counting.removed and epfd not in counting.readers
            assert not loop.remove_reader(epfd)  # the loop no longer watches it
        finally:
            server.close()
            poller.close()

    run(main)


def test_plain_server_survives_a_failing_protocol_factory(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        poller = Poller(loop, READ_SIZE)
        calls = 0

        def factory() -> Recorder:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("factory bug")
            return Recorder(echo=True)

        listener = socket.create_server(("127.0.0.1", 0))
        server = PlainServer(loop, poller, [listener], factory)
        try:
            r1, w1 = await asyncio.open_connection(*listener.getsockname())
            assert await asyncio.wait_for(r1.read(), WAIT) == b""  # closed by the server
            w1.close()
            r2, w2 = await asyncio.open_connection(*listener.getsockname())
            w2.write(b"ping")
            assert await asyncio.wait_for(r2.readexactly(4), WAIT) == b"ping"
            w2.close()
            assert "cannot serve a new connection" in caplog.text
        finally:
            server.close()
            for t in list(poller.live):
                t.abort()
            await asyncio.sleep(0)
            poller.close()

    run(main)


def test_an_unexpected_accept_error_backs_off_instead_of_spinning(caplog: pytest.LogCaptureFixture) -> None:
    class Counting(socket.socket):
        calls = 0

        def accept(self) -> tuple[socket.socket, Any]:
            self.calls += 1
            return super().accept()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        poller = Poller(loop, READ_SIZE)
        # Bound but not listening: it polls as hung up (so "ready"), and accept() says EINVAL.
        broken = Counting(socket.AF_INET, socket.SOCK_STREAM)
        broken.bind(("127.0.0.1", 0))
        server = PlainServer(loop, poller, [broken], Recorder)
        try:
            await asyncio.sleep(0.35)
        finally:
            server.close()
            poller.close()
        # One try at start, then one per ACCEPT_RETRY (0.1 s): not 64 per loop iteration.
        assert 1 <= broken.calls <= 8, broken.calls
        warnings = [r for r in caplog.records if r.levelname == "WARNING"]
        assert (
            len(warnings) == 1 and "cannot accept connections: Invalid argument" in warnings[0].getMessage()
        )

    run(main)


# -- accept starvation (in a child process: it lowers its own file limit) ---------------------

STARVE_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, os, resource, socket, sys, time
    import uvloop
    from pycache_d.net._cstream import Poller
    from pycache_d.log import log
    from pycache_d.net.streams import PlainServer

    WAIT = float(sys.argv[1])
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((record.levelname, record.getMessage()))

    log.addHandler(Keep())
    log.setLevel(logging.INFO)

    class Counting:
        def __init__(self, loop):
            self.loop, self.accepts = loop, 0
        def add_reader(self, fd, cb, *args):
            def counted(*a):
                self.accepts += 1
                cb(*a)
            self.loop.add_reader(fd, counted, *args)
        def __getattr__(self, name):
            return getattr(self.loop, name)

    class Echo(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
        def data_received(self, data):
            self.t.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        poller = Poller(loop, 65536)
        listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        counting = Counting(loop)
        server = PlainServer(counting, poller, [listener], Echo)
        client = socket.socket()
        client.setblocking(False)
        # Use up every descriptor under a low soft limit: accept() must fail with EMFILE.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        fillers = []
        try:
            while True:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        try:
            client.connect(listener.getsockname())
        except BlockingIOError:
            pass
        deadline = time.monotonic() + WAIT
        while not any("cannot accept" in m for _, m in records) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        starved_at = counting.accepts
        await asyncio.sleep(0.5)
        starved_wakeups = counting.accepts - starved_at
        for fd in fillers[:8]:
            os.close(fd)
        client.send(b"ping")
        reply = b""
        while reply != b"ping" and time.monotonic() < deadline:
            try:
                reply += client.recv(4)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        print(json.dumps({
            "reply": reply.decode(), "records": records, "starved_wakeups": starved_wakeups,
            "live": len(poller.live),
        }))
        client.close()
        server.close()
        for fd in fillers[8:]:
            os.close(fd)

    uvloop.run(main())
    """
)


def test_accept_starvation_warns_once_and_recovers() -> None:
    out = subprocess.run(
        [sys.executable, "-c", STARVE_SCRIPT, str(WAIT)],
        capture_output=True,
        text=True,
        timeout=4 * WAIT,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    warnings = [m for level, m in result["records"] if level == "WARNING"]
    assert len(warnings) == 1, result["records"]
    assert "cannot accept connections: Too many open files" in warnings[0]
    assert any("accepting connections again" in m for _, m in result["records"]), result["records"]
    assert result["reply"] == "ping"
    # Starved, the listener is retried every ACCEPT_RETRY (0.1 s), not on every loop iteration.
    assert result["starved_wakeups"] <= FEW_WAKEUPS, result
    assert result["live"] == 1


# -- the daemon on both transports ---------------------------------------------------------------


def workload(d: Daemon) -> list[Any]:
    """A pymemcache session and a raw pipeline; every reply, in order."""
    out: list[Any] = []
    client = Client(d.address, connect_timeout=WAIT, timeout=WAIT)
    try:
        big = pattern(600_000, 1)
        out.append(client.set("k", b"v1"))
        out.append(client.get("k"))
        out.append(client.add("k", b"no"))
        out.append(client.add("fresh", b"yes"))
        out.append(client.replace("k", b"v2"))
        out.append(client.append("k", b"+a"))
        out.append(client.prepend("k", b"p+"))
        out.append(client.get("k"))
        out.append(client.set("n", b"10"))
        out.append(client.incr("n", 5))
        out.append(client.decr("n", 20))
        value, cas = client.gets("k")
        out.append(value)
        out.append(client.cas("k", b"v3", cas))
        out.append(client.cas("k", b"v4", cas))
        out.append(client.touch("k", 100))
        out.append(client.set("big", big))
        out.append(client.get("big") == big)
        out.append(client.set_many({f"m{i}": pattern(i * 5000, i) for i in range(40)}))
        many = client.get_many([f"m{i}" for i in range(40)] + ["missing"])
        out.append(sorted((k, v == pattern(int(k[1:]) * 5000, int(k[1:]))) for k, v in many.items()))
        out.append(client.delete("k"))
        out.append(client.delete("k"))
        out.append(client.get("k"))
        out.append(client.version() != b"")
    finally:
        client.close()
    # Many requests in one send, and a multi-get past the reply budget: the raw bytes must match.
    with d.connect() as sock:
        sock.settimeout(WAIT)
        pipeline = b"".join(b"set p%d 0 0 %d\r\n%s\r\n" % (i, i, b"x" * i) for i in range(100))
        pipeline += b"get " + b" ".join(b"p%d" % i for i in range(100)) + b"\r\n"
        pipeline += b"get big big big big\r\nincr n 1\r\nbogus command\r\nquit\r\n"
        sock.sendall(pipeline)
        out.append(read_until(sock, None))
    return out


@pytest.mark.parametrize("backend", backend_params())
def test_daemon_replies_are_the_same_on_both_transports(
    daemon_factory: Callable[..., Daemon], backend: str
) -> None:
    replies = {}
    for streams in TRANSPORT_LOG:
        env = {"PYCACHE_D_STREAMS": "uvloop" if streams == "uvloop" else ""}
        d = daemon_factory(backend=backend, env=env)
        assert TRANSPORT_LOG[streams] in d.log, d.log
        replies[streams] = workload(d)
        assert d.stop() == 0
    assert replies["compiled"] == replies["uvloop"]
    pipelined = replies["compiled"][-1]
    assert pipelined.count(b"STORED\r\n") == 100 and pipelined.count(b"VALUE big 0 600000\r\n") == 4
    assert pipelined.endswith(b"ERROR\r\n")
