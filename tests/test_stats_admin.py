"""``stats`` and the admin commands end to end: a real daemon on each backend beside a real
memcached 1.6.18 (the oracle), and the tools that read them (libmemcached's memcdump and
memcstat, PHP's Memcached::getAllKeys()/getStats(), pymemcache's stats()).

What is compared with memcached: the names and order of ``stats`` and ``stats settings`` (ours
may leave out what has no meaning here and add what the README lists), the shape of
``stats items``/``slabs``/``sizes`` (the same classes, the same names per class; the figures
differ: our pages are 64 KiB and our item header is smaller), every admin reply including the
ones to bad arguments, ``-X`` and ``-A``, the ``stats detail dump`` and ``watch`` lines, and
``bytes_read``/``bytes_written`` for a known exchange. A dump of 200k keys is checked to run in
slices behind its client's reading while another client is answered (by counts, not times).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon, backend_params, native_built, past_the_crawler, read_until, stats  # noqa: E402

Factory = Callable[..., Daemon]
MEMCACHED = shutil.which("memcached")
needs_memcached = pytest.mark.skipif(MEMCACHED is None, reason="memcached not installed (make apt)")
needs_tools = pytest.mark.skipif(shutil.which("memcdump") is None, reason="libmemcached-tools not installed")

#: ``stats`` fields memcached 1.6.18 has that mean nothing here (libevent, its response objects
#: and read buffers, its LRU maintainer's and segmented LRU's moves, NAPI ids): see the README.
NOT_HERE = {
    "libevent",
    "response_obj_oom",
    "response_obj_count",
    "response_obj_bytes",
    "read_buf_count",
    "read_buf_bytes",
    "read_buf_bytes_free",
    "read_buf_oom",
    "reserved_fds",
    "lru_maintainer_juggles",
    "malloc_fails",
    "unexpected_napi_ids",
    "round_robin_fallback",
    "lrutail_reflocked",
    "moves_to_cold",
    "moves_to_warm",
    "moves_within_lru",
    "direct_reclaims",
    "lru_bumps_dropped",
}
#: Fields of ours memcached does not print (idle_kicks is memcached's only with -o idle_timeout).
OURS = {"idle_kicks", "limit_maxitems"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Memcached:
    """A memcached process on an ephemeral loopback port."""

    def __init__(self, *extra: str) -> None:
        assert MEMCACHED is not None
        self.port = _free_port()
        cmd = [MEMCACHED, "-p", str(self.port), "-U", "0", "-t", "1", "-m", "64", "-l", "127.0.0.1", *extra]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]  # memcached refuses to run as root otherwise
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.skip(f"memcached did not start on port {self.port}")
                time.sleep(0.05)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def memcached_factory() -> Iterator[Callable[..., Memcached]]:
    started: list[Memcached] = []

    def factory(*extra: str) -> Memcached:
        m = Memcached(*extra)
        started.append(m)
        return m

    yield factory
    for m in started:
        m.stop()


@pytest.fixture
def oracle(memcached_factory: Callable[..., Memcached]) -> Memcached:
    if MEMCACHED is None:
        pytest.skip("memcached not installed (make apt)")
    return memcached_factory()


Server = Daemon | Memcached


def exchange(server: Server, data: bytes, until: bytes | None = b"\r\n") -> bytes:
    """Send ``data`` on a fresh connection and read until ``until`` (None: until EOF)."""
    with server.connect() as sock:
        sock.sendall(data)
        return read_until(sock, until)


def each_reply(server: Server, commands: list[bytes]) -> list[bytes]:
    """Each command on its own connection, with ``mn`` after it, so that a command answering
    nothing (``noreply``) reads as b"" and an unknown end is never waited for."""
    replies = []
    with server.connect() as sock:
        for cmd in commands:

            def ask(cmd: bytes = cmd) -> bytes:
                sock.sendall(cmd + b"mn\r\n")
                reply = read_until(sock, b"MN\r\n")
                assert reply.endswith(b"MN\r\n"), (cmd, reply)
                return reply[: -len(b"MN\r\n")]

            replies.append(past_the_crawler(cmd, ask))
    return replies


def stat_pairs(server: Server, group: bytes = b"") -> list[tuple[str, str]]:
    reply = exchange(server, b"stats" + (b" " + group if group else b"") + b"\r\n", b"END\r\n")
    pairs = []
    for line in reply.decode().split("\r\n"):
        if line.startswith("STAT "):
            _, name, value = line.split(" ", 2)
            pairs.append((name, value))
    return pairs


def fill(server: Server, sizes: dict[bytes, int]) -> None:
    """Store each key with a value of the given size."""
    data = b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, n, b"v" * n) for k, n in sizes.items())
    assert exchange(server, data, b"STORED\r\n" * len(sizes)) == b"STORED\r\n" * len(sizes)


#: Values that land in four different memcached classes (1, 5, 12 and 17 with 1.6.18's defaults).
SIZES = {b"tiny": 5, b"small": 200, b"mid": 1000, b"big": 3000, b"tiny:2": 6}


# -- stats, stats settings ------------------------------------------------------------------------


@needs_memcached
def test_stats_fields_in_memcached_order(daemon: Daemon, oracle: Memcached) -> None:
    for server in (daemon, oracle):
        fill(server, SIZES)
    ours = [name for name, _ in stat_pairs(daemon)]
    theirs = [name for name, _ in stat_pairs(oracle)]
    assert len(ours) == len(set(ours))
    assert set(theirs) - set(ours) == NOT_HERE  # nothing else missing (before: 48 of 92)
    assert set(ours) - set(theirs) == OURS
    assert [n for n in ours if n in theirs] == [n for n in theirs if n in ours]  # memcached's order
    for name in (
        "rusage_user",
        "rusage_system",
        "bytes_read",
        "bytes_written",
        "accepting_conns",
        "listen_disabled_num",
        "time_in_listen_disabled_us",
        "conn_yields",
        "hash_power_level",
        "hash_bytes",
        "hash_is_expanding",
        "slab_reassign_running",
        "slabs_moved",
        "lru_crawler_running",
        "lru_crawler_starts",
        "log_watchers",
        "crawler_items_checked",
    ):
        assert name in ours
    values = dict(stat_pairs(daemon))
    assert values["accepting_conns"] == "1" and values["curr_items"] == str(len(SIZES))
    assert int(values["bytes_read"]) > 0 and int(values["bytes_written"]) > 0  # before: always 0


@needs_memcached
def test_stats_settings_names_in_memcached_order(daemon: Daemon, oracle: Memcached) -> None:
    ours = [name for name, _ in stat_pairs(daemon, b"settings")]
    theirs = [name for name, _ in stat_pairs(oracle, b"settings")]
    assert [n for n in ours if n in theirs] == [n for n in theirs if n in ours]
    ours_only = set(ours) - set(theirs)
    assert ours_only == {"maxitems", "backend"}
    values = dict(stat_pairs(daemon, b"settings"))
    mc = dict(stat_pairs(oracle, b"settings"))
    for name in ("dump_enabled", "shutdown_command", "lru_crawler", "slab_reassign", "watcher_logbuf_size"):
        assert values[name] == mc[name], name


def test_bytes_read_and_written_are_exact(daemon_factory: Factory, daemon_backend: str) -> None:
    d = daemon_factory(backend=daemon_backend)
    with d.connect() as watcher:
        watcher.sendall(b"stats\r\n")
        first = read_until(watcher, b"END\r\n")
        before = {k: int(v) for k, v in re.findall(rb"STAT (bytes_read|bytes_written) (\d+)", first)}
        request = b"set k 0 0 5\r\nhello\r\nget k\r\nget absent\r\n"
        assert exchange(d, request, b"END\r\nEND\r\n") == b"STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\nEND\r\n"
        watcher.sendall(b"stats\r\n")
        second = read_until(watcher, b"END\r\n")
    after = {k: int(v) for k, v in re.findall(rb"STAT (bytes_read|bytes_written) (\d+)", second)}
    # The other connection's bytes, this one's second "stats\r\n", and its first reply.
    assert after[b"bytes_read"] - before[b"bytes_read"] == len(request) + len(b"stats\r\n")
    reply = b"STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\nEND\r\n"
    assert after[b"bytes_written"] - before[b"bytes_written"] == len(reply) + len(first)


def test_bytes_read_and_written_count_binary_requests(daemon: Daemon) -> None:
    from pycache_d.protocol import binary as b

    with daemon.connect() as watcher:
        watcher.sendall(b"stats\r\n")
        first = read_until(watcher, b"END\r\n")
        before = {k: int(v) for k, v in re.findall(rb"STAT (bytes_read|bytes_written) (\d+)", first)}
        request = b.request(b.SET, key=b"k", value=b"hello", extras=bytes(8)) + b.request(b.NOOP)
        with daemon.connect() as client:
            client.sendall(request)
            reply = b""
            while len(reply) < 48:  # the set's and the noop's 24-byte headers, no bodies
                chunk = client.recv(65536)
                assert chunk, reply
                reply += chunk
        watcher.sendall(b"stats\r\n")
        second = read_until(watcher, b"END\r\n")
    after = {k: int(v) for k, v in re.findall(rb"STAT (bytes_read|bytes_written) (\d+)", second)}
    assert len(reply) == 48
    assert after[b"bytes_read"] - before[b"bytes_read"] == len(request) + len(b"stats\r\n")
    assert after[b"bytes_written"] - before[b"bytes_written"] == len(reply) + len(first)


@needs_memcached
def test_bytes_read_and_written_count_as_memcached_does(oracle: Memcached) -> None:
    # The arithmetic of the test above, held against the oracle.
    with oracle.connect() as watcher:
        watcher.sendall(b"stats\r\n")
        first = read_until(watcher, b"END\r\n")
        before = {k: int(v) for k, v in re.findall(rb"STAT (bytes_read|bytes_written) (\d+)", first)}
        request = b"set k 0 0 5\r\nhello\r\nget k\r\nget absent\r\n"
        exchange(oracle, request, b"END\r\nEND\r\n")
        watcher.sendall(b"stats\r\n")
        second = read_until(watcher, b"END\r\n")
    after = {k: int(v) for k, v in re.findall(rb"STAT (bytes_read|bytes_written) (\d+)", second)}
    assert after[b"bytes_read"] - before[b"bytes_read"] == len(request) + len(b"stats\r\n")
    reply = b"STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\nEND\r\n"
    assert after[b"bytes_written"] - before[b"bytes_written"] == len(reply) + len(first)


@needs_memcached
def test_stats_reset_clears_traffic_as_memcached(daemon: Daemon, oracle: Memcached) -> None:
    names = (b"bytes_read", b"bytes_written", b"total_connections", b"conn_yields", b"lru_crawler_starts")
    seen = []
    for server in (daemon, oracle):
        fill(server, SIZES)
        exchange(server, b"lru_crawler crawl all\r\n")
        with server.connect() as sock:
            sock.sendall(b"stats reset\r\n")
            assert read_until(sock, b"\r\n") == b"RESET\r\n"
            sock.sendall(b"stats\r\n")
            reply = read_until(sock, b"END\r\n")
        got = dict(re.findall(rb"STAT (\w+) (\d+)\r\n", reply))
        seen.append({name: got[name] for name in names})
    # "stats reset\r\n" read after the reset, "RESET\r\n" written: 7 and 7, as memcached.
    assert (
        seen[0]
        == seen[1]
        == {
            b"bytes_read": b"7",
            b"bytes_written": b"7",
            b"total_connections": b"0",
            b"conn_yields": b"0",
            b"lru_crawler_starts": b"0",
        }
    )


def _binary_stat(server: Server, group: bytes) -> list[tuple[int, bytes, bytes]]:
    """``stat <group>`` over the binary protocol: (status, key, value) per packet, the last
    (empty key) one included."""
    from binproto import SYNC_NOOP, ends_with_sync, packets

    from pycache_d.protocol import binary as b

    with server.connect() as sock:
        sock.sendall(b.request(b.STAT, key=group) + SYNC_NOOP)
        buf = b""
        while not ends_with_sync(buf):
            chunk = sock.recv(65536)
            assert chunk, buf
            buf += chunk
    got, _ = packets(buf)
    return [(p.status, p.key, p.value) for p in got[:-1]]  # the NOOP's answer left out


@needs_memcached
def test_binary_stat_groups_agree_with_text_and_memcached(daemon: Daemon, oracle: Memcached) -> None:
    for server in (daemon, oracle):
        fill(server, SIZES)
    for group in (b"", b"settings", b"items", b"slabs"):
        ours = _binary_stat(daemon, group)
        assert ours[-1] == (0, b"", b"")  # the group ends with an empty stat, as memcached's
        names = [k.decode() for _, k, _ in ours[:-1]]
        assert names == [n for n, _ in stat_pairs(daemon, group)], group  # the text reply's names
        if group in (b"items", b"slabs"):
            assert names == [k.decode() for _, k, _ in _binary_stat(oracle, group)[:-1]], group
    for group in (b"sizes", b"detail dump", b"detail on", b"detail", b"cachedump 1 0", b"bogus", b"reset"):
        assert _binary_stat(daemon, group) == _binary_stat(oracle, group), group


# -- stats items, slabs, sizes --------------------------------------------------------------------


def _classes(pairs: list[tuple[str, str]], pattern: str) -> dict[str, list[str]]:
    """Group ``<cls>:<name>`` (or ``items:<cls>:<name>``) stats by class: the names, in order."""
    out: dict[str, list[str]] = {}
    for name, _ in pairs:
        m = re.fullmatch(pattern, name)
        if m:
            out.setdefault(m[1], []).append(m[2])
    return out


@needs_memcached
def test_stats_items_and_slabs_per_size_class(daemon: Daemon, oracle: Memcached) -> None:
    for server in (daemon, oracle):
        fill(server, SIZES)
    for group, pattern in ((b"items", r"items:(\d+):(\w+)"), (b"slabs", r"(\d+):(\w+)")):
        ours, theirs = stat_pairs(daemon, group), stat_pairs(oracle, group)
        assert _classes(ours, pattern) == _classes(theirs, pattern), group  # before: one class
        assert [n for n, _ in ours if ":" not in n] == [n for n, _ in theirs if ":" not in n]
    items = dict(stat_pairs(daemon, b"items"))
    assert sorted(
        int(items[f"items:{c}:number"]) for c in _classes(stat_pairs(daemon, b"items"), r"items:(\d+):(\w+)")
    ) == [1, 1, 1, 2]
    slabs = dict(stat_pairs(daemon, b"slabs"))
    assert slabs["active_slabs"] == "4"
    mc_slabs = dict(stat_pairs(oracle, b"slabs"))
    for cls in _classes(stat_pairs(daemon, b"slabs"), r"(\d+):(\w+)"):
        assert slabs[f"{cls}:chunk_size"] == mc_slabs[f"{cls}:chunk_size"]  # the same size table
        assert slabs[f"{cls}:used_chunks"] == mc_slabs[f"{cls}:used_chunks"]
    # stats sizes: memcached answers its one line without -o track_sizes; so do we.
    assert exchange(daemon, b"stats sizes\r\n", b"END\r\n") == exchange(
        oracle, b"stats sizes\r\n", b"END\r\n"
    )


def test_both_backends_report_the_same_classes(daemon_factory: Factory) -> None:
    if not native_built():
        pytest.skip("the native backend is not built")
    params = ["native", "python"]
    shapes = []
    for backend in params:
        d = daemon_factory(backend=backend)
        fill(d, SIZES)
        items = stat_pairs(d, b"items")
        slabs = stat_pairs(d, b"slabs")
        shapes.append(
            (
                [(n, v) for n, v in items if n.endswith((":number", ":number_cold", ":evicted"))],
                [(n, v) for n, v in slabs if n.endswith((":chunk_size", ":chunks_per_page", ":used_chunks"))],
            )
        )
    assert shapes[0] == shapes[1]


# -- admin replies --------------------------------------------------------------------------------

ADMIN = [
    b"lru_crawler\r\n",
    b"lru_crawler crawl 99\r\n",
    b"lru_crawler crawl x\r\n",
    b"lru_crawler tocrawl 100\r\n",
    b"lru_crawler tocrawl x\r\n",
    b"lru_crawler sleep 100\r\n",
    b"lru_crawler sleep 2000000\r\n",
    b"lru_crawler sleep x\r\n",
    b"lru_crawler metadump\r\n",
    b"lru_crawler metadump 99\r\n",
    b"lru_crawler bogus\r\n",
    b"lru_crawler enable\r\n",
    b"lru\r\n",
    b"lru mode flat\r\n",
    b"lru mode segmented\r\n",
    b"lru mode foo\r\n",
    b"lru tune 10 20 0.1 2.0\r\n",
    b"lru tune 90 10 0.1 2\r\n",
    b"lru tune 10 10 0 0\r\n",
    b"lru tune 10\r\n",
    b"lru temp_ttl 60\r\n",
    b"lru temp_ttl -1\r\n",
    b"lru bogus\r\n",
    b"slabs\r\n",
    b"slabs automove 0\r\n",
    b"slabs automove 1 noreply\r\n",
    b"slabs automove 3\r\n",
    b"slabs automove x\r\n",
    b"slabs automove ratio 0.5\r\n",
    b"slabs reassign 1 1\r\n",
    b"slabs reassign 1 2\r\n",
    b"slabs reassign -1 2\r\n",
    b"slabs reassign 99 2\r\n",
    b"slabs reassign 1 99\r\n",
    b"slabs reassign x 2\r\n",
    b"slabs reassign 1\r\n",
    b"slabs reassign 99 99\r\n",  # SAME: memcached compares before it checks the range
    b"slabs reassign -1 -1\r\n",
    b"slabs reassign 0 0\r\n",
    b"slabs reassign 0 1\r\n",  # 0: memcached's global page pool, a valid class here
    b"slabs reassign 1 0\r\n",
    b"slabs reassign 39 1\r\n",
    b"slabs reassign 40 1\r\n",
    b"lru_crawler crawl 0\r\n",
    b"lru_crawler crawl 1,,2\r\n",
    b"lru_crawler metadump 0\r\n",
    b"lru_crawler tocrawl -1\r\n",
    b"lru_crawler sleep -1\r\n",
    b"stats cachedump 0 0\r\n",
    b"stats cachedump 63 0\r\n",
    b"stats cachedump 64 0\r\n",
    b"stats cachedump -1 0\r\n",
    b"stats cachedump 1 -1\r\n",
    b"stats cachedump 1 99999999999\r\n",
    b"stats detail on off\r\n",
    b"stats detail dump extra\r\n",
    b"shutdown graceful extra\r\n",
    b"watch fetchers x\r\n",
    b"lru tune 10 10 0.1\r\n",
    b"lru temp_ttl x\r\n",
    b"slabs automove -1\r\n",
    b"slabs automove ratio x\r\n",
    b"watch bogus\r\n",
    b"shutdown\r\n",
    b"shutdown graceful\r\n",
    b"shutdown foo\r\n",
    b"stats detail\r\n",
    b"stats detail foo\r\n",
    b"stats detail dump\r\n",
    b"stats cachedump\r\n",
    b"stats cachedump 1\r\n",
    b"stats cachedump x 0\r\n",
    b"stats cachedump 1 x\r\n",
    b"stats cachedump 100 0\r\n",
    b"stats cachedump 1 0\r\n",
    b"stats cachedump 50 0\r\n",
    b"stats bogus\r\n",
    b"cache_memlimit 100\r\n",
    b"cache_memlimit 5\r\n",
    b"cache_memlimit x\r\n",
    b"cache_memlimit\r\n",
    b"verbosity 1\r\n",
    b"lru_crawler crawl all\r\n",  # last: memcached's crawler answers BUSY while it runs
]


@needs_memcached
def test_admin_replies_are_memcached_s(daemon: Daemon, oracle: Memcached) -> None:
    ours, theirs = each_reply(daemon, ADMIN), each_reply(oracle, ADMIN)
    assert list(zip(ADMIN, ours, strict=True)) == list(zip(ADMIN, theirs, strict=True))


@needs_memcached
def test_disable_dumping_answers_as_memcached_x(
    daemon_factory: Factory, daemon_backend: str, memcached_factory: Callable[..., Memcached]
) -> None:
    commands = [b"stats cachedump 1 0\r\n", b"lru_crawler metadump all\r\n", b"lru_crawler crawl all\r\n"]
    d = daemon_factory("--disable-dumping", backend=daemon_backend)
    m = memcached_factory("-X")
    assert each_reply(d, commands) == each_reply(m, commands)
    assert dict(stat_pairs(d, b"settings"))["dump_enabled"] == "no"


@pytest.mark.parametrize("command", [b"shutdown\r\n", b"shutdown graceful\r\n"])
def test_shutdown_needs_enable_shutdown(daemon_factory: Factory, daemon_backend: str, command: bytes) -> None:
    d = daemon_factory("--enable-shutdown", backend=daemon_backend)
    assert dict(stat_pairs(d, b"settings"))["shutdown_command"] == "yes"
    assert exchange(d, b"shutdown foo\r\n") == b"CLIENT_ERROR invalid shutdown mode\r\n"
    # memcached closes the asking connection and exits; nothing is answered.
    assert exchange(d, command, None) == b""
    assert d.proc is not None
    d.proc.wait(60)
    assert d.returncode == 0, d.log


# -- key dumps ------------------------------------------------------------------------------------

METADUMP_LINE = re.compile(rb"key=(\S+) exp=(-1|\d+) la=\d+ cas=\d+ fetch=(yes|no) cls=(\d+) size=\d+\n")


@needs_memcached
def test_metadump_and_cachedump_list_every_key(
    daemon: Daemon, memcached_factory: Callable[..., Memcached]
) -> None:
    # memcached's cachedump shows only its COLD LRU: without its LRU maintainer there is one
    # LRU, as here (pycache-d has one flat LRU; see the README).
    oracle = memcached_factory("-o", "no_lru_maintainer")
    keys = {**SIZES, b"odd\x01key": 3}
    for server in (daemon, oracle):
        fill(server, keys)
        assert exchange(server, b"get tiny\r\ntouch mid 1000\r\n", b"TOUCHED\r\n").endswith(b"TOUCHED\r\n")
    dumps = []
    for server in (daemon, oracle):
        reply = exchange(server, b"lru_crawler metadump all\r\n", b"END\r\n")
        lines = reply[: -len(b"END\r\n")].splitlines(keepends=True)
        assert all(METADUMP_LINE.fullmatch(line) for line in lines), reply
        dumps.append(
            sorted((m[1], m[2] == b"-1", m[3], m[4]) for m in map(METADUMP_LINE.fullmatch, lines) if m)
        )
    assert dumps[0] == dumps[1]
    hashed = exchange(daemon, b"lru_crawler metadump hash\r\n", b"END\r\n")
    assert sorted(
        m[1] for m in map(METADUMP_LINE.fullmatch, hashed[:-5].splitlines(keepends=True)) if m
    ) == sorted(k for k, *_ in dumps[0])
    assert (b"odd%01key", True, b"no", b"1") in dumps[0]  # %-encoded as memcached does
    assert (b"tiny", True, b"yes", b"1") in dumps[0]
    # cachedump: class 1 holds tiny, tiny:2 and odd\x01key in both.
    for server in (daemon, oracle):
        reply = exchange(server, b"stats cachedump 1 0\r\n", b"END\r\n")
        got = sorted(re.findall(rb"ITEM (\S+) \[(\d+) b; \d+ s\]\r\n", reply))
        assert [k for k, _ in got if k != b"odd\x01key" and k != b"odd%01key"] == [b"tiny", b"tiny:2"]
        limited = exchange(server, b"stats cachedump 1 1\r\n", b"END\r\n")
        assert limited.count(b"ITEM ") == 1
    assert b"\x01" not in exchange(daemon, b"stats cachedump 1 0\r\n", b"END\r\n")  # never a raw control byte


def test_metadump_of_200k_keys_is_sliced_behind_its_reader(
    daemon_factory: Factory, daemon_backend: str
) -> None:
    n = 200_000
    d = daemon_factory("-m", "256", backend=daemon_backend)
    with d.connect(timeout=120) as loader:
        for start in range(0, n, 10_000):
            loader.sendall(
                b"".join(b"set key%06d 0 0 1 noreply\r\nv\r\n" % i for i in range(start, start + 10_000))
            )
        loader.sendall(b"mn\r\n")
        assert read_until(loader, b"MN\r\n") == b"MN\r\n"
    dumper = d.connect(timeout=120)
    dumper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        dumper.sendall(b"lru_crawler metadump all\r\n")
        head = dumper.recv(4096)
        assert head.startswith(b"key=")  # the dump has started; now it is not read
        # Another client is answered while the dump waits for its reader, and the dump has
        # gone only as far as its reader let it (a slice at a time, bounded by backpressure).
        with d.connect(timeout=60) as other:
            for i in range(50):
                other.sendall(b"get key%06d\r\n" % (i * 997))
                assert read_until(other, b"END\r\n") == b"VALUE key%06d 0 1\r\nv\r\nEND\r\n" % (i * 997)
            other.sendall(b"lru_crawler metadump all\r\n")
            assert read_until(other, b"\r\n") == b"BUSY currently processing crawler request\r\n"
            other.sendall(b"stats\r\n")
            during = dict(re.findall(rb"STAT (\w+) (\S+)\r\n", read_until(other, b"END\r\n")))
        assert during[b"lru_crawler_running"] == b"1"
        assert int(during[b"crawler_items_checked"]) < n
        rest = read_until(dumper, b"END\r\n", limit=1 << 30)
    finally:
        dumper.close()
    body = head + rest
    assert body.endswith(b"\nEND\r\n")
    keys = re.findall(rb"^key=(key\d{6}) ", body, re.M)
    assert len(keys) == n and len(set(keys)) == n
    after = {k: v for k, v in re.findall(rb"STAT (\w+) (\S+)\r\n", exchange(d, b"stats\r\n", b"END\r\n"))}
    assert after[b"lru_crawler_running"] == b"0"
    assert int(after[b"crawler_items_checked"]) >= n


def test_a_dump_whose_client_leaves_frees_the_crawler(daemon_factory: Factory, daemon_backend: str) -> None:
    d = daemon_factory(backend=daemon_backend)
    with d.connect() as loader:
        loader.sendall(
            b"".join(b"set key%06d 0 0 100 noreply\r\n%s\r\n" % (i, b"v" * 100) for i in range(20_000))
        )
        loader.sendall(b"mn\r\n")
        assert read_until(loader, b"MN\r\n") == b"MN\r\n"
    with d.connect() as dumper:
        dumper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        dumper.sendall(b"lru_crawler metadump all\r\n")
        assert dumper.recv(100).startswith(b"key=")
    # Once the daemon has seen the close, a new dump may start (memcached: one at a time).
    deadline = time.monotonic() + 60
    while True:
        reply = exchange(d, b"lru_crawler metadump 1\r\n", b"\r\n")
        if not reply.startswith(b"BUSY"):
            break
        assert time.monotonic() < deadline, "the closed dump never ended"
        time.sleep(0.1)
    assert reply.startswith(b"key=") or reply == b"END\r\n"


# -- stats detail, watch --------------------------------------------------------------------------

DETAIL = (
    b"stats detail on\r\n"
    b"set a:1 0 0 1\r\nx\r\n"
    b"get a:1 a:2 nocolon\r\n"
    b"set b:1 0 0 1\r\nx\r\n"
    b"delete a:1\r\n"
    b"delete b:9\r\n"
    b"stats detail off\r\n"
    b"get a:1\r\n"
    b"stats detail dump\r\n"
)


@needs_memcached
def test_stats_detail_dump_is_memcached_s(daemon: Daemon, oracle: Memcached) -> None:
    replies = []
    for server in (daemon, oracle):
        with server.connect() as sock:
            sock.sendall(DETAIL)
            got = b""
            while got.count(b"END\r\n") < 3:  # two gets' ENDs, then the dump's
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
            replies.append(got)
    ours_lines = sorted(replies[0].split(b"\r\n"))
    theirs_lines = sorted(replies[1].split(b"\r\n"))
    assert ours_lines == theirs_lines
    assert b"PREFIX a get 2 hit 1 set 1 del 1" in ours_lines  # before: stats detail on recorded nothing
    assert b"PREFIX b get 0 hit 0 set 1 del 1" in ours_lines


WATCH_LINE = re.compile(
    rb"ts=\d+\.\d+ gid=\d+ type=(item_get|item_store) key=(\S+) status=(\w+)"
    rb"(?: cmd=(\w+) ttl=(\d+))? clsid=(\d+) cfd=\d+ size=(\d+)\n"
)


def _watch(server: Server, traffic: bytes, replies: bytes, expect: int) -> list[tuple[bytes, ...]]:
    with server.connect() as w:
        w.sendall(b"watch fetchers mutations\r\n")
        assert read_until(w, b"\r\n") == b"OK\r\n"
        assert exchange(server, traffic, replies) == replies
        lines: list[bytes] = []
        buf = b""
        while len(lines) < expect:
            chunk = w.recv(65536)
            assert chunk, lines
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += [line + b"\n" for line in done]
    out = []
    for line in lines:
        m = WATCH_LINE.fullmatch(line)
        assert m, line
        out.append(m.groups())
    return out


WATCH_TRAFFIC = (
    b"set k\x01y 5 100 3\r\nabc\r\nget k\x01y nope\r\nadd new 0 0 1\r\nx\r\nappend none 0 0 1\r\nx\r\n"
)
WATCH_REPLIES = b"STORED\r\nVALUE k\x01y 5 3\r\nabc\r\nEND\r\nSTORED\r\nNOT_STORED\r\n"


def test_watch_lines_are_in_memcached_s_format(daemon: Daemon) -> None:
    events = _watch(daemon, WATCH_TRAFFIC, WATCH_REPLIES, 5)
    stores = [e for e in events if e[0] == b"item_store"]
    gets = [e for e in events if e[0] == b"item_get" and e[1] in (b"k%01y", b"nope")]
    assert (b"item_store", b"k%01y", b"stored", b"set", b"100", b"1", b"3") in stores
    assert (b"item_store", b"new", b"stored", b"add", b"0", b"1", b"1") in stores
    assert any(e[1:3] == (b"none", b"not_stored") and e[3] == b"append" for e in stores)
    assert (b"item_get", b"k%01y", b"found", None, None, b"1", b"3") in gets
    assert (b"item_get", b"nope", b"not_found", None, None, b"0", b"0") in gets


@needs_memcached
def test_watch_lines_match_memcached_s(oracle: Memcached) -> None:
    # The same assertions against the oracle: the format above is memcached's.
    events = _watch(oracle, WATCH_TRAFFIC, WATCH_REPLIES, 5)
    assert (b"item_store", b"k%01y", b"stored", b"set", b"100", b"1", b"3") in events
    assert (b"item_get", b"nope", b"not_found", None, None, b"0", b"0") in events


EVICTION_LINE = re.compile(
    rb"ts=\d+\.\d+ gid=\d+ type=eviction key=(\S+) fetch=(yes|no) ttl=(-?\d+) la=(\d+)"
    rb" clsid=(\d+) size=(\d+)\n"
)
CONN_LINE = re.compile(
    rb"ts=\d+\.\d+ gid=\d+ type=conn_(new|close) rip=(\S+) rport=(\d+) transport=(\w+)"
    rb"(?: reason=(\w+))? cfd=(\d+)\n"
)


def _watch_evictions_and_connections(
    server: Server,
) -> tuple[list[tuple[bytes, ...]], list[tuple[bytes, ...]], int]:
    """Watch evictions and connevents while a client fills a 2 MB cache with 200 x 50 KB and
    leaves: the eviction lines, the lines of that client's connection, and its port."""
    with server.connect(timeout=60) as w:
        w.sendall(b"watch evictions connevents\r\n")
        assert read_until(w, b"\r\n") == b"OK\r\n"
        c = server.connect(timeout=60)
        port = c.getsockname()[1]
        value = b"v" * 50_000
        c.sendall(b"set first 0 300 3\r\nabc\r\nget first\r\n")
        assert read_until(c, b"END\r\n").startswith(b"STORED\r\nVALUE first")
        for i in range(200):
            c.sendall(b"set k%d 0 0 %d\r\n%s\r\n" % (i, len(value), value))
            assert read_until(c, b"\r\n") == b"STORED\r\n"
        c.close()
        got = b""
        closed = b"type=conn_close rip=127.0.0.1 rport=%d " % port
        while closed not in got or not got.endswith(b"\n"):
            chunk = w.recv(1 << 20)
            assert chunk, got
            got += chunk
    lines = [line + b"\n" for line in got.split(b"\n")[:-1]]
    evictions = [m.groups() for m in map(EVICTION_LINE.fullmatch, lines) if m]
    conns = [m.groups() for m in map(CONN_LINE.fullmatch, lines) if m and m.group(3) == b"%d" % port]
    assert len(evictions) + sum(1 for line in lines if CONN_LINE.fullmatch(line)) == len(lines), lines
    return evictions, conns, port


