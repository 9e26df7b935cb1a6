"""The engine: one object that owns the store, the operation log, the vector
indexer and the backups, and the only place that writes.

Every mutation is validated and planned, appended to the operation log, then
committed to RocksDB as one batch, all under one write lock (RocksDB allows one
writer per host; the lock also keeps the log and the database in the same order).
A restore closes the store: the gate turns new callers away with 503 and waits
for callers already inside before the store is swapped.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codegraph import __version__, fleet_restore, metrics
from codegraph.errors import (
    Conflict,
    DatabaseInUse,
    NotFound,
    Unavailable,
)
from codegraph.replication import entries
from codegraph.replication.applied import Applied
from codegraph.replication.applier import Applier
from codegraph.replication.log import open_log
from codegraph.settings import Settings
from codegraph.store.backups import BackupStore, finish_swaps
from codegraph.store.figures import rocksdb_figures
from codegraph.store.graph import GraphStore
from codegraph.store.oplog import OpLog
from codegraph.store.options import build_options
from codegraph.vector.embed import embed_record
from codegraph.vector.index import IndexParams
from codegraph.vector.indexer import Indexer

log = logging.getLogger("codegraph.engine")


class Gate:
    """Lets any number of callers use the store, or none while it is swapped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._users = 0
        self.closed_for: str | None = None

    @contextmanager
    def use(self) -> Iterator[None]:
        with self._cond:
            if self.closed_for:
                raise Unavailable(f"{self.closed_for} in progress; retry shortly")
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                if not self._users:
                    self._cond.notify_all()

    @contextmanager
    def closed(self, reason: str) -> Iterator[None]:
        with self._cond:
            if self.closed_for:
                raise Conflict(f"{self.closed_for} already in progress")
            self.closed_for = reason
            while self._users:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self.closed_for = None


# Entries that steer the fleet rather than change the graph (codegraph.fleet_restore).
CONTROL_OPS = ("pause_writes", "resume_writes", "adopt")


@dataclass(frozen=True)
class Written:
    """A write's answer: its result, its sequence in the log, and whether it was the
    retry of an earlier write (same Idempotency-Key) answered with that one's result."""

    result: dict[str, Any]
    seq: int
    replayed: bool = False


