"""A host's position in the log: the last entry it applied, and what recent ones gave."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from codegraph.errors import CodeGraphError, InvalidInput

KEPT_OUTCOMES = 10_000  # answers for retried writes (and for writers still waiting)


def fingerprint(mutation: dict[str, Any]) -> str:
    """What a write asked for, to tell a retry (same Idempotency-Key, same request)
    from a key reused for another request. Computed only for writes that send a key."""
    return hashlib.sha256(orjson.dumps(mutation, option=orjson.OPT_SORT_KEYS)).hexdigest()


class NotThisEntry(Exception):
    """The entry this host applied at a sequence is another write than the one published:
    it follows another stream than the one the write went into."""


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any] | CodeGraphError  # what the entry gave, or the error it met
    fingerprint: str | None = None  # of a write that sent an Idempotency-Key
    entry_id: str | None = None  # the log's id of the entry (its message id)


class Applied:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._changed = threading.Condition()
        self._outcomes: OrderedDict[int, Outcome] = OrderedDict()

    def record(
        self,
        seq: int,
        outcome: dict[str, Any] | CodeGraphError,
        fingerprint: str | None = None,
        entry_id: str | None = None,
    ) -> None:
        """Entry seq was applied (a result) or refused (the error every host raises)."""
        with self._changed:
            self.seq = max(self.seq, seq)
            self._outcomes[seq] = Outcome(outcome, fingerprint, entry_id)
            while len(self._outcomes) > KEPT_OUTCOMES:
                self._outcomes.popitem(last=False)
            self._changed.notify_all()

    def advance(self, seq: int) -> None:
        """Entries up to seq are part of this host's state (a restore, say)."""
        with self._changed:
            self.seq = max(self.seq, seq)
            self._changed.notify_all()

    def reset(self, seq: int) -> None:
        """This host's state is now that of entry seq (a restore put it back)."""
        with self._changed:
            self.seq = seq
            self._outcomes.clear()
            self._changed.notify_all()

    def wait_for(self, seq: int, timeout: float) -> bool:
        """True once entry seq is applied here; False if timeout passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.seq >= seq, timeout)

    def recorded(self, seq: int) -> Outcome | None:
        """What this host kept of entry seq (the KEPT_OUTCOMES most recent), if anything."""
        with self._changed:
            return self._outcomes.get(seq)

    def outcome(
        self, seq: int, retry_of: str | None = None, entry_id: str | None = None
    ) -> dict[str, Any]:
        """What entry seq gave on this host: its result, or its error raised again.
        retry_of: the fingerprint of a request that came back with the key of entry seq;
        a different request under that key is refused, not answered with seq's result.
        entry_id: the id the write was published with; another entry at seq raises
        NotThisEntry (this host never answers for an entry it did not apply)."""
        kept = self.recorded(seq)
        found, recorded = (kept.result, kept.fingerprint) if kept else (None, None)
        if entry_id is not None and kept is not None and kept.entry_id not in (None, entry_id):
            raise NotThisEntry(f"entry {seq} applied here is {kept.entry_id}, not {entry_id}")
        if retry_of is not None and recorded is not None and recorded != retry_of:
            raise key_used_for_another_request(seq)
        if isinstance(found, CodeGraphError):
            raise found
        return found if found is not None else {"seq": seq, "note": "applied earlier"}


def key_used_for_another_request(seq: int) -> InvalidInput:
    """The refusal of a request whose Idempotency-Key went with another one (entry seq)."""
    return InvalidInput(
        f"this Idempotency-Key was used for a different request (log entry {seq}); "
        "use a new key for a new request"
    )
