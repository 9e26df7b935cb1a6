"""Integrity check, compaction, analyze and auto-tune."""

from typing import Annotated

from fastapi import APIRouter, Body

from codegraph import maintenance
from codegraph.api import responses
from codegraph.api.deps import EngineDep
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.models import AutoTuneRequest

router = APIRouter(tags=["maintenance"], route_class=OrjsonRoute)


@router.post(
    "/integrity/check",
    **returns(responses.IntegrityReport),
    summary="Full scan with checksums, plus cross-checks",
)
def integrity_check(engine: EngineDep) -> dict:
    return maintenance.check_integrity(engine)


@router.post(
    "/maintenance/compact",
    **returns(responses.Compacted),
    summary="Full compaction of every column family",
)
def compact(engine: EngineDep) -> dict:
    return maintenance.compact(engine)


@router.post(
    "/maintenance/analyze",
    **returns(responses.Analyzed),
    summary="Recount, tally by kind and type, refresh estimates",
)
def analyze(engine: EngineDep) -> dict:
    return maintenance.analyze(engine)


@router.post(
    "/optimization/auto-tune",
    **returns(responses.AutoTune),
    summary="Recommend a RocksDB profile and efSearch; apply what is safe online",
)
def auto_tune(engine: EngineDep, payload: Annotated[AutoTuneRequest | None, Body()] = None) -> dict:
    payload = payload or AutoTuneRequest()  # the runbook posts no body
    return maintenance.auto_tune(engine, target_recall=payload.target_recall, apply=payload.apply)
