"""``--idle-timeout``: a real daemon closes clients that went quiet, and only those.

No durations are asserted: each test waits (bounded) for the event it is about, and uses an idle
witness connection, opened after the others, to know that a sweep has looked at them.
"""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon, backend_params, read_until, stats  # noqa: E402

MiB = 1024 * 1024
Factory = Callable[..., Daemon]
#: Bound on every wait for a kick: far above the 1 s timeouts used here plus a sweep's delay.
KICK_WAIT = 15.0


def wait_closed(sock: socket.socket, timeout: float = KICK_WAIT) -> bool:
    """Wait until the daemon closes ``sock`` (True), or ``timeout`` passes (False)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def is_open(sock: socket.socket) -> bool:
    """True if the daemon still answers on ``sock``."""
    try:
        sock.sendall(b"version\r\n")
        return read_until(sock, b"\r\n").startswith(b"VERSION ")
    except OSError:
        return False


@pytest.mark.parametrize("backend", backend_params())
def test_idle_client_is_closed_and_an_active_one_is_not(daemon_factory: Factory, backend: str) -> None:
    d = daemon_factory("--idle-timeout", "1", "-v", backend=backend)
    assert stats(d, "settings")["idle_timeout"] == "1"
    with d.connect() as active, d.connect() as idle:
        # The idle client may have said something once: what counts is that it went quiet.
        idle.sendall(b"set k 0 0 1\r\nx\r\n")
        assert read_until(idle, b"\r\n") == b"STORED\r\n"
        # Keep the active client busy until the idle one is closed, and a while after that.
        deadline = time.monotonic() + KICK_WAIT
        idle.settimeout(0.2)
        closed_at = None
        while time.monotonic() < deadline:
            assert is_open(active)
            if closed_at is None:
                try:
                    if idle.recv(1) == b"":
                        closed_at = time.monotonic()
                except TimeoutError:
                    pass
            elif time.monotonic() > closed_at + 1.5:
                break
        assert closed_at is not None, "the idle client was not closed"
        assert is_open(active)
    assert stats(d)["idle_kicks"] == "1"
    assert d.wait_for_log(r"conn \d+: closing 127\.0\.0\.1:\d+: idle for \d+ s \(idle_timeout\)", timeout=5)


def test_a_client_being_answered_is_not_idle(daemon_factory: Factory) -> None:
    d = daemon_factory("--idle-timeout", "1", "-I", "2m")
    value = b"v" * MiB
    expected = b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(value), value)
    gets = 32  # 32 MiB of replies the client does not read yet: the daemon is stuck writing them
    with d.connect() as busy:
        busy.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value))
        assert read_until(busy, b"\r\n") == b"STORED\r\n"
        busy.sendall(b"get big\r\n" * gets)
        with d.connect() as witness:  # quiet from now on, so due after the busy client
            assert wait_closed(witness), "the idle witness was not closed"
        # A sweep found the busy client past its timeout, and left it alone (still sending).
        busy.settimeout(10)
        assert read_until(busy, None, limit=gets * len(expected)) == expected * gets
        assert is_open(busy)
    assert stats(d)["idle_kicks"] == "1"


def test_idle_timeout_changes_on_sighup_and_stats_reset_clears_kicks(
    daemon_factory: Factory, tmp_path: Path
) -> None:
    conf = tmp_path / "c.toml"
    conf.write_text("idle_timeout = 0\n")
    d = daemon_factory("--config", str(conf))
    with d.connect() as idle:
        assert stats(d, "settings")["idle_timeout"] == "0"
        conf.write_text("idle_timeout = 1\n")
        mark = len(d.lines)
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        d.wait_for_log(r"reloaded .*idle_timeout 0 -> 1", start=mark)
        assert stats(d, "settings")["idle_timeout"] == "1"
        assert wait_closed(idle), "the idle client was not closed after the reload"
    assert stats(d)["idle_kicks"] == "1"
    assert d.request(b"stats reset\r\n") == b"RESET\r\n"
    assert stats(d)["idle_kicks"] == "0"


def test_no_timeout_by_default(daemon: Daemon) -> None:
    assert stats(daemon, "settings")["idle_timeout"] == "0"
    assert stats(daemon)["idle_kicks"] == "0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-timeout", "-1"], "--idle-timeout: must be 0..2147483647, got -1"),
        (["--idle-timeout", "soon"], "--idle-timeout: expected an integer, got 'soon'"),
    ],
)
def test_bad_idle_timeout_is_one_line(args: list[str], message: str) -> None:
    from pycache_d.daemon.config import ConfigError, load

    with pytest.raises(ConfigError, match="^" + message + "$"):
        load(args, {})


def trickle_until_closed(sock: socket.socket, drip: bytes, every: float = 0.2) -> bool:
    """Send ``drip`` a byte at a time, ``every`` seconds, until the daemon closes (True) or KICK_WAIT."""
    deadline = time.monotonic() + KICK_WAIT
    sock.settimeout(every)
    for i in range(len(drip)):
        if time.monotonic() > deadline:
            return False
        try:
            sock.sendall(drip[i : i + 1])
            if sock.recv(1) == b"":
                return True
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            return True
    return False


@pytest.mark.usefixtures("both_transports")
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"get ", id="command-line"),
        pytest.param(b"set k 0 0 100000\r\n", id="data-block"),
    ],
)
def test_a_client_trickling_bytes_is_idle(daemon_factory: Factory, backend: str, head: bytes) -> None:
    """Idleness counts from the last complete command: a byte now and then is not one."""
    d = daemon_factory("--idle-timeout", "1", "-v", backend=backend)
    with d.connect() as sock:
        sock.sendall(b"version\r\n")
        assert read_until(sock, b"\r\n").startswith(b"VERSION ")
        sock.sendall(head)
        assert trickle_until_closed(sock, b"k" * 1000), "a client trickling bytes was never closed"
    d.wait_for_log(r"conn \d+: closing 127\.0\.0\.1:\d+: idle for \d+ s \(idle_timeout\)", timeout=5)
    assert stats(d)["idle_kicks"] == "1"


@pytest.mark.usefixtures("both_transports")
@pytest.mark.parametrize("backend", backend_params())
def test_a_client_sending_slow_complete_commands_is_not_idle(daemon_factory: Factory, backend: str) -> None:
    d = daemon_factory("--idle-timeout", "1", backend=backend)
    with d.connect() as slow, d.connect() as idle:
        # A command every half timeout, split over two reads, until an idle witness is kicked
        # twice over (the witness connected last, so the slow client was due before it).
        deadline = time.monotonic() + KICK_WAIT
        idle.settimeout(0.01)
        closed = False
        while time.monotonic() < deadline and not closed:
            slow.sendall(b"set s 0 0 1\r\n")
            time.sleep(0.25)
            slow.sendall(b"x\r\n")
            assert read_until(slow, b"\r\n") == b"STORED\r\n"
            time.sleep(0.25)
            try:
                closed = idle.recv(1) == b""
            except TimeoutError:
                pass
        assert closed, "the idle witness was not closed"
        for _ in range(6):  # three more timeouts of the same
            assert is_open(slow)
            time.sleep(0.5)
        assert is_open(slow)
    assert stats(d)["idle_kicks"] == "1"
