"""The Prometheus memcached_exporter's metrics, made from a stats round (see :mod:`.sampler`).

Names, labels and types follow the exporter's collector (prometheus/memcached_exporter,
``pkg/exporter/exporter.go``), so dashboards and alerts written for it work unchanged:
``memcached_up``, ``memcached_commands_total{command,status}``, ``memcached_current_items``,
``memcached_slab_*{slab}`` and the rest. Two ways to scrape them:

* ``/metrics``: every configured node, each sample labelled ``server="host:port"`` (beside the
  HTTP metrics and our ``pycache_*`` extras);
* ``/scrape?target=host:port``: one node without that label, exactly as the exporter's
  multi-target endpoint answers, for a scrape config that relabels ``target`` to ``instance``.

NOTE: the exporter types five series as counters whose names lack ``_total``
(``memcached_uptime_seconds``, ``memcached_slab_items_evicted_time_seconds`` and the three
``memcached_slab_items_moves_*``); ``promtool check metrics`` rejects that, so they go out
untyped under the same names. Queries treat them alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, UnknownMetricFamily

from .sampler import NodeSample

NS = "memcached_"
_KIND: dict[str, type[CounterMetricFamily | GaugeMetricFamily | UnknownMetricFamily]] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "untyped": UnknownMetricFamily,
}

# (stat of `stats`, metric name without the namespace, kind, help)
GENERAL = [
    ("uptime", "uptime_seconds", "untyped", "Seconds since the server started."),
    ("time", "time_seconds", "gauge", "The server's clock, Unix time."),
    ("rusage_user", "process_user_cpu_seconds_total", "counter", "User CPU time of the server."),
    ("rusage_system", "process_system_cpu_seconds_total", "counter", "System CPU time of the server."),
    ("bytes", "current_bytes", "gauge", "Bytes used by the stored items."),
    ("limit_maxbytes", "limit_bytes", "gauge", "Bytes the server may use for items."),
    ("curr_items", "current_items", "gauge", "Items stored now."),
    ("total_items", "items_total", "counter", "Items stored since the start."),
    ("bytes_read", "read_bytes_total", "counter", "Bytes read from the network."),
    ("bytes_written", "written_bytes_total", "counter", "Bytes written to the network."),
    ("curr_connections", "current_connections", "gauge", "Open connections."),
    ("total_connections", "connections_total", "counter", "Connections opened since the start."),
    ("rejected_connections", "connections_rejected_total", "counter", "Connections refused at the limit."),
    ("conn_yields", "connections_yielded_total", "counter", "Times a connection yielded (-R)."),
    ("listen_disabled_num", "connections_listener_disabled_total", "counter", "Times the listener paused."),
    ("evictions", "items_evicted_total", "counter", "Live items removed to free memory."),
    ("reclaimed", "items_reclaimed_total", "counter", "Items stored in an expired item's memory."),
    ("store_too_large", "item_too_large_total", "counter", "Stores refused: over the item size."),
    ("store_no_memory", "item_no_memory_total", "counter", "Stores refused: out of memory."),
    ("lru_crawler_starts", "lru_crawler_starts_total", "counter", "LRU crawler runs started."),
    ("direct_reclaims", "direct_reclaims_total", "counter", "Direct reclaims or evictions by workers."),
    ("crawler_items_checked", "lru_crawler_items_checked_total", "counter", "Items the crawler checked."),
    ("crawler_reclaimed", "lru_crawler_reclaimed_total", "counter", "Items the crawler freed."),
    ("moves_to_cold", "lru_crawler_moves_to_cold_total", "counter", "Items moved to the COLD LRU."),
    ("moves_to_warm", "lru_crawler_moves_to_warm_total", "counter", "Items moved to the WARM LRU."),
    ("moves_within_lru", "lru_crawler_moves_within_lru_total", "counter", "Items bumped within HOT/WARM."),
    ("accepting_conns", "accepting_connections", "gauge", "1 while the server accepts connections."),
]
# (stat of `stats settings`, name, kind, help); only when the crawler is on, as the exporter does.
CRAWLER_SETTINGS = [
    ("lru_crawler", "lru_crawler_enabled", "gauge", "1 if the LRU crawler is on."),
    ("lru_crawler_sleep", "lru_crawler_sleep", "gauge", "Microseconds between crawls."),
    ("lru_crawler_tocrawl", "lru_crawler_to_crawl", "gauge", "Most items crawled per class and run."),
    ("lru_maintainer_thread", "lru_crawler_maintainer_thread", "gauge", "1 with the LRU maintainer."),
    ("hot_lru_pct", "lru_crawler_hot_percent", "gauge", "Percent of a class's memory for HOT."),
    ("warm_lru_pct", "lru_crawler_warm_percent", "gauge", "Percent of a class's memory for WARM."),
    ("hot_max_factor", "lru_crawler_hot_max_factor", "gauge", "HOT idle age as a factor of COLD's."),
    ("warm_max_factor", "lru_crawler_warm_max_factor", "gauge", "WARM idle age as a factor of COLD's."),
]
# (field of `stats items` per class, name, kind, help)
ITEMS = [
    ("number", "slab_current_items", "gauge", "Items in the class."),
    ("age", "slab_items_age_seconds", "gauge", "Age of the class's oldest item."),
    ("crawler_reclaimed", "slab_items_crawler_reclaimed_total", "counter", "Items the crawler freed."),
    ("evicted", "slab_items_evicted_total", "counter", "Items evicted before they expired."),
    ("evicted_nonzero", "slab_items_evicted_nonzero_total", "counter", "Evicted items that had a TTL."),
    ("evicted_time", "slab_items_evicted_time_seconds", "untyped", "Idle time of the last evicted item."),
    ("evicted_unfetched", "slab_items_evicted_unfetched_total", "counter", "Evicted, never fetched."),
    ("expired_unfetched", "slab_items_expired_unfetched_total", "counter", "Expired, never fetched."),
    ("outofmemory", "slab_items_outofmemory_total", "counter", "Stores that found no memory."),
    ("reclaimed", "slab_items_reclaimed_total", "counter", "Expired items' memory reused."),
    ("tailrepairs", "slab_items_tailrepairs_total", "counter", "LRU tail repairs."),
    ("mem_requested", "slab_mem_requested_bytes", "gauge", "Bytes the class's items take."),
    ("moves_to_cold", "slab_items_moves_to_cold", "untyped", "Items moved to COLD."),
    ("moves_to_warm", "slab_items_moves_to_warm", "untyped", "Items moved to WARM."),
    ("moves_within_lru", "slab_items_moves_within_lru", "untyped", "Items bumped within HOT/WARM."),
    ("number_hot", "slab_hot_items", "gauge", "Items in the HOT LRU."),
    ("number_warm", "slab_warm_items", "gauge", "Items in the WARM LRU."),
    ("number_cold", "slab_cold_items", "gauge", "Items in the COLD LRU."),
    ("number_temp", "slab_temporary_items", "gauge", "Items in the TEMP LRU."),
    ("age_hot", "slab_hot_age_seconds", "gauge", "Age of the oldest HOT item."),
    ("age_warm", "slab_warm_age_seconds", "gauge", "Age of the oldest WARM item."),
]
LRU_HITS = [
    ("hits_to_hot", "hot"),
    ("hits_to_warm", "warm"),
    ("hits_to_cold", "cold"),
    ("hits_to_temp", "temporary"),
]
# (field of `stats slabs` per class, name, help); all gauges.
SLABS = [
    ("chunk_size", "slab_chunk_size_bytes", "Bytes per chunk."),
    ("chunks_per_page", "slab_chunks_per_page", "Chunks per page."),
    ("total_pages", "slab_current_pages", "Pages given to the class."),
    ("total_chunks", "slab_current_chunks", "Chunks of the class."),
    ("used_chunks", "slab_chunks_used", "Chunks holding an item."),
    ("free_chunks", "slab_chunks_free", "Chunks holding nothing."),
    ("free_chunks_end", "slab_chunks_free_end", "Free chunks at the end of the last page."),
    ("mem_requested", "slab_mem_requested_bytes", "Bytes the class's items take."),
]
#: memcached_commands_total's (command, status) from `stats`: op_hits/op_misses, then the rest.
OPS = ("get", "delete", "incr", "decr", "cas", "touch")


def _num(stats: Mapping[str, str], key: str) -> float | None:
    text = stats.get(key)
    if text is None:
        return None
    if text in ("yes", "no"):
        return 1.0 if text == "yes" else 0.0
    try:
        return float(text)
    except ValueError:
        return None


class _Families:
    """Metric families created on first use, kept in that order."""

    def __init__(self, node_label: bool) -> None:
        self._base = ["server"] if node_label else []
        self._families: dict[str, CounterMetricFamily | GaugeMetricFamily | UnknownMetricFamily] = {}

    def add(self, node: str, name: str, kind: str, doc: str, value: float | None, **labels: str) -> None:
        if value is None:
            return
        family = self._families.get(name)
        if family is None:
            family = _KIND[kind](NS + name, doc, labels=[*self._base, *labels])
            self._families[name] = family
        base = [node] if self._base else []
        family.add_metric([*base, *labels.values()], value)

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._families.values())


def split_classes(flat: Mapping[str, str], prefix: str = "") -> dict[str, dict[str, str]]:
    """Split ``[items:]<class>:<field>`` stats into ``{class: {field: value}}``."""
    out: dict[str, dict[str, str]] = {}
    for key, value in flat.items():
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix) :]
        cls, sep, name = key.partition(":")
        if sep and cls.isdigit():
            out.setdefault(cls, {})[name] = value
    return out


def collect(nodes: list[NodeSample], node_label: bool = True) -> Iterator[Metric]:
    """Yield the exporter's families for ``nodes`` (see the module docstring for the label)."""
    f = _Families(node_label)
    for node in nodes:
        _node(f, node)
    yield from f