def _check_evictions_and_connections(server: Server) -> list[tuple[bytes, ...]]:
    evictions, conns, _port = _watch_evictions_and_connections(server)
    assert [c[0] for c in conns] == [b"new", b"close"]
    assert all(c[1:4] == (b"127.0.0.1", conns[0][2], b"tcp") for c in conns)
    assert conns[0][4] is None and conns[1][4] == b"normal"
    k0 = [e for e in evictions if e[0] == b"k0"]
    assert len(k0) == 1 and k0[0][1:3] == (b"no", b"-1") and k0[0][4:] == (b"29", b"50000")
    assert len(evictions) > 100
    return evictions


def test_watch_reports_evictions_and_connections(daemon_factory: Factory, daemon_backend: str) -> None:
    d = daemon_factory("-m", "2", backend=daemon_backend)
    evictions = _check_evictions_and_connections(d)  # before: no line at all
    # Every eviction, and each once (a log of 1,024 per turn of the loop is far from full here).
    assert len(evictions) == int(stats(d)["evictions"])
    assert len({e[0] for e in evictions}) == len(evictions)
    # Here the LRU is one list, so the small item went first (memcached's is per size class).
    assert evictions[0][:3] == (b"first", b"yes", evictions[0][2]) and 0 < int(evictions[0][2]) <= 300


