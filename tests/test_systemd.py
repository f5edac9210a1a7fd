"""Running under systemd, without systemd: sd_notify, the watchdog, socket activation, journald lines.

A real daemon process is started with ``$NOTIFY_SOCKET`` naming a datagram socket the test
reads (a path, and an abstract ``@name``), so every message is the one systemd would get.
Socket activation goes through ``systemd-socket-activate`` (skipped when it is missing), which
binds, waits for the first client, and execs the daemon with ``LISTEN_FDS``/``LISTEN_PID``.
A real systemd as PID 1 is exercised by tests/system/.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pycache_d import log as logmod
from pycache_d.daemon import systemd

pytest.register_assert_rewrite("daemon")
from daemon import Daemon, read_until  # noqa: E402

needs_socket_activate = pytest.mark.skipif(
    shutil.which("systemd-socket-activate") is None,
    reason="systemd-socket-activate not installed (package systemd)",
)

#: Variables of the test runner's own service manager that must not reach the daemon under test.
_SYSTEMD_VARS = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_PID",
    "LISTEN_FDS",
    "JOURNAL_STREAM",
)


@pytest.fixture(autouse=True)
def _no_inherited_systemd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SYSTEMD_VARS + ("LISTEN_FDNAMES",):
        monkeypatch.delenv(name, raising=False)


class NotifyReceiver:
    """The service manager's end of ``$NOTIFY_SOCKET``: collects every message with its arrival time."""

    def __init__(self, kind: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._dir = tempfile.mkdtemp(prefix="sdn-")  # short: sun_path holds 108 bytes
        if kind == "path":
            path = os.path.join(self._dir, "notify")
            self.sock.bind(path)
            self.address = path
        else:
            name = f"pycache-d-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        #: ``(monotonic time, {key: value})`` per datagram, in arrival order.
        self.messages: list[tuple[float, dict[str, str]]] = []

    def close(self) -> None:
        self.sock.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def wait_for(self, pred: Callable[[dict[str, str]], bool], timeout: float = 10.0) -> dict[str, str]:
        """Receive until a message satisfies ``pred``; return it (AssertionError on timeout)."""
        for _, fields in self.messages:
            if pred(fields):
                return fields
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.messages.append((time.monotonic(), fields))
            if pred(fields):
                return fields
        raise AssertionError(f"no such notification; got {[m for _, m in self.messages]}")

    def collect(self, seconds: float) -> None:
        """Receive everything that arrives in the next ``seconds``."""
        try:
            self.wait_for(lambda _: False, seconds)
        except AssertionError:
            pass

    def keys(self) -> list[str]:
        """The message types in arrival order (the first key of each message)."""
        return [next(iter(m)) for _, m in self.messages]


@pytest.fixture(params=["path", "abstract"])
def notify(request: pytest.FixtureRequest) -> Iterator[NotifyReceiver]:
    r = NotifyReceiver(request.param)
    yield r
    r.close()


def has(key: str, value: str = "1") -> Callable[[dict[str, str]], bool]:
    return lambda m: m.get(key) == value


# -- notifications from a real daemon ---------------------------------------------------------------


def test_ready_after_listening_then_stopping(notify: NotifyReceiver) -> None:
    d = Daemon(env={"NOTIFY_SOCKET": notify.address})
    with d:
        notify.wait_for(has("READY"))
        # Startup announced itself before READY, and READY came only once the port accepts.
        assert notify.keys()[:2] == ["STATUS", "READY"], notify.messages
        assert notify.messages[0][1]["STATUS"].startswith("starting")
        assert d.request(b"version\r\n").startswith(b"VERSION ")
        ready = notify.messages[1][1]
        assert ready["STATUS"].startswith("serving: 0 items, 0 of 64 MiB, hit ratio n/a, ")
        assert "WATCHDOG" not in notify.keys()  # no WATCHDOG_USEC, no pings
        assert d.stop() == 0
    stopping = notify.wait_for(has("STOPPING"), 5)
    assert stopping["STATUS"] == "shutting down"
    assert notify.keys().count("READY") == 1


def test_status_follows_items_hits_and_connections(notify: NotifyReceiver) -> None:
    # A fast watchdog makes the status refresh with each ping (every 0.1 s).
    with Daemon("-m", "32", env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000"}) as d:
        notify.wait_for(has("READY"))
        with d.connect() as sock:
            sock.sendall(b"set k 0 0 5\r\nhello\r\nget k\r\nget nope\r\n")
            assert read_until(sock, b"END\r\nEND\r\n").endswith(b"END\r\nEND\r\n")
            status = notify.wait_for(lambda m: "1 items" in m.get("STATUS", ""), 5)["STATUS"]
            assert "hit ratio 50.0%" in status and "of 32 MiB" in status, status
            assert status.endswith(", 1 connections"), status
        notify.wait_for(
            lambda m: m.get("STATUS", "").endswith(", 0 connections") and "1 items" in m["STATUS"]
        )


def test_watchdog_pings_at_half_the_timeout(notify: NotifyReceiver) -> None:
    with Daemon(env={"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "400000"}):
        notify.wait_for(has("READY"))
        notify.collect(2.0)
    pings = [t for t, m in notify.messages if m.get("WATCHDOG") == "1"]
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    assert len(pings) >= 6, notify.messages
    assert 0.15 <= statistics.median(gaps) <= 0.3, gaps  # every 0.2 s: half of 0.4 s
    assert min(gaps) >= 0.1, gaps


def test_watchdog_pid_of_another_process_disables_the_pings(notify: NotifyReceiver) -> None:
    env = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    with Daemon(env=env):
        notify.wait_for(has("READY"))
        notify.collect(0.8)
    assert "WATCHDOG" not in notify.keys(), notify.messages


def test_reload_brackets_with_reloading_and_ready(notify: NotifyReceiver, tmp_path: Path) -> None:
    conf = tmp_path / "pycache-d.toml"
    conf.write_text("memory_limit = 64\n")
    with Daemon("--config", str(conf), env={"NOTIFY_SOCKET": notify.address}) as d:
        notify.wait_for(has("READY"))
        conf.write_text("memory_limit = 16\n")
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        d.proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for(has("RELOADING"), 5)
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        # systemd 253+ matches MONOTONIC_USEC against the time it sent SIGHUP.
        assert before <= int(reloading["MONOTONIC_USEC"]) <= after
        ready = notify.wait_for(lambda m: m.get("READY") == "1" and "of 16 MiB" in m["STATUS"], 5)
        assert ready["STATUS"].startswith("serving: ")
        assert notify.keys() == ["STATUS", "READY", "RELOADING", "READY"]


def test_notify_socket_nobody_listens_on_is_harmless(tmp_path: Path) -> None:
    with Daemon(env={"NOTIFY_SOCKET": str(tmp_path / "absent"), "WATCHDOG_USEC": "200000"}) as d:
        time.sleep(0.3)
        assert d.request(b"version\r\n").startswith(b"VERSION ")
        assert d.stop() == 0
    # Said once, not at every status refresh.
    assert d.log.count("warning: cannot notify ") == 1, d.log


# -- the Notifier in-process --------------------------------------------------------------------------


def test_notifier_sends_nothing_without_notify_socket() -> None:
    n = systemd.Notifier.from_environ({})
    assert not n.enabled and n.watchdog_interval == 0
    assert n.send("READY=1") is False


def test_notifier_reads_the_watchdog_from_the_environment(notify: NotifyReceiver) -> None:
    mine = {"NOTIFY_SOCKET": notify.address, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert systemd.Notifier.from_environ(mine).watchdog_interval == 1.5
    assert systemd.Notifier.from_environ({**mine, "WATCHDOG_PID": "1"}).watchdog_interval == 0
    assert systemd.Notifier.from_environ({**mine, "NOTIFY_SOCKET": ""}).watchdog_interval == 0
    n = systemd.Notifier.from_environ(mine)
    assert n.send("STATUS=a=b", "X=1")
    assert notify.wait_for(has("X"), 2) == {"STATUS": "a=b", "X": "1"}


def test_listen_fds_ignores_and_clears_another_process_variables() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b", "OTHER": "x"}
    assert systemd.listen_fds(env) == []
    assert env == {"OTHER": "x"}
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}
    assert systemd.listen_fds(env) == [] and env == {}


# -- socket activation --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_client(connect: Callable[[], socket.socket], result: list[bytes]) -> threading.Thread:
    """Connect and ask ``version`` in a thread: systemd-socket-activate execs on the first client."""

    def run() -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                with connect() as sock:
                    sock.sendall(b"version\r\n")
                    result.append(read_until(sock, b"\r\n"))
                    return
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@needs_socket_activate
def test_socket_activation_serves_the_passed_sockets(tmp_path: Path) -> None:
    port, unused = free_port(), free_port()
    path = str(tmp_path / "activated.sock")
    # The configured listeners (the later -p wins over the helper's -p 0) must stay closed.
    d = Daemon("-p", str(unused), listen=("127.0.0.1", f"unix:{tmp_path}/configured.sock"))
    d.argv = [
        "systemd-socket-activate",
        *("-l", f"127.0.0.1:{port}", "-l", path, "--fdname=memcache:memcache-unix"),
        *d.argv,
    ]
    result: list[bytes] = []
    client = first_client(lambda: socket.create_connection(("127.0.0.1", port), timeout=5), result)
    with d:
        client.join(10)
        assert result and result[0].startswith(b"VERSION "), result  # the client that woke it
        d.wait_for_log(rf"socket activation: fd 3 named memcache is 127\.0\.0\.1:{port}$")
        d.wait_for_log(rf"socket activation: fd 4 named memcache-unix is unix:{path}$")
        assert d.tcp == [("127.0.0.1", port)] and d.unix == [path]
        with d.connect() as sock:
            sock.sendall(b"set k 0 0 2\r\nhi\r\n")
            assert read_until(sock, b"\r\n") == b"STORED\r\n"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(b"get k\r\n")
            assert read_until(sock, b"END\r\n") == b"VALUE k 0 2\r\nhi\r\nEND\r\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", unused), timeout=2).close()
        assert not (tmp_path / "configured.sock").exists()
        assert d.stop() == 0
    assert os.path.exists(path), "the daemon removed a socket file it does not own"


@needs_socket_activate
def test_socket_activation_refuses_a_datagram_socket() -> None:
    port = free_port()
    d = Daemon()
    d.argv = ["systemd-socket-activate", "--datagram", "-l", f"127.0.0.1:{port}", *d.argv]
    d.proc = subprocess.Popen(d.argv, env=d.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            while d.proc.poll() is None and time.monotonic() < deadline:
                udp.sendto(b"x", ("127.0.0.1", port))  # the first datagram makes it exec the daemon
                time.sleep(0.1)
        _, err = d.proc.communicate(timeout=10)
    finally:
        d.kill()
    assert d.proc.returncode == 1, err
    assert b"socket activation: passed fd 3 (unknown) is not a listening TCP or unix stream socket" in err


def test_socket_activation_with_a_missing_fd_fails_cleanly() -> None:
    d = Daemon()
    # The wrapper execs the daemon in its own process, so LISTEN_PID=$$ names the daemon.
    d.argv = ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "sh", *d.argv]
    r = subprocess.run(d.argv, env=d.env, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert b"socket activation: passed fd 3 is not a usable socket (LISTEN_FDS=1): " in r.stderr
    assert b"Traceback" not in r.stderr


def test_listen_pid_of_another_process_is_ignored() -> None:
    with Daemon(env={"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "x"}) as d:
        assert "socket activation" not in d.log
        assert d.request(b"version\r\n").startswith(b"VERSION ")


# -- journald lines ---------------------------------------------------------------------------------


def run_logging_daemon(tmp_path: Path, journal_stream: Callable[[os.stat_result], str]) -> list[str]:
    """Run a daemon with stderr in a file and ``JOURNAL_STREAM`` from that file's stat; return its lines.

    It logs at every level: -vv (connection events, requests), a reload with a restart-only change
    (warning) and one with an invalid file (error).
    """
    log_file = tmp_path / "stderr"
    conf = tmp_path / "pycache-d.toml"
    conf.write_text("memory_limit = 64\n")
    d = Daemon("-vv", "--config", str(conf))
    with open(log_file, "wb") as err:
        d.env["JOURNAL_STREAM"] = journal_stream(os.fstat(err.fileno()))
        proc = subprocess.Popen(d.argv, env=d.env, stdin=subprocess.DEVNULL, stderr=err)
    try:

        def wait_for(text: str) -> list[str]:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                lines = log_file.read_text().splitlines()
                if any(text in line for line in lines):
                    return lines
                assert proc.poll() is None, log_file.read_text()
                time.sleep(0.05)
            raise AssertionError(f"no {text!r} in {log_file.read_text()}")

        lines = wait_for(" started: ")
        port = int(next(line for line in lines if "listening on 127.0.0.1:" in line).rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"version\r\n")
            read_until(sock, b"\r\n")
        conf.write_text('memory_limit = 64\nunix_mode = "0600"\n')
        proc.send_signal(signal.SIGHUP)
        wait_for("restart the daemon")
        conf.write_text("memory_limit = -1\n")
        proc.send_signal(signal.SIGHUP)
        wait_for("reload failed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log_file.read_text().splitlines()


def test_journald_lines_carry_priorities_and_no_prefix(tmp_path: Path) -> None:
    lines = run_logging_daemon(tmp_path, lambda st: f"{st.st_dev}:{st.st_ino}")
    assert all(line[:3] in ("<3>", "<4>", "<5>", "<6>", "<7>") for line in lines), lines
    assert not any("pycache-d[" in line for line in lines), lines
    by_prio = {
        p: [line[3:] for line in lines if line.startswith(p)] for p in ("<3>", "<4>", "<5>", "<6>", "<7>")
    }
    assert any(line.startswith("reload failed, keeping the current settings: ") for line in by_prio["<3>"])
    assert any(line.startswith("reload: unix_mode changed in ") for line in by_prio["<4>"])
    assert any(line.startswith("listening on 127.0.0.1:") for line in by_prio["<5>"])
    assert any(line.endswith(": closed") for line in by_prio["<6>"]), by_prio["<6>"]
    assert by_prio["<7>"], lines  # -vv: every request


def test_other_journal_stream_keeps_the_plain_format(tmp_path: Path) -> None:
    lines = run_logging_daemon(tmp_path, lambda st: f"{st.st_dev}:{st.st_ino + 1}")
    assert lines and all(line.startswith("pycache-d[") for line in lines), lines


def test_journal_formatter_prefixes_every_traceback_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "pycache_d", logging.ERROR, __file__, 1, "failed: %s", ("x",), sys.exc_info()
        )
    text = logmod._JournalFormatter().format(record)
    lines = text.split("\n")
    assert lines[0] == "<3>failed: x" and len(lines) > 3
    assert all(line.startswith("<3>") for line in lines), lines
    assert lines[-1] == "<3>RuntimeError: boom"


def saved_snapshot(tmp_path: Path, items: int) -> str:
    """Save a snapshot of ``items`` items (k0, k1, ...) in ``tmp_path``; return its path."""
    from pycache_d.daemon import snapshot
    from pycache_d.store import PyStore

    store = PyStore()
    for i in range(items):
        store.set(b"k%d" % i, b"v")
    path = str(tmp_path / "pycache-d.snapshot")
    snapshot.save(store, path)
    return path


def test_snapshot_loading_shows_in_the_status_before_ready(notify: NotifyReceiver, tmp_path: Path) -> None:
    path = saved_snapshot(tmp_path, 3)
    with Daemon("--snapshot", path, env={"NOTIFY_SOCKET": notify.address}) as d:
        notify.wait_for(has("READY"))
        statuses = [m[1]["STATUS"] for m in notify.messages if "STATUS" in m[1]]
        assert "loading snapshot: 0% (0 of 3 items)" in statuses, notify.messages
        assert notify.keys().index("READY") > 0  # READY only after the load
        assert d.request(b"get k2\r\n", until=b"END\r\n") == b"VALUE k2 0 1\r\nv\r\nEND\r\n"
        # The start line of the load says what it found.
        d.wait_for_log(rf"notice: loading snapshot {re.escape(path)}: \d+ B, 3 items$")


def test_load_and_save_extend_the_units_timeouts(notify: NotifyReceiver, tmp_path: Path) -> None:
    from pycache_d.daemon import warmstart

    path = saved_snapshot(tmp_path, 5)
    d = Daemon("--snapshot", path, env={"NOTIFY_SOCKET": notify.address}).start()
    notify.wait_for(has("READY"))
    extend = str(int(warmstart.EXTEND_TIMEOUT * 1e6))
    before_ready = [m for _, m in notify.messages[: notify.keys().index("READY")]]
    loading = [m for m in before_ready if m.get("STATUS", "").startswith("loading snapshot: ")]
    assert loading and all(m["EXTEND_TIMEOUT_USEC"] == extend for m in loading), before_ready
    assert any(m.get("STATUS", "").startswith("checking snapshot: ") for m in before_ready), before_ready
    d.request(b"set k9 0 0 1\r\nv\r\n")
    assert d.stop() == 0
    notify.wait_for(lambda m: m.get("STATUS", "").startswith("saving snapshot: writing "))
    after_stopping = [m for _, m in notify.messages[notify.keys().index("STOPPING") :]]
    saving = [m for m in after_stopping if "EXTEND_TIMEOUT_USEC" in m]
    assert [m["STATUS"] for m in saving[:2]] == [
        "saving snapshot: 0% (0 of 6 items)",
        "saving snapshot: 100% (6 of 6 items)",
    ]
    assert int(saving[-1]["EXTEND_TIMEOUT_USEC"]) > int(extend)  # the fsync's allowance on top
