"""The real daemon, as users run it (``python -m pycache_d``), on both store backends.

Lifecycle (signals, exit statuses, one-line errors), listeners (TCP, IPv6, unix sockets),
connection limits, backpressure against a real client, and pymemcache as a third-party client.
The glue's bounds are provoked in-process with small numbers in test_server_glue.py.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pymemcache.client.base import Client

from pycache_d._version import __version__
from pycache_d.net.connection import MAX_UNSENT

# The daemon fixtures (daemon, daemon_backend, daemon_factory) live in tests/daemon.py, loaded as
# a plugin; registered for assertion rewriting first because this module imports it too.
pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import TRANSPORT_LOG, Daemon, native_built, read_until, stats  # noqa: E402

# Every test runs on the compiled socket driver and on uvloop's transports.
pytestmark = pytest.mark.usefixtures("both_transports")

MiB = 1024 * 1024
Factory = Callable[..., Daemon]


def run_daemon(
    *args: str, env: dict[str, str] | None = None, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    """Run the daemon expecting it to exit by itself (a startup failure)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pycache_d", *args],
        capture_output=True,
        text=True,
        timeout=10,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


# -- lifecycle ------------------------------------------------------------------------------------


def test_start_serve_and_stop_on_sigterm(daemon: Daemon, daemon_backend: str, both_transports: str) -> None:
    assert daemon.request(b"version\r\n").startswith(b"VERSION ")
    assert f"started: backend {daemon_backend}, memory limit 64m" in daemon.log
    assert "event loop uvloop" in daemon.log
    assert TRANSPORT_LOG[both_transports] in daemon.log
    assert stats(daemon, "settings")["backend"] == daemon_backend
    assert daemon.stop() == 0
    assert "SIGTERM: shutting down" in daemon.log
    assert daemon.lines[-1].endswith("notice: stopped")
    assert "Traceback" not in daemon.log


def test_sigint_also_exits_cleanly(daemon_factory: Factory) -> None:
    d = daemon_factory()
    assert d.stop(signal.SIGINT) == 0
    assert "SIGINT: shutting down" in d.log


def test_sigterm_finishes_a_pipelined_batch(daemon: Daemon) -> None:
    n = 3000
    batch = b"".join(b"set k%d 0 0 5\r\nv%04d\r\nget k%d\r\n" % (i, i % 10000, i) for i in range(n))
    with daemon.connect() as sock:
        sock.sendall(batch)
        first = sock.recv(8)  # the daemon is answering the batch...
        daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        rest = read_until(sock, None)  # ...and finishes it before it closes the connection
    replies = first + rest
    assert replies.count(b"STORED\r\n") == n
    assert replies.count(b"END\r\n") == n
    assert replies.endswith(b"VALUE k%d 0 5\r\nv%04d\r\nEND\r\n" % (n - 1, (n - 1) % 10000))
    assert daemon.stop() == 0


def test_idle_clients_do_not_delay_shutdown(daemon: Daemon) -> None:
    socks = [daemon.connect() for _ in range(5)]
    for s in socks:
        s.sendall(b"version\r\n")
        assert s.recv(100).startswith(b"VERSION")
    started = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - started < 3
    for s in socks:
        assert s.recv(100) == b""  # closed by the daemon
        s.close()


def test_sighup_reloads_memory_limit_and_keeps_settings_on_a_bad_file(
    daemon_factory: Factory, daemon_backend: str, tmp_path: Path
) -> None:
    conf = tmp_path / "pycache-d.toml"
    conf.write_text("memory_limit = 16\nmax_connections = 50\n")
    d = daemon_factory("--config", str(conf), backend=daemon_backend)
    assert stats(d)["limit_maxbytes"] == str(16 * MiB)
    conf.write_text("memory_limit = 32\nmax_connections = 60\nmax_item_size = '2m'\nverbose = 1\n")
    mark = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    line = d.wait_for_log("reloaded", start=mark).string
    assert "memory_limit 16m -> 32m" in line
    assert "max_connections 50 -> 60" in line
    settings = stats(d, "settings")
    assert settings["maxbytes"] == str(32 * MiB)
    assert settings["maxconns"] == "60"
    assert settings["item_size_max"] == str(2 * MiB)
    assert settings["verbosity"] == "1"
    assert stats(d)["limit_maxbytes"] == str(32 * MiB)

    conf.write_text("memory_limit = 'plenty'\n")
    mark = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert "memory_limit: expected a positive size" in d.wait_for_log("reload failed", start=mark).string
    assert stats(d)["limit_maxbytes"] == str(32 * MiB)
    assert d.stop() == 0


def test_flag_beats_the_file_on_reload_too(daemon_factory: Factory, tmp_path: Path) -> None:
    conf = tmp_path / "pycache-d.toml"
    conf.write_text("memory_limit = 16\n")
    d = daemon_factory("--config", str(conf), "-m", "8", backend="python")
    conf.write_text("memory_limit = 24\nmax_items = 7\n")
    mark = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    assert "max_items 0 -> 7" in d.wait_for_log("reloaded", start=mark).string
    assert stats(d)["limit_maxbytes"] == str(8 * MiB)


