"""Text, vector and hybrid search."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from codegraph import search as graph_search
from codegraph.api import responses
from codegraph.api.deps import EngineDep
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.models import Kind, SearchRequest

router = APIRouter(tags=["search"], route_class=OrjsonRoute)


@router.get(
    "/search",
    **returns(responses.SearchResults),
    summary="Search by name (text), by similarity (vector), or both (hybrid)",
)
def search(
    engine: EngineDep,
    q: Annotated[str | None, Query(max_length=4096)] = None,
    mode: Literal["text", "vector", "hybrid"] = "hybrid",
    k: Annotated[int, Query(ge=1, le=1000)] = 10,
    kind: Kind | None = None,
    ef_search: Annotated[int | None, Query(ge=1, le=4096)] = None,
) -> dict:
    return graph_search.search(engine, query=q, mode=mode, k=k, kind=kind, ef_search=ef_search)


@router.post(
    "/search",
    **returns(responses.SearchResults),
    summary="Search with a body: a query text and/or an embedding",
)
def search_body(payload: SearchRequest, engine: EngineDep) -> dict:
    return graph_search.search(
        engine,
        query=payload.q,
        mode=payload.mode,
        k=payload.k,
        kind=payload.kind,
        embedding=payload.embedding,
        ef_search=payload.ef_search,
    )
