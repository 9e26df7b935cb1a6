"""The one place a log entry becomes this host's state, below both logs (local.LocalLog,
jetstream.JetStreamLog) and point-in-time replay (codegraph.recovery).

It owns validation at apply time, the resolve of a patch against the state it lands on,
the entry's batch (planned by the store: one dispatch over entries.OPERATIONS) with the
applied sequence and the log position in it, the operation log's copy, and the applied
sequence (Applied). An `adopt` entry restores a prepared backup: the procedure is
fleet_restore's, which the engine gives as `adopt`. Everything comes from the entry and
nothing from this host, so every host that applies it computes the same state, or
refuses it with the same error.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from codegraph.errors import CodeGraphError, InvalidInput, NotFound, TooLarge
from codegraph.replication.applied import Applied
from codegraph.settings import Settings
from codegraph.store.graph import NODE_FIELDS, GraphStore
from codegraph.store.oplog import OpLog

# An `adopt` entry's handler: (seq, ts, entry, position) -> its result
AdoptHandler = Callable[[int, float, dict[str, Any], dict[str, Any] | None], dict[str, Any]]


class Applier:
    def __init__(
        self,
        settings: Settings,
        store: Callable[[], GraphStore],
        oplog: OpLog,
        applied: Applied,
        writing: Callable[[], AbstractContextManager[None]],
        notify: Callable[[], None],
    ) -> None:
        self.settings = settings
        self._store = store  # the store in use (a restore swaps it)
        self.oplog = oplog
        self.applied = applied
        self.writing = writing  # the engine's write lock (engine.writing)
        self.notify = notify  # the vector indexer: new writes to index
        self.adopt: AdoptHandler | None = None
        self.writes = 0  # entries applied since start (the auto-tune's figure)

    @property
    def store(self) -> GraphStore:
        return self._store()

    def apply_locked(
        self,
        seq: int,
        ts: float,
        mutation: dict[str, Any],
        *,
        log_refused: bool = False,
        position: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply log entry seq, stamped ts (the caller holds the write lock). The
        operation log gets the entry as it is (a replicated log's copy keeps the entries
        every host refused too: log_refused). position: which log the entry came from,
        recorded in the same batch (a replicated log's stream, entry id and time)."""
        store = self.store
        try:
            plan = store.plan(self.resolve(mutation, store), ts, seq, position)
        except CodeGraphError:
            if log_refused:
                self.log_copy(seq, ts, mutation)
            raise
        self.log_copy(seq, ts, mutation)
        store.commit(plan)
        self.writes += 1
        if mutation["op"] == "patch":  # the record as this entry left it (under the lock)
            return {**plan.result, "node": store.get_records([mutation["id"]])[0]}
        return plan.result

    def log_copy(self, seq: int, ts: float, mutation: dict[str, Any]) -> None:
        """Entry seq into the operation log, unless it is there already (an entry applied
        again after a crash, or one the store has and the log lost)."""
        if seq > self.oplog.last_lsn:
            self.oplog.append(ts, mutation, seq)

    def replay(self, store: GraphStore, ts: float, mutation: dict[str, Any]) -> None:
        """Apply a logged entry to a state being rebuilt (point-in-time recovery)."""
        store.commit(store.plan(self.resolve(mutation, store), ts))

    def resolve(self, mutation: dict[str, Any], store: GraphStore) -> dict[str, Any]:
        """The mutation as store applies it: a patch becomes the upsert of the merged
        node (read from store when applied, so every host merges the same record; a
        point-in-time replay resolves it against the state being rebuilt)."""
        if mutation["op"] != "patch":
            return mutation
        node_id = mutation["id"]
        current = store.get_records([node_id])[0]
        if current is None:
            raise NotFound(f"no node with id {node_id!r}")
        merged = {key: current[key] for key in NODE_FIELDS}
        if current["embedding_source"] == "client":
            merged["embedding"] = store.get_embedding(node_id).tolist()
        merged.update(mutation["changes"])
        self.check_nodes([merged])
        return {"op": "upsert", "nodes": [merged], "edges": []}

    def check_nodes(self, nodes: list[dict[str, Any]], edges: list[dict[str, Any]] = ()) -> None:
        """What the request models cannot check alone: batch limits, the vector
        dimension, line ranges. A write is checked before it is published, and a patch
        again once merged with the node it lands on."""
        server = self.settings.server
        for items, limit, name in (
            (nodes, server.max_batch_nodes, "nodes"),
            (edges, server.max_batch_edges, "edges"),
        ):
            if len(items) > limit:
                raise TooLarge(
                    f"{len(items)} {name} in one request; the limit is {limit} "
                    f"(server.max_batch_{name})"
                )
        dimension = self.settings.vector.dimension
        for node in nodes:
            embedding = node.get("embedding")
            if embedding is not None and len(embedding) != dimension:
                raise InvalidInput(
                    f"node {node['id']!r}: embedding has {len(embedding)} values; "
                    f"this service uses dimension {dimension}"
                )
            start, end = node.get("start_line"), node.get("end_line")
            if start is not None and end is not None and end < start:
                raise InvalidInput(
                    f"node {node['id']!r}: end_line {end} is before start_line {start}"
                )