class Engine:
    def __init__(self, settings: Settings, *, background: bool = True) -> None:
        self.settings = settings
        self.background = background
        self.started = time.time()
        self.gate = Gate()
        self._write_lock = threading.Lock()
        self.reads = 0  # operations observed since start, for auto-tune
        self.last_compaction: dict[str, Any] | None = None
        self.last_analyze: dict[str, Any] | None = None
        self.indexer_errors = 0
        self.applied = Applied(0)
        self._lock_file = self._take_directory_lock()
        try:
            finish_swaps(Path(settings.database.path))  # an interrupted restore
            self.oplog = OpLog(
                settings.oplog.path,
                retention_days=settings.oplog.retention_days,
                sync=self.syncs_writes,
            )
            self.backups = BackupStore(settings.backup.dir, settings.backup.keep)
            self.open_store()
            self.applier = Applier(
                settings,
                lambda: self.store,
                self.oplog,
                self.applied,
                self.writing,
                lambda: self.indexer.notify(),
            )
            self.applier.adopt = functools.partial(fleet_restore.adopt, self)
            self.log = open_log(self.applier)
            backups = self.backups.list()
            if backups:
                metrics.BACKUP_LAST_SUCCESS.set(backups[-1]["created_ts"])
        except BaseException:
            self._lock_file.close()
            raise
        self.oplog.prune()
        if background:
            self.log.start()

    # ------------------------------------------------------------ lifecycle
    def _take_directory_lock(self):
        path = self.settings.lock_path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 (held for the engine's lifetime)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise DatabaseInUse(
                f"the data directory of {self.settings.database.path} is in use by another "
                "process (is the codegraph service running? stop it first: "
                "systemctl stop codegraph)"
            ) from None
        return handle

    @property
    def writes(self) -> int:
        """Entries applied since start (the auto-tune's figure)."""
        return self.applier.writes

    @property
    def syncs_writes(self) -> bool:
        """Whether each write is fsync'ed here. Replicated, it is not: an acknowledged
        write is in the stream on a quorum of hosts, and what a crash takes from this
        host's unsynced tail it applies again from the stream (docs/replication.md)."""
        return self.settings.database.sync_writes and self.settings.replication.mode == "none"

    def store_options(self):
        db = self.settings.database
        return build_options(
            db.tuning(),
            max_log_file_size=db.max_log_file_size,
            keep_log_file_num=db.keep_log_file_num,
        )

    def open_store(self) -> None:
        db = self.settings.database
        self.store = GraphStore(db.path, self.store_options(), sync=self.syncs_writes)
        # The local log's position is the operation log's; a replicated log's is what
        # the store says it applied (the stream, not this log, is then the record).
        local = self.settings.replication.mode == "none"
        self.applied.reset(self.oplog.last_lsn if local else self.store.counters["applied_seq"])
        vector = self.settings.vector
        params = IndexParams(
            vector.index_type, vector.dimension, vector.M, vector.efConstruction, vector.efSearch
        )
        self.indexer = Indexer(
            self.store, params, Path(vector.path) / "index.bin", on_error=self._count_indexer_error
        )
        if self.background:
            self.indexer.start()

    def close_store(self, *, save_index: bool) -> None:
        self.indexer.stop(save=save_index)
        self.store.close()

    def _count_indexer_error(self) -> None:
        self.indexer_errors += 1

    def close(self) -> None:
        self.log.close()
        with self.gate.closed("shutdown"):
            self.close_store(save_index=True)
            self.oplog.close()
        self._lock_file.close()

    # ------------------------------------------------------------- locking
    # The lock order, the one place it is written: the gate (the store in use, or
    # closed while it is swapped), then the indexer's pause lock (the vector index
    # holds still), then the write lock (no write is planned or committed). Code
    # outside the engine takes them only through these three.
    @contextmanager
    def writing(self) -> Iterator[None]:
        """The store in use and no other write: to write, or to read a state between writes."""
        with self.gate.use(), self._write_lock:
            yield

    @contextmanager
    def holding_still(self) -> Iterator[None]:
        """The store in use, with the graph and the vector index both holding still."""
        with self.gate.use(), self.indexer.pause_lock, self._write_lock:
            yield

    @contextmanager
    def exclusive(self, reason: str) -> Iterator[None]:
        """The store to the caller alone (a restore swaps it); others get 503 with reason."""
        with self.gate.closed(reason), self._write_lock:
            yield

    # -------------------------------------------------------------- writes
    def submit(self, mutation: dict[str, Any], key: str | None = None) -> Written:
        """The one write path: the mutation goes into the log, and is answered once this
        host has applied it. key (a client's Idempotency-Key) makes a retry safe."""
        if self.log.stalled:  # this host's own reason first: the fleet may be writing
            raise Unavailable(f"this host cannot apply the log: {self.log.stalled}", retry_after=30)
        if self.store.paused and mutation["op"] not in CONTROL_OPS:
            raise Unavailable(f"writes are paused fleet-wide: {self.store.paused}", retry_after=30)
        if self.settings.replication.mode != "none":  # (one host: the fleet is this release)
            problem = entries.publishable(mutation["op"], self.store.entry_format)
            if problem:
                raise Conflict(problem)
        result, seq, replayed = self.log.submit(mutation, key)
        self.indexer.notify()
        if not replayed:  # counted by the host that answered: every host applies it
            for operation in ("created", "updated", "deleted"):
                if result.get(operation):
                    metrics.NODES_WRITTEN.labels(operation=operation).inc(result[operation])
        return Written(result, seq, replayed)

    def steer(self, entry: dict[str, Any]) -> Written:
        """Put a control entry (pause, adopt, resume) in the fleet's log."""
        if self.settings.replication.mode == "none":
            raise Conflict(
                "replication.mode is none: one host has no fleet to steer (restore with "
                "POST /backup/restore or /recovery/point-in-time)"
            )
        if entry["op"] == "adopt" and not self.store.paused:
            raise Conflict("pause writes first (POST /replication/pause)")
        return self.submit(entry)

    def require_single_host(self, what: str) -> None:
        """One host alone may restore itself; a fleet restores together."""
        if self.settings.replication.mode != "none":
            raise Conflict(
                f"this host is one of a replicated fleet: a {what} here alone would leave it "
                "apart from the others; the fleet restores together (playbooks/restore.yml, "
                "pitr.yml: pause, prepare, adopt, resume)"
            )

    def upsert(
        self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]], key: str | None = None
    ) -> Written:
        self.applier.check_nodes(nodes, edges)
        return self.submit({"op": "upsert", "nodes": nodes, "edges": edges}, key)

    def patch_node(self, node_id: str, changes: dict[str, Any], key: str | None = None) -> Written:
        """Change some fields of a node; the rest, its edges and its embedding stay.
        The answer is the node as this write left it."""
        written = self.submit({"op": "patch", "id": node_id, "changes": changes}, key)
        # the record its own entry produced; a retry answered from an entry applied before
        # this host's last restart has only the node as it is now
        node = written.result.get("node") or self.get_node(node_id)
        return Written(node, written.seq, written.replayed)

    def delete_node(self, node_id: str, key: str | None = None) -> Written:
        return self.submit({"op": "delete_nodes", "ids": [node_id]}, key)

    def put_edges(self, edges: list[dict[str, Any]], key: str | None = None) -> Written:
        self.applier.check_nodes([], edges)
        return self.submit({"op": "upsert", "nodes": [], "edges": edges}, key)

    def delete_edges(self, edges: list[dict[str, Any]], key: str | None = None) -> Written:
        return self.submit({"op": "delete_edges", "edges": edges}, key)

    # --------------------------------------------------------------- reads
    def get_node_raw(self, node_id: str) -> bytes:
        with self.gate.use():
            raw = self.store.get_raw(node_id)
        self.reads += 1
        if raw is None:
            raise NotFound(f"no node with id {node_id!r}")
        return raw

    def get_node(self, node_id: str, *, include_embedding: bool = False) -> dict[str, Any]:
        with self.gate.use():
            record = self.store.get_records([node_id])[0]
            if record is None:
                raise NotFound(f"no node with id {node_id!r}")
            if include_embedding:
                vector = self.embedding_of(record)
                # null for a vector stored before embeddings were checked (infinite
                # values): /integrity/check reports it
                record["embedding"] = vector.tolist() if np.isfinite(vector).all() else None
        self.reads += 1
        return record

    def embedding_of(self, record: dict[str, Any]) -> np.ndarray:
        if record["embedding_source"] == "client":
            return self.store.get_embedding(record["id"])
        return embed_record(record, self.settings.vector.dimension)

    def list_nodes(self, **filters: Any) -> dict[str, Any]:
        with self.gate.use():
            page, cursor = self.store.list_nodes(**filters)
        self.reads += 1
        return {"nodes": page, "next_cursor": cursor}

    def _require_node(self, node_id: str) -> None:
        if self.store.get_raw(node_id) is None:
            raise NotFound(f"no node with id {node_id!r}")

    def node_edges(
        self, node_id: str, direction: str, edge_type: str | None, limit: int
    ) -> dict[str, Any]:
        with self.gate.use():
            self._require_node(node_id)
            edges = self.store.edges(node_id, direction, edge_type, limit)
        self.reads += 1
        return {"node_id": node_id, "edges": edges}

    def neighbors(
        self, node_id: str, direction: str, edge_type: str | None, limit: int
    ) -> dict[str, Any]:
        """The nodes at the other end of the node's edges (node_edges's), each once."""
        edges = self.node_edges(node_id, direction, edge_type, limit)["edges"]
        other = dict.fromkeys(
            edge["target"] if edge["source"] == node_id else edge["source"] for edge in edges
        )
        with self.gate.use():
            records = [r for r in self.store.get_records(list(other)) if r is not None]
        return {"node_id": node_id, "neighbors": records}

    # -------------------------------------------------------- vector index
    def vector_stats(self) -> dict[str, Any]:
        return {
            **self.indexer.index.stats(),
            "lag": self.indexer.lag(),
            "indexer_cpu_seconds": self.indexer.cpu_seconds(),
            "configured": self.indexer.configured.__dict__,
            "rebuild": self.indexer.rebuild_status,
        }

    def vector_performance(self) -> dict[str, Any]:
        return {
            **self.indexer.stats.summary(),
            "efSearch": self.indexer.index.ef_search,
            "vectors_live": len(self.indexer.index.label_of),
        }

    def rebuild_index(self, index_type: str, overrides: dict[str, int]) -> dict[str, Any]:
        """Start a background rebuild; unspecified parameters keep their current values."""
        current = self.indexer.index.params
        params = IndexParams(
            index_type,
            current.dimension,
            overrides.get("M", current.M),
            overrides.get("efConstruction", current.efConstruction),
            overrides.get("efSearch", self.indexer.index.ef_search),
        )
        with self.gate.use():
            return {"status": "started", "rebuild": self.indexer.rebuild(params)}

    # --------------------------------------------------------------- stats
    def stats(self) -> dict[str, Any]:
        with self.gate.use():
            counters = dict(self.store.counters)
            db_size = self.store.property_int(
                "rocksdb.total-sst-files-size"
            ) + self.store.property_int("rocksdb.cur-size-all-mem-tables")
            lag = self.indexer.lag()
            live = len(self.indexer.index.label_of)
        backups = self.backups.list()
        return {
            "total_nodes": counters["nodes_total"],
            "total_edges": counters["edges_total"],
            "db_size_bytes": db_size,
            "vector_count": live,
            "vector_index_lag": lag,
            "uptime_seconds": round(time.time() - self.started, 3),
            "version": __version__,
            "profile": self.settings.database.profile,
            "oplog": {"last_lsn": self.oplog.last_lsn, "size_bytes": self.oplog.size_bytes()},
            "replication": self.log.status(),
            "backups": {
                "count": len(backups),
                "latest": backups[-1]["backup_id"] if backups else None,
            },
        }

    def figures(self) -> dict[str, Any] | None:
        """What the /metrics collector reads at scrape time; None while the store is closed."""
        try:
            with self.gate.use():
                index = self.indexer.index
                live = len(index.label_of)
                return {
                    "nodes": self.store.counters["nodes_total"],
                    "edges": self.store.counters["edges_total"],
                    "lag": self.indexer.lag(),
                    "vectors_live": live,
                    "vectors_stale": len(index.ids) - live,
                    "rebuilding": self.indexer.is_rebuilding(),
                    "rocksdb": rocksdb_figures(self.store),
                    "replication": {**self.log.status(), "ready": self.log.ready()[0]},
                }
        except Unavailable:
            return None

    def readiness(self) -> dict[str, Any]:
        """Whether to send this host traffic: healthy, and its log says it may serve."""
        health = self.health()
        ready, reason = self.log.ready()
        if health["status"] != "healthy":
            ready, reason = (
                False,
                "unhealthy: "
                + ", ".join(f"{name} {value}" for name, value in health["checks"].items()),
            )
        return {"ready": ready, "reason": reason, "applied_seq": self.applied.seq}

    def digest(self) -> dict[str, Any]:
        """A digest of the graph's content at this host's applied sequence."""
        with self.gate.use():  # held on past the lock: the digest reads the snapshots
            with self._write_lock:  # no write between the snapshots and the sequence
                snapshots = self.store.content_snapshots()
                seq = self.applied.seq
                counters = dict(self.store.counters)
            digest = self.store.digest_of(snapshots)
        return {
            "applied_seq": seq,
            "digest": digest,
            "nodes": counters["nodes_total"],
            "edges": counters["edges_total"],
        }

    def health(self) -> dict[str, Any]:
        checks: dict[str, str] = {}
        healthy = True
        try:
            with self.gate.use():
                self.store.ping()
            checks["database"] = "ok"
        except Unavailable as error:
            checks["database"], healthy = str(error), False
        except Exception as error:  # a broken database must show as unhealthy, not as a 500
            checks["database"], healthy = f"unreadable: {error}", False
        checks["vector_index"] = "rebuilding" if self.indexer.is_rebuilding() else "ok"
        usage = shutil.disk_usage(Path(self.settings.database.path).parent)
        checks["disk_free_percent"] = f"{100 * usage.free / usage.total:.1f}"
        return {
            "status": "healthy" if healthy else "unhealthy",
            "checks": checks,
            "version": __version__,
        }
