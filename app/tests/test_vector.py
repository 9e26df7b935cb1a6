"""The vector index: stats, background rebuild with the runbook's payload, persistence."""

import threading
import time

import numpy as np

from codegraph.engine import Engine
from conftest import DIMENSION, node, wait_for_index

RUNBOOK_REBUILD = {
    "index_type": "HNSW",
    "parameters": {"M": 16, "efConstruction": 200, "efSearch": 100},
}


def _load(client, count: int, seed: int = 3) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIMENSION))
    for start in range(0, count, 500):
        client.post(
            "/nodes",
            json={
                "nodes": [
                    node(f"v:{i:05d}", embedding=vectors[i].tolist())
                    for i in range(start, min(start + 500, count))
                ]
            },
        )
    return vectors


def test_index_stats_and_performance(client, engine):
    _load(client, 300)
    wait_for_index(engine)
    stats = client.get("/vector/index/stats").json()
    assert stats["index_type"] == "HNSW" and stats["dimension"] == DIMENSION
    assert (stats["M"], stats["efConstruction"], stats["efSearch"]) == (16, 200, 100)
    assert stats["vectors_live"] == 300 and stats["lag"]["operations"] == 0
    assert stats["indexer_cpu_seconds"] > 0  # embedding and adding 300 vectors
    for _ in range(120):
        client.post("/search", json={"embedding": [1.0] * DIMENSION, "mode": "vector"})
    time.sleep(1.2)  # recall samples are measured by the indexer thread
    performance = client.get("/vector/performance").json()
    assert performance["searches_total"] == 120
    assert performance["latency"]["p95_ms"] > 0
    assert performance["recall_samples"] >= 2 and performance["recall_at_k"] > 0.8


def test_rebuild_runs_in_background_and_queries_keep_working(client, engine):
    vectors = _load(client, 2000)
    wait_for_index(engine)
    answers, errors, stop = [], [], threading.Event()

    def query_during_rebuild():
        while not stop.is_set():
            response = client.post(
                "/search", json={"embedding": vectors[42].tolist(), "mode": "vector", "k": 1}
            )
            if response.status_code != 200:
                errors.append(response.text)
            else:
                answers.append(response.json()["results"][0]["node"]["id"])

    reader = threading.Thread(target=query_during_rebuild)
    reader.start()
    started = client.post(
        "/vector/index/rebuild", json={"index_type": "HNSW", "parameters": {"M": 8, "efSearch": 64}}
    )
    assert started.status_code == 202 and started.json()["status"] == "started"
    assert client.post("/vector/index/rebuild", json=RUNBOOK_REBUILD).status_code == 409
    client.post("/nodes", json={"nodes": [node("v:late", embedding=vectors[7].tolist())]})
    progress_seen = set()
    deadline = time.monotonic() + 120
    while (state := client.get("/vector/index/stats").json()["rebuild"])["state"] == "running":
        progress_seen.add(state["progress"])
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stop.set()
    reader.join()
    assert state["state"] == "completed" and state["progress"] == 1.0
    assert not errors and answers and set(answers) == {"v:00042"}
    wait_for_index(engine)
    stats = client.get("/vector/index/stats").json()
    assert (stats["M"], stats["efSearch"]) == (8, 64)
    assert stats["vectors_live"] == 2001 and stats["vectors_stale"] == 0
    late = client.post("/search", json={"embedding": vectors[7].tolist(), "mode": "vector", "k": 2})
    assert {r["node"]["id"] for r in late.json()["results"]} == {"v:00007", "v:late"}


def test_runbook_rebuild_payload_and_bad_payloads(client, engine):
    _load(client, 50)
    assert client.post("/vector/index/rebuild", json=RUNBOOK_REBUILD).status_code == 202
    wait_for_index(engine)
    assert client.post("/vector/index/rebuild", json={"index_type": "LSH"}).status_code == 422
    bad_m = {"index_type": "HNSW", "parameters": {"M": 1}}
    assert client.post("/vector/index/rebuild", json=bad_m).status_code == 422


def test_index_survives_restart_and_catches_up_after_a_crash(settings, client, engine):
    vectors = _load(client, 400)
    wait_for_index(engine)
    engine.indexer.save()
    # Writes the saved index does not have: the queue must bring them back.
    client.post("/nodes", json={"nodes": [node("after:save", embedding=vectors[5].tolist())]})
    client.delete("/nodes/v:00009")
    engine.indexer.stop(save=False)  # as if the process died here
    engine.store.close()
    engine._lock_file.close()
    engine.gate.closed_for = "test"

    reopened = Engine(settings)
    try:
        wait_for_index(reopened)
        index = reopened.indexer.index
        assert "after:save" in index.label_of and "v:00009" not in index.label_of
        assert len(index.label_of) == 400
    finally:
        reopened.close()


def test_an_index_file_cut_short_is_rebuilt_from_the_store(settings, client, engine):
    _load(client, 200)
    wait_for_index(engine)
    engine.close()
    engine.gate.closed_for = "test"  # closed here, not by the fixture
    index_file = engine.indexer.path
    index_file.write_bytes(index_file.read_bytes()[: index_file.stat().st_size // 2])

    reopened = Engine(settings)
    try:
        wait_for_index(reopened)
        assert len(reopened.indexer.index.label_of) == 200
    finally:
        reopened.close()
