"""TLS listeners and access warnings, against a real daemon on both store backends.

Certificates come from tests/tlscerts.py (the ``openssl`` command). Clients: pymemcache with a
``tls_context``, Python's ssl module on a blocking socket (versions, client certificates), and
asyncio's TLS streams for pipelining and backpressure with 1 MiB values.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from pymemcache.client.base import Client
from tlscerts import PKI, make_pki

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon, backend_params, read_until, stats  # noqa: E402

MiB = 1024 * 1024
Factory = Callable[..., Daemon]
TLS_LISTENING = re.compile(r"TLS listening on 127\.0\.0\.1:(\d+)$")
WARNING = "reachable beyond this host"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_args(pki: PKI, *, ca: bool = False) -> list[str]:
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    return args + (["--tls-ca", str(pki.ca)] if ca else [])


def client_context(pki: PKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client context that verifies the daemon against the test CA (and presents ``cert``)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def tls_ports(d: Daemon) -> list[int]:
    return [int(m[1]) for line in d.lines if (m := TLS_LISTENING.search(line))]


def talk(ctx: ssl.SSLContext, port: int, data: bytes, until: bytes = b"\r\n") -> bytes:
    """Send ``data`` over TLS to ``port`` and read the reply (ssl errors propagate)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(data)
            return read_until(sock, until)  # type: ignore[arg-type]


def stats_over(ctx: ssl.SSLContext, port: int, group: str = "") -> dict[str, str]:
    reply = talk(ctx, port, f"stats {group}".strip().encode() + b"\r\n", until=b"END\r\n")
    return dict(line.split(" ", 2)[1:] for line in reply.decode().splitlines() if line.startswith("STAT "))


# -- serving over TLS ----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params())
def test_pymemcache_over_tls(daemon_factory: Factory, pki: PKI, backend: str) -> None:
    d = daemon_factory(*tls_args(pki), backend=backend)
    (port,) = tls_ports(d)
    client = Client(("127.0.0.1", port), tls_context=client_context(pki), timeout=5, connect_timeout=5)
    try:
        assert client.set("greeting", b"hello over tls", noreply=False)
        assert client.get("greeting") == b"hello over tls"
        assert client.get_many([f"k{i}" for i in range(3)]) == {}
    finally:
        client.close()
    settings = stats_over(client_context(pki), port, "settings")
    assert settings["ssl_enabled"] == "yes"
    assert settings["ssl_chain_cert"] == str(pki.server_cert)
    assert settings["ssl_key"] == str(pki.server_key)
    assert (settings["ssl_ca_cert"], settings["ssl_verify_mode"]) == ("NULL", "0")
    assert settings["ssl_min_version"] == "tlsv1.2"
    assert settings["backend"] == backend
    assert "time_since_server_cert_refresh" in stats_over(client_context(pki), port)


def test_key_inside_the_certificate_file(daemon_factory: Factory, pki: PKI) -> None:
    d = daemon_factory("--tls-cert", str(pki.server_combined))
    assert talk(client_context(pki), tls_ports(d)[0], b"version\r\n").startswith(b"VERSION ")


def test_without_tls_settings_say_so(daemon: Daemon) -> None:
    s = stats(daemon, "settings")
    assert (s["ssl_enabled"], s["ssl_chain_cert"]) == ("no", "NULL")
    assert "time_since_server_cert_refresh" not in stats(daemon)
    assert not tls_ports(daemon)


@pytest.mark.parametrize("backend", backend_params())
def test_plain_text_client_gets_nothing(daemon_factory: Factory, pki: PKI, backend: str) -> None:
    d = daemon_factory(*tls_args(pki), backend=backend)
    port = tls_ports(d)[0]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"set k 0 0 5\r\nplain\r\nget k\r\nversion\r\n")
        try:
            reply = read_until(sock, None)  # until the daemon closes the connection
        except ConnectionResetError:
            reply = b""
    assert b"STORED" not in reply and b"VERSION" not in reply and b"ERROR" not in reply
    # Nothing of it reached a session: the key was never stored.
    assert talk(client_context(pki), port, b"get k\r\n") == b"END\r\n"


