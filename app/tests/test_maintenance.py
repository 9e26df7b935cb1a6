"""Integrity check, compaction, analyze, auto-tune and the RocksDB figures."""

from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY

from conftest import DIMENSION, node, wait_for_index


def _graph(client, count=30):
    client.post(
        "/nodes",
        json={
            "nodes": [node(f"i:{n}") for n in range(count)],
            "edges": [
                {"source": f"i:{n}", "target": f"i:{n + 1}", "type": "calls"}
                for n in range(count - 1)
            ],
        },
    )


def test_integrity_check_passes_on_healthy_data(client, engine):
    _graph(client)
    wait_for_index(engine)
    report = client.post("/integrity/check").json()
    assert report["status"] == "ok", report
    assert report["checked"] == {
        "nodes": 30,
        "edges": 29,
        "embeddings": 0,
        "vector_index_entries": 30,
    }


def test_integrity_check_counts_queued_writes_as_pending(client, engine):
    # writes the vector indexer has not applied yet are not "missing from the index"
    engine.indexer.stop(save=False)
    _graph(client)
    report = client.post("/integrity/check").json()
    assert report["status"] == "ok", report
    assert report["checked"]["vector_index_entries"] == 0


def test_integrity_check_reports_every_problem(client, engine):
    _graph(client)
    wait_for_index(engine)
    # Damage the data behind the engine's back: a node record vanishes.
    engine.store.cf["nodes"].delete(b"i:5")
    report = client.post("/integrity/check").json()
    kinds = {p["type"] for p in report["problems"]}
    assert report["status"] == "problems_found"
    assert {
        "edge_to_missing_node",
        "lookup_to_missing_node",
        "index_entry_without_node",
        "counter_drift",
    } <= kinds
    assert report["problem_count"] == len(report["problems"])


def test_integrity_check_detects_a_corrupt_file(client, engine, settings):
    client.post("/nodes", json={"nodes": [node(f"c:{n}", text="x" * 2000) for n in range(200)]})
    wait_for_index(engine)
    client.post("/maintenance/compact")
    sst = max(Path(settings.database.path).glob("*.sst"), key=lambda p: p.stat().st_size)
    data = bytearray(sst.read_bytes())
    data[200:260] = b"\x00" * 60  # inside the first data block
    sst.write_bytes(bytes(data))
    report = client.post("/integrity/check").json()
    assert report["status"] == "problems_found"
    assert any(p["type"] == "corruption" for p in report["problems"]), report["problems"]


def _sample(name, labels=None):
    return REGISTRY.get_sample_value(name, labels or {}) or 0


def test_compaction_is_timed_into_the_metric(client):
    _graph(client)
    before = _sample("codegraph_rocksdb_compaction_duration_seconds_count")
    result = client.post("/maintenance/compact").json()
    assert result["status"] == "completed" and result["duration_seconds"] >= 0
    assert _sample("codegraph_rocksdb_compaction_duration_seconds_count") == before + 1
    stats = client.get("/stats/rocksdb").json()
    assert (
        stats["compaction_stats"]["last_manual"]["duration_seconds"] == result["duration_seconds"]
    )
    assert sum(stats["compaction_stats"]["files_per_level"]) >= 1


def test_analyze_recounts_and_repairs_drifted_counters(client, engine):
    _graph(client, 12)
    engine.store.counters["nodes_total"] = 99  # drift
    result = client.post("/maintenance/analyze").json()
    assert result["nodes"] == 12 and result["edges"] == 11 and result["counters_repaired"] is True
    assert result["nodes_by_kind"] == {"function": 12} and result["edges_by_type"] == {"calls": 11}
    assert client.get("/stats").json()["total_nodes"] == 12
    assert client.get("/stats/rocksdb").json()["last_analyze"]["nodes"] == 12


def test_rocksdb_stats_show_the_profile_in_force(client):
    _graph(client)
    stats = client.get("/stats/rocksdb").json()
    assert stats["profile"] == "balanced"
    assert stats["options"]["write_buffer_size"] == 64 * 1024 * 1024
    assert stats["block_cache"]["capacity_bytes"] == 16 << 20
    assert stats["key_estimates"]["nodes"] >= 1
    assert {"pending", "running", "estimate_pending_bytes", "files_per_level"} <= set(
        stats["compaction_stats"]
    )


def test_auto_tune_recommends_from_the_observed_mix(client, engine):
    vectors = np.random.default_rng(5).normal(size=(400, DIMENSION))
    client.post(
        "/nodes",
        json={"nodes": [node(f"a:{i}", embedding=v.tolist()) for i, v in enumerate(vectors)]},
    )
    for i in range(150):
        client.post("/nodes", json={"nodes": [node(f"w:{i}")]})
    wait_for_index(engine)
    engine.indexer.index.ef_search = 400
    tuned = client.post("/optimization/auto-tune", json={"target_recall": 0.9}).json()
    assert tuned["recommended_profile"] == "write_heavy"
    assert tuned["restart_required"] and "write_heavy" in tuned["restart_required"][0]
    calibration = tuned["efSearch_calibration"]["measured"]
    assert calibration[-1]["recall_at_k"] >= 0.9
    assert tuned["recommended_efSearch"] == calibration[-1]["efSearch"]
    assert tuned["applied"] == [f"vector.efSearch = {tuned['recommended_efSearch']}"]
    assert client.get("/vector/index/stats").json()["efSearch"] == tuned["recommended_efSearch"]

    for _ in range(2000):
        client.get("/nodes/a:1")
    assert (
        client.post("/optimization/auto-tune", json={"apply": False}).json()["recommended_profile"]
        == "read_heavy"
    )
    assert client.post("/optimization/auto-tune", json={"target_recall": 2}).status_code == 422
    assert (
        client.post("/optimization/auto-tune").status_code == 200
    )  # no body, as the runbook calls it
