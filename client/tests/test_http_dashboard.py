"""The dashboard's routes, the key browser, access control and the memcached_exporter metrics.

Through falcon.testing against real daemons: the session's pycache-d, and memcached where a test
needs what pycache-d may not answer yet (``lru_crawler metadump``): the app is a memcached client.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import pytest
from daemon_procs import Daemon, DaemonUnavailable, free_port, start_memcached

from pycache_client import Client
from pycache_client.address import parse_address
from pycache_client.http import Config, create_app
from pycache_client.http import browser as browser_module
from pycache_client.http.auth import AuthFileError, Credentials, is_loopback

PROMTOOL = shutil.which("promtool")


def b64(key: str) -> str:
    return base64.b64encode(key.encode()).decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def memcached() -> Iterator[Daemon]:
    try:
        # NOTE: no LRU maintainer thread: it moves items between the HOT/WARM/COLD queues in the
        # background, which reorders the dump between two pages (documented; not what a test
        # of the paging wants).
        proc = start_memcached(["-o", "no_lru_maintainer"])
    except DaemonUnavailable as exc:
        pytest.skip(f"memcached is needed for the key dump: {exc}")
    yield proc
    proc.stop()


@pytest.fixture
def mc(memcached: Daemon) -> Iterator[Client]:
    with Client(memcached.address) as c:
        c.flush_all()
        yield c


# -- the page and its JSON route ------------------------------------------------------------------


def test_page_and_assets_are_served_with_a_strict_policy(daemon: Daemon) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=daemon.address)))
    r = http.simulate_get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<script src="/static/dashboard.js"' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert (
        "http://" not in r.text.replace("http://www.w3.org", "") and "https://" not in r.text
    )  # nothing remote
    js = http.simulate_get("/static/dashboard.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "https://" not in js.text and 'fetch("/api/dashboard"' in js.text
    assert http.simulate_get("/static/dashboard.css").status_code == 200
    assert http.simulate_get("/static/../app.py").status_code == 404
    assert http.simulate_get("/static/app.py").status_code == 404


def test_dashboard_data_shows_each_node_and_a_down_one(daemon: Daemon, client: Client) -> None:
    down = f"127.0.0.1:{free_port()}"
    http = falcon.testing.TestClient(create_app(Config(cache=f"{daemon.address},{down}")))
    client.set("d1", "x" * 500)
    data = http.simulate_get("/api/dashboard").json
    assert data["access"] == {"writes": True, "browser": True, "auth": False, "reason": ""}
    (live,) = [n for n in data["nodes"] if n["up"]]
    (dead,) = [n for n in data["nodes"] if not n["up"]]
    assert live["name"] == daemon.address and dead["name"] == down and "cannot connect" in dead["error"]
    assert live["stats"]["curr_items"] >= 1 and live["stats"]["limit_maxbytes"] > 0
    assert isinstance(live["version"], str) and live["threads"] >= 1
    assert live["backend"] in ("native", "python", "memcached")
    assert live["classes"] and all("chunk_size" in c for c in live["classes"])


def test_dashboard_data_of_memcached(memcached: Daemon, mc: Client) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=memcached.address)))
    mc.set("m", "v")
    (node,) = http.simulate_get("/api/dashboard").json["nodes"]
    assert node["up"] and node["backend"] == "memcached" and node["version"].startswith("1.")
    assert node["stats"]["bytes_read"] > 0 and node["classes"][0]["number"] >= 1


def test_one_stats_round_per_second_shared_by_every_viewer(daemon: Daemon) -> None:
    app = create_app(Config(cache=daemon.address))
    app.sampler.max_age = 60.0  # one round serves every request of this test

    async def main() -> None:
        async with falcon.testing.TestClient(app) as conductor:
            results = await asyncio.gather(*(conductor.simulate_get("/api/dashboard") for _ in range(10)))
            assert all(r.status_code == 200 for r in results)
            await conductor.simulate_get("/metrics")
            await conductor.simulate_get("/scrape", params={"target": daemon.address})
            assert app.sampler.rounds == 1
            app.sampler.max_age = 0.0
            await conductor.simulate_get("/api/dashboard")
            assert app.sampler.rounds == 2

    asyncio.run(main())


# -- metrics in memcached_exporter's names -------------------------------------------------------


def value(text: str, sample: str) -> float:
    (line,) = [x for x in text.splitlines() if x.startswith(sample + " ")]
    return float(line.split()[-1])


def exposition(http: falcon.testing.TestClient, path: str = "/metrics", **params: str) -> str:
    r = http.simulate_get(path, params=params)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return r.text


def test_metrics_use_the_exporters_names(memcached: Daemon, mc: Client) -> None:
    down = f"127.0.0.1:{free_port()}"
    http = falcon.testing.TestClient(create_app(Config(cache=f"{memcached.address},{down}")))
    before = exposition(http)
    mc.set("a", "1")
    mc.get("a")
    mc.get("missing")
    text = exposition(http)
    node = f'server="{memcached.address}"'
    assert f"memcached_up{{{node}}} 1.0" in text and f'memcached_up{{server="{down}"}} 0.0' in text
    for command, status in [("get", "hit"), ("get", "miss"), ("set", "hit")]:
        sample = f'memcached_commands_total{{command="{command}",{node},status="{status}"}}'
        assert value(text, sample) == value(before, sample) + 1, sample
    for name, kind in [
        ("memcached_current_items", "gauge"), ("memcached_current_bytes", "gauge"),
        ("memcached_limit_bytes", "gauge"),
        ("memcached_items_evicted_total", "counter"), ("memcached_read_bytes_total", "counter"),
        ("memcached_written_bytes_total", "counter"), ("memcached_current_connections", "gauge"),
        ("memcached_connections_total", "counter"), ("memcached_max_connections", "gauge"),
        ("memcached_slab_chunk_size_bytes", "gauge"), ("memcached_slab_current_items", "gauge"),
        ("memcached_slab_commands_total", "counter"), ("memcached_uptime_seconds", "untyped"),
        ("memcached_lru_crawler_enabled", "gauge"), ("memcached_version", "gauge"),
    ]:  # fmt: skip
        assert f"# TYPE {name} {kind}" in text, name
    assert value(text, f'memcached_slab_current_items{{{node},slab="1"}}') >= 1
    assert f'memcached_version{{{node},version="1.6.18"}}' in text or "memcached_version{" in text
    # Our own extras and the HTTP metrics are still there.
    assert f"pycache_curr_items{{{node}}}" in text and "http_requests_total" in text


def test_scrape_is_one_target_without_the_label(memcached: Daemon, mc: Client, daemon: Daemon) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=f"{memcached.address},{daemon.address}")))
    text = exposition(http, "/scrape", target=memcached.address)
    assert "memcached_up 1.0" in text and "server=" not in text and "memcached_current_items " in text
    assert "http_requests_total" not in text
    r = http.simulate_get("/scrape", params={"target": "10.0.0.1:11211"})
    assert r.status_code == 400 and "configured" in r.json["description"]  # never a new target


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
@pytest.mark.parametrize("kind", ["pycache-d", "memcached"])
def test_promtool_finds_nothing(kind: str, daemon: Daemon, memcached: Daemon, mc: Client) -> None:
    node = daemon if kind == "pycache-d" else memcached
    down = f"127.0.0.1:{free_port()}"
    http = falcon.testing.TestClient(create_app(Config(cache=f"{node.address},{down}")))
    with Client(node.address) as c:
        c.set("p", "1")
        c.get("p")
    http.simulate_get("/healthz")
    for text in (exposition(http), exposition(http, "/scrape", target=node.address)):
        assert PROMTOOL is not None
        out = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
        )
        assert (out.returncode, out.stdout, out.stderr) == (0, "", ""), out.stdout + out.stderr


def test_promtool_check_can_fail() -> None:
    if PROMTOOL is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    bad = "# HELP x_count a\n# TYPE x_count counter\nx_count 1\n"
    out = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0


# -- the key browser ---------------------------------------------------------------------------


@pytest.fixture
def kb(memcached: Daemon, mc: Client) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(Config(cache=memcached.address)))


def test_key_browser_finds_pages_shows_touches_and_deletes(
    kb: falcon.testing.TestClient, memcached: Daemon, mc: Client
) -> None:
    for i in range(7):
        mc.set(f"user:{i}", {"n": i}, ttl=600)
    mc.set("other", b"\x00\xff")
    mc.set("a/b c".replace(" ", "%"), "slash")
    server = memcached.address
    r = kb.simulate_get("/api/keys", params={"server": server, "prefix": "user:"})
    assert r.status_code == 200, r.text
    page = r.json
    assert page["complete"] and sorted(k["key"] for k in page["keys"]) == [f"user:{i}" for i in range(7)]
    assert page["bounds"] == {"page": 50, "scan": browser_module.MAX_SCAN, "seconds": 1.0}
    one = page["keys"][0]
    assert one["exp"] > 0 and one["size"] > 0 and one["cls"] >= 1 and one["fetched"] is False
    # Paged: two at a time, continuing from the cursor, until the dump is read.
    seen, cursor = [], 0
    for _ in range(10):
        r = kb.simulate_get(
            "/api/keys", params={"server": server, "prefix": "user:", "limit": "2", "cursor": str(cursor)}
        )
        seen += [k["key"] for k in r.json["keys"]]
        cursor = r.json["cursor"]
        if r.json["complete"]:
            break
        assert r.json["stopped"] == "page" and len(r.json["keys"]) == 2
    assert sorted(seen) == [f"user:{i}" for i in range(7)]
    # A key's value and meta fields.
    v = kb.simulate_get("/api/keys/value", params={"server": server, "key": b64("user:3")}).json
    assert base64.b64decode(v["value_b64"]) == b'{"n":3}' and v["size"] == 7 and v["flags"] == 32
    assert 0 < v["ttl"] <= 600 and v["cas"] > 0 and v["last_access"] >= 0
    assert (
        kb.simulate_get("/api/keys/value", params={"server": server, "key": b64("a/b%c")}).json["key"]
        == "a/b%c"
    )
    # Touch, then delete.
    assert (
        kb.simulate_post(
            "/api/keys/touch", params={"server": server, "key": b64("user:3"), "ttl": "0"}
        ).status_code
        == 204
    )
    assert (
        kb.simulate_get("/api/keys/value", params={"server": server, "key": b64("user:3")}).json["ttl"] == -1
    )
    assert (
        kb.simulate_delete("/api/keys/value", params={"server": server, "key": b64("user:3")}).status_code
        == 204
    )
    assert mc.get("user:3") is None
    assert (
        kb.simulate_delete("/api/keys/value", params={"server": server, "key": b64("user:3")}).status_code
        == 404
    )
    assert (
        kb.simulate_get("/api/keys/value", params={"server": server, "key": b64("user:3")}).status_code == 404
    )


def test_key_browser_bounds(
    kb: falcon.testing.TestClient, memcached: Daemon, mc: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    mc.set_many({f"k{i}": "v" for i in range(30)})
    monkeypatch.setattr(browser_module, "MAX_SCAN", 10)
    page = kb.simulate_get("/api/keys", params={"server": memcached.address, "prefix": "nope"}).json
    assert (page["keys"], page["cursor"], page["complete"], page["stopped"]) == ([], 10, False, "scan_limit")
    r = kb.simulate_get("/api/keys", params={"server": memcached.address, "limit": "500"})
    assert r.status_code == 400  # over MAX_PAGE
    r = kb.simulate_get("/api/keys", params={"server": "127.0.0.1:1"})
    assert r.status_code == 400 and "configured" in r.json["description"]
    r = kb.simulate_get("/api/keys/value", params={"server": memcached.address, "key": "%%%"})
    assert r.status_code == 400


def test_key_browser_on_pycache_d(daemon: Daemon, client: Client) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=daemon.address)))
    client.set("pd:1", "one")
    v = http.simulate_get("/api/keys/value", params={"server": daemon.address, "key": b64("pd:1")})
    assert v.status_code == 200 and base64.b64decode(v.json["value_b64"]) == b"one" and v.json["ttl"] == -1
    r = http.simulate_get("/api/keys", params={"server": daemon.address, "prefix": "pd:"})
    if r.status_code == 502 and "no key dump" in r.json["description"]:
        pytest.skip("this pycache-d has no lru_crawler metadump yet (the stats branch adds it)")
    assert r.status_code == 200 and [k["key"] for k in r.json["keys"]] == ["pd:1"]


# -- access control ------------------------------------------------------------------------------


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    path = tmp_path / "http-auth"
    path.write_text("# users and tokens\nalice:s3cret pass\n\ntok-123456\n")
    path.chmod(0o600)
    return path


ROUTES = [
    ("GET", "/"), ("GET", "/api/dashboard"), ("GET", "/metrics"), ("GET", "/readyz"),
    ("GET", "/openapi.json"), ("GET", "/api/storage/k"), ("PUT", "/api/storage/k"),
    ("GET", "/api/storage/?key=k"), ("POST", "/api/storage/"),
    ("GET", "/api/stats"), ("GET", "/api/keys"), ("GET", "/static/dashboard.js"), ("GET", "/scrape"),
    ("GET", "/nope"),
]  # fmt: skip


def test_every_route_but_healthz_needs_the_credential(
    auth_file: Path, daemon: Daemon, client: Client
) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=daemon.address, auth_file=str(auth_file))))
    for method, path in ROUTES:
        path, _, query = path.partition("?")
        r = http.simulate_request(method, path, query_string=query, body=b"k=v")
        assert r.status_code == 401, (method, path)
        assert r.headers["www-authenticate"].startswith('Basic realm="pycache-http"'), r.headers
        assert "Bearer" in r.headers["www-authenticate"]
        for bad in (basic("alice", "wrong"), basic("bob", "s3cret pass"),
                    {"Authorization": "Bearer tok-12345"}, {"Authorization": "Basic !!"},
                    {"Authorization": "Digest x"}):  # fmt: skip
            assert http.simulate_request(method, path, query_string=query, headers=bad).status_code == 401
    assert http.simulate_get("/healthz").status_code == 200
    for good in (
        basic("alice", "s3cret pass"),
        {"Authorization": "Bearer tok-123456"},
        basic("any", "tok-123456"),
    ):
        r = http.simulate_put("/api/storage/k", body=b"v", headers=good)
        assert r.status_code == 204, good
        assert http.simulate_get("/api/storage/k", headers=good).content == b"v"
    assert http.simulate_get("/api/dashboard", headers=basic("alice", "s3cret pass")).json["access"]["auth"]
    metrics = http.simulate_get("/metrics", headers=basic("alice", "s3cret pass")).text
    assert 'status="401"' in metrics  # refused requests are counted too
    assert "s3cret" not in metrics and "tok-123456" not in metrics


def test_auth_file_rules(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert not Credentials.load(str(empty)).enabled  # the unit's default credential: off
    comments = tmp_path / "comments"
    comments.write_text("# no /etc/pycache-d/http-auth: access control off")  # the unit's default
    assert not Credentials.load(str(comments)).enabled
    with pytest.raises(AuthFileError, match="cannot read"):
        Credentials.load(str(tmp_path / "missing"))
    half = tmp_path / "half"
    half.write_text("alice:\n")
    with pytest.raises(AuthFileError, match="user:password") as info:
        Credentials.load(str(half))
    assert "alice" not in str(info.value)  # nothing from the file in the message
    latin = tmp_path / "latin"
    latin.write_bytes(b"caf\xe9:x\n")
    with pytest.raises(AuthFileError, match="UTF-8"):
        Credentials.load(str(latin))


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("::", False),
                                                ("192.0.2.7", False), ("cache.example", False)])  # fmt: skip
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_beyond_loopback_without_auth_serves_no_writes_nor_key_browser(
    daemon: Daemon, client: Client
) -> None:
    http = falcon.testing.TestClient(create_app(Config(host="0.0.0.0", cache=daemon.address)))
    client.set("r", b"read me")
    for method, path in [("PUT", "/api/storage/k"), ("POST", "/api/storage/"), ("DELETE", "/api/storage/r"),
                         ("POST", "/api/storage/r/incr"), ("GET", "/api/keys"), ("GET", "/api/keys/value"),
                         ("DELETE", "/api/keys/value"), ("POST", "/api/keys/touch")]:  # fmt: skip
        r = http.simulate_request(method, path, body=b"k=v")
        assert r.status_code == 403, (method, path)
        assert "--auth-file" in r.json["description"]
    assert client.get("r") == b"read me" and client.get("k") is None
    # Reads, the page and the metrics stay.
    assert http.simulate_get("/api/storage/r").content == b"read me"
    access = http.simulate_get("/api/dashboard").json["access"]
    assert access["writes"] is False and access["browser"] is False and "beyond loopback" in access["reason"]
    assert http.simulate_get("/").status_code == 200 and http.simulate_get("/metrics").status_code == 200


def test_beyond_loopback_with_auth_serves_everything(auth_file: Path, daemon: Daemon, client: Client) -> None:
    http = falcon.testing.TestClient(
        create_app(Config(host="0.0.0.0", cache=daemon.address, auth_file=str(auth_file)))
    )
    assert (
        http.simulate_put(
            "/api/storage/k", body=b"v", headers={"Authorization": "Bearer tok-123456"}
        ).status_code
        == 204
    )
    assert client.get("k") == b"v"


def _fake_dumper(answers: list[bytes]) -> tuple[Any, Any]:
    """A node that answers each dump request with the next of ``answers`` and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\n")
        writer.write(answers.pop(0) if len(answers) > 1 else answers[0])
        await writer.drain()
        writer.close()

    return handle, answers