def test_tls_1_1_is_refused(daemon_factory: Factory, pki: PKI) -> None:
    d = daemon_factory(*tls_args(pki))
    port = tls_ports(d)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the test itself uses TLS 1.1 on purpose
        old = client_context(pki)
        # SECLEVEL=0 lets this client offer TLS 1.1 at all: the refusal must be the daemon's.
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    # The daemon answers the hello with an alert, or (uvloop) just closes: never a session.
    with pytest.raises(ssl.SSLError, match="(?i)protocol.version|unexpected.eof"):
        talk(old, port, b"version\r\n")
    # The same client allowed TLS 1.2 gets in.
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    assert talk(old, port, b"version\r\n").startswith(b"VERSION ")


def refused(ctx: ssl.SSLContext, port: int) -> bool:
    """True if the daemon ends the connection instead of answering (TLS 1.3 reports a refused
    client certificate only at the first read, after the client's handshake completed)."""
    try:
        return not talk(ctx, port, b"version\r\n")
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


@pytest.mark.parametrize("backend", backend_params())
def test_client_certificates_when_a_ca_is_given(daemon_factory: Factory, pki: PKI, backend: str) -> None:
    d = daemon_factory(*tls_args(pki, ca=True), backend=backend)
    port = tls_ports(d)[0]
    assert refused(client_context(pki), port)
    assert refused(client_context(pki, pki.stranger_cert, pki.stranger_key), port)
    good = client_context(pki, pki.client_cert, pki.client_key)
    assert talk(good, port, b"set k 0 0 2\r\nok\r\nget k\r\n", until=b"END\r\n") == (
        b"STORED\r\nVALUE k 0 2\r\nok\r\nEND\r\n"
    )
    settings = stats_over(good, port, "settings")
    assert (settings["ssl_ca_cert"], settings["ssl_verify_mode"]) == (str(pki.ca), "2")


