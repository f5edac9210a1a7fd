"""The HTTP API through falcon.testing, against a real daemon (and against dead and silent ones)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import falcon.testing
import pytest
from daemon_procs import Daemon, free_port

from pycache_client import Client
from pycache_client.http import Config, create_app
from pycache_client.http.app import App
from pycache_client.http.openapi import build_spec

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TestClient = falcon.testing.TestClient


@pytest.fixture
def app(client: Client, daemon: Daemon) -> App:
    return create_app(Config(cache=daemon.address))


@pytest.fixture
def http(app: App) -> falcon.testing.TestClient:
    # NOTE: each simulate_* call runs a whole ASGI lifespan (startup, request, shutdown).
    return falcon.testing.TestClient(app)


def test_form_post_then_get_by_query(http: falcon.testing.TestClient, client: Client) -> None:
    # What `curl -d "k1=v1" -d "k2=v2" -X POST .../api/storage/` sends.
    r = http.simulate_post("/api/storage/", body="k1=v1&k2=v2", headers=FORM)
    assert r.status_code == 201 and r.json == {"stored": ["k1", "k2"]}
    assert client.get_many(["k1", "k2"]) == {"k1": "v1", "k2": "v2"}  # stored as text
    r = http.simulate_get("/api/storage/", params={"key": "k1"})
    assert r.status_code == 200 and r.json == {"k1": "v1"}
    assert r.headers["content-type"] == "application/json"
    r = http.simulate_get("/api/storage/", query_string="key=k1&key=k2&key=nope")
    assert r.json == {"k1": "v1", "k2": "v2"}
    assert http.simulate_get("/api/storage", params={"key": "k2"}).json == {"k2": "v2"}


def test_get_by_query_errors(http: falcon.testing.TestClient) -> None:
    r = http.simulate_get("/api/storage/", params={"key": "nope"})
    assert r.status_code == 404 and r.json["title"] == "404 Not Found" and "nope" in r.json["description"]
    assert http.simulate_get("/api/storage/").status_code == 400
    r = http.simulate_get("/api/storage/", params={"key": "bad key"})
    assert r.status_code == 400 and "whitespace" in r.json["description"]


def test_json_post_keeps_types(http: falcon.testing.TestClient, client: Client) -> None:
    body = {"s": "text", "n": 5, "obj": {"a": [1, None]}, "f": 1.5}
    r = http.simulate_post("/api/storage/", json=body, params={"ttl": "100"})
    assert r.status_code == 201
    assert client.get("n") == 5 and client.get("obj") == {"a": [1, None]}
    r = http.simulate_get("/api/storage/", query_string="key=s&key=n&key=obj&key=f")
    assert r.json == body


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ("", FORM, 400),
        ("[1, 2]", {"Content-Type": "application/json"}, 400),
        ("{bad", {"Content-Type": "application/json"}, 400),
        ("k=v", {"Content-Type": "text/plain"}, 415),
        ("bad key=v", FORM, 400),
    ],
)
def test_post_rejects_bad_bodies(
    http: falcon.testing.TestClient, body: str, headers: dict[str, str], status: int
) -> None:
    r = http.simulate_post("/api/storage/", body=body, headers=headers)
    assert r.status_code == status
    assert set(r.json) >= {"title", "description"}


def test_rest_item_roundtrip_with_content_types(http: falcon.testing.TestClient, client: Client) -> None:
    cases = [
        ("bin", b"\x00\x01\xff", "application/octet-stream", "application/octet-stream"),
        ("txt", "héllo".encode(), "text/plain", "text/plain; charset=utf-8"),
        ("doc", b'{"a": 1}', "application/json", "application/json"),
        ("img", b"\x89PNG...", "image/png?keep_type=true", "image/png"),
    ]
    for key, body, sent, answered in cases:
        sent, _, query = sent.partition("?")
        headers = {"Content-Type": sent}
        r = http.simulate_put(f"/api/storage/{key}", body=body, headers=headers, query_string=query)
        assert r.status_code == 204, r.text
        r = http.simulate_get(f"/api/storage/{key}")
        assert (r.status_code, r.content, r.headers["content-type"]) == (200, body, answered)
        r = http.simulate_head(f"/api/storage/{key}")
        assert r.status_code == 200 and r.content == b""
        assert (r.headers["content-type"], r.headers["content-length"]) == (answered, str(len(body)))
    # The library reads what the API stored with the same types.
    assert (
        client.get("txt") == "héllo"
        and client.get("doc") == {"a": 1}
        and client.get("bin") == b"\x00\x01\xff"
    )
    # And the JSON view renders every kind.
    r = http.simulate_get("/api/storage/", query_string="key=bin&key=txt&key=doc&key=img")
    assert r.json == {
        "bin": {"base64": "AAH/"},
        "txt": "héllo",
        "doc": {"a": 1},
        "img": {"base64": "iVBORy4uLg=="},
    }


def test_rest_item_missing_and_delete(http: falcon.testing.TestClient) -> None:
    assert http.simulate_get("/api/storage/none").status_code == 404
    assert http.simulate_head("/api/storage/none").status_code == 404
    assert http.simulate_delete("/api/storage/none").status_code == 404
    http.simulate_put("/api/storage/gone", body=b"x")
    assert http.simulate_delete("/api/storage/gone").status_code == 204
    assert http.simulate_get("/api/storage/gone").status_code == 404


def test_put_with_curls_form_type_stores_the_raw_bytes(http: TestClient, client: Client) -> None:
    # `curl --data-binary @file -X PUT` sends the form type; no envelope may wrap the value.
    body = b"line one\nline=two&x\x00\xff"
    r = http.simulate_put("/api/storage/raw", body=body, headers=FORM)
    assert r.status_code == 204
    assert client.get("raw") == body  # what every other client sees: the bytes as sent
    r = http.simulate_get("/api/storage/raw")
    assert (r.content, r.headers["content-type"]) == (body, "application/octet-stream")
    # Any other type is not kept either, unless asked for.
    http.simulate_put("/api/storage/png", body=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert client.get("png") == b"\x89PNG"
    http.simulate_put("/api/storage/png", body=b"\x89PNG", headers={"Content-Type": "image/png"},
                      params={"keep_type": "true"})  # fmt: skip
    assert http.simulate_get("/api/storage/png").headers["content-type"] == "image/png"


def test_multi_key_post_over_the_item_size_stores_nothing(http: TestClient, client: Client) -> None:
    client.set("before", "old")
    big = "x" * (1024 * 1024)  # the daemon's default item size (-I 1m) cannot hold it with its key
    r = http.simulate_post("/api/storage/", json={"before": "new", "small": "1", "big": big})
    assert r.status_code == 413, r.text
    assert "nothing was stored" in r.json["description"] and "'big'" in r.json["description"]
    assert client.get_many(["before", "small", "big"]) == {"before": "old"}
    # The same pairs without the big one are stored whole.
    r = http.simulate_post("/api/storage/", body="before=new&small=1", headers=FORM)
    assert r.status_code == 201 and client.get_many(["before", "small"]) == {"before": "new", "small": "1"}


def test_keys_with_slashes_in_the_path(http: TestClient, client: Client) -> None:
    assert http.simulate_put("/api/storage/users/42/name", body=b"ada").status_code == 204
    assert client.get("users/42/name") == b"ada"
    assert http.simulate_get("/api/storage/users%2F42%2Fname").content == b"ada"  # encoded alike
    assert http.simulate_head("/api/storage/users/42/name").headers["content-length"] == "3"
    # POST .../incr is the counter of the key before it, slashes and all.
    http.simulate_put("/api/storage/a/b", body=b"5", headers={"Content-Type": "text/plain"})
    r = http.simulate_post("/api/storage/a/b/incr", params={"by": "2"})
    assert r.status_code == 200 and r.json == {"key": "a/b", "value": 7}
    assert http.simulate_post("/api/storage/a/b/decr").json == {"key": "a/b", "value": 6}
    assert http.simulate_post("/api/storage/a/b").status_code == 405
    # A counter's path takes POST only (a key ending in /incr is reached through ?key=).
    r = http.simulate_put("/api/storage/x/incr", body=b"k")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert http.simulate_options("/api/storage/x/incr").headers["allow"] == "POST"
    assert http.simulate_options("/api/storage/x/y").headers["allow"] == "DELETE, GET, HEAD, PUT"
    http.simulate_post("/api/storage/", body="x/incr=k", headers=FORM)
    assert http.simulate_get("/api/storage/", params={"key": "x/incr"}).json == {"x/incr": "k"}
    assert http.simulate_delete("/api/storage/users/42/name").status_code == 204
    assert client.get("users/42/name") is None
    r = http.simulate_get("/metrics").text
    assert 'http_requests_total{method="PUT",route="/api/storage/{key}",status="204"}' in r
    assert 'http_requests_total{method="POST",route="/api/storage/{key}/incr",status="200"}' in r


def test_put_ttl_expires(http: falcon.testing.TestClient) -> None:
    assert http.simulate_put("/api/storage/t", body=b"x", params={"ttl": "1"}).status_code == 204
    assert http.simulate_get("/api/storage/t").status_code == 200
    time.sleep(2.05)
    assert http.simulate_get("/api/storage/t").status_code == 404


@pytest.mark.parametrize("ttl", ["-1", "abc", "1.5", str(2**31)])
def test_bad_ttl_is_400(http: falcon.testing.TestClient, ttl: str) -> None:
    r = http.simulate_put("/api/storage/k", body=b"x", params={"ttl": ttl})
    assert r.status_code == 400 and "ttl" in r.json["description"]
    r = http.simulate_post("/api/storage/", body="a=b", headers=FORM, params={"ttl": ttl})
    assert r.status_code == 400


@pytest.mark.parametrize("key", ["a%20b", "x" * 251, "tab%09", "%C3%A9" * 126])
def test_invalid_keys_are_400(http: falcon.testing.TestClient, key: str) -> None:
    for method in ("GET", "PUT", "DELETE"):
        r = http.simulate_request(method, f"/api/storage/{key}", body=b"v")
        assert r.status_code == 400, (method, key)
        assert r.json["title"] == "400 Bad Request"


def test_unicode_key_in_path(http: falcon.testing.TestClient, client: Client) -> None:
    assert http.simulate_put("/api/storage/%C3%A9t%C3%A9", body=b"summer").status_code == 204
    assert client.get("été") == b"summer"


def test_value_over_item_size_is_413(http: falcon.testing.TestClient) -> None:
    r = http.simulate_put("/api/storage/big", body=b"x" * (2 * 1024 * 1024))
    assert r.status_code == 413 and "too large" in r.json["description"]
    assert http.simulate_put("/api/storage/big", body=b"x" * 1000).status_code == 204


def test_body_over_max_body_is_413_without_reading(daemon: Daemon) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=daemon.address, max_body=100)))
    assert http.simulate_put("/api/storage/k", body=b"x" * 101).status_code == 413
    assert http.simulate_post("/api/storage/", body="k=" + "v" * 200, headers=FORM).status_code == 413
    assert http.simulate_put("/api/storage/k", body=b"x" * 100).status_code == 204


def test_incr_decr(http: falcon.testing.TestClient) -> None:
    assert http.simulate_post("/api/storage/n/incr").status_code == 404
    http.simulate_post("/api/storage/", json={"n": 10, "s": "abc"})
    r = http.simulate_post("/api/storage/n/incr")
    assert r.status_code == 200 and r.json == {"key": "n", "value": 11}
    assert http.simulate_post("/api/storage/n/incr", params={"by": "9"}).json["value"] == 20
    assert http.simulate_post("/api/storage/n/decr", params={"by": "50"}).json["value"] == 0
    assert http.simulate_post("/api/storage/n/incr", params={"by": "-1"}).status_code == 400
    r = http.simulate_post("/api/storage/s/incr")
    assert r.status_code == 409 and "non-numeric" in r.json["description"]
    # memcached pads a decremented value with spaces rather than shrinking it (protocol.txt).
    assert http.simulate_get("/api/storage/n").text.rstrip() == "0"


def test_stats_health_ready(http: falcon.testing.TestClient, daemon: Daemon) -> None:
    r = http.simulate_get("/api/stats")
    assert r.status_code == 200
    stats = r.json["servers"][daemon.address]
    assert isinstance(stats["curr_items"], int) and isinstance(stats["version"], str)
    assert http.simulate_get("/healthz").json == {"status": "ok"}
    r = http.simulate_get("/readyz")
    assert r.status_code == 200 and r.json["status"] == "ready" and daemon.address in r.json["servers"]


def test_metrics(http: falcon.testing.TestClient, daemon: Daemon) -> None:
    http.simulate_put("/api/storage/m", body=b"1")
    http.simulate_get("/api/storage/m")
    http.simulate_get("/api/storage/missing")
    r = http.simulate_get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    server = f'server="{daemon.address}"'
    assert f"pycache_up{{{server}}} 1.0" in text
    # curr_items may still count items flush_all invalidated (memcached drops them lazily).
    (items_line,) = [line for line in text.splitlines() if line.startswith(f"pycache_curr_items{{{server}}}")]
    assert float(items_line.split()[-1]) >= 1
    assert f"pycache_cmd_get_total{{{server}}}" in text and "counter" in text  # cumulative: a counter
    assert "# TYPE pycache_curr_items gauge" in text
    assert 'http_requests_total{method="GET",route="/api/storage/{key}",status="200"} 1.0' in text
    assert 'http_requests_total{method="GET",route="/api/storage/{key}",status="404"} 1.0' in text
    assert 'http_request_duration_seconds_count{method="PUT",route="/api/storage/{key}"} 1.0' in text


def test_each_app_has_its_own_registry(daemon: Daemon) -> None:
    a = falcon.testing.TestClient(create_app(Config(cache=daemon.address)))
    b = falcon.testing.TestClient(create_app(Config(cache=daemon.address)))
    a.simulate_get("/healthz")
    a.simulate_get("/healthz")
    line = 'http_requests_total{method="GET",route="/healthz",status="200"}'
    assert f"{line} 2.0" in a.simulate_get("/metrics").text
    assert line not in b.simulate_get("/metrics").text


def test_unknown_route_is_json_404(http: falcon.testing.TestClient) -> None:
    r = http.simulate_get("/nope")
    assert r.status_code == 404 and r.json == {"title": "404 Not Found"}


def test_openapi_describes_every_route(app: App, http: falcon.testing.TestClient) -> None:
    spec = http.simulate_get("/openapi.json").json
    assert spec == json.loads(json.dumps(build_spec()))
    templates = {"/api/storage/", "/api/storage/{key}", "/api/storage/{key}/incr", "/api/storage/{key}/decr",
                 "/api/stats", "/healthz", "/readyz", "/metrics", "/openapi.json"}  # fmt: skip
    assert set(spec["paths"]) == templates
    for template in templates:
        # The route exists in the app: a request to it is not the router's 404.
        path = template.replace("{key}", "k")
        methods = set(spec["paths"][template]) - {"parameters"}
        assert methods, template
        for method in methods:
            route = app._router.find(path)  # noqa: SLF001 - falcon's documented router API
            assert route is not None and f"on_{method}" in "".join(dir(route[0])), (template, method)


# -- the daemon down or silent: 503, bounded by the timeout ---------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def test_daemon_down_is_503(client: Client) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=f"127.0.0.1:{free_port()}")))
    for method, path in [("GET", "/api/storage/k"), ("PUT", "/api/storage/k"), ("GET", "/api/stats"),
                         ("GET", "/api/storage/?key=k"), ("POST", "/api/storage/k/incr")]:  # fmt: skip
        r = http.simulate_request(method, path, body=b"v")
        assert r.status_code == 503, (method, path)
        assert r.json["title"] == "503 Service Unavailable" and "cannot connect" in r.json["description"]
    r = http.simulate_get("/readyz")
    assert r.status_code == 503 and r.json["status"] == "unavailable"
    assert http.simulate_get("/healthz").status_code == 200
    metrics = http.simulate_get("/metrics")
    assert metrics.status_code == 200 and "pycache_up{server=" in metrics.text and "} 0.0" in metrics.text


def test_silent_daemon_is_503_within_the_timeout(silent_port: int) -> None:
    http = falcon.testing.TestClient(create_app(Config(cache=f"127.0.0.1:{silent_port}", timeout=0.3)))
    t0 = time.monotonic()
    r = http.simulate_get("/api/storage/k")
    assert r.status_code == 503 and time.monotonic() - t0 < 1.5
    assert http.simulate_put("/api/storage/k", body=b"v").status_code == 503


@pytest.mark.parametrize("path", ["/readyz", "/api/storage/k", "/api/stats"])
def test_black_holed_daemon_costs_one_timeout_retries_included(silent_port: int, path: str) -> None:
    # The silent port's backlog takes the connect, nothing ever answers: each attempt waits the
    # whole timeout, so a retry after it would make the request last twice as long.
    timeout = 1.0
    http = falcon.testing.TestClient(create_app(Config(cache=f"127.0.0.1:{silent_port}", timeout=timeout)))
    t0 = time.monotonic()
    r = http.simulate_get(path)
    elapsed = time.monotonic() - t0
    assert r.status_code == 503
    assert timeout * 0.9 < elapsed < timeout * 1.9, elapsed


def test_requests_cache_calls_share_one_deadline(silent_port: int, daemon: Daemon) -> None:
    # A multi-key POST asks for the item size (a stats round), then stores: both within one
    # timeout in all, even when one node never answers.
    cache = f"{daemon.address},127.0.0.1:{silent_port}"
    http = falcon.testing.TestClient(create_app(Config(cache=cache, timeout=1.0)))
    t0 = time.monotonic()
    r = http.simulate_post("/api/storage/", body="&".join(f"k{i}=v" for i in range(20)), headers=FORM)
    elapsed = time.monotonic() - t0
    assert r.status_code == 503 and elapsed < 1.9, (r.status_code, elapsed)


def test_lifespan_opens_and_closes_the_client(app: App) -> None:
    async def main() -> None:
        assert not app.cache.started
        async with falcon.testing.TestClient(app) as conductor:
            assert app.cache.started
            r = await conductor.simulate_put("/api/storage/life", body=b"1")
            assert r.status_code == 204
            r = await conductor.simulate_get("/api/storage/life")
            assert r.text == "1"
            pool = app.cache.client.pool(app.config.servers[0])
            assert pool.opened == 1  # both requests shared one pooled connection
        assert not app.cache.started

    asyncio.run(main())
