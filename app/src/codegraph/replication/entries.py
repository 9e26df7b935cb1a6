"""The replicated log's entries: how a write is wrapped, and how an entry read back is
judged before any host applies it. Every host decides from the entry alone, so every
host decides the same: applied, refused (the same error everywhere), or (an operation
this release does not know: a newer release published it) this host stops until it runs
a release that knows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from codegraph import __version__

# What this release applies. A new operation is added here and in the store's plan; a
# host of an older release that reads it stops (NeedsNewerRelease) instead of guessing.
OPERATIONS = frozenset(
    {
        "upsert",
        "patch",
        "delete_nodes",
        "delete_edges",
        "pause_writes",
        "resume_writes",
        "adopt",
    }
)


class NeedsNewerRelease(Exception):
    """An entry this release cannot apply: the host must not skip it, nor guess."""


@dataclass(frozen=True)
class Entry:
    ts: float  # when the publishing host took the write (its clock)
    # what to apply; for what is not an entry, {"op": "refused", "why": ...}, which the
    # store refuses (InvalidInput) and the operation log keeps as such
    mutation: dict[str, Any]
    fingerprint: str | None = None  # of a write sent with an Idempotency-Key


def encode(mutation: dict[str, Any], ts: float, fingerprint: str | None) -> bytes:
    entry = {"ts": ts, "m": mutation, "r": __version__}
    if fingerprint:
        entry["f"] = fingerprint
    return orjson.dumps(entry)


def decode(data: bytes) -> Entry:
    """The entry, or a refusal every host gives alike: what is not an entry of this log
    (not JSON, no operation) is refused, never skipped (the host would stall at the gap).
    An operation this release does not know raises NeedsNewerRelease."""
    try:
        entry = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _refused(0.0, f"not a log entry ({len(data)} bytes that are not JSON)")
    if not isinstance(entry, dict):
        return _refused(0.0, "not a log entry (JSON, but not an object)")
    ts = entry.get("ts")
    mutation = entry.get("m")
    ts = float(ts) if isinstance(ts, int | float) and not isinstance(ts, bool) else 0.0
    if not isinstance(mutation, dict) or not isinstance(mutation.get("op"), str):
        return _refused(ts, "not a log entry (no operation)")
    if mutation["op"] not in OPERATIONS:
        release = entry.get("r")
        needs = f"release {release} or later" if isinstance(release, str) else "a newer release"
        raise NeedsNewerRelease(
            f"operation {mutation['op']!r} is not known to release {__version__}: this host "
            f"needs {needs} (deploy it here; the entry is kept)"
        )
    fingerprint = entry.get("f") if isinstance(entry.get("f"), str) else None
    return Entry(ts, mutation, fingerprint)


def _refused(ts: float, why: str) -> Entry:
    return Entry(ts, {"op": "refused", "why": f"entry refused: {why}"})
