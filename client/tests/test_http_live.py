"""The HTTP API as users run it: the pycache-http script under uvicorn, curl, schemathesis."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_procs import Daemon, free_port, stop_process, wait_for_port

from pycache_client import Client

BIN = Path(sys.executable).parent
CURL = shutil.which("curl")


class HttpServer:
    def __init__(self, proc: subprocess.Popen[bytes], port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        stop_process(self.proc, 10)


def start_http(args: list[str], env: dict[str, str] | None = None, port: int | None = None) -> HttpServer:
    """Run the installed ``pycache-http`` script and wait until it accepts connections."""
    port = port or free_port()
    cmd = [str(BIN / "pycache-http"), *args]
    if "--port" not in args and not (env and "PYCACHE_HTTP_PORT" in env):
        cmd += ["--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 20, proc)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return HttpServer(proc, port)


@pytest.fixture(scope="module")
def server(daemon: Daemon) -> Iterator[HttpServer]:
    srv = start_http(["--cache", daemon.address, "--log-level", "warning"])
    yield srv
    srv.stop()


@pytest.fixture
def flushed(server: HttpServer, daemon: Daemon) -> HttpServer:
    with Client(daemon.address) as c:
        c.flush_all()
    return server


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    assert CURL is not None
    return subprocess.run([CURL, "-sS", *args], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_the_two_curl_commands(flushed: HttpServer, daemon: Daemon) -> None:
    # Exactly as users type them, with the test server's port.
    post = curl("-d", "k1=v1", "-d", "k2=v2", "-X", "POST", f"{flushed.url}/api/storage/")
    assert post.returncode == 0, post.stderr
    assert post.stdout == '{"stored": ["k1", "k2"]}'
    get = curl("-X", "GET", f"{flushed.url}/api/storage/?key=k1")
    assert get.returncode == 0 and get.stdout == '{"k1": "v1"}'
    with Client(daemon.address) as c:
        assert c.get_many(["k1", "k2"]) == {"k1": "v1", "k2": "v2"}


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_curl_rest_and_errors(flushed: HttpServer) -> None:
    put = curl("-X", "PUT", "-H", "Content-Type: text/csv", "--data-binary", "a,b\n1,2\n",
               "-w", "%{http_code}", f"{flushed.url}/api/storage/table?ttl=60&keep_type=true")  # fmt: skip
    assert put.stdout == "204"
    got = curl("-i", f"{flushed.url}/api/storage/table")
    assert "content-type: text/csv" in got.stdout.lower() and got.stdout.endswith("a,b\n1,2\n")
    missing = curl("-w", "\n%{http_code}", f"{flushed.url}/api/storage/none")
    body, code = missing.stdout.rsplit("\n", 1)
    assert code == "404" and '"title": "404 Not Found"' in body


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_curl_put_of_a_file_stores_its_bytes(flushed: HttpServer, daemon: Daemon, tmp_path: Path) -> None:
    # curl's --data-binary sends Content-Type application/x-www-form-urlencoded by default.
    data = bytes(range(256)) + b"a=b&c=d\n"
    (tmp_path / "blob").write_bytes(data)
    put = curl("--data-binary", f"@{tmp_path / 'blob'}", "-X", "PUT", "-w", "%{http_code}",
               f"{flushed.url}/api/storage/files/blob")  # fmt: skip
    assert put.stdout == "204", put.stderr
    with Client(daemon.address) as c:
        assert c.get("files/blob") == data
    url = f"{flushed.url}/api/storage/files/blob"
    got = subprocess.run([CURL, "-sS", url], capture_output=True, timeout=30)
    assert got.stdout == data


def test_metrics_add_up_every_worker(daemon: Daemon) -> None:
    import httpx

    srv = start_http(["--cache", daemon.address, "--workers", "2", "--log-level", "warning"])
    try:
        requests = 60
        for _ in range(requests):
            # A fresh connection each time, so the kernel spreads them over both workers.
            with httpx.Client(base_url=srv.url, timeout=10) as http:
                assert http.get("/healthz").status_code == 200
        with httpx.Client(base_url=srv.url, timeout=10) as http:
            text = http.get("/metrics").text
        line = 'http_requests_total{method="GET",route="/healthz",status="200"}'
        (sample,) = [x for x in text.splitlines() if x.startswith(line)]
        assert float(sample.split()[-1]) == requests
        assert "memcached_up{server=" in text
    finally:
        srv.stop()


def test_env_configuration_and_two_workers(daemon: Daemon) -> None:
    import httpx

    port = free_port()
    env = {"PYCACHE_HTTP_PORT": str(port), "PYCACHE_HTTP_CACHE": daemon.address, "PYCACHE_HTTP_WORKERS": "2"}
    srv = start_http(["--log-level", "warning"], env=env, port=port)
    try:
        with httpx.Client(base_url=srv.url, timeout=5) as http:
            assert http.put("/api/storage/w", content=b"workers").status_code == 204
            # Several requests so both workers (each with its own pool) most likely answer.
            assert {http.get("/api/storage/w").text for _ in range(20)} == {"workers"}
            assert http.get("/readyz").json()["status"] == "ready"
        children = subprocess.run(["pgrep", "-P", str(srv.proc.pid)], capture_output=True, text=True).stdout
        assert len(children.split()) >= 2, "uvicorn should run two worker processes"
    finally:
        srv.stop()


def test_bad_environment_is_one_line() -> None:
    out = subprocess.run(
        [str(BIN / "pycache-http")],
        env={**os.environ, "PYCACHE_HTTP_PORT": "many"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert out.stderr == "pycache-http: error: PYCACHE_HTTP_PORT='many' is not a valid int\n"


def test_bad_auth_file_is_one_line(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN / "pycache-http"), "--auth-file", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert out.returncode == 2
    assert (
        out.stderr
        == f"pycache-http: error: cannot read auth file {tmp_path / 'missing'}: No such file or directory\n"
    )


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_auth_file_through_uvicorn(daemon: Daemon, tmp_path: Path) -> None:
    auth = tmp_path / "http-auth"
    auth.write_text("ops:hunter2 two\n")
    srv = start_http(["--cache", daemon.address, "--auth-file", str(auth), "--log-level", "warning"])
    try:
        refused = curl("-i", f"{srv.url}/api/storage/?key=k1")
        assert refused.stdout.startswith("HTTP/1.1 401")
        assert 'www-authenticate: basic realm="pycache-http"' in refused.stdout.lower()
        post = curl("-u", "ops:hunter2 two", "-d", "k1=v1", "-X", "POST", f"{srv.url}/api/storage/")
        assert post.stdout == '{"stored": ["k1"]}'
        assert curl("-u", "ops:hunter2 two", f"{srv.url}/api/storage/?key=k1").stdout == '{"k1": "v1"}'
        assert curl(f"{srv.url}/healthz").stdout == '{"status": "ok"}'
    finally:
        srv.stop()


@pytest.mark.slow
def test_schemathesis_finds_no_failures(flushed: HttpServer, tmp_path: Path) -> None:
    # NOTE: negative_data_rejection is off: the API accepts every memcached key (any UTF-8 up to
    # 250 bytes), which JSON Schema cannot express, so the schema documents an ASCII subset and
    # the API rightly accepts keys outside it. Every other check runs.
    out = subprocess.run(
        [str(BIN / "schemathesis"), "run", f"{flushed.url}/openapi.json", "--checks", "all",
         "--exclude-checks", "negative_data_rejection", "--max-examples", "25", "--seed", "1",
         "--no-color"],
        cwd=tmp_path,  # its example database lives in the cwd; start clean every run
        capture_output=True,
        text=True,
        timeout=600,  # a bound on a hang, not a timing: CI shares two busy cores
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:]
    assert "12/12" in out.stdout  # every operation of the document was exercised
