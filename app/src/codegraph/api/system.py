"""Health and statistics."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from codegraph import maintenance
from codegraph.api import responses
from codegraph.api.deps import EngineDep
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute

router = APIRouter(tags=["system"], route_class=OrjsonRoute)


@router.get(
    "/health",
    **returns(responses.Health, 200, 503),
    summary="Liveness and readiness (no API key needed)",
)
def health(engine: EngineDep) -> JSONResponse:
    report = engine.health()
    return JSONResponse(report, status_code=200 if report["status"] == "healthy" else 503)


@router.get(
    "/ready",
    **returns(responses.Ready, 200, 503),
    summary="Whether to send this host traffic (no API key needed)",
)
def ready(engine: EngineDep) -> JSONResponse:
    """Ready: healthy, and (replicated) caught up with the log and not cut off from it.
    The load balancer checks this; /health says whether the process works at all."""
    report = engine.readiness()
    return JSONResponse(report, status_code=200 if report["ready"] else 503)


@router.get(
    "/stats", **returns(responses.Stats), summary="Totals: nodes, edges, sizes, vectors, uptime"
)
def stats(engine: EngineDep) -> dict:
    return engine.stats()


@router.get(
    "/stats/rocksdb",
    **returns(responses.RocksdbStats),
    summary="RocksDB profile, compaction, cache and size figures",
)
def rocksdb_stats(engine: EngineDep) -> dict:
    return maintenance.rocksdb_stats(engine)
