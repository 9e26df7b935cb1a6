"""Backups, restores and point-in-time recovery.

A restore (of a backup, or to a point in time) is prepared next to the live
data: the backup is verified, staged, and for point-in-time recovery the
operation log is replayed into the staged copy. Only then is the live data set
aside and the staged copy swapped in. Whatever fails before the swap leaves the
live data as it was.

Every restore appends a marker to the operation log naming the backup and the
log ranges replayed on top of it, so the state it produced can itself be
reconstructed by a later point-in-time recovery.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codegraph import __version__, metrics
from codegraph.errors import CodeGraphError, InvalidInput
from codegraph.store.backups import link_or_copy, stage_restore, swap_in
from codegraph.store.graph import GraphStore, iso
from codegraph.store.oplog import Entry

if TYPE_CHECKING:
    from codegraph.engine import Engine

log = logging.getLogger("codegraph.recovery")
# Entries of the operation log where the state was replaced: a restore on this host
# (with the log ranges replayed onto its backup), or a backup the fleet adopted.
TIMELINE_MARKERS = ("restore", "adopt")


def create_backup(engine: Engine, *, kind: str = "manual") -> dict[str, Any]:
    """Checkpoint + vector index + manifest; returns the manifest."""
    backups = engine.backups
    backup_id, staging = backups.stage()
    asked = time.monotonic()
    try:
        with engine.gate.use(), engine.indexer.saved_file() as (index_file, index_seq):
            # The index as last saved, then the checkpoint: the queue entries the file
            # lacks cannot be trimmed until both are taken, so the checkpoint holds
            # them and a restored index catches up from them.
            started = time.monotonic()
            (staging / "vector").mkdir()
            link_or_copy(index_file, staging / "vector" / "index.bin")
            linked = time.monotonic()
            with engine.writing():
                created = time.time()
                backups.checkpoint(engine.store, staging)
                counters, position = dict(engine.store.counters), dict(engine.store.position)
                # the entry the checkpoint's state is at: a replicated host's store may be
                # ahead of its operation log (which it catches up after a crash)
                lsn = counters["applied_seq"] if position else engine.oplog.last_lsn
            checkpointed = time.monotonic()
        info = {
            "created_at": iso(created),
            "created_ts": created,
            "kind": kind,
            "version": __version__,
            "profile": engine.settings.database.profile,
            "oplog_lsn": lsn,
            "index_seq": index_seq,
            # when the stream stored that entry (replicated): the backup's time for
            # point-in-time recovery, on the same clock as the log's entries
            **({"log_ts": position["at"]} if "at" in position else {}),
            # which stream oplog_lsn numbers an entry of (replicated): a stream created
            # again numbers from 1, and a replay must not cross that change
            **({"log_stream": position["stream"]} if "stream" in position else {}),
            "nodes_total": counters["nodes_total"],
            "edges_total": counters["edges_total"],
        }
        manifest = backups.seal(backup_id, staging, info)
    except BaseException:
        backups.discard(staging)
        raise
    timings = {
        # a save of the index being published (its rename and queue trim), or the
        # first save of a new index
        "waited_for_indexer_seconds": round(started - asked, 3),
        "vector_index_seconds": round(linked - started, 3),
        "checkpoint_seconds": round(checkpointed - linked, 3),
        "checksums_seconds": round(time.monotonic() - checkpointed, 3),
    }
    metrics.BACKUP_LAST_SUCCESS.set(created)
    engine.oplog.prune()
    log.info("backup %s created (%d nodes): %s", backup_id, counters["nodes_total"], timings)
    return {**manifest, "timings": timings}


def list_backups(engine: Engine) -> list[dict[str, Any]]:
    return engine.backups.list()


def restore(engine: Engine, backup_id: str) -> dict[str, Any]:
    return restore_from(engine, backup_id, ranges=[], open_from=None, target_ts=None)


def parse_recovery_time(text: str) -> float:
    """'YYYY-MM-DD HH:MM:SS' in the server's local time zone (or with an explicit offset)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"recovery_time {text!r} is not of the form 'YYYY-MM-DD HH:MM:SS'"
        ) from None
    try:
        return moment.astimezone().timestamp()
    except (OverflowError, OSError, ValueError):  # year 1 or 9999 shifted past the calendar
        raise InvalidInput(
            f"recovery_time {text!r} is outside the range of times this host can represent"
        ) from None


def point_in_time(engine: Engine, recovery_time: str) -> dict[str, Any]:
    target = parse_recovery_time(recovery_time)
    if target > time.time():
        raise InvalidInput(f"recovery_time {recovery_time!r} is in the future")
    base_id, ranges, open_from = plan_point_in_time(engine, target, recovery_time)
    result = restore_from(engine, base_id, ranges=ranges, open_from=open_from, target_ts=target)
    return {**result, "recovery_time": recovery_time}


