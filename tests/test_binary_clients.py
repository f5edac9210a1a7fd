"""Real clients against a real daemon: libmemcached's tools, pylibmc and PHP's Memcached, text and
binary, with and without SASL, on both store backends; ASCII auth, the auth file's reload and its
secrecy; the bounds of a binary connection.

libmemcached (Debian's libmemcached-tools; pylibmc built against Debian's libmemcached-dev;
php-memcached) is what most C, Python and PHP clients run on; ``memccapable`` is libmemcached's
own conformance test of both protocols. Each tool's effect is checked with a plain-socket request.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tlscerts import PKI, make_pki

from pycache_d._version import __version__
from pycache_d.protocol import binary as b

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]


from daemon import Daemon, backend_params, read_until  # noqa: E402

Factory = Callable[..., Daemon]
USER, PASSWORD = "alice", "s3cret-pw"
needs_tools = pytest.mark.skipif(
    shutil.which("memcping") is None, reason="libmemcached-tools not installed (make apt)"
)


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "auth"
    path.write_text(f"{USER}:{PASSWORD}\nbob:other\n")
    path.chmod(0o600)
    return path


def tool(
    name: str, d: Daemon, *args: str, binary: bool = False, sasl: bool = False, password: str = PASSWORD
):
    """Run a libmemcached tool against ``d``; return the CompletedProcess."""
    argv = [name, f"--servers=127.0.0.1:{d.port}", *args]
    if binary and name not in ("memcping", "memcdump"):  # they have no --binary (SASL implies it)
        argv.append("--binary")
    if sasl:
        argv += [f"--username={USER}", f"--password={password}"]
    r = subprocess.run(argv, capture_output=True, timeout=60)
    # Not text=True: universal newlines would hide the value's own \r\n.
    return subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    )


def text(d: Daemon, data: bytes, until: bytes = b"\r\n", login: bool = False) -> bytes:
    """One text request on a fresh connection (after memcached's ASCII auth if ``login``)."""
    with d.connect() as sock:
        if login:
            payload = f"{USER} {PASSWORD}".encode()
            sock.sendall(b"set auth 0 0 %d\r\n%s\r\n" % (len(payload), payload))
            assert read_until(sock, b"\r\n") == b"STORED\r\n"
        sock.sendall(data)
        return read_until(sock, until)


# -- libmemcached's conformance test and tools ------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("backend", backend_params())
def test_memccapable_passes_both_protocols(daemon_factory: Factory, backend: str) -> None:
    d = daemon_factory(backend=backend)
    r = subprocess.run(
        ["memccapable", "-h", "127.0.0.1", "-p", str(d.port), "-t", "10"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "All tests passed" in r.stdout, r.stdout + r.stderr
    assert "binary getkq" in r.stdout and "ascii mget" in r.stdout


@needs_tools
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("mode", ["text", "binary", "sasl"])
def test_libmemcached_tools(
    daemon_factory: Factory, backend: str, mode: str, tmp_path: Path, auth_file: Path
) -> None:
    binary, sasl = mode != "text", mode == "sasl"
    d = daemon_factory(*(["--auth-file", str(auth_file)] if sasl else []), backend=backend)
    kw = {"binary": binary, "sasl": sasl}
    login = sasl

    r = tool("memcping", d, **kw)
    assert r.returncode == 0, r.stderr  # before: "strtol() failed to parse major version"
    r = tool("memcstat", d, **kw)
    assert r.returncode == 0 and "version: 1.6.18-pycache-d-" in r.stdout, r.stdout + r.stderr

    src = tmp_path / "greeting"
    src.write_bytes(b"hello\r\nflush_all\r\n")
    assert tool("memccp", d, "--set", str(src), **kw).returncode == 0
    assert (
        text(d, b"get greeting\r\n", b"END\r\n", login)
        == b"VALUE greeting 0 18\r\nhello\r\nflush_all\r\n\r\nEND\r\n"
    )
    r = tool("memccat", d, "greeting", **kw)
    assert (r.returncode, r.stdout) == (0, "hello\r\nflush_all\r\n\n"), r.stderr  # memccat adds a newline
    assert tool("memcexist", d, "greeting", **kw).returncode == 0
    assert tool("memcexist", d, "absent", **kw).returncode != 0
    assert text(d, b"get absent\r\n", b"END\r\n", login) == b"END\r\n"  # exist's probe left nothing

    assert tool("memctouch", d, "--expire=1000", "greeting", **kw).returncode == 0
    assert tool("memctouch", d, "--expire=1000", "absent", **kw).returncode != 0
    assert text(d, b"get greeting\r\n", b"END\r\n", login).startswith(b"VALUE greeting")
    assert tool("memctouch", d, "--expire=2678401", "greeting", **kw).returncode == 0  # 1970: expired
    assert text(d, b"get greeting\r\n", b"END\r\n", login) == b"END\r\n"

    assert tool("memccp", d, "--set", str(src), **kw).returncode == 0
    assert tool("memcrm", d, "greeting", **kw).returncode == 0
    assert text(d, b"get greeting\r\n", b"END\r\n", login) == b"END\r\n"
    assert tool("memccp", d, "--set", str(src), **kw).returncode == 0
    assert tool("memcflush", d, **kw).returncode == 0
    assert text(d, b"get greeting\r\n", b"END\r\n", login) == b"END\r\n"


@needs_tools
def test_libmemcached_sasl_refused_without_or_with_bad_credentials(
    daemon_factory: Factory, auth_file: Path
) -> None:
    d = daemon_factory("--auth-file", str(auth_file))
    assert tool("memcping", d).returncode != 0
    r = tool("memccat", d, "k", binary=True, sasl=True, password="wrong")
    assert r.returncode != 0 and "AUTHENTICATION FAILURE" in r.stderr
    r = tool("memcstat", d, binary=True, sasl=True)
    assert r.returncode == 0 and "auth_cmds: 2" in r.stdout and "auth_errors: 1" in r.stdout, r.stdout


@needs_tools
def test_memcdump_lists_the_keys(daemon: Daemon) -> None:
    text(daemon, b"set k1 0 0 1\r\nv\r\n")
    text(daemon, b"set k2 0 0 3000\r\n" + b"v" * 3000 + b"\r\n")  # another size class
    r = tool("memcdump", daemon)
    # before: it failed (stats cachedump answered ERROR)
    assert r.returncode == 0 and sorted(r.stdout.split()) == ["k1", "k2"], r.stdout + r.stderr


# -- pylibmc --------------------------------------------------------------------------------------

try:
    import pylibmc
except ImportError:  # pragma: no cover - the test extras install it
    pylibmc = None
needs_pylibmc = pytest.mark.skipif(pylibmc is None, reason="pylibmc not installed (make pylibmc builds it)")
#: The PyPI wheel bundles a libsasl2 that finds no PLAIN plugin on Debian (see the Makefile).
WHEEL_SASL = pylibmc is not None and (Path(pylibmc.__file__).parent.parent / "pylibmc.libs").is_dir()


def skip_if_wheel_sasl() -> None:
    if WHEEL_SASL:
        pytest.skip(
            "pylibmc is the PyPI wheel, whose SASL cannot work here: make pylibmc builds it from source"
        )


def pylibmc_client(d: Daemon, **kw):
    behaviors = {
        "connect_timeout": 5000,
        "receive_timeout": 5_000_000,
        "send_timeout": 5_000_000,
        "cas": True,
    }
    return pylibmc.Client([f"127.0.0.1:{d.port}"], behaviors=behaviors, **kw)


@needs_pylibmc
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("mode", ["text", "binary", "sasl"])
def test_pylibmc(daemon_factory: Factory, backend: str, mode: str, auth_file: Path) -> None:
    sasl = mode == "sasl"
    if sasl:
        skip_if_wheel_sasl()
    d = daemon_factory(*(["--auth-file", str(auth_file)] if sasl else []), backend=backend)
    kw = {"binary": mode != "text"}
    if sasl:
        kw.update(username=USER, password=PASSWORD)
    mc = pylibmc_client(d, **kw)
    started = time.monotonic()
    assert mc.set("k", "v")  # before: binary=True waited 5 s here, then failed
    assert mc.get("k") == "v"
    assert mc.get("absent") is None
    assert mc.add("k", "w") is False
    assert mc.replace("k", "w") and mc.get("k") == "w"
    assert mc.append("k", "x") and mc.prepend("k", "<") and mc.get("k") == "<wx"
    mc.set("n", 10)
    assert mc.incr("n", 5) == 15 and mc.decr("n", 20) == 0
    value, cas = mc.gets("k")
    assert value == "<wx" and cas
    assert mc.cas("k", "new", cas) and not mc.cas("k", "newer", cas)
    assert mc.get("k") == "new"
    assert mc.set_multi({"a": 1, "b": "two", "c": b"\x00\xff"}) == []
    assert mc.get_multi(["a", "b", "c", "absent"]) == {"a": 1, "b": "two", "c": b"\x00\xff"}
    mc.delete_multi(["a", "b"])
    assert mc.get_multi(["a", "b", "c"]) == {"c": b"\x00\xff"}
    assert mc.touch("c", 1000)
    big = b"x" * 500_000
    assert mc.set("big", big) and mc.get("big") == big
    assert mc.delete("k") and mc.get("k") is None
    version = mc.get_stats()[0][1]["version"]
    assert (version.decode() if isinstance(version, bytes) else version).startswith("1.6.18-pycache-d-")
    mc.flush_all()
    assert mc.get("c") is None
    assert time.monotonic() - started < 30  # no call waited for a timeout (5 s each)


@needs_pylibmc
def test_pylibmc_sasl_bad_password_fails(daemon_factory: Factory, auth_file: Path) -> None:
    skip_if_wheel_sasl()
    d = daemon_factory("--auth-file", str(auth_file))
    mc = pylibmc_client(d, binary=True, username=USER, password="wrong")
    with pytest.raises(pylibmc.Error):
        mc.set("k", "v")
    assert text(d, b"get k\r\n", b"END\r\n", login=True) == b"END\r\n"


# -- PHP's Memcached extension (libmemcached) -----------------------------------------------------

PHP_DIR = Path(__file__).resolve().parent / "php"


def php(script: str, *args: object) -> dict:
    """Run tests/php/<script> with ``args``; return the JSON object it printed."""
    r = subprocess.run(
        ["php", str(PHP_DIR / script), *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.splitlines()[-1])


def _php_memcached() -> bool:
    if shutil.which("php") is None:
        return False
    r = subprocess.run(
        ["php", "-r", "exit(class_exists('Memcached') ? 0 : 1);"], capture_output=True, timeout=30
    )
    return r.returncode == 0


needs_php = pytest.mark.skipif(
    not _php_memcached(), reason="php-cli and php-memcached not installed (make apt)"
)


@needs_php
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("mode", ["text", "binary", "sasl"])
def test_php_memcached(daemon_factory: Factory, backend: str, mode: str, auth_file: Path) -> None:
    d = daemon_factory(*(["--auth-file", str(auth_file)] if mode == "sasl" else []), backend=backend)
    got = php("client.php", d.port, mode, USER, PASSWORD)
    # before: getVersion() and getStats() returned false (libmemcached refused "0.1.0")
    assert got == {
        "version": {f"127.0.0.1:{d.port}": "1.6.18"},
        "set": True,
        "get": "v",
        "miss": True,
        "incr": True,
        "cas": True,
        "multi": True,
        "delete": True,
        "stats_version": "1.6.18-pycache-d-" + __version__,
    }


@needs_php
def test_php_sasl_with_a_bad_password_fails(daemon_factory: Factory, auth_file: Path) -> None:
    d = daemon_factory("--auth-file", str(auth_file))
    got = php("client.php", d.port, "sasl", USER, "wrong")
    assert got["set"] is False and got["get"] is False and got["version"] is False


@needs_php
@pytest.mark.parametrize("binary, sasl", [(1, False), (0, False), (1, True)])
def test_php_sessions(daemon_factory: Factory, auth_file: Path, binary: int, sasl: bool) -> None:
    d = daemon_factory(*(["--auth-file", str(auth_file)] if sasl else []))
    creds = (USER, PASSWORD) if sasl else ()
    assert php("session.php", d.port, binary, *creds)["n"] == 1  # before (binary): 30 s, session lost
    second = php("session.php", d.port, binary, *creds)
    assert second["n"] == 2 and second["seconds"] < 10


# -- ASCII auth, the auth file --------------------------------------------------------------------


def sasl_status(d: Daemon, user: str, password: str) -> int:
    """The status of a SASL PLAIN attempt on a fresh binary connection."""
    with d.connect() as sock:
        sock.sendall(b.request(b.SASL_AUTH, b"PLAIN", value=f"\0{user}\0{password}".encode()))
        reply = b""
        while len(reply) < 24 or len(reply) < 24 + int.from_bytes(reply[8:12], "big"):
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        head = reply[:24]
        assert head[0] == 0x81 and head[1] == b.SASL_AUTH, reply
        return int.from_bytes(head[6:8], "big")


@pytest.mark.parametrize("backend", backend_params())
def test_ascii_auth_gates_a_text_client(daemon_factory: Factory, backend: str, auth_file: Path) -> None:
    d = daemon_factory("--auth-file", str(auth_file), backend=backend)
    with d.connect() as sock:
        sock.sendall(b"get k\r\n")
        assert read_until(sock, b"\r\n") == b"CLIENT_ERROR unauthenticated\r\n"
        sock.sendall(b"set k 0 0 15\r\nalice not-it-pw\r\n")
        assert read_until(sock, b"\r\n") == b"CLIENT_ERROR authentication failure\r\n"
        sock.sendall(b"set k 0 0 15\r\nalice s3cret-pw\r\nset k 0 0 1\r\nv\r\nget k\r\n")
        assert read_until(sock, b"END\r\n") == b"STORED\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
    settings = text(d, b"stats settings\r\n", b"END\r\n", login=True).decode()
    assert (
        f"STAT auth_enabled_ascii {auth_file}\r\n" in settings
        and "STAT auth_enabled_sasl yes\r\n" in settings
    )


def test_sighup_rereads_the_auth_file_and_keeps_it_when_bad(daemon_factory: Factory, auth_file: Path) -> None:
    d = daemon_factory("--auth-file", str(auth_file))
    auth_file.write_text("carol:fresh\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for_log("reloaded the auth file", 10)
    assert sasl_status(d, USER, PASSWORD) == b.AUTH_ERROR
    assert sasl_status(d, "carol", "fresh") == 0
    auth_file.write_text("no colon here\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_for_log("keeping the current credentials", 10)
    assert sasl_status(d, "carol", "fresh") == 0
    assert "no colon here" not in d.log


def test_no_secret_in_the_log_and_a_warning_for_a_readable_file(
    daemon_factory: Factory, auth_file: Path
) -> None:
    auth_file.chmod(0o644)
    d = daemon_factory("--auth-file", str(auth_file), "-vv")
    text(d, b"version\r\n", login=True)
    assert sasl_status(d, USER, PASSWORD) == 0
    d.wait_for_log("conn .*: closed", 10)
    time.sleep(0.2)
    assert "readable by its group or others" in d.log
    assert "conn" in d.log and "> " in d.log  # -vv did log the requests
    assert PASSWORD not in d.log and PASSWORD.encode().hex() not in d.log


def test_a_bad_auth_file_stops_the_start(tmp_path: Path) -> None:
    bad = tmp_path / "auth"
    bad.write_text("secretline-without-colon\n")
    for path in (bad, tmp_path / "missing"):
        r = subprocess.run(
            [sys.executable, "-m", "pycache_d", "-p", "0", "--auth-file", str(path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 2 and "auth" in r.stderr, r.stderr
        assert "secretline" not in r.stderr


def test_credentials_directory_in_the_path(daemon_factory: Factory, auth_file: Path) -> None:
    d = daemon_factory(
        "--auth-file", "$CREDENTIALS_DIRECTORY/auth", env={"CREDENTIALS_DIRECTORY": str(auth_file.parent)}
    )
    assert text(d, b"version\r\n", login=True).startswith(b"VERSION 1.6.18-pycache-d-")


# -- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_sasl_and_ascii_auth_over_tls(daemon_factory: Factory, pki: PKI, auth_file: Path) -> None:
    d = daemon_factory(
        "--auth-file", str(auth_file), "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)
    )
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(
                b.request(b.SASL_AUTH, b"PLAIN", value=f"\0{USER}\0{PASSWORD}".encode())
                + b.request(b.SET, b"k", b"\0" * 8, b"v")
                + b.request(b.GET, b"k", opaque=3)
            )
            reply = b""
            while reply.count(b"\x81") < 3 or not reply.endswith(b"v"):
                chunk = sock.recv(65536)
                assert chunk, reply
                reply += chunk
            assert b"Authenticated" in reply
    with socket.create_connection(("127.0.0.1", d.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            sock.sendall(b"get k\r\nset x 0 0 15\r\nalice s3cret-pw\r\nget k\r\n")
            assert (
                read_until(sock, b"END\r\n")
                == b"CLIENT_ERROR unauthenticated\r\nSTORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
            )


# -- bounds ---------------------------------------------------------------------------------------

MiB = 1024 * 1024


def served(d: Daemon) -> None:
    """A well-behaved binary client sets and reads back a key meanwhile."""
    with d.connect() as sock:
        sock.sendall(
            b.request(b.SET, b"bystander", b"\0" * 8, b"x") + b.request(b.GET, b"bystander", opaque=1)
        )
        reply = b""
        while len(reply) < 24 + 24 + 5:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply.endswith(b"\0\0\0\0x")


@pytest.mark.parametrize("backend", backend_params())
def test_a_quiet_getkq_batch_of_gigabytes_streams_at_the_clients_pace(
    daemon_factory: Factory, backend: str
) -> None:
    d = daemon_factory("-I", "2m", backend=backend)
    value = bytes(range(256)) * 4096  # 1 MiB
    with d.connect() as sock:
        sock.sendall(b.request(b.SET, b"big", b"\0\0\0\x03\0\0\0\0", value) + b.request(b.NOOP))
        reply = b""
        while len(reply) < 48:
            chunk = sock.recv(65536)
            assert chunk, reply
            reply += chunk
        assert reply[:2] == b"\x81\x01" and reply[6:8] == b"\0\0" and reply[24:] == b.response(b.NOOP, 0, 0)
    rss = d.rss()
    # 40,000 quiet gets of 27 bytes each ask for 40 GB of replies.
    batch = b"".join(b.request(b.GETKQ, b"big", opaque=i) for i in range(40_000))
    with d.connect() as hog:
        hog.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 5
        while sent < len(batch) and time.monotonic() < deadline:
            try:
                sent += hog.send(batch[sent : sent + MiB])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.5)  # reading nothing meanwhile
        served(d)
        assert d.rss() < rss + 48 * MiB
        hog.setblocking(True)
        hog.settimeout(10)
        got = bytearray()
        size = 24 + 4 + 3 + len(value)
        while len(got) < 3 * size:
            got += hog.recv(MiB)
        for i in range(3):
            packet = bytes(got[i * size : (i + 1) * size])
            assert packet[:2] == b"\x81\x0d" and packet[12:16] == i.to_bytes(4, "big")
            assert packet[24:] == b"\0\0\0\x03big" + value
        assert d.rss() < rss + 48 * MiB
    served(d)
