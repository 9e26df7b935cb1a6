"""Search: by name (text), by similarity (vector), or both fused (hybrid)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from codegraph import metrics
from codegraph.engine import Engine
from codegraph.errors import InvalidInput
from codegraph.text import identifier_tokens
from codegraph.vector.embed import embed_query, normalize


def search(
    engine: Engine,
    *,
    query: str | None,
    mode: str,
    k: int,
    kind: str | None,
    embedding: list[float] | None = None,
    ef_search: int | None = None,
) -> dict[str, Any]:
    if mode == "text" and not query:
        raise InvalidInput("text search needs a query (q)")
    if mode in ("vector", "hybrid") and not query and embedding is None:
        raise InvalidInput(f"{mode} search needs a query (q) or an embedding")
    with engine.gate.use():
        text_hits = _text_hits(engine, query, kind, k) if mode != "vector" and query else []
        vector_hits = (
            _vector_hits(engine, query, embedding, kind, k, ef_search)
            if mode in ("vector", "hybrid")
            else []
        )
        if mode == "text":
            ranked = text_hits
        elif mode == "vector":
            ranked = vector_hits
        else:
            ranked = _reciprocal_rank_fusion(text_hits, vector_hits)
        ranked = ranked[:k]
        records = engine.store.get_records([node_id for node_id, _ in ranked])
    metrics.SEARCH_QUERIES.labels(mode=mode).inc()
    engine.reads += 1
    results = [
        {"score": round(score, 6), "node": record}
        for (_, score), record in zip(ranked, records, strict=True)
        if record
    ]
    return {"mode": mode, "k": k, "results": results}


def _text_hits(engine: Engine, query: str, kind: str | None, k: int) -> list[tuple[str, float]]:
    keys = list(dict.fromkeys([query.strip().lower(), *identifier_tokens(query)]))
    return engine.store.search_names([key for key in keys if key], kind, k)


def _vector_hits(
    engine: Engine,
    query: str | None,
    embedding: list[float] | None,
    kind: str | None,
    k: int,
    ef_search: int | None,
) -> list[tuple[str, float]]:
    dimension = engine.settings.vector.dimension
    if embedding is not None:
        if len(embedding) != dimension:
            raise InvalidInput(
                f"embedding has {len(embedding)} values; this service uses dimension {dimension}"
            )
        vector = normalize(np.asarray(embedding, dtype=np.float32))
        if vector is None:
            raise InvalidInput("embedding must not be all zeros")
    else:
        vector = embed_query(query, dimension)
        if vector is None:
            return []
    index = engine.indexer.index
    # Over-fetch: some hits may be of another kind or stale (updated since indexed).
    fetch = k * 4 if kind else k + 8
    started = time.perf_counter()
    found = index.search(vector, fetch, ef_search=ef_search)
    elapsed = time.perf_counter() - started
    metrics.VECTOR_SEARCH_SECONDS.observe(elapsed)
    if engine.indexer.stats.record(elapsed):
        engine.indexer.sample(vector, [node_id for node_id, _, _ in found], k)
    current = engine.store.get_records([node_id for node_id, _, _ in found])
    hits = []
    for (node_id, score, version), record in zip(found, current, strict=True):
        # never a deleted node, nor one whose indexed vector is out of date
        if (
            record is not None
            and record["version"] == version
            and (kind is None or record["kind"] == kind)
        ):
            hits.append((node_id, score))
    return hits[:k]


def _reciprocal_rank_fusion(
    *rankings: list[tuple[str, float]], k: int = 60
) -> list[tuple[str, float]]:
    """Combine ranked lists: each contributes 1 / (k + rank) per item."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, (node_id, _) in enumerate(ranking, start=1):
            fused[node_id] = fused.get(node_id, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))
