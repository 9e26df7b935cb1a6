"""The single-host log: the operation log itself. A write is applied as it is logged,
under the write lock (applier.Applier), and gets the next LSN as its sequence."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from codegraph.errors import Conflict
from codegraph.replication import entries
from codegraph.replication.applied import NotKept, fingerprint

if TYPE_CHECKING:
    from codegraph.replication.applier import Applier

IDEMPOTENCY_WINDOW_SECONDS = 120  # as long as JetStream's duplicate window
IDEMPOTENCY_KEYS = 100_000


class LocalLog:
    mode = "none"
    stalled = ""  # (a host's own log never stops it)

    def __init__(self, applier: Applier) -> None:
        self.applier = applier
        # Idempotency-Key -> (seq, when): a retried write within the window is answered
        # with what the first one gave. Kept in memory: a restart forgets them.
        self._seen: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._seen_lock = threading.Lock()

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def submit(self, mutation: dict[str, Any], key: str | None) -> tuple[dict[str, Any], int, bool]:
        """(result, sequence, whether it was a retry of an earlier write)."""
        applier = self.applier
        asked = fingerprint(mutation) if key is not None else None
        with applier.writing():  # one write at a time: the key check too
            if key is not None and (earlier := self._earlier(key)) is not None:
                try:
                    return applier.applied.outcome(earlier, retry_of=asked), earlier, True
                except NotKept:
                    raise Conflict(
                        f"this Idempotency-Key's request is entry {earlier}, whose answer is "
                        "no longer kept; a new request needs a new key"
                    ) from None
            seq = applier.oplog.last_lsn + 1
            result = applier.apply_locked(seq, time.time(), mutation)
            applier.applied.record(seq, result, asked)
            if key is not None:
                self._remember(key, seq)
        return result, seq, False

    def _earlier(self, key: str) -> int | None:
        with self._seen_lock:
            found = self._seen.get(key)
            if found and time.monotonic() - found[1] < IDEMPOTENCY_WINDOW_SECONDS:
                return found[0]
        return None

    def _remember(self, key: str, seq: int) -> None:
        with self._seen_lock:
            self._seen[key] = (seq, time.monotonic())
            while len(self._seen) > IDEMPOTENCY_KEYS:
                self._seen.popitem(last=False)

    def status(self) -> dict[str, Any]:
        """As the replicated log's: the local operation log is this host's whole log."""
        oplog = self.applier.oplog
        return {
            "mode": self.mode,
            "applied_seq": self.applier.applied.seq,
            "lag_entries": 0,
            "lag_seconds": 0.0,
            "reachable": True,
            "stalled": None,
            "refused_entries": 0,
            "entry_format": self.applier.store.entry_format,
            "entry_format_newest": entries.FORMAT,
            "stream": {
                "name": "operation log",
                "first_seq": oplog.first_lsn(),
                "last_seq": oplog.last_lsn,
                "bytes": oplog.size_bytes(),
                "max_bytes": -1,
                "max_age_seconds": oplog.retention_seconds,
                "replicas": 1,
                "leader": "local",
                "peers": [],
                "last_error": None,
            },
            "peers_reachable": None,
        }

    def ready(self) -> tuple[bool, str]:
        return True, "the local operation log"