@needs_memcached
def test_watch_evictions_and_connections_match_memcached_s(
    memcached_factory: Callable[..., Memcached],
) -> None:
    # The same checks against memcached 1.6.18 with the same 2 MB: the lines above are its.
    _check_evictions_and_connections(memcached_factory("-m", "2"))


def _watch_until(w: socket.socket, got: bytes, needle: bytes) -> bytes:
    while needle not in got:
        chunk = w.recv(65536)
        assert chunk, got
        got += chunk
    return got


def test_watch_reports_an_idle_close(daemon_factory: Factory, daemon_backend: str) -> None:
    d = daemon_factory("--idle-timeout", "1", backend=daemon_backend)
    with d.connect(timeout=60) as w:
        w.sendall(b"watch connevents\r\n")
        assert read_until(w, b"\r\n") == b"OK\r\n"
        # the watcher itself is never idle-kicked: memcached spares it too (it is in conn_watch)
        with d.connect(timeout=60) as idle:
            port = idle.getsockname()[1]
            _watch_until(w, b"", b"rport=%d transport=tcp reason=idle_timeout" % port)


CLOSE_REASONS = {
    "quit": b"normal",
    "binary quit": b"normal",
    "line too long": b"error",
    "bad magic": b"error",
    "reset": b"error",
}


