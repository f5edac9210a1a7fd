"""SIGTERM under load: stop reading, deliver the replies to what was sent, close; no fixed grace.

No duration is asserted: the daemon says in its log when it gave up waiting for clients ("still
busy after N s") and whom it cut ("disconnecting"), and each test looks for those events; the
time SIGTERM takes under load is measured by benchmarks/shutdown_time.py.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon, backend_params, read_until  # noqa: E402

pytestmark = pytest.mark.usefixtures("both_transports")

Factory = Callable[..., Daemon]
SMALL = b"s" * 100
LARGE = b"L" * 100_000


def exit_status(d: Daemon) -> int:
    """Wait for the daemon to exit after the SIGTERM sent (a second one could kill it on its way out)."""
    assert d.proc is not None
    return d.proc.wait(30)


def reply(key: bytes, value: bytes) -> bytes:
    return b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(value), value)


def set_values(d: Daemon) -> None:
    for key, value in ((b"small", SMALL), (b"large", LARGE)):
        assert d.request(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value)) == b"STORED\r\n"


class Pipeliner(threading.Thread):
    """Pipelines batches of ``get key`` without pause until the daemon ends the connection."""

    def __init__(self, d: Daemon, key: bytes, value: bytes, batch: int) -> None:
        super().__init__(daemon=True)
        self.sock = d.connect(timeout=30)
        self.request = b"get %s\r\n" % key * batch
        self.size = len(reply(key, value))
        self.batch = batch
        self.batches = 0
        self.tail = 0  # bytes of the last, unfinished batch
        self.ended = ""

    def run(self) -> None:
        try:
            while True:
                self.sock.sendall(self.request)
                self.tail = 0
                while self.tail < self.size * self.batch:
                    chunk = self.sock.recv(1 << 20)
                    if not chunk:
                        self.ended = "EOF"
                        return
                    self.tail += len(chunk)
                self.batches += 1
        except OSError as e:  # a reset once its replies are read: it had sent more
            self.ended = type(e).__name__
        finally:
            self.sock.close()


@pytest.mark.parametrize("backend", backend_params())
def test_busy_pipelining_clients_get_whole_replies_and_the_daemon_does_not_wait(
    daemon_factory: Factory, backend: str
) -> None:
    d = daemon_factory("-v", backend=backend)
    set_values(d)
    clients = [Pipeliner(d, b"small", SMALL, 100) for _ in range(3)]
    clients += [Pipeliner(d, b"large", LARGE, 10) for _ in range(3)]  # these fill the buffers
    idle = [d.connect() for _ in range(5)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 30
    while not all(c.batches >= 2 for c in clients):
        assert time.monotonic() < deadline, "the clients did not get going"
        time.sleep(0.05)
    d.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for c in clients:
        c.join(30)
    assert exit_status(d) == 0
    for c in clients:
        assert c.ended, "a client was never told"
        # Whatever it received ends at a reply boundary: nothing was cut short.
        assert c.tail % c.size == 0, (c.tail, c.size, c.ended)
    for s in idle:
        assert s.recv(1) == b""
        s.close()
    assert "still busy" not in d.log  # done once delivered, not at the end of a grace period
    assert "disconnecting" not in d.log  # and nobody who reads was cut


@pytest.mark.parametrize("backend", backend_params())
def test_a_client_that_reads_nothing_is_cut_without_holding_the_shutdown(
    daemon_factory: Factory, backend: str
) -> None:
    d = daemon_factory("-v", backend=backend)
    set_values(d)
    with d.connect() as hog, d.connect() as reader:
        hog.sendall(b"get large\r\n" * 200)  # 20 MB of replies it will never read
        reader.sendall(b"get small\r\n")
        assert read_until(reader, b"END\r\n") == reply(b"small", SMALL)
        d.wait_for_log(r"conn \d+: paused", timeout=10)
        d.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert read_until(reader, None) == b""  # nothing asked: closed at once
        assert exit_status(d) == 0
    assert "shutting down: took none of its replies in" in d.log
    assert "still busy" not in d.log


@pytest.mark.parametrize("backend", backend_params())
def test_requests_waiting_in_the_kernel_at_sigterm_are_answered(
    daemon_factory: Factory, backend: str
) -> None:
    """A paused client's later requests wait unread in the kernel: they were sent, so answered."""
    d = daemon_factory("-v", backend=backend)
    set_values(d)
    with d.connect(timeout=30) as c:
        c.sendall(b"get large\r\n" * 100)
        d.wait_for_log(r"conn \d+: paused", timeout=10)
        time.sleep(0.2)  # paused: what follows stays in the daemon's socket buffer
        c.sendall(b"get small\r\n" * 50)
        d.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        got = read_until(c, None, limit=1 << 30)
    assert got == reply(b"large", LARGE) * 100 + reply(b"small", SMALL) * 50
    assert exit_status(d) == 0


def test_a_slow_reader_is_waited_for(daemon_factory: Factory) -> None:
    d = daemon_factory("-v")
    set_values(d)
    with socket.create_connection(d.address, timeout=30) as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c.sendall(b"get" + b" large" * 60 + b"\r\n")  # 6 MB, more than the kernel buffers hold
        assert c.recv(1)
        d.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        got = bytearray(b"V")
        while chunk := c.recv(64 * 1024):  # about 2 MB/s, in many small reads
            got += chunk
            time.sleep(0.02)
    assert bytes(got) == (b"VALUE large 0 %d\r\n%s\r\n" % (len(LARGE), LARGE)) * 60 + b"END\r\n"
    assert exit_status(d) == 0
    assert "disconnecting" not in d.log
