"""Process and socket helpers the benchmark scripts share."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM ``proc`` and wait for it; SIGKILL it if it takes longer than ``timeout`` seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    host: str, port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 15.0
) -> None:
    """Wait until something accepts on ``host:port``.

    Raises:
        RuntimeError: ``proc`` exited first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def stats(host: str, port: int) -> dict[str, str]:
    """``stats`` of the memcached-protocol server on ``host:port``, as a dict of strings."""
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"stats\r\n")
        got = b""
        while not got.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return {p[1]: p[2] for p in (line.split(" ", 2) for line in got.decode().splitlines()) if len(p) == 3}


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