def test_watch_tells_a_quit_from_a_protocol_error_and_a_reset(
    daemon_factory: Factory, daemon_backend: str
) -> None:
    # before: every close said reason=normal
    assert _close_reasons(daemon_factory(backend=daemon_backend)) == CLOSE_REASONS


@needs_memcached
def test_watch_close_reasons_are_memcached_s(memcached_factory: Callable[..., Memcached]) -> None:
    assert _close_reasons(memcached_factory()) == CLOSE_REASONS


def _close_reasons(d: Server) -> dict[str, bytes]:
    with d.connect(timeout=60) as w:
        w.sendall(b"watch connevents\r\n")
        assert read_until(w, b"\r\n") == b"OK\r\n"
        got = b""
        reasons = {}
        for name, send in (
            ("quit", b"version\r\nquit\r\n"),
            ("binary quit", bytes([0x80, 0x07]) + bytes(22)),
            ("line too long", b"x" * 5000),  # no newline in 2048 bytes: memcached closes
            ("bad magic", bytes([0x80, 0x0A]) + bytes(22) + bytes([0x81]) + bytes(23)),
            ("reset", b"get a"),
        ):
            c = d.connect(timeout=60)
            port = c.getsockname()[1]
            got = _watch_until(w, got, b"type=conn_new rip=127.0.0.1 rport=%d " % port)
            if name == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.sendall(send)
                c.close()
            else:
                c.sendall(send)
                read_until(c, None)  # the daemon closes it
                c.close()
            got = _watch_until(w, got, b"rport=%d transport=tcp reason=" % port)
            m = re.search(
                rb"type=conn_close rip=127\.0\.0\.1 rport=%d transport=tcp reason=(\w+) cfd=\d+\n" % port, got
            )
            assert m, got
            reasons[name] = m.group(1)
    return reasons


