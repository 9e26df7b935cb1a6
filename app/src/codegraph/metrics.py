"""Every Prometheus metric the service exports, in one place.

Event counters are updated where the event happens; figures that live in the
engine (node counts, index lag, RocksDB properties, memory) are read when
Prometheus scrapes, by EngineCollector.
"""

from __future__ import annotations

import os
import platform
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from codegraph import __version__

# --- request metrics (names from the runbook) ---------------------------------
HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by route template and status code.",
    ["method", "handler", "code"],
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "handler"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10, 30),
)
HTTP_CONCURRENT = Gauge("http_requests_concurrent", "HTTP requests being answered right now.")
HTTP_REFUSED = Counter(
    "codegraph_http_connections_refused_total",
    "Connections answered and closed by the server's limits before a request was read "
    "whole: headers too large, headers or body too slow.",
    ["reason"],
)

# --- business and performance metrics -----------------------------------------
SEARCH_QUERIES = Counter("codegraph_search_queries_total", "Search queries, by mode.", ["mode"])
PARSE_OPERATIONS = Counter(
    "codegraph_parse_operations_total",
    "Source files parsed, by language and outcome.",
    ["language", "status"],
)
NODES_WRITTEN = Counter(
    "codegraph_node_writes_total", "Nodes created, updated or deleted.", ["operation"]
)
VECTOR_SEARCH_SECONDS = Histogram(
    "codegraph_vector_search_duration_seconds",
    "Time of one vector-index search.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
COMPACTION_SECONDS = Histogram(
    "codegraph_rocksdb_compaction_duration_seconds",
    "Time of a full manual compaction.",
    buckets=(0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800),
)
BACKUP_LAST_SUCCESS = Gauge(
    "codegraph_backup_last_success_timestamp_seconds",
    "Unix time of the newest complete backup.",
)
REPLICATION_REFUSED = Counter(
    "codegraph_replication_refused_entries_total",
    "Log entries this host refused when it applied them (as every host does: a write "
    "that became invalid, e.g. to a node another write deleted meanwhile).",
)
AUTH_FAILURES = Counter(
    "codegraph_auth_failures_total", "Requests refused for a missing or wrong API key."
)
BUILD_INFO = Gauge(
    "codegraph_build_info",
    "Always 1; the labels describe the running build.",
    ["version", "python_version"],
)
BUILD_INFO.labels(version=__version__, python_version=platform.python_version()).set(1)
TLS_CERT_EXPIRY = Gauge(
    "codegraph_tls_certificate_expiry_timestamp_seconds",
    "Unix time at which the served TLS certificate expires.",
)


def certificate_expiry(path: str) -> float:
    # The stdlib's certificate decoder: no extra dependency for one date.
    decoded = ssl._ssl._test_decode_cert(path)
    return ssl.cert_time_to_seconds(decoded["notAfter"])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class EngineCollector(Collector):
    """Reads the engine's figures at scrape time."""

    def __init__(self, figures: Callable[[], dict[str, Any] | None]) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily(
            "codegraph_memory_usage_bytes",
            "Resident memory of the service process.",
            value=_rss_bytes(),
        )
        data = self.figures()
        if data is None:  # the store is closed (a restore is running)
            return
        yield GaugeMetricFamily("codegraph_nodes_total", "Nodes stored.", value=data["nodes"])
        yield GaugeMetricFamily("codegraph_edges_total", "Edges stored.", value=data["edges"])
        lag = data["lag"]
        yield GaugeMetricFamily(
            "codegraph_vector_index_lag_operations",
            "Node changes not yet applied to the vector index.",
            value=lag["operations"],
        )
        yield GaugeMetricFamily(
            "codegraph_vector_index_lag_seconds",
            "How long the vector index has been behind the store.",
            value=lag["seconds"],
        )
        vectors = GaugeMetricFamily(
            "codegraph_vector_index_vectors",
            "Vectors in the index: live, or stale (awaiting a rebuild).",
            labels=["state"],
        )
        vectors.add_metric(["live"], data["vectors_live"])
        vectors.add_metric(["stale"], data["vectors_stale"])
        yield vectors
        yield GaugeMetricFamily(
            "codegraph_vector_index_rebuild_in_progress",
            "1 while the vector index is being rebuilt.",
            value=1 if data["rebuilding"] else 0,
        )
        yield from _rocksdb_families(data["rocksdb"])
        yield from _replication_families(data["replication"])


def _replication_families(status: dict[str, Any]) -> Iterator[Any]:
    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"codegraph_replication_{name}", doc, value=value)

    # (one host: its operation log is the log, always reachable, never behind)
    stream = status["stream"]
    yield gauge("applied_seq", "The last log entry this host applied.", status["applied_seq"])
    yield gauge("ready", "1 when this host may take traffic (GET /ready).", int(status["ready"]))
    yield gauge("log_reachable", "1 while the stream answers this host.", int(status["reachable"]))
    yield gauge("lag_entries", "Entries this host is behind the stream.", status["lag_entries"])
    yield gauge("lag_seconds", "How long this host has been behind.", status["lag_seconds"])
    yield gauge("stalled", "1 when entries it needs left the stream.", int(bool(status["stalled"])))
    yield gauge("stream_last_seq", "The stream's last entry, as last seen.", stream["last_seq"])
    yield gauge("stream_first_seq", "The stream's first entry kept.", stream["first_seq"])
    yield gauge("stream_bytes", "Bytes the stream holds.", stream["bytes"])
    yield gauge("stream_max_bytes", "The stream's size limit (-1: none).", stream["max_bytes"])
    yield gauge("stream_max_age_seconds", "How long it keeps entries.", stream["max_age_seconds"])
    yield gauge("stream_replicas", "The stream's replica count.", stream["replicas"])
    current = sum(1 for peer in stream["peers"] if peer["current"]) + bool(stream["leader"])
    yield gauge("stream_replicas_current", "Replicas up to date, leader included.", current)
    if status["peers_reachable"] is not None:
        yield gauge(
            "peers_reachable",
            "Peers the local nats-server has routes to.",
            status["peers_reachable"],
        )


