"""Parsing source files into the graph."""

from fastapi import APIRouter

from codegraph.api.deps import EngineDep
from codegraph.api.models import ParseRequest
from codegraph.api.routing import OrjsonRoute
from codegraph.parse import parse_files

router = APIRouter(tags=["parse"], route_class=OrjsonRoute)


@router.post("/parse", summary="Parse source files into nodes and edges (and store them)")
def parse(payload: ParseRequest, engine: EngineDep) -> dict:
    nodes, edges = parse_files([file.model_dump() for file in payload.files])
    stored = engine.upsert(nodes, edges) if payload.store else None
    return {"files": len(payload.files), "nodes": nodes, "edges": edges, "stored": stored}