def test_watch_reports_skipped_lines_when_its_client_is_slow(
    daemon_factory: Factory, daemon_backend: str
) -> None:
    d = daemon_factory(backend=daemon_backend)
    w = d.connect(timeout=60)
    try:
        w.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024)
        w.sendall(b"watch fetchers\r\n")
        assert read_until(w, b"\r\n") == b"OK\r\n"
        # Far more lines than the watcher's buffer and the sockets hold, while it does not read
        # (the kernel's loopback buffers take a few MB first: go on until lines are skipped).
        with d.connect(timeout=60) as c:
            skipped = 0
            for _ in range(1000):
                c.sendall(b"get " + b" ".join(b"missing%05d" % i for i in range(1000)) + b"\r\n")
                assert read_until(c, b"END\r\n") == b"END\r\n"
                c.sendall(b"stats\r\n")
                st = dict(re.findall(rb"STAT (\w+) (\d+)\r\n", read_until(c, b"END\r\n")))
                skipped = int(st[b"log_watcher_skipped"])
                if skipped:
                    break
            assert skipped > 0
            w.settimeout(30)
            got = b""
            while b"skipped=" not in got:
                c.sendall(b"get after\r\n")  # a line that fits once the buffer drained
                assert read_until(c, b"END\r\n") == b"END\r\n"
                chunk = w.recv(1 << 20)
                assert chunk
                got += chunk
    finally:
        w.close()
    assert re.search(rb"(^|\n)skipped=\d+\n", got)


