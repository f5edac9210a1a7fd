"""Prometheus metrics: HTTP request counts and latencies per app, daemon stats per scrape.

Each app gets its own :class:`CollectorRegistry` (so tests can build several apps in one
process). With several uvicorn workers (``pycache-http --workers N``) every worker is its own
process with its own counters: then ``PROMETHEUS_MULTIPROC_DIR`` is set (``__main__`` makes
a fresh directory before the workers start), prometheus-client keeps each worker's values in
files there, and a scrape, whichever worker answers it, adds them all up. Daemon stats come
from a stats round (:mod:`.sampler`) and are rendered through a throw-away registry, so
concurrent scrapes never share state.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "pycache_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

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
        #: What a scrape renders: this process's registry, or every worker's files.
        self.exposed = self.registry
        multiproc_dir = os.environ.get(MULTIPROC_ENV)
        if multiproc_dir:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed, path=multiproc_dir)  # type: ignore[no-untyped-call]
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


#: Unit suffixes Prometheus wants spelt as base units: the stat is scaled and renamed.
_UNITS = {"_us": 1e-6, "_ms": 1e-3, "_ns": 1e-9}


def metric_name(stat: str, value: float) -> tuple[str, float]:
    """Return the ``pycache_`` name and value for a stat, in Prometheus' naming rules.

    ``*_count`` is a histogram's suffix (``read_buf_count`` becomes ``read_buf_number``), and
    ``*_us``/``*_ms``/``*_ns`` become ``*_seconds``: what ``promtool check metrics`` asks for.
    """
    for suffix, scale in _UNITS.items():
        if stat.endswith(suffix):
            return PREFIX + stat[: -len(suffix)] + "_seconds", value * scale
    if stat.endswith("_count"):
        return PREFIX + stat[: -len("_count")] + "_number", value
    return PREFIX + stat, value


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
                    metric, _ = metric_name(name, 0.0)
                    families[name] = (
                        CounterMetricFamily(metric, doc, labels=["server"])
                        if name in COUNTER_STATS
                        else GaugeMetricFamily(metric, doc, labels=["server"])
                    )
                families[name].add_metric([server], metric_name(name, value)[1])
        yield up
        yield from families.values()


class _Families:
    """A collector that yields families made beforehand."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render_families(families: Iterable[Metric]) -> bytes:
    """Return the text exposition of ``families``."""
    registry = CollectorRegistry()
    registry.register(_Families(families))
    return generate_latest(registry)


def render(
    metrics: HttpMetrics,
    snapshot: Mapping[str, Mapping[str, str] | None],
    extra: Iterable[Metric] = (),
) -> bytes:
    """Return the exposition of the HTTP metrics, the daemon snapshot and ``extra`` families."""
    daemon = CollectorRegistry()
    daemon.register(DaemonStatsCollector(snapshot))
    return generate_latest(metrics.exposed) + render_families(extra) + generate_latest(daemon)
