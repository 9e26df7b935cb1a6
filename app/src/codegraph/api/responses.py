"""What each route answers, for the OpenAPI document.

The handlers return plain dicts (serialized by orjson): these models describe them
(`returns(...)` puts one in a route's documented responses) without validating every
answer at run time, which would cost the hot paths (a page of 1,000 nodes) a second
pass. Schemathesis checks the real answers against them (tests/test_schemathesis.py).
Nested figures whose keys are RocksDB's or FAISS's own stay open dicts.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel, RootModel


def returns(model: type[BaseModel], *statuses: int, write: bool = False) -> dict[str, Any]:
    """A route's documented answer (with status 200, or these): response_model=None keeps
    FastAPI from building (and enforcing) one from the handler's `dict` annotation.
    write: a retried write may also be answered AppliedEarlier."""
    documented = _or_applied_earlier(model) if write else model
    return {
        "response_model": None,
        "responses": {status: {"model": documented} for status in statuses or (200,)},
    }


class AppliedEarlier(BaseModel):
    """The answer to a retried write (its Idempotency-Key seen before) whose first
    answer this host no longer keeps (10,000 writes ago, or before a restart)."""

    seq: int
    note: str


@cache  # one class per model, however many routes document it
def _or_applied_earlier(model: type[BaseModel]) -> type[RootModel]:
    return type(f"{model.__name__}OrAppliedEarlier", (RootModel[model | AppliedEarlier],), {})


class Refused(BaseModel):
    """A 4xx: one message, or (a 422 of the request's shape) the first problems, each
    with loc, msg and type, and how many there were (codegraph.api.errors)."""

    detail: str | list[dict[str, Any]]
    error_count: int | None = None


# ------------------------------------------------------------------- graph
class Node(BaseModel):
    id: str
    kind: str
    name: str
    qualified_name: str | None
    path: str | None
    language: str | None
    start_line: int | None
    end_line: int | None
    text: str | None
    docstring: str | None
    attributes: dict[str, Any]
    embedding_source: Literal["client", "computed"]
    version: int
    created_at: str
    updated_at: str
    embedding: list[float] | None = None  # with include_embedding=true


class Edge(BaseModel):
    source: str
    type: str
    target: str
    attributes: dict[str, Any]


class Written(BaseModel):
    """A write's counts (POST /nodes, POST /edges); its log sequence is X-CodeGraph-Seq."""

    upserted: int
    created: int
    updated: int
    edges_upserted: int
    edges_created: int


class NodePage(BaseModel):
    nodes: list[Node]
    next_cursor: str | None


class NodeEdges(BaseModel):
    node_id: str
    edges: list[Edge]


class Neighbors(BaseModel):
    node_id: str
    neighbors: list[Node]


class Deleted(BaseModel):
    deleted: int
    edges_deleted: int


class EdgesDeleted(BaseModel):
    edges_deleted: int


class SearchHit(BaseModel):
    score: float
    node: Node


class SearchResults(BaseModel):
    mode: Literal["text", "vector", "hybrid"]
    k: int
    results: list[SearchHit]


class Parsed(BaseModel):
    files: int
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    stored: Written | AppliedEarlier | None = None  # with store=true


# ------------------------------------------------------------------ system
class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    checks: dict[str, str]
    version: str


class Ready(BaseModel):
    ready: bool
    reason: str
    applied_seq: int


class Lag(BaseModel):
    operations: int
    seconds: float


class Stream(BaseModel):
    name: str
    first_seq: int
    last_seq: int
    bytes: int
    max_bytes: int
    max_age_seconds: float
    replicas: int
    leader: str | None
    peers: list[Any]
    last_error: str | None


class Replication(BaseModel):
    mode: Literal["none", "jetstream"]
    applied_seq: int
    lag_entries: int
    lag_seconds: float
    reachable: bool
    stalled: Any
    refused_entries: int
    entry_format: int  # the fleet's: what every host publishes
    entry_format_newest: int  # the newest this host's release reads
    stream: Stream | None
    peers_reachable: Any


class Stats(BaseModel):
    total_nodes: int
    total_edges: int
    db_size_bytes: int
    vector_count: int
    vector_index_lag: Lag
    uptime_seconds: float
    version: str
    profile: str
    oplog: dict[str, int]
    replication: Replication
    backups: dict[str, Any]


class RocksdbStats(BaseModel):
    profile: str
    options: dict[str, Any]
    compaction_stats: dict[str, Any]
    block_cache: dict[str, Any]
    writes: dict[str, Any]
    reads: dict[str, Any]
    sizes: dict[str, int]
    key_estimates: dict[str, int]
    last_analyze: dict[str, Any] | None


class Digest(BaseModel):
    applied_seq: int
    digest: str
    nodes: int
    edges: int


class WritesSteered(BaseModel):
    """A pause or resume, in the log (X-CodeGraph-Seq)."""

    writes: Literal["paused", "resumed"]


class EntryFormat(BaseModel):
    """The fleet's entry format, set in the log (X-CodeGraph-Seq)."""

    entry_format: int


class Adopted(BaseModel):
    adopted: str
    digest: str
    total_nodes: int


# ------------------------------------------------------------------ vector
class VectorPerformance(BaseModel):
    efSearch: int
    vectors_live: int


class IndexStats(BaseModel):
    index_type: str
    dimension: int
    M: int
    efConstruction: int
    efSearch: int
    metric: str
    vectors_total: int
    vectors_live: int
    vectors_stale: int
    stale_ratio: float
    indexed_seq: int
    lag: Lag
    indexer_cpu_seconds: float
    configured: dict[str, Any]
    rebuild: dict[str, Any]


class RebuildStarted(BaseModel):
    status: Literal["started"]
    rebuild: dict[str, Any]


# ----------------------------------------------------------------- backups
class BackupInfo(BaseModel):
    backup_id: str
    created_at: str
    created_ts: float
    kind: str
    version: str
    profile: str
    oplog_lsn: int  # the log entry its state is at (a replicated host's store's)
    log_ts: float | None = None  # when the stream stored that entry (replicated hosts)
    index_seq: int
    nodes_total: int
    edges_total: int


class BackupCreated(BaseModel):
    backup_id: str
    created_at: str
    nodes_total: int
    files: int
    timings: dict[str, float]


class Backups(BaseModel):
    backups: list[BackupInfo]


class Restored(BaseModel):
    status: Literal["restored"]
    backup_id: str
    replayed_operations: int
    replaced_data_kept_at: str | None
    total_nodes: int
    duration_seconds: float
    timings: dict[str, float]
    recovery_time: str | None = None  # point-in-time recovery


class Prepared(BackupInfo):
    """A prepared backup's manifest: the state a fleet adopts, with its digest."""

    digest: str
    based_on: str | None
    recovery_time: str | None


# -------------------------------------------------------------- operations
class IntegrityReport(BaseModel):
    status: Literal["ok", "problems_found"]
    checked: dict[str, int]
    skipped: list[str]
    problem_count: int
    problems: list[dict[str, str]]
    duration_seconds: float
    checked_at: str


class Compacted(BaseModel):
    status: Literal["completed"]
    duration_seconds: float
    finished_at: str
    sst_bytes_before: int
    sst_bytes_after: int


class Analyzed(BaseModel):
    status: Literal["completed"]
    finished_at: str
    duration_seconds: float
    nodes: int
    edges: int
    nodes_by_kind: dict[str, int]
    edges_by_type: dict[str, int]
    counters_repaired: bool
    key_estimates: dict[str, int]


class AutoTune(BaseModel):
    observed: dict[str, int]
    current_profile: str
    recommended_profile: str
    profile_reason: str
    target_recall: float
    recommended_efSearch: int
    efSearch_calibration: dict[str, Any]
    applied: list[str]
    restart_required: list[str]