# -- real tools -----------------------------------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("backend", backend_params())
def test_memcdump_and_memcstat(daemon_factory: Factory, backend: str) -> None:
    d = daemon_factory(backend=backend)
    fill(d, SIZES)
    r = subprocess.run(
        ["memcdump", f"--servers=127.0.0.1:{d.port}"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted(k.decode() for k in SIZES)  # every class walked
    r = subprocess.run(
        ["memcstat", f"--servers=127.0.0.1:{d.port}"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert "bytes_read:" in r.stdout and "accepting_conns: 1" in r.stdout
    assert f"curr_items: {len(SIZES)}" in r.stdout


def _php_memcached() -> bool:
    if shutil.which("php") is None:
        return False
    r = subprocess.run(
        ["php", "-r", "exit(class_exists('Memcached') ? 0 : 1);"], capture_output=True, timeout=30
    )
    return r.returncode == 0


PHP_DIR = Path(__file__).resolve().parent / "php"


@pytest.mark.skipif(not _php_memcached(), reason="php-cli and php-memcached not installed")
@pytest.mark.parametrize("backend", backend_params())
def test_php_get_all_keys_and_get_stats(
    daemon_factory: Factory, backend: str, memcached_factory: Callable[..., Memcached]
) -> None:
    results = []
    servers: list[Server] = [daemon_factory(backend=backend)]
    if MEMCACHED is not None:
        servers.append(memcached_factory("-o", "no_lru_maintainer"))  # one LRU, as ours
    for server in servers:
        r = subprocess.run(
            ["php", str(PHP_DIR / "dump.php"), str(server.port)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        results.append(json.loads(r.stdout))
    ours = results[0]
    assert ours["keys"] == ["alpha", "beta", "gamma"], results  # before: false (cachedump answered ERROR)
    assert ours["curr_items"] == 3 and ours["bytes_read"] > 0 and ours["bytes_written"] > 0
    if len(results) > 1:
        assert results[1]["keys"] == ours["keys"]


def test_pymemcache_stats_groups(daemon: Daemon) -> None:
    from pymemcache.client.base import Client

    fill(daemon, SIZES)
    client = Client(daemon.address, connect_timeout=10, timeout=30)
    try:
        dumped = client.stats("cachedump", "1", "0")
        assert sorted(dumped) == [b"tiny", b"tiny:2"]
        assert all(re.fullmatch(rb"\[\d+ b; \d+ s\]", v) for v in dumped.values())
        items = client.stats("items")
        assert sum(v for k, v in items.items() if k.endswith(b":number")) == len(SIZES)
        slabs = client.stats("slabs")
        assert slabs[b"active_slabs"] == 4
        general = client.stats()
        assert general[b"bytes_read"] > 0 and general[b"accepting_conns"] == 1
    finally:
        client.close()


MEMCACHED_TOOL = "/usr/share/memcached/scripts/memcached-tool"


@pytest.mark.skipif(
    not (os.path.exists(MEMCACHED_TOOL) and shutil.which("perl")),
    reason="memcached's memcached-tool not installed",
)
@pytest.mark.parametrize("backend", backend_params())
def test_memcached_tool_display_dump_and_keys(
    daemon_factory: Factory, backend: str, memcached_factory: Callable[..., Memcached]
) -> None:
    # memcached's own admin script (Debian's memcached package): display reads stats slabs and
    # items, dump walks metadump then gets each key, keys prints metadump's lines.
    servers: list[Server] = [daemon_factory(backend=backend)]
    if MEMCACHED is not None:
        servers.append(memcached_factory("-o", "no_lru_maintainer"))
    seen = []
    for server in servers:
        fill(server, SIZES)

        def run(mode: str, server: Server = server) -> str:
            r = subprocess.run(
                ["perl", MEMCACHED_TOOL, f"127.0.0.1:{server.port}", mode], capture_output=True, timeout=60
            )
            assert r.returncode == 0, r.stderr
            return r.stdout.decode()

        display = [line.split() for line in run("display").splitlines()[1:]]
        dumped = re.findall(r"^add (\S+) 0 0 (\d+)\r?$", run("dump"), re.M)
        keys = re.findall(r"^key=(\S+) ", run("keys"), re.M)
        seen.append(
            (
                sorted((row[0], row[1], row[4]) for row in display),  # class, chunk size, count
                sorted(dumped),
                sorted(keys),
            )
        )
    ours = seen[0]
    assert ours[1] == sorted((k.decode(), str(n)) for k, n in SIZES.items())
    assert ours[2] == sorted(k.decode().replace(":", "%3A") for k in SIZES)
    assert sum(int(count) for _, _, count in ours[0]) == len(SIZES)
    if len(seen) > 1:
        assert ours == seen[1]
