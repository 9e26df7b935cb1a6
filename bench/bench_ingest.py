"""Ingest through the API in batches of 1,000 (durable), beside the raw rocksdict
WriteBatch rate of the same records (also fsync'ed per batch).

The API path includes HTTP, JSON validation, the operation log (fsync), secondary
indexes and counters; the raw path is one put per record. Two client threads keep
the server busy while one batch is being written. The vector indexer runs in the
background as it would in production (its lag is reported, not waited for).
"""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import threading
import time

import orjson
import rocksdict
from common import Server, cpu_seconds, record, save

NODES = 300_000
BATCH = 1_000


def bodies() -> list[bytes]:
    return [
        orjson.dumps({"nodes": [record(i) for i in range(start, start + BATCH)]})
        for start in range(0, NODES, BATCH)
    ]


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def through_api(payloads: list[bytes]) -> dict:
    server = Server()
    try:
        queue = list(payloads)
        lock = threading.Lock()
        failures = []

        def worker() -> None:
            with server.client() as http:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    response = http.post(
                        "/nodes", content=body, headers={"content-type": "application/json"}
                    )
                    if response.status_code != 200:
                        failures.append(response.text)

        with server.client() as http:
            indexer_cpu = http.get("/vector/index/stats").json()["indexer_cpu_seconds"]
        server_cpu, client_cpu = cpu_seconds(server.process.pid), _own_cpu_seconds()
        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        server_cpu = cpu_seconds(server.process.pid) - server_cpu
        client_cpu = _own_cpu_seconds() - client_cpu
        assert not failures, failures[:3]
        with server.client() as http:
            stats = http.get("/stats").json()
            indexer_cpu = (
                http.get("/vector/index/stats").json()["indexer_cpu_seconds"] - indexer_cpu
            )
        assert stats["total_nodes"] == NODES
        return {
            "nodes_per_second": NODES / elapsed,
            "lag": stats["vector_index_lag"],
            "server_cpu_ms_per_1000_nodes": round(server_cpu / NODES * 1e6, 1),
            "server_cores_busy": round(server_cpu / elapsed, 2),
            "indexer_cpu_ms_per_1000_nodes": round(indexer_cpu / NODES * 1e6, 1),
            "client_cpu_ms_per_1000_nodes": round(client_cpu / NODES * 1e6, 1),
        }
    finally:
        server.stop()


def raw_write_batch(payloads: list[bytes]) -> float:
    path = tempfile.mkdtemp(prefix="codegraph-raw-")
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(path, options)
    write_options = rocksdict.WriteOptions()
    write_options.sync = True
    try:
        started = time.perf_counter()
        for body in payloads:
            batch = rocksdict.WriteBatch(raw_mode=True)
            for node in orjson.loads(body)["nodes"]:
                batch.put(node["id"].encode(), orjson.dumps(node))
            db.write(batch, write_options)
        return NODES / (time.perf_counter() - started)
    finally:
        db.close()
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    payloads = bodies()
    raw = raw_write_batch(payloads)
    measured = through_api(payloads)
    api = measured["nodes_per_second"]
    # What no rearrangement of the server's work could beat on this machine: every
    # core busy with the write path (the server's CPU per node as measured, less the
    # vector indexer's, as if indexing were put off entirely) and the client beside it.
    cpu_per_node = (
        measured["server_cpu_ms_per_1000_nodes"]
        - measured["indexer_cpu_ms_per_1000_nodes"]
        + measured["client_cpu_ms_per_1000_nodes"]
    ) / 1e6
    ceiling = os.cpu_count() / cpu_per_node
    save(
        "ingest",
        {
            "nodes": NODES,
            "batch": BATCH,
            "api_nodes_per_second": round(api),
            "raw_writebatch_nodes_per_second": round(raw),
            "api_over_raw": round(api / raw, 3),
            "vector_index_lag_at_end": measured["lag"],
            "server_cpu_ms_per_1000_nodes": measured["server_cpu_ms_per_1000_nodes"],
            "server_cores_busy": measured["server_cores_busy"],
            "indexer_cpu_ms_per_1000_nodes": measured["indexer_cpu_ms_per_1000_nodes"],
            "client_cpu_ms_per_1000_nodes": measured["client_cpu_ms_per_1000_nodes"],
            "cores": os.cpu_count(),
            "all_cores_ceiling_nodes_per_second": round(ceiling),
            "goal": ">= 50,000 nodes/s through the API, durable",
        },
    )


if __name__ == "__main__":
    main()
