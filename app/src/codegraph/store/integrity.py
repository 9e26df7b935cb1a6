"""The integrity check's reading of the store: every entry of a consistent set of
snapshots read with checksums verified, then the structures cross-checked (edges and
lookups to missing nodes, one-sided edges, embeddings, drifted counters, the vector
index against the nodes and the queue). The key layout is graph.py's; this module
decodes keys only through its helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import rocksdict

from codegraph.store.graph import edge_of_key, entries, lookup_of_key, queued_after
from codegraph.vector.embed import embedding_problem

MAX_REPORTED_PROBLEMS = 1000

# What the rest of the service may use (tests/test_layers.py holds it to this).
__all__ = ["MAX_REPORTED_PROBLEMS", "Report", "VectorIndexView", "cross_check", "read_verified"]


class Report:
    """Problems found: all counted, the first MAX_REPORTED_PROBLEMS kept."""

    def __init__(self) -> None:
        self.problems: list[dict[str, str]] = []
        self.count = 0

    def add(self, kind: str, detail: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append({"type": kind, "detail": detail})


class VectorIndexView:
    """What the check needs of the vector index, taken with the snapshots."""

    def __init__(self, indexed: dict[str, int], seq: int, dimension: int, rebuilding: bool):
        self.indexed = indexed  # node id -> the node version it holds
        self.seq = seq  # the last queue entry it includes
        self.dimension = dimension
        self.rebuilding = rebuilding


def read_verified(snapshots: dict[str, Any], report: Report) -> dict[str, list]:
    """Every entry of each snapshot, checksums verified; a family that cannot be read
    is reported and left out (the checks needing it are skipped)."""
    read_options = rocksdict.ReadOptions()
    read_options.set_verify_checksums(True)
    read_options.fill_cache(False)
    scanned: dict[str, list[tuple[bytes, bytes]]] = {}
    for name, snapshot in snapshots.items():
        iterator = snapshot.iter(read_options)
        iterator.seek_to_first()
        try:
            scanned[name] = list(entries(iterator))
        except Exception as error:  # RocksDB reports a checksum mismatch as an error
            report.add("corruption", f"column family {name}: {error}")
    return scanned


def cross_check(
    report: Report,
    scanned: dict[str, list[tuple[bytes, bytes]]],
    counters: dict[str, int],
    index: VectorIndexView,
) -> dict[str, int]:
    """Checks over what could be read; returns how many of each thing were checked."""
    checked: dict[str, int] = {}
    if "nodes" not in scanned:
        return checked
    nodes = _nodes(report, scanned["nodes"])
    checked["nodes"] = len(nodes)
    _counter(report, counters, "nodes_total", len(nodes))
    if "edges" in scanned:
        checked["edges"] = _edges(report, scanned["edges"], nodes)
        _counter(report, counters, "edges_total", checked["edges"])
    if "lookup" in scanned:
        _lookups(report, scanned["lookup"], nodes)
    unusable: set[bytes] = set()  # reported as bad embeddings, not again as not indexed
    if "embeddings" in scanned:
        checked["embeddings"] = len(scanned["embeddings"])
        unusable = _embeddings(report, scanned["embeddings"], nodes, index.dimension)
    if "default" in scanned:
        _vector_index(report, scanned["default"], nodes, index, unusable)
        checked["vector_index_entries"] = len(index.indexed)
    return checked


def _nodes(report: Report, scanned: list[tuple[bytes, bytes]]) -> dict[bytes, int]:
    nodes: dict[bytes, int] = {}
    for key, value in scanned:
        try:
            nodes[key] = orjson.loads(value)["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            report.add("bad_record", f"node {key!r} is not a valid record")
    return nodes


def _counter(report: Report, counters: dict[str, int], name: str, counted: int) -> None:
    if counters[name] != counted:
        report.add("counter_drift", f"{name} is {counters[name]}, counted {counted}")


def _edges(report: Report, scanned: list[tuple[bytes, bytes]], nodes: dict[bytes, int]) -> int:
    forward, reverse = set(), set()
    for key, _ in scanned:
        source, kind, target, is_forward = edge_of_key(key)
        missing = [n for n in (source, target) if n not in nodes]
        if missing:
            report.add("edge_to_missing_node", f"{key!r} refers to missing {missing[0]!r}")
        (forward if is_forward else reverse).add((source, kind, target))
    for source, kind, target in forward - reverse:
        report.add("edge_without_reverse", f"{source!r} -{kind.decode()}-> {target!r}")
    for source, kind, target in reverse - forward:
        report.add("reverse_without_edge", f"{source!r} -{kind.decode()}-> {target!r}")
    return len(forward)


def _lookups(report: Report, scanned: list[tuple[bytes, bytes]], nodes: dict[bytes, int]) -> None:
    in_kind_index = set()
    for key, _ in scanned:
        is_kind, _, node_id = lookup_of_key(key)
        if node_id not in nodes:
            report.add("lookup_to_missing_node", f"lookup entry {key!r}")
        elif is_kind:
            in_kind_index.add(node_id)
    for node_id in nodes.keys() - in_kind_index:
        report.add("node_not_in_lookup", f"node {node_id!r} missing from the kind index")


def _embeddings(
    report: Report, scanned: list[tuple[bytes, bytes]], nodes: dict[bytes, int], dimension: int
) -> set[bytes]:
    unusable = set()
    for key, value in scanned:
        if key not in nodes:
            report.add("embedding_without_node", f"embedding of {key!r}")
        elif len(value) != 4 * dimension:
            unusable.add(key)
            report.add("bad_embedding", f"embedding of {key!r} has {len(value) // 4} values")
        elif problem := embedding_problem(np.frombuffer(value, dtype=np.float32)):
            unusable.add(key)
            report.add("bad_embedding", f"{key!r}: {problem} (stored before checks existed)")
    return unusable


def _vector_index(
    report: Report,
    scanned_default: list[tuple[bytes, bytes]],
    nodes: dict[bytes, int],
    index: VectorIndexView,
    unusable: set[bytes],
) -> None:
    pending = queued_after(scanned_default, index.seq)
    for node_id in index.indexed.keys() - {key.decode() for key in nodes}:
        if node_id.encode() not in pending:
            report.add("index_entry_without_node", f"vector index has {node_id!r}")
    if index.rebuilding:
        return
    excused = pending | unusable
    for key, version in nodes.items():
        if index.indexed.get(key.decode()) != version and key not in excused:
            report.add("node_not_indexed", f"node {key!r} (version {version})")