def _node(f: _Families, node: NodeSample) -> None:
    n = node.name
    f.add(n, "up", "gauge", "1 if the server answered stats.", 1.0 if node.up else 0.0)
    if not node.up:
        return
    s = node.stats
    if "version" in s:
        f.add(n, "version", "gauge", "The server's version, as a label.", 1.0, version=s["version"])
    doc = "Requests by command and outcome."
    for op in OPS:
        f.add(n, "commands_total", "counter", doc, _num(s, f"{op}_hits"), command=op, status="hit")
        f.add(n, "commands_total", "counter", doc, _num(s, f"{op}_misses"), command=op, status="miss")
    f.add(n, "commands_total", "counter", doc, _num(s, "cas_badval"), command="cas", status="badval")
    f.add(n, "commands_total", "counter", doc, _num(s, "cmd_flush"), command="flush", status="hit")
    sets, cas = _num(s, "cmd_set"), [_num(s, k) for k in ("cas_misses", "cas_hits", "cas_badval")]
    if sets is not None and None not in cas:
        # NOTE: memcached counts every cas in cmd_set too; the exporter takes them out.
        f.add(
            n,
            "commands_total",
            "counter",
            doc,
            sets - sum(c or 0.0 for c in cas),
            command="set",
            status="hit",
        )
    for stat, name, kind, help_ in GENERAL:
        f.add(n, name, kind, help_, _num(s, stat))
    malloced = _num(s, "total_malloced")
    f.add(
        n,
        "malloced_bytes",
        "gauge",
        "Bytes given to slab pages.",
        _num(node.slabs, "total_malloced") if malloced is None else malloced,
    )
    settings = node.settings
    f.add(n, "max_connections", "gauge", "Most connections the server takes.", _num(settings, "maxconns"))
    if settings.get("lru_crawler") == "yes":
        for stat, name, kind, help_ in CRAWLER_SETTINGS:
            f.add(n, name, kind, help_, _num(settings, stat))
    items = split_classes(node.items, "items:")
    for cls, fields in sorted(items.items(), key=lambda kv: int(kv[0])):
        for stat, name, kind, help_ in ITEMS:
            f.add(n, name, kind, help_, _num(fields, stat), slab=cls)
        for stat, lru in LRU_HITS:
            f.add(
                n,
                "slab_lru_hits_total",
                "counter",
                "Hits by LRU segment.",
                _num(fields, stat),
                slab=cls,
                lru=lru,
            )
    doc = "Requests by command and outcome, per size class."
    for cls, fields in sorted(split_classes(node.slabs).items(), key=lambda kv: int(kv[0])):
        for op in OPS:
            f.add(
                n,
                "slab_commands_total",
                "counter",
                doc,
                _num(fields, f"{op}_hits"),
                slab=cls,
                command=op,
                status="hit",
            )
        f.add(
            n,
            "slab_commands_total",
            "counter",
            doc,
            _num(fields, "cas_badval"),
            slab=cls,
            command="cas",
            status="badval",
        )
        sets, hits, bad = _num(fields, "cmd_set"), _num(fields, "cas_hits"), _num(fields, "cas_badval")
        if sets is not None and hits is not None and bad is not None:
            f.add(
                n,
                "slab_commands_total",
                "counter",
                doc,
                sets - hits - bad,
                slab=cls,
                command="set",
                status="hit",
            )
        for stat, name, help_ in SLABS:
            if stat == "mem_requested" and "mem_requested" in items.get(cls, {}):
                continue  # 1.6 reports it in stats items; older servers here
            f.add(n, name, "gauge", help_, _num(fields, stat), slab=cls)
