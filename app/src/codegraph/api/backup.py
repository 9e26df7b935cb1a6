"""Backups, restore and point-in-time recovery."""

from fastapi import APIRouter

from codegraph import fleet_restore, recovery
from codegraph.api import responses
from codegraph.api.deps import EngineDep
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.models import PointInTimeRequest, PrepareRequest, RestoreRequest

router = APIRouter(tags=["backup"], route_class=OrjsonRoute)


@router.post(
    "/backup",
    **returns(responses.BackupCreated),
    summary="Take a consistent backup (checkpoint, index, manifest)",
)
def create_backup(engine: EngineDep) -> dict:
    manifest = recovery.create_backup(engine)
    return {
        "backup_id": manifest["backup_id"],
        "created_at": manifest["created_at"],
        "nodes_total": manifest["nodes_total"],
        "files": len(manifest["files"]),
        "timings": manifest["timings"],  # wait, vector index, checkpoint, checksums (s)
    }


@router.get("/backup", **returns(responses.Backups), summary="List the backups, oldest first")
def list_backups(engine: EngineDep) -> dict:
    return {"backups": recovery.list_backups(engine)}


@router.post(
    "/backup/restore",
    **returns(responses.Restored),
    summary="Restore a backup (verified before anything is replaced)",
)
def restore(payload: RestoreRequest, engine: EngineDep) -> dict:
    engine.require_single_host("restore")
    return recovery.restore(engine, payload.backup_id)


@router.post(
    "/recovery/point-in-time",
    **returns(responses.Restored),
    summary="The latest backup before the time, plus the operation log replayed up to it",
)
def point_in_time(payload: PointInTimeRequest, engine: EngineDep) -> dict:
    engine.require_single_host("point-in-time recovery")
    return recovery.point_in_time(engine, payload.recovery_time)


@router.post(
    "/recovery/prepare",
    **returns(responses.Prepared),
    summary="A new backup of a backup's state, or of the state at a time (live data untouched)",
    description="What a fleet restores together (POST /replication/adopt); its digest "
    "is the state's fingerprint.",
)
def prepare(payload: PrepareRequest, engine: EngineDep) -> dict:
    return fleet_restore.prepare(
        engine, backup_id=payload.backup_id, recovery_time=payload.recovery_time
    )
