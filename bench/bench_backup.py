"""Backup and restore of 1,000,000 nodes, and the service's RSS at that size.

A real codegraph-api holds the nodes (written through the API in batches of 1,000,
default 256-dimension index built in the background). Timed: the checkpoint alone
(goal <= 2 s), the whole POST /backup (checkpoint + vector index + sha256 of every
file), the next POST /backup (the files it shares with the first keep their hashes),
and POST /backup/restore (verify + stage + swap; goal <= 10 s). The baseline
beside them is `cp -a` of the same data directory: the physical floor of copying it.
"""

from __future__ import annotations

import json
import subprocess
import time

import orjson
from common import Server, record, rss_bytes, save

NODES, BATCH = 1_000_000, 1_000


def main() -> None:
    server = Server()
    try:
        with server.client() as http:
            bodies = (
                orjson.dumps({"nodes": [record(i) for i in range(s, s + BATCH)]})
                for s in range(0, NODES, BATCH)
            )
            started = time.perf_counter()
            for body in bodies:
                response = http.post(
                    "/nodes", content=body, headers={"content-type": "application/json"}
                )
                response.raise_for_status()
            ingest_seconds = time.perf_counter() - started
            server.wait_until_indexed()
            index_ready = time.perf_counter() - started
            rss = rss_bytes(server.process.pid)

            started = time.perf_counter()
            backup = http.post("/backup").json()
            backup_seconds = time.perf_counter() - started
            manifest = json.loads(
                next((server.root / "backups").glob("*/manifest.json")).read_text()
            )
            data = server.root / "data"
            size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())

            started = time.perf_counter()
            subprocess.run(["cp", "-a", str(data), str(server.root / "copy")], check=True)
            copy_seconds = time.perf_counter() - started

            http.post("/nodes", json={"nodes": [{"id": "after", "kind": "file", "name": "x"}]})
            # the next backup: the files it shares with this one keep their hashes
            started = time.perf_counter()
            next_backup = http.post("/backup").json()
            next_backup_seconds = time.perf_counter() - started

            started = time.perf_counter()
            restored = http.post("/backup/restore", json={"backup_id": backup["backup_id"]}).json()
            restore_seconds = time.perf_counter() - started
            assert restored["total_nodes"] == NODES, restored
            assert http.get("/nodes/after").status_code == 404
            # the restored index catches up with the changes after its last save
            lag_after_restore = http.get("/vector/index/stats").json()["lag"]
        save(
            "backup",
            {
                "nodes": NODES,
                "ingest_seconds": round(ingest_seconds, 1),
                "index_built_after_seconds": round(index_ready, 1),
                "rss_bytes_at_1m_nodes": rss,
                "data_bytes": size,
                "backup_files": len(manifest["files"]),
                "backup_timings": backup["timings"],
                "backup_seconds": round(backup_seconds, 2),
                "next_backup_seconds": round(next_backup_seconds, 2),
                "next_backup_timings": next_backup["timings"],
                "restore_seconds": round(restore_seconds, 2),
                "restore_timings": restored["timings"],
                "vector_index_lag_after_restore": lag_after_restore,
                "cp_a_data_seconds": round(copy_seconds, 2),
                "goal": "checkpoint <= 2 s, restore <= 10 s",
            },
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
