"""The replicated log's entries: how a write is wrapped, and how an entry read back is
judged before any host applies it. Every host decides from the entry, the stream's own
record of it and the state before it alone, so every host decides the same: applied,
refused (the same error everywhere), or (an operation or format this release does not
know: a newer release published it) this host stops until it runs a release that knows it.

Entry formats: 1 is {ts, m, r, f}, dated by its publishing host's clock (ts), as the
releases before format 2 date every entry; 2 dates entries by the stream's own timestamp
instead, and adds d, a deadline: an entry the stream stored
after it (by the stream's own timestamp) is refused on every host. 3 adds p, the
publication's own id, and the `fence` operation: a host that cannot tell whether its
publish was stored appends a fence naming that publication; every entry before the
fence is decided, and the publication, if it reaches the log after the fence, is
refused on every host (docs/replication.md, "What an answer means"). A host publishes
a format only once the fleet's format is at least that (an `entry_format` entry,
published once every host runs a release that knows it: playbooks/deploy.yml does at its
end), so a rolling deploy never has an older host apply what a newer one refuses. The
same rule holds for a new operation: it comes with a new format (SINCE), and a host
publishes it only once the fleet's format has reached it (publishable)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from pydantic import StringConstraints, TypeAdapter, ValidationError

from codegraph import __version__, models

FORMAT = 3  # the newest entry format this release reads and writes

# What each operation's entry holds, by the request models (codegraph.models): checked
# when applied, so an entry no request could have made is refused alike everywhere.
_NodeIds = TypeAdapter(list[models.NodeId])
_Nodes = TypeAdapter(list[models.NodeIn])
_Edges = TypeAdapter(list[models.EdgeIn])
_EdgeRefs = TypeAdapter(list[models.EdgeRef])
_PUBLICATION = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=64)])
_SHAPES: dict[str, Callable[[dict[str, Any]], object]] = {
    "upsert": lambda m: (_Nodes.validate_python(m["nodes"]), _Edges.validate_python(m["edges"])),
    "patch": lambda m: (
        _NodeIds.validate_python([m["id"]]),
        models.NodePatch.model_validate(m["changes"]),
    ),
    "delete_nodes": lambda m: _NodeIds.validate_python(m["ids"]),
    "delete_edges": lambda m: _EdgeRefs.validate_python(m["edges"]),
    "pause_writes": lambda m: models.PauseRequest.model_validate({"reason": m["reason"]}),
    "resume_writes": lambda m: None,
    "adopt": lambda m: models.AdoptRequest.model_validate(
        {"backup_id": m["backup_id"], "digest": m["digest"]}
    ),
    "entry_format": lambda m: models.EntryFormatRequest.model_validate({"version": m["version"]}),
    "fence": lambda m: _PUBLICATION.validate_python(m["withdraws"]),
}
# What this release applies. A new operation is added here and in the store's plan; a
# host of an older release that reads it stops (NeedsNewerRelease) instead of guessing.
OPERATIONS = frozenset(_SHAPES)
# The first entry format an operation belongs to, when it is not 1: a host publishes it
# only once the fleet's format has reached it (every host can apply it).
SINCE: dict[str, int] = {"fence": 3}


def publishable(operation: str, fleet_format: int) -> str | None:
    """Why this operation cannot be published yet in a fleet at fleet_format, or None."""
    needed = SINCE.get(operation, 1)
    if needed <= fleet_format:
        return None
    return (
        f"operation {operation!r} needs the fleet's entry format {needed}; it is "
        f"{fleet_format}: every host must run a release that reads it first (playbooks/"
        "deploy.yml raises the format once they do). Nothing was applied"
    )


class NeedsNewerRelease(Exception):
    """An entry this release cannot apply: the host must not skip it, nor guess."""


@dataclass(frozen=True)
class Entry:
    # what to apply; for what is not an entry, {"op": "refused", "why": ...}, which the
    # store refuses (InvalidInput) and the operation log keeps as such
    mutation: dict[str, Any]
    fingerprint: str | None = None  # of a write sent with an Idempotency-Key
    publication: str | None = None  # (format 3) this publish's own id, which a fence names
    # its publishing host's clock ("ts"): what a fleet at format 1 dates it by (dated_at)
    published_at: float | None = None

    def dated_at(self, stored_at: float, fleet_format: int) -> float:
        """When the entry happened, for every host alike: the stream's timestamp from
        format 2 on; at format 1, its own ts, as the hosts of an older release read it
        during a rolling deploy (so both compute the same records)."""
        if fleet_format >= 2 or self.published_at is None:
            return stored_at
        return self.published_at


def fence(publication: str) -> dict[str, Any]:
    """The entry that settles a publication whose fate its host could not learn: the
    publication, if it is not in the log before the fence, is refused wherever it lands
    after it (the store records what a fence withdrew)."""
    return {"op": "fence", "withdraws": publication}


def encode(
    mutation: dict[str, Any],
    ts: float,
    fingerprint: str | None,
    deadline: float | None = None,
    publication: str | None = None,
) -> bytes:
    """The entry; with a deadline (format 2), it is refused if stored after it; with a
    publication id (format 3), a fence can withdraw it."""
    entry = {"ts": ts, "m": mutation, "r": __version__}
    if fingerprint:
        entry["f"] = fingerprint
    if deadline is not None:
        entry["d"] = deadline
    if publication is not None:
        entry["p"] = publication
    return orjson.dumps(entry)


def decode(data: bytes, stored_at: float | None = None) -> Entry:
    """The entry, or a refusal every host gives alike: what is not an entry of this log
    (not JSON, no operation) is refused, never skipped (the host would stall at the gap);
    an entry stored_at (the stream's timestamp) after its deadline is refused as late.
    An operation or entry format this release does not know raises NeedsNewerRelease."""
    try:
        entry = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _refused(f"not a log entry ({len(data)} bytes that are not JSON)")
    if not isinstance(entry, dict):
        return _refused("not a log entry (JSON, but not an object)")
    mutation = entry.get("m")
    if not isinstance(mutation, dict) or not isinstance(mutation.get("op"), str):
        return _refused("not a log entry (no operation)")
    if mutation["op"] not in OPERATIONS:
        release = entry.get("r")
        needs = f"release {release} or later" if isinstance(release, str) else "a newer release"
        raise NeedsNewerRelease(
            f"operation {mutation['op']!r} is not known to release {__version__}: this host "
            f"needs {needs} (deploy it here; the entry is kept)"
        )
    if mutation["op"] == "entry_format" and _newer_format(mutation.get("version")):
        raise NeedsNewerRelease(
            f"the fleet's entry format is now {mutation['version']}; release {__version__} "
            f"reads up to {FORMAT}: this host needs release {entry.get('r')} or later"
        )
    problem = _shape_problem(mutation)
    if problem:
        return _refused(f"operation {mutation['op']!r} that no request could make: {problem}")
    fingerprint = entry.get("f") if isinstance(entry.get("f"), str) else None
    publication = entry.get("p") if isinstance(entry.get("p"), str) else None
    ts = entry.get("ts")
    published_at = float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else None
    deadline = entry.get("d")
    if isinstance(deadline, int | float) and stored_at is not None and stored_at > deadline:
        late = {"op": "late", "why": _late(stored_at, deadline)}
        return Entry(late, fingerprint, publication, published_at)
    return Entry(mutation, fingerprint, publication, published_at)


def _shape_problem(mutation: dict[str, Any]) -> str | None:
    try:
        _SHAPES[mutation["op"]](mutation)
    except KeyError as missing:
        return f"it has no {missing}"
    except ValidationError as error:
        return _first(error)
    return None


def _first(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def _newer_format(version: object) -> bool:
    return isinstance(version, int) and not isinstance(version, bool) and version > FORMAT


def _late(stored_at: float, deadline: float) -> str:
    return (
        f"the write was not applied: it reached the log {stored_at - deadline:.1f} s after "
        "its deadline (its host had already answered that its outcome was unknown); every "
        "host refuses it alike. Send it again"
    )


def withdrawn(fence_seq: int) -> dict[str, Any]:
    """What a publication reaching the log after the fence that withdrew it is applied as."""
    return {
        "op": "withdrawn",
        "why": (
            f"the write was not applied: its host settled its outcome with the log's entry "
            f"{fence_seq} (a fence), and it reached the log after that; every host refuses "
            "it alike. Send it again (the same Idempotency-Key may be used)"
        ),
    }


def _refused(why: str) -> Entry:
    return Entry({"op": "refused", "why": f"entry refused: {why}"})