def test_notls_listener_and_unix_socket_stay_plain(daemon_factory: Factory, pki: PKI, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    d = daemon_factory(*tls_args(pki), listen=("127.0.0.1", "notls:127.0.0.1:0", f"unix:{path}"))
    (secure,) = tls_ports(d)
    (plain,) = [port for _, port in d.tcp if port != secure]
    assert talk(client_context(pki), secure, b"set k 0 0 1\r\nx\r\n") == b"STORED\r\n"
    with socket.create_connection(("127.0.0.1", plain), timeout=5) as sock:
        sock.sendall(b"get k\r\n")
        assert read_until(sock, b"END\r\n") == b"VALUE k 0 1\r\nx\r\nEND\r\n"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(path)
        sock.sendall(b"get k\r\n")
        assert read_until(sock, b"END\r\n") == b"VALUE k 0 1\r\nx\r\nEND\r\n"


async def pipelined_big_values(port: int, ctx: ssl.SSLContext) -> None:
    """Pipeline sets and gets of 1 MiB values over TLS, reading only once everything was sent."""
    values = [bytes([65 + i]) * MiB for i in range(4)]
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), 10
    )
    try:
        for i, value in enumerate(values):
            writer.write(b"set big%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
        rounds = 8  # 32 MiB of replies: far past every buffer, so the daemon must pause
        for _ in range(rounds):
            writer.write(b"".join(b"get big%d\r\n" % i for i in range(len(values))))
        writer.write(b"version\r\n")
        await asyncio.wait_for(writer.drain(), 30)
        # Read nothing for a moment: 32 MiB of replies cannot all sit in socket buffers, so
        # the daemon must pause (a client reading at once may keep up with it otherwise).
        await asyncio.sleep(0.5)
        for _ in values:
            assert await asyncio.wait_for(reader.readline(), 30) == b"STORED\r\n"
        for _ in range(rounds):
            for i, value in enumerate(values):
                header = await asyncio.wait_for(reader.readline(), 30)
                assert header == b"VALUE big%d 0 %d\r\n" % (i, MiB)
                assert await asyncio.wait_for(reader.readexactly(MiB + 2), 30) == value + b"\r\n"
                assert await asyncio.wait_for(reader.readline(), 30) == b"END\r\n"
        assert (await asyncio.wait_for(reader.readline(), 30)).startswith(b"VERSION ")
    finally:
        writer.close()
        # The TLS shutdown must finish before the loop does, or its transport leaks a warning.
        await asyncio.wait_for(writer.wait_closed(), 10)


@pytest.mark.parametrize("backend", backend_params())
def test_asyncio_client_pipelines_large_values(daemon_factory: Factory, pki: PKI, backend: str) -> None:
    d = daemon_factory(*tls_args(pki), "-I", "2m", "-v", backend=backend)
    asyncio.run(pipelined_big_values(tls_ports(d)[0], client_context(pki)))
    # The replies outran the client: backpressure paused the connection and resumed it.
    assert re.search(r"conn \d+: paused", d.log) and re.search(r"conn \d+: resumed", d.log)


# -- configuration errors and reloads ------------------------------------------------------------


def run_daemon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pycache_d", "-p", "0", *args],
        capture_output=True,
        text=True,
        timeout=20,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (
            lambda p: ["--tls-cert", "/nonexistent.pem"],
            "--tls-cert: cannot read /nonexistent.pem: No such file",
        ),
        (lambda p: ["--tls-key", str(p.server_key)], "--tls-key: needs a certificate (tls_cert) too"),
        (lambda p: ["--tls-cert", str(p.server_cert)], "--tls-cert: " + "{server_cert}: no PEM private key"),
        (
            lambda p: ["--tls-cert", str(p.server_cert), "--tls-key", str(p.client_key)],
            "--tls-key: {client_key}: the key does not match the certificate",
        ),
        (
            lambda p: ["--tls-cert", str(p.server_key), "--tls-key", str(p.server_key)],
            "--tls-cert: {server_key}: no PEM certificate in it",
        ),
    ],
)
def test_bad_tls_files_are_one_line_and_exit_2(
    pki: PKI, make_args: Callable[[PKI], list[str]], message: str
) -> None:
    result = run_daemon(*make_args(pki))
    assert result.returncode == 2
    expected = "pycache-d: error: " + message.format(
        server_cert=pki.server_cert, client_key=pki.client_key, server_key=pki.server_key
    )
    assert result.stderr.startswith(expected)
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_sighup_rereads_the_certificate(daemon_factory: Factory, pki: PKI, tmp_path: Path) -> None:
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    cert.write_bytes(pki.server_cert.read_bytes())
    key.write_bytes(pki.server_key.read_bytes())
    conf = tmp_path / "c.toml"
    conf.write_text(f"tls_cert = '{cert}'\ntls_key = '{key}'\n")
    d = daemon_factory("--config", str(conf))
    port = tls_ports(d)[0]

    def served() -> bytes:
        """The certificate the daemon presents to a new client (DER)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # we only look at it
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as sock:
                der = sock.getpeercert(binary_form=True)
        assert der is not None
        return der

    def der(path: Path) -> bytes:
        return ssl.PEM_cert_to_DER_cert(path.read_text())

    assert served() == der(pki.server_cert)
    # A renewed certificate at the same paths (here: the client one, for a different one).
    cert.write_bytes(pki.client_cert.read_bytes())
    key.write_bytes(pki.client_key.read_bytes())
    mark = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    d.wait_for_log(r"reloaded .*TLS certificate re-read from", start=mark)
    assert served() == der(pki.client_cert)
    # A broken file at reload keeps the certificate in use.
    key.write_text("garbage\n")
    mark = len(d.lines)
    d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
    d.wait_for_log(
        r"reload failed, keeping the current settings: .*tls_key: .*no PEM private key", start=mark
    )
    assert served() == der(pki.client_cert)


# -- access warnings -----------------------------------------------------------------------------


def test_plain_listener_beyond_loopback_is_warned_about(daemon_factory: Factory) -> None:
    d = daemon_factory(listen=("0.0.0.0",))
    warned = [line for line in d.lines if WARNING in line]
    assert len(warned) == 1
    assert ": warning: plain-text listener(s) reachable beyond this host: 0.0.0.0:" in warned[0]


def test_loopback_unix_and_tls_listeners_are_not_warned_about(
    daemon_factory: Factory, pki: PKI, tmp_path: Path
) -> None:
    d = daemon_factory(listen=("127.0.0.1", f"unix:{tmp_path / 's.sock'}"))
    assert not [line for line in d.lines if WARNING in line]
    d = daemon_factory(*tls_args(pki), listen=("0.0.0.0",))
    assert not [line for line in d.lines if WARNING in line]
    assert re.search(r"TLS listening on 0\.0\.0\.0:\d+$", d.log, re.M)


# -- the connection machinery over TLS -----------------------------------------------------------


@pytest.mark.parametrize("backend", backend_params())
def test_idle_timeout_and_stats_conns_over_tls(daemon_factory: Factory, pki: PKI, backend: str) -> None:
    d = daemon_factory(*tls_args(pki), "--idle-timeout", "1", "-v", backend=backend)
    port = tls_ports(d)[0]
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as idle:
            idle.sendall(b"stats conns\r\n")
            conns = read_until(idle, b"END\r\n").decode()  # type: ignore[arg-type]
            # The TLS transport still shows its socket: the connection's fd and peer are known.
            m = re.search(
                r"STAT (\d+):addr tcp:127\.0\.0\.1:\d+\r\nSTAT \1:listen_addr tcp:127\.0\.0\.1:", conns
            )
            assert m
            # Not reading, so not answering the close_notify: the connection ends all the same
            # (not 30 s later, when the TLS shutdown would time out).
            d.wait_for_log(rf"conn {m[1]}: closing .* \(idle_timeout\)", timeout=15)
            d.wait_for_log(rf"conn {m[1]}: closed", timeout=5)
            assert idle.recv(1) == b""  # closed
    st = stats_over(ctx, port)
    assert (st["idle_kicks"], st["curr_connections"]) == ("1", "1")


@pytest.mark.parametrize("backend", backend_params())
def test_sigterm_with_tls_clients_flushes_and_does_not_wait(
    daemon_factory: Factory, pki: PKI, backend: str
) -> None:
    d = daemon_factory(*tls_args(pki), "-I", "2m", backend=backend)
    port = tls_ports(d)[0]
    ctx = client_context(pki)
    value = b"x" * MiB
    assert talk(ctx, port, b"set big 0 0 %d\r\n%s\r\n" % (MiB, value)) == b"STORED\r\n"
    expected = (b"VALUE big 0 %d\r\n%s\r\nEND\r\n" % (MiB, value)) * 8
    with socket.create_connection(("127.0.0.1", port), timeout=15) as raw1:
        with ctx.wrap_socket(raw1, server_hostname="127.0.0.1") as pooled:  # connected, silent
            with socket.create_connection(("127.0.0.1", port), timeout=15) as raw2:
                with ctx.wrap_socket(raw2, server_hostname="127.0.0.1") as busy:
                    busy.sendall(b"get big\r\n" * 8)
                    busy.recv(1)  # the replies have started
                    d.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
                    # Replies already asked for are all delivered, then the connection ends.
                    assert b"V" + read_until(busy, None, limit=len(expected)) == expected  # type: ignore[arg-type]
            assert d.stop() == 0
            assert pooled.recv(1) == b""
    # The silent client did not hold the shutdown until the grace period ran out.
    assert "still busy" not in d.log


def silent_clients(port: int, n: int) -> list[socket.socket]:
    """``n`` TCP connections to ``port`` that never send a ClientHello."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        socks.append(s)
    return socks


