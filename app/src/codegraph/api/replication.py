"""The fleet's log: where this host is, and the entries that pause, restore and resume
the fleet's writes together (codegraph.fleet_restore)."""

from fastapi import APIRouter, Response

from codegraph.api import responses
from codegraph.api.deps import EngineDep, answered
from codegraph.api.responses import returns
from codegraph.api.routing import OrjsonRoute
from codegraph.errors import InvalidInput
from codegraph.models import AdoptRequest, EntryFormatRequest, PauseRequest
from codegraph.replication import entries

router = APIRouter(tags=["replication"], route_class=OrjsonRoute)


@router.get(
    "/replication",
    **returns(responses.Replication),
    summary="This host's place in the log, and the log's state",
)
def replication(engine: EngineDep) -> dict:
    return engine.log.status()


@router.get(
    "/replication/digest",
    **returns(responses.Digest),
    summary="A digest of the whole graph at this host's applied sequence",
    description="Equal digests at equal sequences: equal graphs (every host of a fleet "
    "converges to the same). Reads every entry: seconds at a million nodes.",
)
def digest(engine: EngineDep) -> dict:
    return engine.digest()


@router.post(
    "/replication/pause",
    **returns(responses.WritesSteered, write=True),
    summary="Pause writes on every host (through the log)",
)
def pause(payload: PauseRequest, engine: EngineDep, response: Response) -> dict:
    return answered(response, engine.steer({"op": "pause_writes", "reason": payload.reason}))


@router.post(
    "/replication/resume",
    **returns(responses.WritesSteered, write=True),
    summary="Resume writes on every host (through the log)",
)
def resume(engine: EngineDep, response: Response) -> dict:
    return answered(response, engine.steer({"op": "resume_writes"}))


@router.post(
    "/replication/adopt",
    **returns(responses.Adopted, write=True),
    summary="Every host restores this prepared backup at one entry of the log",
    description="Writes must be paused, and the backup (from POST /recovery/prepare) "
    "copied to every host first; the digest is the one prepare gave.",
)
def adopt(payload: AdoptRequest, engine: EngineDep, response: Response) -> dict:
    entry = {"op": "adopt", "backup_id": payload.backup_id, "digest": payload.digest}
    return answered(response, engine.steer(entry))


@router.post(
    "/replication/entry-format",
    **returns(responses.EntryFormat, write=True),
    summary="Set the log's entry format for the whole fleet (through the log)",
    description="Once every host runs a release that reads it (GET /replication: "
    "entry_format_newest on every host); playbooks/deploy.yml does it at its end. A host "
    "of an older release stops at this entry, saying which release it needs.",
)
def entry_format(payload: EntryFormatRequest, engine: EngineDep, response: Response) -> dict:
    if payload.version > entries.FORMAT:
        raise InvalidInput(
            f"entry format {payload.version} is newer than this release reads ({entries.FORMAT})"
        )
    return answered(response, engine.steer({"op": "entry_format", "version": payload.version}))
