"""The vector index: performance, stats, rebuild."""

from typing import Annotated

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse

from codegraph.api import responses
from codegraph.api.deps import EngineDep
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.models import RebuildRequest

router = APIRouter(prefix="/vector", tags=["vector"], route_class=OrjsonRoute)


@router.get(
    "/performance",
    **returns(responses.VectorPerformance),
    summary="Recent search latency percentiles, QPS, sampled recall",
)
def performance(engine: EngineDep) -> dict:
    return engine.vector_performance()


@router.get(
    "/index/stats",
    **returns(responses.IndexStats),
    summary="Index type, size, dimension, parameters, lag, rebuild progress",
)
def index_stats(engine: EngineDep) -> dict:
    return engine.vector_stats()


@router.post(
    "/index/rebuild",
    **returns(responses.RebuildStarted, 202),
    status_code=202,
    summary="Rebuild the index in the background; queries use the old one until the swap",
)
def rebuild(
    engine: EngineDep, payload: Annotated[RebuildRequest | None, Body()] = None
) -> JSONResponse:
    payload = payload or RebuildRequest()
    overrides = payload.parameters.model_dump(exclude_none=True)
    return JSONResponse(engine.rebuild_index(payload.index_type, overrides), status_code=202)