def closed_by_daemon(sock: socket.socket) -> bytes | None:
    """What the daemon sent before it closed ``sock`` (None: it did not close within the timeout)."""
    try:
        return read_until(sock, None)
    except ConnectionResetError:
        return b""
    except TimeoutError:
        return None


def unix_stats(path: Path) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        return stats_on(sock)


def stats_on(sock: socket.socket) -> dict[str, str]:
    """``stats`` over the open connection ``sock``."""
    sock.sendall(b"stats\r\n")
    lines = read_until(sock, b"END\r\n").decode().splitlines()[:-1]
    return dict(line.split(" ", 2)[1:] for line in lines)


@pytest.mark.parametrize("backend", backend_params())
def test_stalled_handshakes_count_against_the_limit_and_end_at_the_deadline(
    daemon_factory: Factory, pki: PKI, backend: str, tmp_path: Path
) -> None:
    """Many raw TCP clients that never start TLS: -c refuses the rest, the deadline frees them."""
    admin = tmp_path / "plain.sock"  # a plain way in, for stats
    d = daemon_factory(
        *tls_args(pki),
        "-c",
        "201",
        backend=backend,
        listen=("127.0.0.1", f"unix:{admin}"),
        # long enough that connecting 250 clients on a busy machine ends before the first
        # deadline, so the 50 past the limit meet 200 handshakes still counted
        patch={"pycache_d.net.tls.HANDSHAKE_TIMEOUT": 15.0},
    )
    port = tls_ports(d)[0]
    stalled = silent_clients(port, 200)
    # The stats connection stays open while the limit is tested: were it closed, its slot would
    # go to whichever of the 50 came after the daemon saw it go.
    holder = socket.socket(socket.AF_UNIX)
    try:
        holder.settimeout(10)
        holder.connect(str(admin))
        # With the stats connection, the limit: counted while still in their handshake (once
        # the daemon has accepted them all: connect() returns when the kernel queued one).
        deadline = time.monotonic() + 60
        while (st := stats_on(holder))["total_connections"] != "201" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (st["curr_connections"], st["total_connections"]) == ("201", "201")
        # memcached's treatment past the limit: plain text, before any TLS.
        for s in silent_clients(port, 50):
            assert closed_by_daemon(s) == b"ERROR Too many open connections\r\n"
            s.close()
        holder.close()
        # At the deadline every stalled handshake ends.
        for s in stalled:
            assert closed_by_daemon(s) == b""
    finally:
        holder.close()
        for s in stalled:
            s.close()
    deadline = time.monotonic() + 10
    while (st := unix_stats(admin))["ssl_handshake_errors"] != "200" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (st["ssl_handshake_errors"], st["rejected_connections"]) == ("200", "50")
    assert st["curr_connections"] == "1"  # every slot is free again
    assert talk(client_context(pki), port, b"version\r\n").startswith(b"VERSION ")


def test_a_failed_handshake_frees_its_slot(daemon_factory: Factory, pki: PKI, tmp_path: Path) -> None:
    admin = tmp_path / "plain.sock"
    d = daemon_factory(*tls_args(pki), "-c", "2", listen=("127.0.0.1", f"unix:{admin}"))
    port = tls_ports(d)[0]
    for _ in range(3):
        with pytest.raises(ssl.SSLError):
            talk(ssl.create_default_context(), port, b"version\r\n")  # does not trust the test CA
    deadline = time.monotonic() + 10
    while (st := unix_stats(admin))["ssl_handshake_errors"] != "3" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (st["ssl_handshake_errors"], st["curr_connections"]) == ("3", "1")  # only the stats one
    assert talk(client_context(pki), port, b"version\r\n").startswith(b"VERSION ")