def _rocksdb_families(rocks: dict[str, Any]) -> Iterator[Any]:
    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"codegraph_rocksdb_{name}", doc, value=value)

    def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
        return CounterMetricFamily(f"codegraph_rocksdb_{name}", doc, value=value)

    cache, compaction = rocks["block_cache"], rocks["compaction"]
    writes, reads, sizes = rocks["writes"], rocks["reads"], rocks["sizes"]
    yield counter("block_cache_hits", "Block cache hits.", cache["hits"])
    yield counter("block_cache_misses", "Block cache misses.", cache["misses"])
    yield gauge("block_cache_usage_bytes", "Bytes held in the block cache.", cache["usage_bytes"])
    yield gauge("block_cache_capacity_bytes", "Block cache size.", cache["capacity_bytes"])
    yield gauge(
        "pending_compaction_bytes",
        "Bytes compaction estimates it must rewrite.",
        compaction["estimate_pending_bytes"],
    )
    yield gauge("running_compactions", "Compactions running now.", compaction["running"])
    files = GaugeMetricFamily(
        "codegraph_rocksdb_files_at_level", "SST files per LSM level.", labels=["level"]
    )
    for level, count in enumerate(compaction["files_per_level"]):
        files.add_metric([str(level)], count)
    yield files
    yield counter("compaction_read_bytes", "Bytes read by compactions.", compaction["bytes_read"])
    yield counter(
        "compaction_written_bytes", "Bytes written by compactions.", compaction["bytes_written"]
    )
    yield counter(
        "flush_written_bytes", "Bytes written by memtable flushes.", writes["flush_bytes"]
    )
    yield counter("user_written_bytes", "Bytes the service wrote.", writes["user_bytes"])
    yield gauge(
        "write_stopped",
        "1 while RocksDB stops writes (too many L0 files or memtables).",
        1 if writes["stopped"] else 0,
    )
    yield gauge(
        "delayed_write_rate_bytes",
        "Rate writes are slowed to, 0 when not delayed.",
        writes["delayed_write_rate"],
    )
    yield counter("stall_seconds", "Time writes spent stalled.", writes["stall_micros"] / 1e6)
    yield counter("keys_read", "Keys looked up.", reads["keys_read"])
    yield counter(
        "data_blocks_read", "Data blocks read from cache or disk.", reads["data_blocks_read"]
    )
    yield gauge("sst_files_size_bytes", "Bytes in SST files.", sizes["sst_files_bytes"])
    yield gauge("memtable_size_bytes", "Bytes in memtables.", sizes["memtable_bytes"])


_collector: EngineCollector | None = None


def watch(figures: Callable[[], dict[str, Any] | None]) -> None:
    """Point the scrape-time collector at an engine (the latest one wins)."""
    global _collector
    if _collector is None:
        _collector = EngineCollector(figures)
        REGISTRY.register(_collector)
    else:
        _collector.figures = figures