def test_environment_configures_the_daemon(daemon_factory: Factory) -> None:
    d = daemon_factory(env={"PYCACHE_D_MEMORY_LIMIT": "12", "PYCACHE_D_MAX_CONNECTIONS": "33"})
    s = stats(d, "settings")
    assert (s["maxbytes"], s["maxconns"]) == (str(12 * MiB), "33")


def test_log_is_quiet_by_default_and_per_request_at_vv(daemon_factory: Factory) -> None:
    quiet = daemon_factory(backend="python")
    quiet.request(b"version\r\n")
    loud = daemon_factory("-vv", backend="python")
    loud.request(b"version\r\n")
    loud.wait_for_log(r"info: conn \d+: closed")
    assert quiet.stop() == 0 and loud.stop() == 0
    assert " conn " not in quiet.log
    assert all(line.startswith(f"pycache-d[{quiet.pid}]: notice: ") for line in quiet.lines)
    assert "info: conn" in loud.log
    assert "debug: conn" in loud.log and "version" in loud.log


def test_verbosity_command_changes_the_log_level(daemon_factory: Factory) -> None:
    d = daemon_factory(backend="python")
    assert d.request(b"verbosity 1\r\n") == b"OK\r\n"
    assert stats(d, "settings")["verbosity"] == "1"
    d.wait_for_log(r"info: conn \d+: opened from 127\.0\.0\.1:")


def test_console_script() -> None:
    script = Path(sys.executable).with_name("pycache-d")
    if not script.exists():
        pytest.skip("the pycache-d script is not installed next to this interpreter")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    assert result.stdout.startswith("pycache-d ")


