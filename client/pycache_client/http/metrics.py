"""Prometheus metrics: HTTP request counts and latencies per app, daemon stats per scrape.

Each app gets its own :class:`CollectorRegistry` (so tests can build several apps in one
process). Daemon stats are fetched on every scrape and rendered through a throw-away registry,
so concurrent scrapes never share state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

PREFIX = "pycache_"

#: memcached stats that only ever grow (protocol.txt, "General-purpose statistics"); exported as
#: counters. Every other numeric stat is a gauge.
COUNTER_STATS = frozenset(
    """cmd_get cmd_set cmd_flush cmd_touch cmd_meta get_hits get_misses get_expired get_flushed
    delete_hits delete_misses incr_hits incr_misses decr_hits decr_misses cas_hits cas_misses
    cas_badval touch_hits touch_misses auth_cmds auth_errors bytes_read bytes_written total_items
    total_connections rejected_connections evictions reclaimed expired_unfetched evicted_unfetched
    conn_yields listen_disabled_num""".split()
)


class HttpMetrics:
    """The per-app registry with request counts and latency histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests handled, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to handle an HTTP request, by method and route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and record its duration."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


class DaemonStatsCollector:
    """Render one snapshot of ``{server: stats}`` (None for a server that did not answer)."""

    def __init__(self, snapshot: Mapping[str, Mapping[str, str] | None]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        """Yield ``pycache_up`` and one family per numeric stat, labelled by server."""
        up = GaugeMetricFamily(PREFIX + "up", "1 if the cache server answered stats.", labels=["server"])
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for server, stats in self._snapshot.items():
            up.add_metric([server], 0.0 if stats is None else 1.0)
            for name, text in (stats or {}).items():
                try:
                    value = float(text)
                except ValueError:
                    continue  # version, libevent, ...: not a number
                if name not in families:
                    doc = f"memcached stat {name}."
                    families[name] = (
                        CounterMetricFamily(PREFIX + name, doc, labels=["server"])
                        if name in COUNTER_STATS
                        else GaugeMetricFamily(PREFIX + name, doc, labels=["server"])
                    )
                families[name].add_metric([server], value)
        yield up
        yield from families.values()


def render(metrics: HttpMetrics, snapshot: Mapping[str, Mapping[str, str] | None]) -> bytes:
    """Return the Prometheus text exposition of the HTTP metrics plus the daemon snapshot."""
    daemon = CollectorRegistry()
    daemon.register(DaemonStatsCollector(snapshot))
    return generate_latest(metrics.registry) + generate_latest(daemon)
