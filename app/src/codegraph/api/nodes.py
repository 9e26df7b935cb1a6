"""Nodes and edges."""

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse

from codegraph.api import responses
from codegraph.api.deps import EngineDep, IdempotencyKey, answered
from codegraph.api.limits import BatchLimits
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.models import (
    EdgeDeleteRequest,
    EdgesRequest,
    EdgeType,
    Kind,
    NodePatch,
    UpsertRequest,
)

router = APIRouter(tags=["nodes"], route_class=OrjsonRoute)
Direction = Literal["out", "in", "both"]
Limit = Annotated[int, Query(ge=1, le=10_000)]


@dataclass
class EdgeFilter:
    """Which of a node's edges: the query parameters of /edges and /neighbors."""

    direction: Direction = "both"
    type: EdgeType | None = None
    limit: Limit = 1000


Edges = Annotated[EdgeFilter, Depends()]


@router.post(
    "/nodes",
    **returns(responses.Written, write=True),
    summary="Create or replace nodes (and edges), atomically",
    dependencies=[BatchLimits],
)
def upsert_nodes(
    payload: UpsertRequest, engine: EngineDep, response: Response, key: IdempotencyKey = None
) -> dict:
    return answered(
        response, engine.upsert(payload.get("nodes", []), payload.get("edges", []), key)
    )


@router.get(
    "/nodes",
    **returns(responses.NodePage),
    summary="List nodes in id order, filtered, one page at a time",
)
def list_nodes(
    engine: EngineDep,
    kind: Kind | None = None,
    language: Annotated[str | None, Query(max_length=32)] = None,
    path_prefix: Annotated[str | None, Query(max_length=4096)] = None,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    return engine.list_nodes(
        kind=kind, language=language, path_prefix=path_prefix, cursor=cursor, limit=limit
    )


@router.get(
    "/nodes/{node_id:path}/edges", **returns(responses.NodeEdges), summary="Edges of a node"
)
def node_edges(node_id: str, engine: EngineDep, which: Edges) -> dict:
    return engine.node_edges(node_id, which.direction, which.type, which.limit)


@router.get(
    "/nodes/{node_id:path}/neighbors",
    **returns(responses.Neighbors),
    summary="Nodes linked to a node",
)
def neighbors(node_id: str, engine: EngineDep, which: Edges) -> dict:
    return engine.neighbors(node_id, which.direction, which.type, which.limit)


@router.get("/nodes/{node_id:path}", **returns(responses.Node), summary="One node")
async def get_node(node_id: str, engine: EngineDep, include_embedding: bool = False) -> Response:
    if include_embedding:
        return JSONResponse(engine.get_node(node_id, include_embedding=True))
    # The stored record is already JSON: served as is. A point read is a
    # memtable/block-cache lookup of microseconds, so it stays on the event loop.
    return Response(engine.get_node_raw(node_id), media_type="application/json")


@router.patch(
    "/nodes/{node_id:path}",
    **returns(responses.Node, write=True),
    summary="Change some fields of a node",
)
def patch_node(
    node_id: str,
    payload: NodePatch,
    engine: EngineDep,
    response: Response,
    key: IdempotencyKey = None,
) -> dict:
    return answered(response, engine.patch_node(node_id, payload.changes(), key))


@router.delete(
    "/nodes/{node_id:path}",
    **returns(responses.Deleted, write=True),
    summary="Delete a node and its edges",
)
def delete_node(
    node_id: str, engine: EngineDep, response: Response, key: IdempotencyKey = None
) -> dict:
    return answered(response, engine.delete_node(node_id, key))


@router.post(
    "/edges",
    **returns(responses.Written, write=True),
    summary="Create or replace edges",
    dependencies=[BatchLimits],
)
def put_edges(
    payload: EdgesRequest, engine: EngineDep, response: Response, key: IdempotencyKey = None
) -> dict:
    return answered(response, engine.put_edges(payload.edges, key))


@router.post(
    "/edges/delete",
    **returns(responses.EdgesDeleted, write=True),
    summary="Delete edges",
    dependencies=[BatchLimits],
)
def delete_edges(
    payload: EdgeDeleteRequest, engine: EngineDep, response: Response, key: IdempotencyKey = None
) -> dict:
    return answered(
        response, engine.delete_edges([edge.model_dump() for edge in payload.edges], key)
    )