# -- startup failures ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["-p", "eleven"], {}, "pycache-d: error: --port: expected an integer, got 'eleven'"),
        (["--frobnicate"], {}, "pycache-d: error: unrecognized arguments: --frobnicate"),
        (["-I", "5g"], {}, "pycache-d: error: --max-item-size: must be between 1k and 1024m"),
        ([], {"PYCACHE_D_PORT": "-1"}, "pycache-d: error: PYCACHE_D_PORT: must be 0..65535, got -1"),
        (
            ["--config", "/nonexistent.toml"],
            {},
            "pycache-d: error: /nonexistent.toml: cannot read config file",
        ),
    ],
)
def test_bad_settings_exit_2_with_one_line(args: list[str], env: dict[str, str], expected: str) -> None:
    result = run_daemon(*args, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(expected)
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_native_backend_missing_exits_2() -> None:
    result = run_daemon("-p", "0", "--backend", "native", env={"PYCACHE_D_NO_EXTENSIONS": "1"})
    assert result.returncode == 2
    assert result.stderr.startswith("pycache-d: error: --backend: the native backend is not built")
    assert result.stderr.count("\n") == 1


def test_auto_backend_without_extension_is_python(daemon_factory: Factory) -> None:
    d = daemon_factory(env={"PYCACHE_D_NO_EXTENSIONS": "1"})
    assert stats(d, "settings")["backend"] == "python"


def test_port_in_use_exits_1_with_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_daemon("-p", str(port), "-l", "127.0.0.1")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


def test_help_and_version_exit_0() -> None:
    assert "--max-connections" in run_daemon("--help").stdout
    version = run_daemon("--version")
    assert (version.returncode, version.stdout.split()[0]) == (0, "pycache-d")


# -- listeners -------------------------------------------------------------------------------------


def test_unix_socket_with_mode_replacing_a_stale_file(daemon_factory: Factory, tmp_path: Path) -> None:
    path = str(tmp_path / "pc.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)  # a socket file nobody listens on, as a killed daemon leaves behind
    stale.close()
    d = daemon_factory("-l", f"unix:{path}", "--unix-mode", "0660", listen=())
    assert d.unix == [path] and d.tcp == []
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert d.request(b"version\r\n").startswith(b"VERSION")
    assert stats(d, "settings")["domain_socket"] == path
    assert d.stop() == 0
    assert not os.path.exists(path)


def test_unix_socket_in_use_is_refused(daemon_factory: Factory, tmp_path: Path) -> None:
    path = str(tmp_path / "pc.sock")
    daemon_factory("-l", f"unix:{path}", listen=())
    result = run_daemon("-l", f"unix:{path}")
    assert result.returncode == 1
    assert f"cannot listen on unix:{path}: address already in use" in result.stderr


@pytest.mark.parametrize(
    ("listen", "reason"),
    [
        ("unix:{tmp}/missing-dir/pc.sock", "no such file or directory"),
        ("unix:{tmp}/plain-file", "the file exists and is not a socket"),
        ("no-such-host.invalid", "cannot listen on no-such-host.invalid:0: "),
    ],
)
def test_unusable_listen_address_exits_1(tmp_path: Path, listen: str, reason: str) -> None:
    (tmp_path / "plain-file").write_text("precious")
    result = run_daemon("-p", "0", "-l", listen.format(tmp=tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert reason in result.stderr
    assert (tmp_path / "plain-file").read_text() == "precious"


def test_several_listeners_and_ipv6(daemon_factory: Factory) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    d = daemon_factory(listen=("127.0.0.1", "::1"))
    assert [host for host, _ in d.tcp] == ["127.0.0.1", "::1"]
    assert "listening on [::1]:" in d.log
    with socket.create_connection(d.tcp[1], timeout=5) as sock:
        sock.sendall(b"version\r\n")
        assert sock.recv(100).startswith(b"VERSION")


# -- connection limits and backpressure ------------------------------------------------------------


def test_max_connections_refusal_matches_memcached(daemon_factory: Factory) -> None:
    d = daemon_factory("-c", "2")
    kept = [d.connect(), d.connect()]
    for s in kept:
        s.sendall(b"version\r\n")
        assert s.recv(100).startswith(b"VERSION")
    with d.connect() as extra:
        assert read_until(extra, None) == b"ERROR Too many open connections\r\n"
    d.wait_for_log("rejected 1 connection")
    kept[0].sendall(b"stats\r\n")
    s = {}
    for line in read_until(kept[0], b"END\r\n").decode().splitlines()[:-1]:
        _, k, v = line.split(" ", 2)
        s[k] = v
    assert (s["curr_connections"], s["rejected_connections"], s["max_connections"]) == ("2", "1", "2")
    for sock in kept:
        sock.close()


def test_client_that_never_reads_is_paused_and_memory_stays_bounded(daemon: Daemon) -> None:
    value = b"x" * (512 * 1024)
    assert daemon.request(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value)) == b"STORED\r\n"
    rss_before = daemon.rss()
    hog = daemon.connect()
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    hog.setblocking(False)
    request = b"get big\r\n" * 1000  # half a megabyte of replies per line, never read
    sent = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        try:
            sent += hog.send(request)
        except BlockingIOError:
            time.sleep(0.01)  # the daemon stopped reading from us: its backpressure
    asked = sent // len(b"get big\r\n") * len(value)
    # Another client is still served promptly.
    with daemon.connect(timeout=2) as other:
        began = time.monotonic()
        other.sendall(b"get big\r\n")
        assert read_until(other, b"END\r\n").startswith(b"VALUE big 0 %d\r\n" % len(value))
        assert time.monotonic() - began < 1
    conns = stats(daemon, "conns")
    assert "conn_mwrite" in conns.values()  # the hog is paused on its unsent replies
    # The hog asked for gigabytes; the daemon holds only a bounded amount of them.
    assert asked > 1024 * MiB
    # (It grows by about 16 MiB; without backpressure it would be gigabytes.)
    assert daemon.rss() - rss_before < MAX_UNSENT + 32 * MiB
    hog.close()


def test_client_pipelining_gets_of_large_items_gets_every_byte(daemon: Daemon) -> None:
    # Backpressure and the unsent-bytes bound must not cut off a client that does read: here one
    # read of requests asks for 300 MiB, right after cheap traffic on the same connection.
    value = b"v" * (1024 * 1024 - 100)
    n = 300
    version = daemon.request(b"version\r\n")
    with daemon.connect(timeout=10) as sock:
        sock.sendall(b"set big 0 0 %d\r\n%s\r\n" % (len(value), value) + b"version\r\n" * 1000)
        cheap = b"STORED\r\n" + version * 1000
        assert read_until(sock, cheap) == cheap
        sender = threading.Thread(target=sock.sendall, args=(b"get big\r\n" * n,))
        sender.start()
        reply = len(b"VALUE big 0 %d\r\n" % len(value)) + len(value) + len(b"\r\nEND\r\n")
        received = 0
        while received < n * reply:
            chunk = sock.recv(1 << 22)
            assert chunk, f"disconnected after {received} of {n * reply} bytes"
            received += len(chunk)
        sender.join()
    assert received == n * reply
    assert "disconnecting" not in daemon.log


# -- a third-party client --------------------------------------------------------------------------


def test_pymemcache_against_the_daemon(daemon: Daemon) -> None:
    client = Client(daemon.address, connect_timeout=5, timeout=5, default_noreply=False)
    try:
        assert client.set("a", b"1")
        assert client.get("a") == b"1"
        value, cas = client.gets("a")
        assert value == b"1" and cas is not None
        assert client.cas("a", b"2", cas) is True
        assert client.cas("a", b"3", cas) is False  # stale token
        assert client.get("a") == b"2"
        assert client.incr("a", 40) == 42
        assert client.decr("a", 2) == 40
        assert client.add("a", b"x") is False
        assert client.touch("a", 100) is True
        assert client.touch("missing", 100) is False
        assert client.set_many({"b": b"B", "c": b"C"}) == []
        assert client.get_many(["a", "b", "c", "zz"]) == {"a": b"40", "b": b"B", "c": b"C"}
        assert client.delete("b") is True
        assert client.delete("b") is False
        assert client.get("b") is None
        assert client.version() == b"1.6.18-pycache-d-" + __version__.encode()  # libmemcached wants 1.x
    finally:
        client.close()


def test_native_backend_guard() -> None:
    # The daemon fixtures skip native when it is not built; say so loudly when that happens in a
    # build that is meant to have it.
    if not os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
        assert native_built()
