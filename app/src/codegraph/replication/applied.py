"""A host's position in the log: the last entry it applied, and what recent ones gave."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from codegraph import errors
from codegraph.errors import CodeGraphError, InvalidInput

KEPT_OUTCOMES = 10_000  # answers for retried writes (and for writers still waiting)


def fingerprint(mutation: dict[str, Any]) -> str:
    """What a write asked for, to tell a retry (same Idempotency-Key, same request)
    from a key reused for another request. Computed only for writes that send a key."""
    return hashlib.sha256(orjson.dumps(mutation, option=orjson.OPT_SORT_KEYS)).hexdigest()


class NotKept(Exception):
    """This host keeps no outcome of the entry (a restart, or KEPT_OUTCOMES writes, since):
    it does not guess one."""


class NotThisEntry(Exception):
    """The entry this host applied at a sequence is another write than the one published:
    it follows another stream than the one the write went into."""


@dataclass(frozen=True)
class Outcome:
    result: dict[str, Any] | CodeGraphError  # what the entry gave, or the error it met
    fingerprint: str | None = None  # of a write that sent an Idempotency-Key
    entry_id: str | None = None  # the log's id of the entry (its message id)
    publication: str | None = None  # the publish's own id (entry format 3)


class Applied:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._changed = threading.Condition()
        self._outcomes: OrderedDict[int, Outcome] = OrderedDict()
        self._expected: dict[int, Outcome] = {}  # (expect)

    def record(
        self,
        seq: int,
        outcome: dict[str, Any] | CodeGraphError,
        fingerprint: str | None = None,
        entry_id: str | None = None,
        publication: str | None = None,
    ) -> None:
        """Entry seq was applied (a result) or refused (the error every host raises)."""
        with self._changed:
            self.seq = max(self.seq, seq)
            self._outcomes[seq] = Outcome(outcome, fingerprint, entry_id, publication)
            while len(self._outcomes) > KEPT_OUTCOMES:
                self._outcomes.popitem(last=False)
            self._changed.notify_all()

    def advance(self, seq: int) -> None:
        """Entries up to seq are part of this host's state (a restore, say)."""
        with self._changed:
            self.seq = max(self.seq, seq)
            self._changed.notify_all()

    def reset(self, seq: int) -> None:
        """This host's state is now that of entry seq (a restore put it back); what an
        entry about to become that state gave (expect) is kept before anyone is woken."""
        with self._changed:
            self.seq = seq
            self._outcomes.clear()
            if seq in self._expected:
                self._outcomes[seq] = self._expected[seq]
            self._expected.clear()
            self._changed.notify_all()

    def expect(self, seq: int, outcome: Outcome) -> None:
        """Entry seq gave outcome, and the state about to be swapped in includes it (an
        adoption): the reset that follows keeps it for whoever waits for entry seq."""
        with self._changed:
            self._expected[seq] = outcome

    def wait_for(self, seq: int, timeout: float) -> bool:
        """True once entry seq is applied here; False if timeout passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.seq >= seq, timeout)

    def recorded(self, seq: int) -> Outcome | None:
        """What this host kept of entry seq (the KEPT_OUTCOMES most recent), if anything."""
        with self._changed:
            return self._outcomes.get(seq)

    def wait_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """True once done() holds (checked whenever an entry is applied here)."""
        with self._changed:
            return self._changed.wait_for(done, timeout)

    def published(
        self, publication: str, entry_id: str, after: int, before: int
    ) -> tuple[int | None, bool]:
        """The first entry between `after` and `before` (both excluded) this host applied
        for that publication, or under that entry id (the same keyed request published
        through another host); and whether every entry between them is still kept here
        (if not, one not found may just be forgotten)."""
        with self._changed:
            kept = [seq for seq in self._outcomes if after < seq < before]
            complete = len(kept) == before - after - 1
            for seq in sorted(kept):
                outcome = self._outcomes[seq]
                if outcome.publication == publication or outcome.entry_id == entry_id:
                    return seq, complete
        return None, complete

    def outcome(
        self, seq: int, retry_of: str | None = None, entry_id: str | None = None
    ) -> dict[str, Any]:
        """What entry seq gave on this host: its result, or its error raised again.
        retry_of: the fingerprint of a request that came back with the key of entry seq;
        a different request under that key is refused, not answered with seq's result.
        entry_id: the id the write was published with; another entry at seq raises
        NotThisEntry (this host never answers for an entry it did not apply); no outcome
        kept raises NotKept."""
        kept = self.recorded(seq)
        found, recorded = (kept.result, kept.fingerprint) if kept else (None, None)
        if entry_id is not None and kept is not None and kept.entry_id not in (None, entry_id):
            raise NotThisEntry(f"entry {seq} applied here is {kept.entry_id}, not {entry_id}")
        if retry_of is not None and recorded is not None and recorded != retry_of:
            raise key_used_for_another_request(seq)
        if isinstance(found, CodeGraphError):
            raise found
        if found is None:
            raise NotKept(f"no outcome of entry {seq} is kept here")
        return found


def to_bytes(outcome: dict[str, Any] | CodeGraphError) -> bytes:
    """An outcome as the store keeps it (GraphStore.keep_outcome)."""
    if isinstance(outcome, CodeGraphError):
        kept = {"error": type(outcome).__name__, "message": str(outcome)}
        return orjson.dumps(kept | {"retry_after": getattr(outcome, "retry_after", None)})
    return orjson.dumps({"result": outcome})


def from_bytes(data: bytes) -> dict[str, Any] | CodeGraphError:
    kept = orjson.loads(data)
    if "result" in kept:
        return kept["result"]
    kind = getattr(errors, kept["error"])
    retry_after = kept.get("retry_after")
    return kind(kept["message"], retry_after) if retry_after is not None else kind(kept["message"])


def key_used_for_another_request(seq: int) -> InvalidInput:
    """The refusal of a request whose Idempotency-Key went with another one (entry seq)."""
    return InvalidInput(
        f"this Idempotency-Key was used for a different request (log entry {seq}); "
        "use a new key for a new request"
    )
