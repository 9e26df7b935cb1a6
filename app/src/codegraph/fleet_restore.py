"""A replicated fleet restores together: every host adopts one backup at one log entry.

1. Writes are paused through the log (`pause_writes`): every host refuses writes from
   that entry on, as part of its state.
2. One host *prepares* the wanted state as a new backup, without touching its live
   data: a backup as it is, or one with the operation log replayed up to a point in
   time. Its digest is the state's fingerprint.
3. The prepared backup is copied to every host (playbooks/restore.yml, pitr.yml).
4. An `adopt` entry goes through the log: each host, when it applies it, restores that
   backup, checks the digest and takes the entry's sequence as its own; writes stay
   paused. A host that cannot (the backup is missing or does not match) stops applying
   and says so in /ready: it is bootstrapped again (playbooks/add_host.yml).
5. Writes are resumed through the log (`resume_writes`).

The entries between the pause and the adoption are kept in the stream and the
operation logs; the adoption marks the start of the new timeline, as a restore's
marker does on one host, so a later point-in-time recovery can reach either side.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codegraph import __version__
from codegraph.errors import IntegrityError, InvalidInput
from codegraph.recovery import (
    parse_recovery_time,
    plan_point_in_time,
    replay_log,
    restore_from,
)
from codegraph.replication.applied import Outcome
from codegraph.store.backups import BackupStore, link_or_copy
from codegraph.store.graph import GraphStore, iso

if TYPE_CHECKING:
    from codegraph.engine import Engine


def prepare(
    engine: Engine, *, backup_id: str | None = None, recovery_time: str | None = None
) -> dict[str, Any]:
    """A new backup (kind "prepared") of a backup's state, or of the state at
    recovery_time; the live data is not touched."""
    if (backup_id is None) == (recovery_time is None):
        raise InvalidInput("give either backup_id or recovery_time")
    ranges: list[list[int]] = []
    open_from, target = None, None
    if recovery_time is not None:
        target = parse_recovery_time(recovery_time)
        if target > time.time():
            raise InvalidInput(f"recovery_time {recovery_time!r} is in the future")
        backup_id, ranges, open_from = plan_point_in_time(engine, target, recovery_time)
    base = engine.backups.verify(backup_id)
    backups = engine.backups
    staged = Path(engine.settings.database.path).with_name("rocksdb.preparing")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    new_id, staging = backups.stage()
    try:
        for file in (backups.dir / backup_id / "rocksdb").iterdir():
            link_or_copy(file, staged / file.name)
        store = GraphStore(str(staged), engine.store_options(), sync=False)
        try:
            replayed = 0
            if open_from is not None:
                replayed, _ = replay_log(engine, store, ranges, open_from, target)
            index = backups.dir / backup_id / "vector" / "index.bin"
            if index.is_file():  # a restore catches it up from the queue in the checkpoint
                (staging / "vector").mkdir()
                link_or_copy(index, staging / "vector" / "index.bin")
            BackupStore.checkpoint(store, staging)
            digest = store.digest_of(store.content_snapshots())
            counters = dict(store.counters)
        finally:
            store.close()
        created = time.time()
        manifest = backups.seal(
            new_id,
            staging,
            {
                "created_at": iso(created),
                "created_ts": created,
                "kind": "prepared",
                "version": __version__,
                "profile": engine.settings.database.profile,
                "oplog_lsn": base["oplog_lsn"],
                "index_seq": base["index_seq"],
                "nodes_total": counters["nodes_total"],
                "edges_total": counters["edges_total"],
                "based_on": backup_id,
                "recovery_time": recovery_time,
                "replayed_operations": replayed,
                "digest": digest,
            },
        )
    except BaseException:
        backups.discard(staging)
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    manifest.pop("files")
    return manifest


def adopt(
    engine: Engine,
    seq: int,
    ts: float,
    entry: dict[str, Any],
    position: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Apply an `adopt` entry: this host's state becomes the prepared backup's, at seq
    (and position: the log it came from), with writes still paused. The staged copy
    records seq and the pause before it is swapped in, so a crash at any point either
    redoes the adoption or finds it done. The staged state's digest is checked before:
    one that differs is never swapped in (and the host stops)."""
    backup_id, digest = entry["backup_id"], entry["digest"]
    reason = f"the fleet adopted backup {backup_id}; resume with POST /replication/resume"

    def at_seq(staged: GraphStore) -> None:
        """Checked before it is swapped in: a state whose digest differs never records
        seq (the host stops at its old state, and says so durably: jetstream._stall)."""
        found = staged.digest_of(staged.content_snapshots())
        if found != digest:
            raise IntegrityError(
                f"backup {backup_id} restored here gives digest {found}, "
                f"not the {digest} it was prepared with"
            )
        staged.commit(staged.plan({"op": "pause_writes", "reason": reason}, ts, seq, position))
        nodes = staged.counters["nodes_total"]
        result.update({"adopted": backup_id, "digest": digest, "total_nodes": nodes})
        engine.applied.expect(seq, Outcome(result))  # answered once the state is swapped in

    result: dict[str, Any] = {}
    restore_from(engine, backup_id, ranges=[], open_from=None, target_ts=None, on_staged=at_seq)
    with engine.writing():
        if seq > engine.oplog.last_lsn:
            engine.oplog.append(ts, entry, seq)
    return result
