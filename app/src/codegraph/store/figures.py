"""RocksDB's own figures, shared by GET /stats/rocksdb and the /metrics collector."""

from __future__ import annotations

from typing import Any

from codegraph.store.graph import COLUMN_FAMILIES, GraphStore

# What the rest of the service may use (tests/test_layers.py holds it to this).
__all__ = ["rocksdb_figures"]


def rocksdb_figures(store: GraphStore) -> dict[str, Any]:
    """RocksDB's own figures: shared by GET /stats/rocksdb and the /metrics collector."""
    tickers = store.statistics()
    prop = store.property_int

    def ticker(name: str) -> int:
        return tickers.get(f"rocksdb.{name}", 0)

    hits, misses = ticker("block.cache.hit"), ticker("block.cache.miss")
    user_bytes = ticker("bytes.written")
    flush_bytes, compact_written = ticker("flush.write.bytes"), ticker("compact.write.bytes")
    keys_read = ticker("number.keys.read")
    blocks_read = ticker("block.cache.data.hit") + ticker("block.cache.data.miss")
    return {
        "block_cache": {
            "capacity_bytes": store.db.property_int_value("rocksdb.block-cache-capacity"),
            "usage_bytes": store.db.property_int_value("rocksdb.block-cache-usage"),
            "pinned_usage_bytes": store.db.property_int_value("rocksdb.block-cache-pinned-usage"),
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
        },
        "compaction": {
            "pending": prop("rocksdb.compaction-pending") > 0,
            "running": prop("rocksdb.num-running-compactions"),
            "estimate_pending_bytes": prop("rocksdb.estimate-pending-compaction-bytes"),
            "bytes_read": ticker("compact.read.bytes"),
            "bytes_written": compact_written,
            "files_per_level": [prop(f"rocksdb.num-files-at-level{level}") for level in range(7)],
        },
        "writes": {
            "user_bytes": user_bytes,
            "flush_bytes": flush_bytes,
            # bytes RocksDB wrote to SST files per byte the service wrote
            "write_amplification": round((flush_bytes + compact_written) / user_bytes, 3)
            if user_bytes
            else None,
            "stopped": prop("rocksdb.is-write-stopped") > 0,
            "delayed_write_rate": prop("rocksdb.actual-delayed-write-rate"),
            "stall_micros": ticker("stall.micros"),
        },
        "reads": {
            "keys_read": keys_read,
            "bytes_read": ticker("bytes.read"),
            "data_blocks_read": blocks_read,
            # data blocks touched per key looked up (1.0 = one block per lookup)
            "read_amplification": round(blocks_read / keys_read, 3) if keys_read else None,
        },
        "sizes": {
            "sst_files_bytes": prop("rocksdb.total-sst-files-size"),
            "live_sst_files_bytes": prop("rocksdb.live-sst-files-size"),
            "memtable_bytes": prop("rocksdb.cur-size-all-mem-tables"),
        },
        "key_estimates": {
            name: store.cf[name].property_int_value("rocksdb.estimate-num-keys") or 0
            for name in COLUMN_FAMILIES
        },
    }