def test_a_page_waits_out_a_crawler_still_ending_the_last_walk() -> None:
    # memcached ends a walk closed mid-dump (the last page's) only at its crawler's next write,
    # and answers BUSY meanwhile: the page asks again (before: the search failed with 503).
    busy = b"BUSY currently processing crawler request\r\n"
    dump = b"key=user%3A1 exp=-1 la=1700000000 cas=7 fetch=no cls=1 size=70\nEND\r\n"
    handle, answers = _fake_dumper([busy, busy, dump])

    async def main() -> browser_module.Page:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            deadline = asyncio.get_running_loop().time() + 30
            return await browser_module.Browser().page(
                parse_address(f"127.0.0.1:{port}"), b"user:", 0, 10, deadline
            )

    page = asyncio.run(main())
    assert [k["key"] for k in page.keys] == ["user:1"] and page.complete
    assert answers == [dump]  # both BUSY answers were read


def test_a_crawler_busy_until_the_deadline_is_reported_busy() -> None:
    handle, _ = _fake_dumper([b"BUSY currently processing crawler request\r\n"])

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            deadline = asyncio.get_running_loop().time() + 0.5
            await browser_module.Browser().page(parse_address(f"127.0.0.1:{port}"), b"", 0, 10, deadline)

    with pytest.raises(browser_module.CrawlerBusy):
        asyncio.run(main())
