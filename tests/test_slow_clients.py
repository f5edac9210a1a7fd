"""Slow clients against a real daemon: a slow reader is served, a client that reads nothing is cut.

The stall bound (30 s in the daemon) runs at a couple of seconds here, patched into the daemon
process (``Daemon(patch=...)``); no duration is asserted: each test waits, within generous
deadlines, for the event it is about (a complete reply, a closed connection, a log line), and
the slow reader reads far faster than the bound it must not trip, so a busy machine delays it
without failing it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon, backend_params, read_until, stats  # noqa: E402

pytestmark = pytest.mark.usefixtures("both_transports")

Factory = Callable[..., Daemon]
#: The stall bound the daemons here run with (seconds).
STALL = 1.0
PATCH = {"pycache_d.net.connection.STALL_TIMEOUT": STALL}
#: Every wait for the daemon to act is bounded by this many seconds.
WAIT = 30.0


def slow_socket(d: Daemon, rcvbuf: int = 32 * 1024) -> socket.socket:
    """A connection with a small receive buffer, so that the daemon's replies queue up on its side."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(WAIT)
    sock.connect(d.address)
    return sock


def read_slowly(sock: socket.socket, size: int, rate: float) -> bytes:
    """Read ``size`` bytes (or until EOF) at about ``rate`` bytes a second, a read every 50 ms or less."""
    got = bytearray()
    started = time.monotonic()
    while len(got) < size:
        try:
            data = sock.recv(min(int(rate / 20), size - len(got)))
        except ConnectionResetError:
            break
        if not data:
            break
        got += data
        ahead = started + len(got) / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    return bytes(got)


@pytest.mark.parametrize("backend", backend_params())
def test_a_steady_slow_reader_gets_a_reply_that_takes_many_stall_timeouts(
    daemon_factory: Factory, backend: str
) -> None:
    d = daemon_factory("-v", backend=backend, patch=PATCH)
    value = b"v" * 1_000_000
    assert d.request(b"set k 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    # 5 MB of replies read at 600 KB/s: more than the kernel's send buffer holds (up to 4 MB,
    # which wakes the daemon to send more once a third of it drained: every 2 s at this pace),
    # and read over many stall timeouts.
    keys = 5
    expected = (b"VALUE k 0 %d\r\n%s\r\n" % (len(value), value)) * keys + b"END\r\n"
    with slow_socket(d) as sock:
        sock.sendall(b"get" + b" k" * keys + b"\r\n")
        started = time.monotonic()
        got = read_slowly(sock, len(expected), 600_000)
        took = time.monotonic() - started
    assert len(got) == len(expected), f"cut after {len(got)} of {len(expected)} bytes"
    assert got == expected
    assert "disconnecting" not in d.log
    # The reply took several stall timeouts to read: the daemon did wait on a slow reader.
    assert took > 2 * STALL, "the reply was read too fast to test anything: raise `keys`"


@pytest.mark.parametrize("backend", backend_params())
def test_a_client_that_stops_reading_is_cut_and_others_are_served(
    daemon_factory: Factory, backend: str
) -> None:
    d = daemon_factory("-v", backend=backend, patch=PATCH)
    value = b"v" * 100_000
    assert d.request(b"set k 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    with slow_socket(d) as sock:
        sock.sendall(b"get" + b" k" * 100 + b"\r\n")
        assert sock.recv(1000)  # it started reading, then reads nothing more
        d.wait_for_log(r"conn \d+: disconnecting 127\.0\.0\.1:\d+: read nothing of", timeout=WAIT)
        assert d.request(b"get nothing\r\n") == b"END\r\n"
    assert stats(d)["curr_connections"] == "1"


@pytest.mark.parametrize("backend", backend_params())
def test_a_client_that_never_reads_a_small_reply_is_cut_too(
    daemon_factory: Factory, backend: str, tmp_path: Path
) -> None:
    """Unsent replies too few to pause the client are bounded as well: they hold its slot."""
    path = tmp_path / "s"
    d = daemon_factory("-v", backend=backend, listen=(f"unix:{path}",), patch=PATCH)
    value = b"v" * 100_000
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(WAIT)
        sock.connect(str(path))
        sock.sendall(b"set k 0 0 %d\r\n%s\r\n" % (len(value), value))
        assert read_until(sock, b"\r\n") == b"STORED\r\n"
        # 300 KB of replies: a unix socket's kernel buffer takes about 200 KB of them, and the
        # rest, under the 256 KiB that pause reading, waits in the daemon for good.
        sock.sendall(b"get k\r\n" * 3)
        d.wait_for_log(r"conn \d+: disconnecting unix:\S+: read nothing of \d+ unsent bytes", timeout=WAIT)


def test_slow_readers_in_parallel_all_finish(daemon_factory: Factory) -> None:
    d = daemon_factory(patch=PATCH)
    value = b"w" * 50_000
    assert d.request(b"set k 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    keys = 20  # 1 MB each, read at 200 KB/s
    expected = (b"VALUE k 0 %d\r\n%s\r\n" % (len(value), value)) * keys + b"END\r\n"
    results: list[bytes] = []

    def reader() -> None:
        with slow_socket(d) as sock:
            sock.sendall(b"get" + b" k" * keys + b"\r\n")
            results.append(read_slowly(sock, len(expected), 200_000))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert [len(r) for r in results] == [len(expected)] * 4
    assert all(r == expected for r in results)
