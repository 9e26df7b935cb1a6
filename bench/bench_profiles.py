"""write_heavy against read_heavy: bulk ingest and random point reads.

Each profile gets a fresh database: ingest 600,000 nodes in batches of 1,000
(engine level, durable), reopen, then time 200,000 random point reads after a
warm-up. Each profile should win its own workload.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

from common import record, save

from codegraph.engine import Engine
from codegraph.settings import parse_settings

NODES, BATCH, READS = 600_000, 1_000, 200_000


def settings(root: Path, profile: str):
    (root / ".env").write_text("CODEGRAPH_API_KEY=" + "x" * 20 + "\n")
    return parse_settings(
        {
            "auth": {"keys_file": str(root / ".env")},
            "database": {"path": str(root / "rocksdb"), "profile": profile},
            "vector": {"path": str(root / "vector")},
            "backup": {"dir": str(root / "backups")},
            "oplog": {"path": str(root / "oplog")},
        }
    )


def run(profile: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"codegraph-{profile}-"))
    try:
        config = settings(root, profile)
        engine = Engine(config, background=False)  # the index is not what is measured
        batches = [[record(i) for i in range(s, s + BATCH)] for s in range(0, NODES, BATCH)]
        started = time.perf_counter()
        for batch in batches:
            engine.upsert(batch, [])
        ingest = NODES / (time.perf_counter() - started)
        engine.close()
        engine = Engine(config, background=False)
        rng = random.Random(7)
        ids = [record(rng.randrange(NODES))["id"] for _ in range(READS)]
        for node_id in ids[:20_000]:  # warm-up
            engine.get_node_raw(node_id)
        started = time.perf_counter()
        for node_id in ids:
            engine.get_node_raw(node_id)
        reads = READS / (time.perf_counter() - started)
        engine.close()
        return {"ingest_nodes_per_second": round(ingest), "point_reads_per_second": round(reads)}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    write_heavy, read_heavy = run("write_heavy"), run("read_heavy")
    save(
        "profiles",
        {
            "nodes": NODES,
            "reads": READS,
            "write_heavy": write_heavy,
            "read_heavy": read_heavy,
            "ingest_write_over_read": round(
                write_heavy["ingest_nodes_per_second"] / read_heavy["ingest_nodes_per_second"], 3
            ),
            "reads_read_over_write": round(
                read_heavy["point_reads_per_second"] / write_heavy["point_reads_per_second"], 3
            ),
            "goal": "each profile wins its own workload (ratios > 1)",
        },
    )


if __name__ == "__main__":
    main()
