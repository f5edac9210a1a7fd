"""Run a real pycache-d process for tests: the :class:`Daemon` helper and pytest fixtures.

The daemon is started as ``[sys.executable, "-m", "pycache_d", "-p", "0", "-l", "127.0.0.1", ...]``
so it binds an ephemeral port; the helper reads the daemon's log until the ``started`` line and
takes the bound addresses from the ``listening on`` lines before it. Use it as a context manager::

    from daemon import Daemon            # tests/ is on sys.path for the daemon's own tests

    with Daemon("-m", "16", backend="python") as d:
        sock = d.connect()               # a blocking socket to the first TCP listener
        ...
    assert d.returncode == 0             # stop() sent SIGTERM and waited

or through the fixtures ``daemon_backend`` (the names ``native``/``python``, native skipped when
not built), ``daemon`` (a running daemon on each backend), ``daemon_factory`` (start daemons
with your own flags; all are stopped at teardown) and ``both_transports`` (opt-in: the test runs
on the compiled socket driver and on uvloop's transports). Load them with ``pytest_plugins = ["daemon"]``
in a test module, after ``pytest.register_assert_rewrite("daemon")`` if that module also imports
from here (see test_server.py). From another directory, put this file's directory on
``sys.path`` first.

Helpers: :func:`read_until` (a reply, or everything until EOF), :func:`stats` (``stats [group]``
as a dict), :func:`backend_params` (``pytest.param`` per backend for your own parametrisation).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

#: A log line naming a bound address: ``listening on 127.0.0.1:PORT``, ``[::1]:PORT``, ``unix:/p``.
LISTENING = re.compile(
    r"listening on (?:unix:(?P<path>.+)|\[(?P<v6>[^\]]+)\]:(?P<p6>\d+)|(?P<host>[^\s:]+):(?P<port>\d+))$"
)
#: The line the daemon logs once every listener is open.
STARTED = re.compile(r": notice: pycache-d \S+ started: ")

#: Settings variables of the test runner's environment that would leak into the daemon
#: (STATE_DIRECTORY, set when the runner is a systemd service, would turn its snapshot on).
_ISOLATE = re.compile(
    r"PYCACHE_D_(PORT|LISTEN|UNIX_MODE|MEMORY_LIMIT|MAX_ITEMS|MAX_CONNECTIONS|MAX_ITEM_SIZE|BACKEND|VERBOSE"
    r"|CONFIG|SNAPSHOT|IDLE_TIMEOUT|TLS_CERT|TLS_KEY|TLS_CA|AUTH_FILE)$|STATE_DIRECTORY$|CREDENTIALS_DIRECTORY$"
)


class DaemonError(Exception):
    """Raised when the daemon exits or stays silent instead of starting; carries its log."""


class Daemon:
    """One pycache-d process on ephemeral ports.

    Args:
        *args: extra command-line flags, after ``-p 0 -l 127.0.0.1`` (or ``listen``).
        backend: ``native``/``python`` adds ``--backend``; None leaves the daemon's default.
        listen: the ``-l`` addresses; ``()`` gives none (pass your own in ``args``).
        env: extra environment variables (``PYCACHE_D_*`` settings of the caller are dropped).
        timeout: seconds to wait for the daemon to start, and to stop.
        patch: module constants to set in the daemon process before it starts, as
            ``{"pycache_d.net.connection.STALL_TIMEOUT": 1.0}``: a bound of 30 s is tested
            with 1 s (the daemon then runs from ``python -c``, not ``-m``).
    """

    def __init__(
        self,
        *args: str,
        backend: str | None = None,
        listen: Sequence[str] = ("127.0.0.1",),
        env: dict[str, str] | None = None,
        timeout: float = 10.0,
        patch: dict[str, object] | None = None,
    ) -> None:
        self.argv = [sys.executable, *_entry(patch or {}), "-p", "0"]
        for addr in listen:
            self.argv += ["-l", addr]
        if backend is not None:
            self.argv += ["--backend", backend]
        self.argv += list(args)
        self.env = {k: v for k, v in os.environ.items() if not _ISOLATE.match(k)}
        self.env.update(env or {})
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        #: Every log line so far (the reader thread appends as the daemon writes).
        self.lines: list[str] = []
        #: ``(host, port)`` of each TCP listener, in the order they were logged.
        self.tcp: list[tuple[str, int]] = []
        #: Paths of the unix-socket listeners.
        self.unix: list[str] = []
        self._cond = threading.Condition()
        self._reader: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Daemon:
        """Start the process and wait until it listens.

        Raises:
            DaemonError: it exited first (its log is in the message) or did not start in time.
        """
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        self._reader = threading.Thread(target=self._read_log, name="pycache-d log", daemon=True)
        self._reader.start()
        try:
            self.wait_for_log(STARTED, self.timeout)
        except DaemonError:
            self.kill()
            raise
        for line in self.lines:
            m = LISTENING.search(line)
            if m and m["path"]:
                self.unix.append(m["path"])
            elif m:
                self.tcp.append((m["v6"] or m["host"], int(m["p6"] or m["port"])))
        return self

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr:  # closed at EOF, i.e. once the daemon has exited
            for raw in self.proc.stderr:
                with self._cond:
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stop(self, sig: int = signal.SIGTERM, timeout: float | None = None) -> int:
        """Send ``sig`` (SIGTERM) and wait for the exit; return the exit status (killing on timeout)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(self.timeout if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise DaemonError(f"pycache-d did not exit on signal {sig}:\n{self.log}") from None
        finally:
            if self._reader is not None:
                self._reader.join(2)
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the process (SIGKILL) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except DaemonError:
                pass

    # -- observing -----------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    @property
    def log(self) -> str:
        """The daemon's log so far, one line per event."""
        with self._cond:
            return "\n".join(self.lines)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` of the first TCP listener."""
        if not self.tcp:
            raise DaemonError("the daemon has no TCP listener")
        return self.tcp[0]

    @property
    def port(self) -> int:
        return self.address[1]

    def wait_for_log(
        self, pattern: str | re.Pattern[str], timeout: float = 5.0, start: int = 0
    ) -> re.Match[str]:
        """Wait for a log line (from index ``start`` on) matching ``pattern``; return the match.

        Raises:
            DaemonError: the daemon exited or the line did not come in time.
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if left <= 0 or (exited and not (self._reader and self._reader.is_alive())):
                    state = f"exited with {self.proc.returncode}" if exited and self.proc else "timed out"
                    raise DaemonError(
                        f"no log line matching {rx.pattern!r} ({state}); log:\n" + "\n".join(self.lines)
                    )
                self._cond.wait(min(left, 0.1))

    def rss(self) -> int:
        """The daemon's resident memory in bytes (Linux)."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise DaemonError("no VmRSS in /proc status")

    # -- talking to it -------------------------------------------------------------------------

    def connect(self, timeout: float = 5.0) -> socket.socket:
        """Open a blocking socket to the first TCP listener (or the first unix socket)."""
        if self.tcp:
            return socket.create_connection(self.address, timeout=timeout)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(self.unix[0])
        return sock

    def request(self, data: bytes, until: bytes = b"\r\n", timeout: float = 5.0) -> bytes:
        """Send ``data`` on a new connection and read until the reply ends with ``until``."""
        with self.connect(timeout) as sock:
            sock.sendall(data)
            return read_until(sock, until)


#: Debian's memcached, the oracle the tests compare with (None: not installed; make apt).
MEMCACHED = shutil.which("memcached")


#: What memcached answers to an lru_crawler command while its crawler thread still ends the last
#: crawl or dump, or stops after "lru_crawler disable" said OK: timing, not an answer (ours
#: never answers so in the oracle tests).
CRAWLER_TRANSIENT = (b"BUSY", b"ERROR an unknown error happened")


def past_the_crawler(command: bytes, ask: Callable[[], bytes], within: float = 30) -> bytes:
    """``ask()`` (which sends ``command`` and returns its reply), again while the reply to an
    lru_crawler command is only memcached's crawler being busy, up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        reply = ask()
        transient = command.startswith(b"lru_crawler") and reply.startswith(CRAWLER_TRANSIENT)
        if not transient or time.monotonic() > deadline:
            return reply
        time.sleep(0.05)


@contextlib.contextmanager
def memcached(*extra: str) -> Iterator[int]:
    """Run memcached on an ephemeral loopback port with ``extra`` flags; yield the port and kill
    it afterwards. Skips the test when it is not installed or does not start."""
    if MEMCACHED is None:
        pytest.skip("memcached is not installed (make apt)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [MEMCACHED, "-p", str(port), "-U", "0", "-l", "127.0.0.1", *extra]
    if os.geteuid() == 0:
        cmd += ["-u", "nobody"]  # memcached refuses to run as root otherwise
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30  # generous: a busy machine
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.skip(f"memcached did not start on port {port}")
                time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait()


def _entry(patch: dict[str, object]) -> list[str]:
    """The interpreter arguments that run the daemon with ``patch`` applied (see Daemon)."""
    if not patch:
        return ["-m", "pycache_d"]
    lines = ["import importlib, sys"]
    for name, value in patch.items():
        module, _, attr = name.rpartition(".")
        lines.append(f"setattr(importlib.import_module({module!r}), {attr!r}, {value!r})")
    lines += ["from pycache_d.daemon.main import main", "sys.exit(main())"]
    return ["-c", "\n".join(lines)]


def read_until(sock: socket.socket, suffix: bytes | None, limit: int = 64 * 1024 * 1024) -> bytes:
    """Read from ``sock`` until the data ends with ``suffix`` (None: until EOF), or ``limit`` bytes."""
    buf = bytearray()
    while not (suffix and buf.endswith(suffix)) and len(buf) < limit:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def stats(d: Daemon, group: str = "") -> dict[str, str]:
    """Return ``stats [group]`` of daemon ``d`` as a dict of strings."""
    reply = d.request(f"stats {group}".strip().encode() + b"\r\n", until=b"END\r\n")
    out = {}
    for line in reply.decode().splitlines():
        if line.startswith("STAT "):
            _, name, value = line.split(" ", 2)
            out[name] = value
    return out


def native_built() -> bool:
    """True if this installation has the compiled backend (the daemon under test uses the same one)."""
    from pycache_d.store import BACKENDS

    return "native" in BACKENDS


def backend_params() -> list[Any]:
    """``pytest.param`` for each backend, ids ``native``/``python``; native skips if not built."""
    skip = pytest.mark.skipif(
        not native_built(), reason="native backend not built (PYCACHE_D_NO_EXTENSIONS?)"
    )
    return [pytest.param("native", id="native", marks=skip), pytest.param("python", id="python")]


@pytest.fixture(params=backend_params())
def daemon_backend(request: pytest.FixtureRequest) -> str:
    """Each store backend's name in turn."""
    return str(request.param)


#: What the daemon's start line says of each way of driving plain client sockets.
TRANSPORT_LOG = {
    "compiled": "plain clients on the compiled epoll driver",
    "uvloop": "plain clients on the loop's transports",
}


@pytest.fixture(params=list(TRANSPORT_LOG))
def both_transports(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once on each way of driving plain sockets (``PYCACHE_D_STREAMS``).

    The compiled driver is the default; ``uvloop`` is what TLS clients and builds without the
    extensions use. Opt in with ``pytestmark = pytest.mark.usefixtures("both_transports")``,
    which sets the environment before any daemon of the test starts.
    """
    if request.param == "uvloop":
        monkeypatch.setenv("PYCACHE_D_STREAMS", "uvloop")
    else:
        monkeypatch.delenv("PYCACHE_D_STREAMS", raising=False)
    return str(request.param)


@pytest.fixture
def daemon_factory() -> Iterator[Callable[..., Daemon]]:
    """Start daemons with ``factory(*flags, backend=..., ...)`` (Daemon's arguments); all stop at teardown."""
    started: list[Daemon] = []

    def factory(*args: str, **kwargs: Any) -> Daemon:
        d = Daemon(*args, **kwargs)
        started.append(d)
        return d.start()

    yield factory
    for d in started:
        d.__exit__(None, None, None)


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon], daemon_backend: str) -> Daemon:
    """A running daemon with default settings, on each backend."""
    return daemon_factory(backend=daemon_backend)
