#!/usr/bin/env python3
"""Write the Grafana dashboards (files/dashboards/*.json) from one compact spec.

The service's dashboards get the same variables - datasource, job (the service),
node_job (node_exporter) and instance - and the Edge dashboard (the load balancer)
datasource, lb_job (HAProxy's exporter) and instance; every query uses them; every
rate uses $__rate_interval; every panel has a unit and a description. `--check` exits 1
when a JSON file is not what this script would write (run `make docs`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from generated import write_or_check

OUT = Path(__file__).resolve().parent.parent / "files" / "dashboards"
SVC = 'job="$job", instance=~"$instance"'
NODE = 'job="$node_job", instance=~"$instance"'
# the load balancer's proxies, without its metrics listener
LB = 'job="$lb_job", instance=~"$instance", proxy!="metrics"'
RATE = "$__rate_interval"


def panel(title, description, unit, *targets, kind="timeseries", width=12, decimals=None):
    """targets: (expr, legend) pairs."""
    defaults = {"unit": unit}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "targets": [
            {
                "refId": chr(65 + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(targets)
        ],
        "_width": width,
    }


def row(title: str) -> dict:
    """A full-width row heading the panels after it."""
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_width": 24}


def quantile(q: float) -> str:
    return (
        f"histogram_quantile({q}, sum by (instance, le) "
        f"(rate(http_request_duration_seconds_bucket{{{SVC}}}[{RATE}])))"
    )


DASHBOARDS = {
    "codegraph-overview": (
        "CodeGraph / Service Overview",
        [
            panel(
                "Service status",
                "1 when Prometheus can scrape the service, 0 when it is down.",
                "none",
                (f"up{{{SVC}}}", "{{instance}}"),
                kind="stat",
                width=6,
            ),
            panel(
                "Request rate",
                "HTTP requests answered per second, per instance.",
                "reqps",
                (f"sum by (instance) (rate(http_requests_total{{{SVC}}}[{RATE}]))", "{{instance}}"),
                width=9,
            ),
            panel(
                "Error rate",
                "Share of requests answered with 5xx (server errors) and 4xx "
                "(client errors, 401s included), per instance.",
                "percentunit",
                (
                    f'sum by (instance) (rate(http_requests_total{{{SVC}, code=~"5.."}}[{RATE}])) '
                    f"/ sum by (instance) (rate(http_requests_total{{{SVC}}}[{RATE}]))",
                    "5xx {{instance}}",
                ),
                (
                    f'sum by (instance) (rate(http_requests_total{{{SVC}, code=~"4.."}}[{RATE}])) '
                    f"/ sum by (instance) (rate(http_requests_total{{{SVC}}}[{RATE}]))",
                    "4xx {{instance}}",
                ),
                width=9,
            ),
            panel(
                "Response time percentiles",
                "p50, p95 and p99 of request duration, per instance "
                "(the CodeGraphHighResponseTime alert fires at p95 > 2 s).",
                "s",
                (quantile(0.5), "p50 {{instance}}"),
                (quantile(0.95), "p95 {{instance}}"),
                (quantile(0.99), "p99 {{instance}}"),
                width=24,
            ),
            panel(
                "Requests in flight",
                "Requests being answered right now.",
                "short",
                (f"sum by (instance) (http_requests_concurrent{{{SVC}}})", "{{instance}}"),
            ),
            panel(
                "Authentication failures",
                "Requests refused for a missing or wrong API key, per second.",
                "reqps",
                (
                    f"sum by (instance) (rate(codegraph_auth_failures_total{{{SVC}}}[{RATE}]))",
                    "{{instance}}",
                ),
            ),
            row("Replication"),
            panel(
                "Applied sequence",
                "The last log entry each host applied, beside the stream's last entry: in a "
                "replicated fleet the lines run together (one host: its operation log).",
                "short",
                (f"codegraph_replication_applied_seq{{{SVC}}}", "applied {{instance}}"),
                (f"codegraph_replication_stream_last_seq{{{SVC}}}", "stream, seen by {{instance}}"),
                width=8,
            ),
            panel(
                "Replication lag",
                "Entries each host is behind the stream, and for how long "
                "(CodeGraphReplicationLagging fires past a minute).",
                "short",
                (f"codegraph_replication_lag_entries{{{SVC}}}", "entries {{instance}}"),
                (f"codegraph_replication_lag_seconds{{{SVC}}}", "seconds {{instance}}"),
                width=8,
            ),
            panel(
                "Log reachable, host ready",
                "1 while the stream answers the host, and while it takes traffic (/ready); "
                "0 without quorum, cut off, or catching up.",
                "none",
                (f"codegraph_replication_log_reachable{{{SVC}}}", "reachable {{instance}}"),
                (f"codegraph_replication_ready{{{SVC}}}", "ready {{instance}}"),
                width=4,
            ),
            panel(
                "Stream usage",
                "Bytes the stream holds as a share of its limit (past it the oldest entries go).",
                "percentunit",
                (
                    f"codegraph_replication_stream_bytes{{{SVC}}} "
                    f"/ (codegraph_replication_stream_max_bytes{{{SVC}}} > 0)",
                    "{{instance}}",
                ),
                width=4,
            ),
        ],
    ),
    "codegraph-performance": (
        "CodeGraph / Performance Metrics",
        [
            panel(
                "CPU usage",
                "Share of CPU time not idle on each host.",
                "percentunit",
                (
                    f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{NODE}, mode="idle"}}[{RATE}]))',
                    "{{instance}}",
                ),
            ),
            panel(
                "Memory usage",
                "Memory in use on each host (total minus available), and the "
                "service's own resident memory.",
                "bytes",
                (
                    f"node_memory_MemTotal_bytes{{{NODE}}} - node_memory_MemAvailable_bytes{{{NODE}}}",
                    "host {{instance}}",
                ),
                (f"codegraph_memory_usage_bytes{{{SVC}}}", "codegraph {{instance}}"),
            ),
            panel(
                "Disk I/O",
                "Reads and writes completed per second, all disks of each host.",
                "iops",
                (
                    f"sum by (instance) (rate(node_disk_reads_completed_total{{{NODE}}}[{RATE}]))",
                    "reads {{instance}}",
                ),
                (
                    f"sum by (instance) (rate(node_disk_writes_completed_total{{{NODE}}}[{RATE}]))",
                    "writes {{instance}}",
                ),
            ),
            panel(
                "Disk busy",
                "Share of time each host's disks were busy with I/O.",
                "percentunit",
                (
                    f"max by (instance) (rate(node_disk_io_time_seconds_total{{{NODE}}}[{RATE}]))",
                    "{{instance}}",
                ),
            ),
            panel(
                "Network I/O",
                "Bytes received and sent per second (loopback excluded).",
                "Bps",
                (
                    f'sum by (instance) (rate(node_network_receive_bytes_total{{{NODE}, device!="lo"}}[{RATE}]))',
                    "in {{instance}}",
                ),
                (
                    f'sum by (instance) (rate(node_network_transmit_bytes_total{{{NODE}, device!="lo"}}[{RATE}]))',
                    "out {{instance}}",
                ),
                width=24,
            ),
        ],
    ),
    "codegraph-business": (
        "CodeGraph / Business Metrics",
        [
            panel(
                "Nodes created, updated, deleted",
                "Node writes per second, by operation.",
                "ops",
                (
                    f"sum by (operation) (rate(codegraph_node_writes_total{{{SVC}}}[{RATE}]))",
                    "{{operation}}",
                ),
            ),
            panel(
                "Nodes stored",
                "Nodes in the graph, per instance.",
                "short",
                (f"codegraph_nodes_total{{{SVC}}}", "{{instance}}"),
            ),
            panel(
                "Search queries",
                "Searches per second, by mode (text, vector, hybrid).",
                "reqps",
                (
                    f"sum by (mode) (rate(codegraph_search_queries_total{{{SVC}}}[{RATE}]))",
                    "{{mode}}",
                ),
            ),
            panel(
                "Parse operations",
                "Source files parsed per second, by language and outcome.",
                "ops",
                (
                    f"sum by (language, status) (rate(codegraph_parse_operations_total{{{SVC}}}[{RATE}]))",
                    "{{language}} {{status}}",
                ),
            ),
            panel(
                "Vector searches",
                "Vector-index searches per second.",
                "reqps",
                (
                    f"sum by (instance) (rate(codegraph_vector_search_duration_seconds_count{{{SVC}}}[{RATE}]))",
                    "{{instance}}",
                ),
            ),
            panel(
                "Vector search latency (p95)",
                "95th percentile of one vector-index search.",
                "s",
                (
                    "histogram_quantile(0.95, sum by (instance, le) "
                    f"(rate(codegraph_vector_search_duration_seconds_bucket{{{SVC}}}[{RATE}])))",
                    "{{instance}}",
                ),
            ),
        ],
    ),
    "codegraph-database": (
        "CodeGraph / Database Metrics",
        [
            panel(
                "Compaction backlog",
                "Bytes RocksDB estimates compaction must still rewrite.",
                "bytes",
                (f"codegraph_rocksdb_pending_compaction_bytes{{{SVC}}}", "pending {{instance}}"),
            ),
            panel(
                "SST files per level",
                "Number of SST files at each LSM level (many L0 files slow "
                "reads and stall writes).",
                "short",
                (f"sum by (level) (codegraph_rocksdb_files_at_level{{{SVC}}})", "L{{level}}"),
            ),
            panel(
                "Manual compaction time (p95)",
                "Duration of full manual compactions (POST /maintenance/compact).",
                "s",
                (
                    "histogram_quantile(0.95, sum by (instance, le) (rate("
                    f"codegraph_rocksdb_compaction_duration_seconds_bucket{{{SVC}}}[{RATE}])))",
                    "{{instance}}",
                ),
            ),
            panel(
                "Block cache hit rate",
                "Share of block reads served from RocksDB's block cache.",
                "percentunit",
                (
                    f"sum by (instance) (rate(codegraph_rocksdb_block_cache_hits_total{{{SVC}}}[{RATE}])) "
                    f"/ (sum by (instance) (rate(codegraph_rocksdb_block_cache_hits_total{{{SVC}}}[{RATE}])) "
                    f"+ sum by (instance) (rate(codegraph_rocksdb_block_cache_misses_total{{{SVC}}}[{RATE}])))",
                    "{{instance}}",
                ),
            ),
            panel(
                "Write amplification",
                "Bytes RocksDB writes to disk (flushes and compactions) per "
                "byte the service writes.",
                "none",
                (
                    "(sum by (instance) (rate(codegraph_rocksdb_flush_written_bytes_total"
                    f"{{{SVC}}}[{RATE}])) + sum by (instance) (rate("
                    f"codegraph_rocksdb_compaction_written_bytes_total{{{SVC}}}[{RATE}]))) / "
                    f"sum by (instance) (rate(codegraph_rocksdb_user_written_bytes_total{{{SVC}}}[{RATE}]))",
                    "{{instance}}",
                ),
                decimals=2,
            ),
            panel(
                "Read amplification",
                "Data blocks read (from cache or disk) per key looked up.",
                "none",
                (
                    f"sum by (instance) (rate(codegraph_rocksdb_data_blocks_read_total{{{SVC}}}[{RATE}])) "
                    f"/ sum by (instance) (rate(codegraph_rocksdb_keys_read_total{{{SVC}}}[{RATE}]))",
                    "{{instance}}",
                ),
                decimals=2,
            ),
            panel(
                "Write stalls",
                "Share of time writes were stalled, and whether writes are stopped.",
                "percentunit",
                (
                    f"sum by (instance) (rate(codegraph_rocksdb_stall_seconds_total{{{SVC}}}[{RATE}]))",
                    "stalled {{instance}}",
                ),
                (f"codegraph_rocksdb_write_stopped{{{SVC}}}", "stopped {{instance}}"),
            ),
            panel(
                "Vector index lag",
                "How long the vector index has been behind the store.",
                "s",
                (f"codegraph_vector_index_lag_seconds{{{SVC}}}", "{{instance}}"),
            ),
        ],
    ),
    "codegraph-edge": (
        "CodeGraph / Edge",
        [
            panel(
                "Requests at the load balancer",
                "HTTP requests per second arriving at each frontend of the load balancer.",
                "reqps",
                (
                    f"sum by (instance, proxy) (rate(haproxy_frontend_http_requests_total{{{LB}}}[{RATE}]))",
                    "{{instance}} {{proxy}}",
                ),
                width=9,
            ),
            panel(
                "5xx at the load balancer",
                "Share of requests answered with 5xx over the last 5 minutes: HAProxy's own "
                "(no host up, timeouts) and the hosts' (LoadBalancerHighErrorRate fires above 5%).",
                "percentunit",
                (
                    f"instance:haproxy_frontend_http_responses_5xx:ratio_rate5m{{{LB}}}",
                    "{{instance}} {{proxy}}",
                ),
                width=9,
            ),
            panel(
                "Hosts up in the backend",
                "Servers of each backend that take traffic (LoadBalancerNoServerUp fires at 0).",
                "none",
                (f"haproxy_backend_active_servers{{{LB}}}", "{{instance}} {{proxy}}"),
                kind="stat",
                width=6,
            ),
            panel(
                "Host states",
                "1 while a host is UP at the load balancer; 0 while it is down, drained or in "
                "maintenance (LoadBalancerServerDown fires after 15 minutes out).",
                "none",
                (f'haproxy_server_status{{{LB}, state="UP"}}', "{{proxy}}/{{server}}"),
            ),
            panel(
                "Queue and sessions",
                "Requests waiting for a free host, and connections open at each frontend.",
                "short",
                (f"haproxy_backend_current_queue{{{LB}}}", "queued {{proxy}}"),
                (f"haproxy_frontend_current_sessions{{{LB}}}", "sessions {{proxy}}"),
            ),
            panel(
                "Errors, retries and redispatches",
                "Per second: connections to a host that failed, responses that failed or timed "
                "out, and requests retried or sent to another host.",
                "reqps",
                (
                    f"sum by (proxy) (rate(haproxy_backend_connection_errors_total{{{LB}}}[{RATE}]))",
                    "connection errors {{proxy}}",
                ),
                (
                    f"sum by (proxy) (rate(haproxy_backend_response_errors_total{{{LB}}}[{RATE}]))",
                    "response errors {{proxy}}",
                ),
                (
                    f"sum by (proxy) (rate(haproxy_backend_retry_warnings_total{{{LB}}}[{RATE}]))",
                    "retries {{proxy}}",
                ),
                (
                    f"sum by (proxy) (rate(haproxy_backend_redispatch_warnings_total{{{LB}}}[{RATE}]))",
                    "redispatches {{proxy}}",
                ),
            ),
            panel(
                "Responses from the hosts by class",
                "Responses per second the hosts behind each backend gave, by status class.",
                "reqps",
                (
                    f"sum by (proxy, code) (rate(haproxy_backend_http_responses_total{{{LB}}}[{RATE}]))",
                    "{{proxy}} {{code}}",
                ),
            ),
        ],
    ),
}


def query_variable(name: str, label: str, query: str, **extra: object) -> dict:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 1,
        "hide": 0,
        **extra,
    }


DATASOURCE = {
    "name": "datasource",
    "label": "Data source",
    "type": "datasource",
    "query": "prometheus",
    "current": {},
    "hide": 0,
}


def instance_variable(job_variable: str) -> dict:
    return query_variable(
        "instance",
        "Instance",
        f'label_values(up{{job="${job_variable}"}}, instance)',
        refresh=2,
        multi=True,
        includeAll=True,
        allValue=".*",
        current={"text": "All", "value": "$__all"},
    )


VARIABLES = [
    DATASOURCE,
    query_variable(
        "job",
        "Service job",
        "label_values(codegraph_build_info, job)",
        current={"text": "codegraph", "value": "codegraph"},
    ),
    query_variable(
        "node_job",
        "node_exporter job",
        "label_values(node_uname_info, job)",
        current={"text": "node", "value": "node"},
    ),
    instance_variable("job"),
]
EDGE_VARIABLES = [
    DATASOURCE,
    query_variable(
        "lb_job",
        "Load balancer job",
        "label_values(haproxy_process_start_time_seconds, job)",
        current={"text": "haproxy", "value": "haproxy"},
    ),
    instance_variable("lb_job"),
]


# Every rollout marks the overview's graphs: a host's first minutes on a version (the
# service's build-info metric carries it), whether a deploy, a hotfix or a rollback.
_BUILD = 'codegraph_build_info{job="$job", instance=~"$instance"}'
RELEASES = {
    "name": "Releases",
    "datasource": {"type": "prometheus", "uid": "${datasource}"},
    "enable": True,
    "iconColor": "#5794F2",
    "expr": f"group by (instance, version) ({_BUILD}) "
    f"unless group by (instance, version) ({_BUILD} offset 2m)",
    "step": "30s",
    "titleFormat": "{{instance}}: release {{version}}",
    "textFormat": "{{instance}} started serving release {{version}} (deploy, hotfix or rollback)",
    "tagKeys": "instance,version",
}
ANNOTATIONS = {"codegraph-overview": [RELEASES]}


def build(uid: str, title: str, panels: list[dict]) -> dict:
    laid_out, x, y, row_height = [], 0, 0, 8
    for number, item in enumerate(panels, start=1):
        width = item.pop("_width")
        if x + width > 24:
            x, y = 0, y + row_height
        laid_out.append(
            {"id": number, "gridPos": {"h": row_height, "w": width, "x": x, "y": y}, **item}
        )
        x += width
    return {
        "uid": uid,
        "title": title,
        "tags": ["codegraph"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "timezone": "",
        "time": {"from": "now-6h", "to": "now"},
        "description": "Generated by scripts/dashboards.py; see docs/operations.md.",
        "templating": {"list": EDGE_VARIABLES if uid == "codegraph-edge" else VARIABLES},
        "annotations": {"list": ANNOTATIONS.get(uid, [])},
        "panels": laid_out,
        "links": [
            {"title": "CodeGraph", "type": "dashboards", "tags": ["codegraph"], "asDropdown": True}
        ],
    }


def render() -> dict[Path, str]:
    return {
        OUT / f"{uid}.json": json.dumps(build(uid, title, [dict(p) for p in panels]), indent=2)
        + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


def main(argv: list[str]) -> int:
    return write_or_check(render(), argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