def plan_point_in_time(
    engine: Engine, target: float, shown: str
) -> tuple[str, list[list[int]], int]:
    """The base backup, the log ranges already part of its timeline, where to go on from.

    The latest event at or before the target decides: a backup (replay the log
    from its LSN), or an earlier restore's marker (its backup and ranges, then
    the log after the marker).
    """
    followed = engine.store.position.get("stream")
    candidates = [
        b
        for b in engine.backups.list()
        if _as_of(b) <= target and b["kind"] != "prepared"  # (dated by its adoption)
    ]
    other_stream = [b for b in candidates if b.get("log_stream", followed) != followed]
    events = [
        (_as_of(b), b["oplog_lsn"], b["backup_id"], [], b["oplog_lsn"])
        for b in candidates
        if b not in other_stream
    ]
    for entry in engine.oplog.read(0):
        if entry.mutation["op"] in TIMELINE_MARKERS and entry.ts <= target:
            marker = entry.mutation
            ranges = marker.get("ranges", [])
            events.append((entry.ts, entry.lsn, marker["backup_id"], ranges, entry.lsn))
    if not events and other_stream:
        latest = other_stream[-1]
        raise InvalidInput(
            f"backup {latest['backup_id']} (the latest at or before recovery_time {shown!r}) "
            f"was taken on stream created {latest['log_stream']}; the operation log now "
            f"follows the stream created {followed} (it was created again: codegraph-admin "
            "forget-stream), whose entries are numbered anew. Point-in-time recovery does "
            "not replay across that change: restore that backup as it is, or pick a time "
            "after the first backup taken since"
        )
    if not events:
        backups = engine.backups.list()
        oldest = (
            f"; the oldest backup was taken at {backups[0]['created_at']}"
            if backups
            else "; there is no backup at all"
        )
        raise InvalidInput(f"no backup at or before recovery_time {shown!r}{oldest}")
    _, _, base_id, ranges, open_from = max(events, key=lambda event: (event[0], event[1]))
    needed = min([open_from, *(start for start, _ in ranges)])
    if engine.oplog.first_lsn() > needed + 1:
        raise InvalidInput(
            f"the operation log no longer reaches back to backup {base_id} "
            f"(oplog.retention_days = {engine.settings.oplog.retention_days})"
        )
    return base_id, ranges, open_from


def _as_of(backup: dict[str, Any]) -> float:
    """A backup's time against the log's: a replicated host's is when the stream stored
    its last entry (the entries are dated so too); a single host's, when it was taken."""
    return backup.get("log_ts", backup["created_ts"])


def replay_log(
    engine: Engine, store: GraphStore, ranges: list[list[int]], open_from: int, target: float
) -> tuple[int, list[list[int]]]:
    applied = 0
    for start, end in ranges:
        for entry in engine.oplog.read(start):
            if entry.lsn > end:
                break
            if entry.mutation["op"] not in TIMELINE_MARKERS:
                applied += _replay_one(engine, store, entry)
    last = open_from
    for entry in engine.oplog.read(open_from):
        if entry.ts > target or entry.mutation["op"] in TIMELINE_MARKERS:
            break
        applied += _replay_one(engine, store, entry)
        last = entry.lsn
    return applied, [*ranges, [open_from, last]]


def _replay_one(engine: Engine, store: GraphStore, entry: Entry) -> int:
    """Apply one logged entry to store at its original time (so the records come out
    the same); an entry every host refused when it was first applied is refused again."""
    try:
        engine.applier.replay(store, entry.ts, entry.mutation)
    except CodeGraphError:
        return 0
    return 1


def restore_from(
    engine: Engine,
    backup_id: str,
    *,
    ranges: list[list[int]],
    open_from: int | None,
    target_ts: float | None,
    on_staged: Callable[[GraphStore], None] | None = None,
) -> dict[str, Any]:
    """Verify backup_id, stage it (replaying ranges and the log from open_from up to
    target_ts; then on_staged, a last change to the staged store), swap it in."""
    started = time.monotonic()
    engine.backups.verify(backup_id)  # every checksum, before anything is replaced
    verified_at = time.monotonic()
    db_path = Path(engine.settings.database.path)
    index_path = Path(engine.settings.vector.path) / "index.bin"
    reason = "point-in-time recovery" if open_from is not None else "restore"
    with engine.exclusive(reason):
        swaps = stage_restore(engine.backups.dir / backup_id, db_path, index_path)
        try:
            replayed, marker_ranges = 0, []
            if open_from is not None or on_staged is not None:
                staged = GraphStore(swaps[0][1], engine.store_options(), sync=False)
                try:
                    if open_from is not None:
                        replayed, marker_ranges = replay_log(
                            engine, staged, ranges, open_from, target_ts
                        )
                    if on_staged is not None:
                        on_staged(staged)
                finally:
                    staged.close()
        except BaseException:
            shutil.rmtree(swaps[0][1], ignore_errors=True)
            raise
        staged_at = time.monotonic()
        engine.close_store(save_index=False)
        try:
            swap_in(db_path, swaps)
        finally:
            engine.open_store()  # the restored data, or the old data if the swap failed
        if engine.store.stopped:  # (a backup of a host that had stopped: not this state's)
            engine.store.clear_stop()
        reopened_at = time.monotonic()
        if engine.settings.replication.mode == "none":
            engine.oplog.append(
                time.time(), {"op": "restore", "backup_id": backup_id, "ranges": marker_ranges}
            )
            engine.applied.reset(engine.oplog.last_lsn)
        # (replicated, the operation log mirrors the stream entry for entry: no marker of
        # this host's own; the restored state's applied sequence says where it goes on)
    log.info("%s from backup %s done: %d operations replayed", reason, backup_id, replayed)
    return {
        "status": "restored",
        "backup_id": backup_id,
        "replayed_operations": replayed,
        "replaced_data_kept_at": swaps[0][2],
        "total_nodes": engine.store.counters["nodes_total"],
        "duration_seconds": round(time.monotonic() - started, 3),
        "timings": {
            "verify_seconds": round(verified_at - started, 3),
            "stage_and_replay_seconds": round(staged_at - verified_at, 3),
            "swap_and_reopen_seconds": round(reopened_at - staged_at, 3),
        },
    }
