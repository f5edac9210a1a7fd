"""Start real cache daemons for the tests: pycache-d (either backend), else memcached.

pycache-d is started as users run it, ``python -m pycache_d -p 0 -l 127.0.0.1 --backend B``, and
its port is read from the ``listening on 127.0.0.1:PORT`` line on stderr. When it cannot start
(not installed beside the client, or still being written), the tests fall back on memcached and
say why, so the client is still tested against a real server.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

STARTUP_TIMEOUT = 15.0
#: Why tests ran against memcached instead of pycache-d (shown in pytest's summary).
FALLBACKS: list[str] = []


def note_fallback(reason: str | None) -> None:
    """Record why a test ran against memcached instead of pycache-d, and print it now."""
    if reason and reason not in FALLBACKS:
        FALLBACKS.append(reason)
        print(f"\n[pycache-client tests] {reason}", file=sys.__stderr__, flush=True)


_LISTENING = re.compile(rb"listening on ([0-9.]+):(\d+)")


@dataclass
class Daemon:
    """A running daemon process and how to reach it."""

    kind: str  # "pycache-d/native", "pycache-d/python" or "memcached"
    address: str  # host:port or unix:/path
    proc: subprocess.Popen[bytes]
    args: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Terminate the process and wait for it (kill after 5 s)."""
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate ``proc`` and wait for it; kill it if it is still there after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class DaemonUnavailable(Exception):
    """Raised when a daemon could not be started; the message says why."""


def free_port() -> int:
    """Return a TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until 127.0.0.1:port accepts connections (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise DaemonUnavailable(f"exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise DaemonUnavailable(f"port {port} not accepting after {timeout}s")


def start_pycache_d(backend: str, extra: list[str] | None = None, port: int = 0) -> Daemon:
    """Start ``python -m pycache_d`` on 127.0.0.1 with the given backend.

    Raises:
        DaemonUnavailable: it exited, or never printed its listening line; the reason is the
            tail of its stderr.
    """
    args = [sys.executable, "-m", "pycache_d", "-p", str(port), "-l", "127.0.0.1", "--backend", backend]
    args += extra or []
    log = tempfile.TemporaryFile()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while time.monotonic() < deadline:
            log.seek(0)
            text = log.read()
            match = _LISTENING.search(text)
            if match:
                wait_for_port(int(match.group(2)), 5.0, proc)
                return Daemon(
                    f"pycache-d/{backend}", f"{match.group(1).decode()}:{match.group(2).decode()}", proc, args
                )
            if proc.poll() is not None:
                tail = text.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise DaemonUnavailable(f"exited with status {proc.returncode}: {tail[0]}")
            time.sleep(0.02)
        raise DaemonUnavailable(f"no 'listening on' line on stderr within {STARTUP_TIMEOUT}s")
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        log.close()


def start_memcached(extra: list[str] | None = None, port: int | None = None) -> Daemon:
    """Start the system memcached on 127.0.0.1 (UDP off).

    Raises:
        DaemonUnavailable: memcached is not installed or did not start.
    """
    binary = shutil.which("memcached") or (
        "/usr/bin/memcached" if os.path.exists("/usr/bin/memcached") else None
    )
    if binary is None:
        raise DaemonUnavailable("memcached is not installed")
    port = port or free_port()
    args = [binary, "-p", str(port), "-U", "0", "-l", "127.0.0.1", *(extra or [])]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    proc = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, STARTUP_TIMEOUT, proc)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    return Daemon("memcached", f"127.0.0.1:{port}", proc, args)


def wait_for_unix(path: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until the unix socket at ``path`` accepts connections (or the process died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DaemonUnavailable(f"exited with status {proc.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
            return
        except OSError:
            time.sleep(0.02)
    raise DaemonUnavailable(f"{path} not accepting after {timeout}s")


def start_unix(path: str, backend: str = "python") -> tuple[Daemon, str | None]:
    """Start a daemon listening on the unix socket ``path`` only: pycache-d, else ``memcached -s``."""
    candidates = [
        (
            f"pycache-d/{backend}",
            [sys.executable, "-m", "pycache_d", "-l", f"unix:{path}", "--backend", backend],
        ),
        ("memcached", [shutil.which("memcached") or "memcached", "-s", path, "-U", "0"]),
    ]
    reason = None
    if os.environ.get("PYCACHE_TEST_DAEMON") == "memcached":
        candidates = candidates[1:]
    for kind, args in candidates:
        if kind == "memcached" and os.geteuid() == 0:
            args += ["-u", "root"]
        try:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            raise DaemonUnavailable(f"cannot run {args[0]}: {exc}") from None
        try:
            wait_for_unix(path, STARTUP_TIMEOUT, proc)
            if proc.stderr is not None:
                proc.stderr.close()  # nothing reads it from now on; a full pipe must not block it
            return Daemon(kind, f"unix:{path}", proc, args), reason
        except DaemonUnavailable as exc:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate()
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [str(exc)]
            reason = f"pycache-d on a unix socket could not start ({tail[0]}); using memcached -s"
    raise DaemonUnavailable(reason or "no daemon could listen on a unix socket")


def start_daemon(backend: str, extra: list[str] | None = None, port: int = 0) -> tuple[Daemon, str | None]:
    """Start pycache-d with ``backend``, else memcached; return it and the fallback reason (or None).

    ``extra`` holds options both understand (``-I``, ``-m``, ...). ``PYCACHE_TEST_DAEMON=memcached``
    skips pycache-d, to run the client's tests against memcached on purpose.
    """
    if os.environ.get("PYCACHE_TEST_DAEMON") == "memcached":
        return start_memcached(extra, port or None), "PYCACHE_TEST_DAEMON=memcached; using memcached"
    try:
        return start_pycache_d(backend, extra, port), None
    except DaemonUnavailable as exc:
        reason = f"pycache-d --backend {backend} could not start ({exc}); using memcached"
    return start_memcached(extra, port or None), reason
