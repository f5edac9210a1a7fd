"""A much lower memory limit on SIGHUP is reached a slice at a time: the daemon keeps serving.

Setting the limit evicts one slice and the reclaimer the rest (pycache_d/store/_pystore.py's
invariants); before that, half a million evictions stalled the event loop for seconds.
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

from daemon import Daemon, read_until  # noqa: E402

Factory = Callable[..., Daemon]
MiB = 1024 * 1024
#: Enough that the shrink takes many slices (about 0.7 s on either backend here); the python
#: backend fills at a tenth of the speed.
ITEMS = {"native": 500_000, "python": 150_000}


def stats_of(sock: socket.socket) -> dict[str, int]:
    sock.sendall(b"stats\r\n")
    reply = read_until(sock, b"END\r\n").decode()
    return {
        name: int(value)
        for _, name, value in (line.split(" ", 2) for line in reply.splitlines() if line.startswith("STAT "))
        if value.isdigit()
    }


def test_sighup_shrink_keeps_serving_another_client(
    daemon_factory: Factory, daemon_backend: str, tmp_path: Path
) -> None:
    conf = tmp_path / "pycache-d.toml"
    conf.write_text("memory_limit = 512\n")
    d = daemon_factory("--config", str(conf), backend=daemon_backend, timeout=60)
    items = ITEMS[daemon_backend]
    with d.connect(timeout=60) as filler:
        batch = 50_000
        for start in range(0, items, batch):
            sets = (b"set key:%07d 0 0 10 noreply\r\n0123456789\r\n" % i for i in range(start, start + batch))
            filler.sendall(b"".join(sets))
        filler.sendall(b"version\r\n")
        assert read_until(filler, b"\r\n").startswith(b"VERSION")
    with d.connect(timeout=60) as other:
        assert stats_of(other)["curr_items"] == items
        conf.write_text("memory_limit = 1\n")
        d.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        # Poll until the new limit shows: the first reply that shows it was answered between
        # the reload and the end of the shrink iff the loop served us meanwhile.
        deadline = time.monotonic() + 60
        while (st := stats_of(other))["limit_maxbytes"] != MiB:
            assert time.monotonic() < deadline, "the reload never showed"
        assert st["bytes"] > MiB, "the whole shrink ran before another client was answered"
        assert 0 < st["evictions"] < items
        # It gets there, a slice at a time.
        while (st := stats_of(other))["bytes"] > MiB:
            assert time.monotonic() < deadline, f"still shrinking: {st['bytes']} bytes"
            time.sleep(0.01)
        assert st["curr_items"] == st["bytes"] // (len("key:0000000") + 10 + 48)
    d.wait_for_log("reloaded .*memory_limit 512m -> 1m")
    assert d.stop() == 0
