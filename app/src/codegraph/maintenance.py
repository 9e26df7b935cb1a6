"""Maintenance work on a running engine: RocksDB figures, integrity check,
compaction, analyze, and auto-tune."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from codegraph import metrics
from codegraph.engine import Engine
from codegraph.errors import InvalidInput
from codegraph.store import integrity
from codegraph.store.figures import rocksdb_figures
from codegraph.store.graph import iso

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
def check_integrity(engine: Engine) -> dict[str, Any]:
    """Read every entry with checksums verified, then cross-check the structures
    (codegraph.store.integrity) on one consistent view."""
    started = time.monotonic()
    report = integrity.Report()
    with engine.gate.use():
        with engine.holding_still():  # every snapshot taken while nothing can change
            snapshots = engine.store.all_snapshots()
            counters = dict(engine.store.counters)
            vectors = engine.indexer.index
            index = integrity.VectorIndexView(
                {node_id: vectors.versions[label] for node_id, label in vectors.label_of.items()},
                vectors.seq,
                dimension=engine.settings.vector.dimension,
                rebuilding=engine.indexer.is_rebuilding(),
            )
        scanned = integrity.read_verified(snapshots, report)
    checked = integrity.cross_check(report, scanned, counters, index)
    return {
        "status": "ok" if report.count == 0 else "problems_found",
        "checked": checked,
        "skipped": sorted(set(snapshots) - set(scanned)),
        "problem_count": report.count,
        "problems": report.problems,
        "duration_seconds": round(time.monotonic() - started, 3),
        "checked_at": iso(time.time()),
    }


# ----------------------------------------------------------------- compaction
def compact(engine: Engine) -> dict[str, Any]:
    """A full manual compaction of every column family, bottommost level included."""
    with engine.gate.use():
        before = engine.store.property_int("rocksdb.total-sst-files-size")
        started = time.monotonic()
        engine.store.compact_all()
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
    with engine.writing():
        store = engine.store
        nodes_counted, kinds, edge_types = store.tally()
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
