"""Parsing source files into the graph."""

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter, ValidationError

from codegraph.api import responses
from codegraph.api.deps import EngineDep, IdempotencyKey, answered
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.errors import InvalidInput
from codegraph.models import NodeIn, ParseRequest
from codegraph.parse import parse_files

router = APIRouter(tags=["parse"], route_class=OrjsonRoute)
_NODES = TypeAdapter(list[NodeIn])


def _check_nodes(nodes: list[dict]) -> None:
    """Parsed nodes follow the rules of POST /nodes (a path ending in /edges, or one too
    long, makes an id no GET could reach): the first one that does not is named."""
    try:
        _NODES.validate_python(nodes)
    except ValidationError as error:
        problem = error.errors()[0]
        index, *field = problem["loc"]
        bad = nodes[index]
        where = f"{bad['path']}: " if bad.get("path") else ""
        raise InvalidInput(
            f"{where}{bad['kind']} {bad['name']!r} would be stored as node "
            f"{bad['id'][:600]!r}, whose {'.'.join(map(str, field))} breaks a rule of "
            f"POST /nodes: {problem['msg']}"
        ) from None


@router.post(
    "/parse",
    **returns(responses.Parsed),
    summary="Parse source files into nodes and edges (and store them)",
)
def parse(
    payload: ParseRequest,
    engine: EngineDep,
    request: Request,
    response: Response,
    key: IdempotencyKey = None,
) -> dict:
    nodes, edges = parse_files(
        [file.model_dump() for file in payload.files],
        request.app.state.parse_worker,
        max_bytes=engine.settings.server.max_parse_bytes,
    )
    _check_nodes(nodes)
    stored = answered(response, engine.upsert(nodes, edges, key)) if payload.store else None
    return {"files": len(payload.files), "nodes": nodes, "edges": edges, "stored": stored}
