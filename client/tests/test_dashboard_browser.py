"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

The app runs as users run it (the ``pycache-http`` script under uvicorn) in front of two nodes:
memcached, which has the key dump the browser walks, and the session's pycache-d. The test
loads the page, makes traffic, uses the key browser, stops a node and saves a screenshot in
``build/dashboard.png`` at the top of the repository (the README's picture is one of those).

Skipped, saying why, without Chromium (``apt-get install chromium``) or the playwright package.
Playwright is pointed at the system's binary: it never downloads a browser.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_procs import Daemon, DaemonUnavailable, start_memcached
from test_http_live import HttpServer, start_http

from pycache_client import CacheError, Client

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
ROOT = Path(__file__).resolve().parents[2]
SHOT = ROOT / "build" / "dashboard.png"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 60_000  # generous: CI shares two cores, and Chromium alone wants a good part of them

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)


def make_traffic(first: str, second: str, stop: threading.Event) -> None:
    """Gets (hits and misses), sets, deletes and incrs on both nodes until ``stop``, gently."""
    clients = [Client(first), Client(second)]
    try:
        i = 0
        while not stop.is_set():
            for c in clients:
                try:
                    c.set(f"load:{i % 50}", "v" * (100 + 40 * (i % 30)))
                    c.get(f"load:{(i * 7) % 50}")
                    c.get(f"none:{i}")
                    if i % 5 == 0:
                        c.delete(f"load:{(i * 3) % 50}")
                        c.set("counter", "0") if i == 0 else c.incr("counter")
                except CacheError:
                    pass  # the second node is stopped on purpose
            i += 1
            stop.wait(0.004)
    finally:
        for c in clients:
            c.close()


@pytest.fixture(scope="module")
def page_of() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        # A fresh profile (--user-data-dir) each run: launch_persistent_context passes it.
        context = p.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def nodes(start: Any) -> Iterator[tuple[Daemon, Daemon]]:
    try:
        mc = start_memcached()
    except DaemonUnavailable as exc:
        pytest.skip(f"memcached is needed for the key dump: {exc}")
    other = start("python")
    try:
        yield mc, other
    finally:
        mc.stop()


@pytest.fixture
def app(nodes: tuple[Daemon, Daemon]) -> Iterator[HttpServer]:
    mc, other = nodes
    srv = start_http(["--cache", f"{mc.address},{other.address}", "--log-level", "warning"])
    yield srv
    srv.stop()


def test_dashboard_in_chromium(page_of: Any, app: HttpServer, nodes: tuple[Daemon, Daemon]) -> None:
    mc, other = nodes
    page = page_of.new_page()
    page.set_default_timeout(WAIT_MS)  # every wait and action, not only the ones given WAIT_MS
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(app.url + "/")
    card = f'.node[data-node="{mc.address}"]'
    page.wait_for_selector(f"{card} .badge:text-is('up')", timeout=WAIT_MS)
    page.wait_for_selector(f'.node[data-node="{other.address}"] .badge:text-is("up")', timeout=WAIT_MS)

    # Traffic (a thread, until the end) moves the request chart.
    stop = threading.Event()
    traffic = threading.Thread(target=make_traffic, args=(mc.address, other.address, stop), daemon=True)
    traffic.start()
    try:
        ops = page.locator(f'{card} [data-chart="ops"] svg')
        page.wait_for_function(
            "sel => Number(document.querySelector(sel).getAttribute('data-last')) > 0",
            arg=f'{card} [data-chart="ops"] svg',
            timeout=WAIT_MS,
        )
        assert page.locator(f'{card} [data-chart="ops"] path.line').count() >= 1
        assert float(ops.get_attribute("data-last") or 0) > 0

        # The key browser finds a key just set, shows it, and deletes it.
        with Client(mc.address) as c:
            c.set("browser:answer", {"answer": 42})
            page.select_option("#search-node", mc.address)
            page.fill("#search-prefix", "browser:")
            page.click("#search button[type=submit]")
            row = page.locator("#key-table tbody tr", has_text="browser:answer")
            row.wait_for(timeout=WAIT_MS)
            row.click()
            page.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
            assert '"answer": 42' in page.inner_text("#detail-value")
            page.click("#detail-delete")
            page.wait_for_selector("#search-status:has-text('deleted browser:answer')", timeout=WAIT_MS)
            assert c.get("browser:answer") is None
            assert row.count() == 0
        page.fill("#search-prefix", "load:")
        page.fill("#search-limit", "6")
        page.click("#search button[type=submit]")
        # Which six of the load: keys come first is the dump's order (memcached's classes and
        # LRUs, moved by the traffic): any of them, at most six.
        page.locator("#key-table tbody tr", has_text="load:").first.wait_for(timeout=WAIT_MS)
        assert 1 <= page.locator("#key-table tbody tr", has_text="load:").count() <= 6

        # A node going down is shown down; the other stays live.
        page.click(f"{card} details.slabs summary")  # the size classes, open
        page.wait_for_selector(f"{card} details.slabs[open] tbody tr", timeout=WAIT_MS)
        page.wait_for_timeout(3000)  # a few seconds of history for the picture
        other.stop()
        page.wait_for_selector(f'.node.down[data-node="{other.address}"]', timeout=WAIT_MS)
        assert page.locator(f"{card}.down").count() == 0
        assert "down" in page.inner_text("#status")
        page.wait_for_timeout(1500)  # one more round drawn with the node down
        page.evaluate("window.scrollTo(0, 0)")
        SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOT), full_page=True)
    finally:
        stop.set()
        traffic.join(10)
    assert SHOT.stat().st_size > 10_000
    # And on a narrow window it still lays out (one column, nothing wider than the screen).
    page.set_viewport_size({"width": 390, "height": 800})
    page.wait_for_timeout(300)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px window"
    page.screenshot(path=str(SHOT.with_name("dashboard-narrow.png")), full_page=False)
    assert problems == []
