"""Scaling out through a proxy: three pycache-d nodes behind twemproxy with the shipped config.

``packaging/twemproxy/nutcracker.yml`` is rewritten only where a deployment changes it (the
``listen`` address and the addresses of its three ``servers``) to point at three real daemons on
ephemeral ports; nutcracker checks it (``-t``) and serves it. Through the proxy, 10,000 keys are
written with pipelined multi-sets and read back; each node, asked directly, holds its share; then
one node is stopped and the proxy must eject it and go on serving: the other nodes' keys hit,
the dead node's keys miss (never an error once it is ejected) and can be written again. The
classic commands pass through unchanged, and the proxy places keys where pycache-client's ring
does. Needs the Debian package ``nutcracker`` (skipped without it).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
from pymemcache.client.base import Client as MemcacheClient
from pymemcache.exceptions import MemcacheError

pytest.register_assert_rewrite("daemon")
pytest_plugins = ["daemon"]

from daemon import Daemon, read_until, stats  # noqa: E402

SHIPPED = Path(__file__).resolve().parent.parent / "packaging" / "twemproxy" / "nutcracker.yml"
#: Debian installs it in /usr/sbin, which is not on every user's PATH.
NUTCRACKER = shutil.which("nutcracker") or next(
    (p for p in ("/usr/sbin/nutcracker", "/usr/bin/nutcracker") if os.access(p, os.X_OK)), None
)
pytestmark = pytest.mark.skipif(
    NUTCRACKER is None, reason="twemproxy is not installed (Debian package nutcracker; make apt installs it)"
)

KEYS = 10_000
BATCH = 500  # keys per pipelined multi-set / multi-get
#: A node's least share of the keys: a third each on average; ketama with 160 points per node
#: keeps each within a few percent of that, wherever the ephemeral ports put the points.
MIN_SHARE = 0.20

Factory = Callable[..., Daemon]


def item(i: int) -> tuple[str, bytes]:
    """Return key ``i`` and its value (lengths vary so replies do not all look alike)."""
    key = f"cluster:{i}"
    return key, f"{key}={i * 7919}".encode() * (1 + i % 7)


def batches(keys: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(keys), BATCH):
        yield keys[start : start + BATCH]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def setting(config: str, name: str) -> int:
    """Return the integer setting ``name`` of the (single-pool) config text."""
    m = re.search(rf"^\s+{name}:\s*(\d+)\s*$", config, re.M)
    assert m, f"{name} missing from {SHIPPED}"
    return int(m[1])


def cluster_config(shipped: str, listen: tuple[str, int], nodes: list[tuple[str, int]]) -> str:
    """Rewrite the shipped config's ``listen`` and ``servers`` addresses, keeping all the rest.

    Each ``- host:port:weight [name]`` line gets the next node's address; weights, names and
    comments stay as shipped.
    """
    text, n = re.subn(r"^(\s+listen:\s*)\S+", lambda m: f"{m[1]}{listen[0]}:{listen[1]}", shipped, flags=re.M)
    assert n == 1, "the shipped config should have one pool with one listen address"
    queue = list(nodes)

    def server(m: re.Match[str]) -> str:
        host, port = queue.pop(0)
        return f"{m[1]}{host}:{port}:{m[2]}"

    text, n = re.subn(r"^(\s+- )\S+:\d+:(\d+(?: \S+)?)\s*$", server, text, flags=re.M)
    assert n == len(nodes) and not queue, f"the shipped config should list {len(nodes)} servers, not {n}"
    return text


@dataclass
class Proxy:
    """A running nutcracker and its log file."""

    proc: subprocess.Popen[bytes]
    address: tuple[str, int]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> MemcacheClient:
        return MemcacheClient(self.address, connect_timeout=5, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for_port(address: tuple[str, int], proc: subprocess.Popen[bytes], log: Callable[[], str]) -> None:
    """Wait (at most 10 s) until ``address`` accepts connections; fail if ``proc`` exits first."""
    deadline = time.monotonic() + 10
    while True:
        if proc.poll() is not None:
            pytest.fail(f"nutcracker exited with status {proc.returncode}:\n{log()}")
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"nutcracker does not accept on {address} after 10 s:\n{log()}")
            time.sleep(0.05)


@dataclass
class Cluster:
    nodes: list[Daemon]
    proxy: Proxy
    config: str


@pytest.fixture
def cluster(daemon_factory: Factory, daemon_backend: str, tmp_path: Path) -> Iterator[Cluster]:
    """Three daemons on ``daemon_backend`` behind nutcracker running the shipped config."""
    assert NUTCRACKER is not None
    nodes = [daemon_factory(backend=daemon_backend) for _ in range(3)]
    listen = ("127.0.0.1", free_port())
    config = cluster_config(SHIPPED.read_text(), listen, [d.address for d in nodes])
    conf = tmp_path / "nutcracker.yml"
    conf.write_text(config)
    check = subprocess.run([NUTCRACKER, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, f"nutcracker -t rejects the config:\n{check.stderr}{check.stdout}\n{config}"
    log_path = tmp_path / "nutcracker.log"
    # The stats listener defaults to 0.0.0.0:22222: keep it on loopback and out of the way.
    argv = [NUTCRACKER, "-c", str(conf), "-o", str(log_path), "-a", "127.0.0.1", "-s", str(free_port())]
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    proxy = Proxy(proc, listen, log_path)
    try:
        wait_for_port(listen, proc, lambda: proxy.log)
        yield Cluster(nodes, proxy, config)
    finally:
        proxy.stop()


def write_all(mc: MemcacheClient, keys: list[str], values: dict[str, bytes]) -> None:
    for chunk in batches(keys):
        # noreply=False: wait for every STORED (pymemcache's default sends and returns).
        assert mc.set_many({k: values[k] for k in chunk}, noreply=False) == []


def read_all(mc: MemcacheClient, keys: list[str]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for chunk in batches(keys):
        found.update(mc.get_many(chunk))
    return found


def owners(nodes: list[Daemon], keys: list[str], values: dict[str, bytes]) -> list[set[str]]:
    """Ask every live node directly which of ``keys`` it holds (checking each value)."""
    held = []
    for d in nodes:
        with closing(MemcacheClient(d.address, connect_timeout=5, timeout=10)) as mc:
            found = read_all(mc, keys)
        assert all(found[k] == values[k] for k in found)
        held.append(set(found))
    return held


def load(cluster: Cluster, mc: MemcacheClient) -> tuple[dict[str, bytes], list[set[str]]]:
    """Write the keys through the proxy, read them back; return them and which node holds which."""
    values = dict(item(i) for i in range(KEYS))
    keys = list(values)
    write_all(mc, keys, values)
    assert read_all(mc, keys) == values, cluster.proxy.log
    held = owners(cluster.nodes, keys, values)
    # Every key is on exactly one node.
    assert sum(len(h) for h in held) == KEYS and set().union(*held) == set(keys)
    return values, held


def test_keys_written_through_the_proxy_are_spread_over_every_node(cluster: Cluster) -> None:
    with closing(cluster.proxy.client()) as mc:
        _, held = load(cluster, mc)
    for d, h in zip(cluster.nodes, held, strict=True):
        assert int(stats(d)["curr_items"]) == len(h)
        assert len(h) >= MIN_SHARE * KEYS, [len(h) for h in held]


def stop_until_ejected(cluster: Cluster, mc: MemcacheClient, node: Daemon, probe: str) -> list[str]:
    """Stop ``node``, then get ``probe`` (one of its keys) until it misses; return the errors met.

    Requests that meet the stopped node fail until the proxy has counted server_failure_limit
    consecutive failures and ejected it; after that the node's keys are misses.
    """
    assert node.stop() == 0
    errors: list[str] = []
    deadline = time.monotonic() + 10
    while True:
        try:
            assert mc.get(probe) is None, "a key of the stopped node still hits"
            return errors
        except (MemcacheError, OSError) as exc:
            errors.append(repr(exc))
        assert time.monotonic() < deadline, f"not ejected after 10 s: {errors}\n{cluster.proxy.log}"
        time.sleep(0.05)


def test_proxy_ejects_a_stopped_node_and_keeps_serving(cluster: Cluster) -> None:
    proxy = cluster.proxy
    with closing(proxy.client()) as mc:
        values, held = load(cluster, mc)
        keys = list(values)
        lost = sorted(held[1])
        errors = stop_until_ejected(cluster, mc, cluster.nodes[1], lost[0])
        assert len(errors) <= setting(cluster.config, "server_failure_limit"), (errors, proxy.log)

        # Ejected: the whole key space is served without an error, the survivors' keys as before.
        assert read_all(mc, keys) == {k: values[k] for k in held[0] | held[2]}, proxy.log

        # The lost keys can be written again; they land on the survivors and every key reads back.
        write_all(mc, lost, values)
        assert read_all(mc, keys) == values, proxy.log
        moved = owners([cluster.nodes[0], cluster.nodes[2]], lost, values)
        assert set().union(*moved) == set(lost) and all(moved), [len(m) for m in moved]


def test_proxy_places_keys_where_pycache_client_does(cluster: Cluster) -> None:
    # The shipped config's promise: md5 keys on a ketama ring of host:port names of weight 1 is
    # pycache-client's ring, before and after a node is ejected, so both can share the cache.
    hashring = pytest.importorskip("pycache_client.hashring", reason="pycache-client is not installed")

    def ring(nodes: list[Daemon]) -> Callable[[str], int]:
        r = hashring.HashRing((f"{d.address[0]}:{d.address[1]}", i, 1) for i, d in enumerate(nodes))
        return lambda key: r.get(key.encode())

    with closing(cluster.proxy.client()) as mc:
        values, held = load(cluster, mc)
        owner = ring(cluster.nodes)
        for i, h in enumerate(held):
            assert h == {k for k in values if owner(k) == i}
        stop_until_ejected(cluster, mc, cluster.nodes[1], sorted(held[1])[0])
        write_all(mc, sorted(held[1]), values)
    live = [cluster.nodes[0], cluster.nodes[2]]
    owner = ring(live)
    for i, h in enumerate(owners(live, sorted(held[1]), values)):
        assert h == {k for k in held[1] if owner(k) == i}


def exchange(sock: socket.socket, request: bytes, reply_length: int) -> bytes:
    """Send ``request`` and read ``reply_length`` bytes (less if the proxy closes first)."""
    sock.sendall(request)
    buf = bytearray()
    while len(buf) < reply_length:
        chunk = sock.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def test_classic_commands_pass_through_the_proxy(cluster: Cluster) -> None:
    # NOTE: twemproxy forwards only the classic key commands; it closes the connection on the
    # others (stats, flush_all, verbosity, gat/gats, the meta commands): ask the nodes directly.
    big = bytes(range(256)) * 3600  # 900 KiB: spans many of the proxy's 16 KiB buffers
    keys = [f"multi{i}".encode() for i in range(20)]
    values = {k: b"v-" + k for k in keys}
    multi_get = b"".join(b"VALUE %s 0 %d\r\n%s\r\n" % (k, len(v), v) for k, v in values.items()) + b"END\r\n"
    script = [
        (
            b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v) for k, v in values.items()),
            b"STORED\r\n" * 20,
        ),
        # The proxy splits a multi-get by node and must join the replies back in request order.
        (b"get " + b" ".join(keys) + b" missing\r\n", multi_get),
        (b"add multi0 0 0 1\r\nx\r\nadd fresh 7 0 1\r\nx\r\n", b"NOT_STORED\r\nSTORED\r\n"),
        (b"replace nothing 0 0 1\r\nx\r\nreplace fresh 3 0 1\r\ny\r\n", b"NOT_STORED\r\nSTORED\r\n"),
        (b"append fresh 0 0 1\r\nz\r\nprepend fresh 0 0 1\r\nw\r\n", b"STORED\r\nSTORED\r\n"),
        (b"get fresh\r\n", b"VALUE fresh 3 3\r\nwyz\r\nEND\r\n"),
        (
            b"set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 20\r\nincr none 1\r\n",
            b"STORED\r\n15\r\n0\r\nNOT_FOUND\r\n",
        ),
        (b"touch fresh 100\r\ntouch none 100\r\n", b"TOUCHED\r\nNOT_FOUND\r\n"),
        (b"delete fresh\r\ndelete fresh\r\n", b"DELETED\r\nNOT_FOUND\r\n"),
        (b"set quiet 0 0 1 noreply\r\nq\r\nget quiet\r\n", b"VALUE quiet 0 1\r\nq\r\nEND\r\n"),
        (b"set empty 0 0 0\r\n\r\nget empty\r\n", b"STORED\r\nVALUE empty 0 0\r\n\r\nEND\r\n"),
        (
            b"set big 0 0 %d\r\n%s\r\nget big\r\n" % (len(big), big),
            b"STORED\r\nVALUE big 0 %d\r\n%s\r\nEND\r\n" % (len(big), big),
        ),
    ]
    with socket.create_connection(cluster.proxy.address, timeout=10) as sock:
        for request, reply in script:
            assert exchange(sock, request, len(reply)) == reply, (request[:80], cluster.proxy.log)
        # CAS through the proxy: the unique that gets shows is the node's own.
        sock.sendall(b"gets multi1\r\n")
        gets = re.fullmatch(rb"VALUE multi1 0 8 (\d+)\r\nv-multi1\r\nEND\r\n", read_until(sock, b"END\r\n"))
        assert gets, cluster.proxy.log
        assert exchange(sock, b"cas multi1 0 0 1 %s\r\nc\r\n" % gets[1], 8) == b"STORED\r\n"
        assert exchange(sock, b"cas multi1 0 0 1 %s\r\nd\r\n" % gets[1], 8) == b"EXISTS\r\n"
    # The multi-get above crossed nodes.
    values[b"multi1"] = b"c"
    held = owners(cluster.nodes, [k.decode() for k in keys], {k.decode(): v for k, v in values.items()})
    assert sum(1 for h in held if h) >= 2, [len(h) for h in held]
