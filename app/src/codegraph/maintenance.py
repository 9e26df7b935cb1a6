"""Maintenance work on a running engine: RocksDB figures, integrity check,
compaction, analyze, and auto-tune."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
import rocksdict

from codegraph import metrics
from codegraph.engine import Engine
from codegraph.errors import InvalidInput
from codegraph.store.figures import rocksdb_figures
from codegraph.store.graph import COLUMN_FAMILIES, iso, queued_ids
from codegraph.store.graph import entries as store_entries
from codegraph.vector.embed import embedding_problem

MAX_REPORTED_PROBLEMS = 1000
EF_CANDIDATES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def rocksdb_stats(engine: Engine) -> dict[str, Any]:
    with engine.gate.use():
        figures = rocksdb_figures(engine.store)
    compaction = {**figures.pop("compaction"), "last_manual": engine.last_compaction}
    return {
        "profile": engine.settings.database.profile,
        "options": engine.settings.database.tuning(),
        "compaction_stats": compaction,
        **figures,
        "last_analyze": engine.last_analyze,
    }


# ------------------------------------------------------------------ integrity
class _Report:
    def __init__(self) -> None:
        self.problems: list[dict[str, str]] = []
        self.count = 0

    def add(self, kind: str, detail: str) -> None:
        self.count += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append({"type": kind, "detail": detail})


def check_integrity(engine: Engine) -> dict[str, Any]:
    """Read every entry with checksums verified, then cross-check the structures:
    edges and lookups to missing nodes, one-sided edges, vector-index entries
    without nodes and nodes missing from the index, drifted counters."""
    started = time.monotonic()
    report = _Report()
    with engine.gate.use():
        store = engine.store
        # One consistent view: every snapshot taken while no write can happen.
        with engine.indexer.pause_lock, engine.write_lock:
            snapshots = {name: store.cf[name].snapshot() for name in COLUMN_FAMILIES}
            snapshots["default"] = store.db.snapshot()
            counters = dict(store.counters)
            index = engine.indexer.index
            indexed = {node_id: index.versions[label] for node_id, label in index.label_of.items()}
            indexed_seq = index.seq
        read_options = rocksdict.ReadOptions()
        read_options.set_verify_checksums(True)
        read_options.fill_cache(False)
        scanned: dict[str, list[tuple[bytes, bytes]]] = {}
        for name, snapshot in snapshots.items():
            iterator = snapshot.iter(read_options)
            iterator.seek_to_first()
            try:
                scanned[name] = list(store_entries(iterator))
            except Exception as error:  # RocksDB reports a checksum mismatch as an error
                report.add("corruption", f"column family {name}: {error}")
    checked = _cross_check(
        report,
        scanned,
        counters,
        indexed,
        indexed_seq,
        dimension=engine.settings.vector.dimension,
        rebuilding=engine.indexer.is_rebuilding(),
    )
    return {
        "status": "ok" if report.count == 0 else "problems_found",
        "checked": checked,
        "skipped": sorted(set(snapshots) - set(scanned)),
        "problem_count": report.count,
        "problems": report.problems,
        "duration_seconds": round(time.monotonic() - started, 3),
        "checked_at": iso(time.time()),
    }


def _cross_check(
    report: _Report,
    scanned: dict[str, list[tuple[bytes, bytes]]],
    counters: dict[str, int],
    indexed: dict[str, int],
    indexed_seq: int,
    *,
    dimension: int,
    rebuilding: bool,
) -> dict[str, int]:
    """Checks over what could be read; those needing an unreadable family are skipped."""
    checked: dict[str, int] = {}
    if "nodes" not in scanned:
        return checked
    nodes: dict[bytes, int] = {}
    for key, value in scanned["nodes"]:
        try:
            nodes[key] = orjson.loads(value)["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            report.add("bad_record", f"node {key!r} is not a valid record")
    checked["nodes"] = len(nodes)
    if counters["nodes_total"] != len(nodes):
        report.add(
            "counter_drift", f"nodes_total is {counters['nodes_total']}, counted {len(nodes)}"
        )
    if "edges" in scanned:
        forward, reverse = set(), set()
        for key, _ in scanned["edges"]:
            first, kind, second = key[1:].split(b"\0")
            missing = [n for n in (first, second) if n not in nodes]
            if missing:
                report.add("edge_to_missing_node", f"{key!r} refers to missing {missing[0]!r}")
            (forward if key.startswith(b"o") else reverse).add(
                (first, kind, second) if key.startswith(b"o") else (second, kind, first)
            )
        for source, kind, target in forward - reverse:
            report.add("edge_without_reverse", f"{source!r} -{kind.decode()}-> {target!r}")
        for source, kind, target in reverse - forward:
            report.add("reverse_without_edge", f"{source!r} -{kind.decode()}-> {target!r}")
        checked["edges"] = len(forward)
        if counters["edges_total"] != len(forward):
            report.add(
                "counter_drift", f"edges_total is {counters['edges_total']}, counted {len(forward)}"
            )
    if "lookup" in scanned:
        in_kind_index = set()
        for key, _ in scanned["lookup"]:
            node_id = key[1:].partition(b"\0")[2]
            if node_id not in nodes:
                report.add("lookup_to_missing_node", f"lookup entry {key!r}")
            elif key.startswith(b"k"):
                in_kind_index.add(node_id)
        for node_id in nodes.keys() - in_kind_index:
            report.add("node_not_in_lookup", f"node {node_id!r} missing from the kind index")
    unusable: set[bytes] = set()  # reported as bad embeddings, not again as not indexed
    if "embeddings" in scanned:
        checked["embeddings"] = len(scanned["embeddings"])
        for key, value in scanned["embeddings"]:
            if key not in nodes:
                report.add("embedding_without_node", f"embedding of {key!r}")
            elif len(value) != 4 * dimension:
                unusable.add(key)
                report.add("bad_embedding", f"embedding of {key!r} has {len(value) // 4} values")
            elif problem := embedding_problem(np.frombuffer(value, dtype=np.float32)):
                unusable.add(key)
                report.add("bad_embedding", f"{key!r}: {problem} (stored before checks existed)")
    if "default" in scanned:
        pending = {
            node_id
            for key, value in scanned["default"]
            if key.startswith(b"q") and int.from_bytes(key[1:], "big") > indexed_seq
            for node_id in queued_ids(value)
        }
        for node_id in indexed.keys() - {key.decode() for key in nodes}:
            if node_id.encode() not in pending:
                report.add("index_entry_without_node", f"vector index has {node_id!r}")
        if not rebuilding:
            for key, version in nodes.items():
                if (
                    indexed.get(key.decode()) != version
                    and key not in pending
                    and key not in unusable
                ):
                    report.add("node_not_indexed", f"node {key!r} (version {version})")
        checked["vector_index_entries"] = len(indexed)
    return checked


# ----------------------------------------------------------------- compaction
def compact(engine: Engine) -> dict[str, Any]:
    """A full manual compaction of every column family, bottommost level included."""
    options = rocksdict.CompactOptions()
    options.set_bottommost_level_compaction(rocksdict.BottommostLevelCompaction.force())
    with engine.gate.use():
        before = engine.store.property_int("rocksdb.total-sst-files-size")
        started = time.monotonic()
        engine.store.db.compact_range(None, None, options)
        for name in COLUMN_FAMILIES:
            engine.store.cf[name].compact_range(None, None, options)
        duration = time.monotonic() - started
        after = engine.store.property_int("rocksdb.total-sst-files-size")
    metrics.COMPACTION_SECONDS.observe(duration)
    engine.last_compaction = {
        "duration_seconds": round(duration, 3),
        "finished_at": iso(time.time()),
        "sst_bytes_before": before,
        "sst_bytes_after": after,
    }
    return {"status": "completed", **engine.last_compaction}


def analyze(engine: Engine) -> dict[str, Any]:
    """Recount nodes and edges exactly (repairing the counters if they drifted),
    tally nodes per kind and edges per type, and refresh the key estimates."""
    started = time.monotonic()
    with engine.gate.use(), engine.write_lock:
        store = engine.store
        kinds: dict[str, int] = {}
        for key, _ in store.scan("lookup", b"k"):
            kind = key[1:].partition(b"\0")[0].decode()
            kinds[kind] = kinds.get(kind, 0) + 1
        edge_types: dict[str, int] = {}
        for key, _ in store.scan("edges", b"o"):
            kind = key.split(b"\0")[1].decode()
            edge_types[kind] = edge_types.get(kind, 0) + 1
        nodes_counted = sum(1 for _ in store.scan("nodes", b""))
        edges_counted = sum(edge_types.values())
        repaired = store.set_counters(nodes_total=nodes_counted, edges_total=edges_counted)
        estimates = rocksdb_figures(store)["key_estimates"]
    engine.last_analyze = {
        "finished_at": iso(time.time()),
        "duration_seconds": round(time.monotonic() - started, 3),
        "nodes": nodes_counted,
        "edges": edges_counted,
        "nodes_by_kind": kinds,
        "edges_by_type": edge_types,
        "counters_repaired": repaired,
        "key_estimates": estimates,
    }
    return {"status": "completed", **engine.last_analyze}


# ------------------------------------------------------------------ auto-tune
def recommend_profile(reads: int, writes: int) -> tuple[str | None, str]:
    total = reads + writes
    if total < 100:
        return None, f"only {total} operations observed since start; too few to judge"
    share = writes / total
    if share >= 0.5:
        return "write_heavy", f"writes are {share:.0%} of operations"
    if share <= 0.1:
        return "read_heavy", f"reads are {1 - share:.0%} of operations"
    return "balanced", f"writes are {share:.0%} of operations"


def calibrate_ef_search(
    engine: Engine, target_recall: float, k: int = 10, samples: int = 200
) -> dict[str, Any]:
    """The smallest efSearch whose recall@k reaches the target, on queries near stored vectors."""
    index = engine.indexer.index
    live = [label for label, node_id in enumerate(index.ids) if node_id is not None]
    if index.params.index_type != "HNSW" or len(live) < 2 * k:
        return {
            "efSearch": index.ef_search,
            "measured": [],
            "note": "too few vectors or not an HNSW index; nothing to calibrate",
        }
    rng = np.random.default_rng(0)
    chosen = rng.choice(live, size=min(samples, len(live)), replace=False)
    with index.lock:
        vectors = np.vstack([index.index.reconstruct(int(label)) for label in chosen])
    queries = vectors + rng.normal(0, 0.05, vectors.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = [{n for n, _, _ in index.search(q, k, exact=True)} for q in queries]
    measured = []
    best = None
    for ef in EF_CANDIDATES:
        hits = sum(
            len(truth & {n for n, _, _ in index.search(q, k, ef_search=ef)})
            for q, truth in zip(queries, exact, strict=True)
        )
        recall = hits / sum(len(truth) for truth in exact)
        measured.append({"efSearch": ef, "recall_at_k": round(recall, 4)})
        if recall >= target_recall:
            best = ef
            break
    return {
        "efSearch": best or EF_CANDIDATES[-1],
        "measured": measured,
        "note": None if best else "target recall not reached; largest value tried",
    }


def auto_tune(engine: Engine, *, target_recall: float, apply: bool) -> dict[str, Any]:
    if not 0 < target_recall <= 1:
        raise InvalidInput("target_recall must be in (0, 1]")
    current = engine.settings.database.profile
    profile, reason = recommend_profile(engine.reads, engine.writes)
    with engine.gate.use():
        ef = calibrate_ef_search(engine, target_recall)
    applied, restart = [], []
    if apply and ef["efSearch"] != engine.indexer.index.ef_search:
        engine.indexer.index.ef_search = ef["efSearch"]
        applied.append(f"vector.efSearch = {ef['efSearch']}")
    if profile and profile != current:
        restart.append(
            f"database.profile = {profile!r} (set codegraph_rocksdb_profile; "
            "RocksDB options take effect at restart)"
        )
    return {
        "observed": {"reads": engine.reads, "writes": engine.writes},
        "current_profile": current,
        "recommended_profile": profile or current,
        "profile_reason": reason,
        "target_recall": target_recall,
        "recommended_efSearch": ef["efSearch"],
        "efSearch_calibration": ef,
        "applied": applied,
        "restart_required": restart,
    }
