"""A host's position in the log: the last entry it applied, and what recent ones gave."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any

import orjson

from codegraph.errors import CodeGraphError, InvalidInput

KEPT_OUTCOMES = 10_000  # answers for retried writes (and for writers still waiting)


def fingerprint(mutation: dict[str, Any]) -> str:
    """What a write asked for, to tell a retry (same Idempotency-Key, same request)
    from a key reused for another request. Computed only for writes that send a key."""
    return hashlib.sha256(orjson.dumps(mutation, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Applied:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._changed = threading.Condition()
        # seq -> (its result or error, the fingerprint of a write that sent a key)
        self._outcomes: OrderedDict[int, tuple[dict[str, Any] | CodeGraphError, str | None]] = (
            OrderedDict()
        )

    def record(
        self, seq: int, outcome: dict[str, Any] | CodeGraphError, fingerprint: str | None = None
    ) -> None:
        """Entry seq was applied (a result) or refused (the error every host raises)."""
        with self._changed:
            self.seq = max(self.seq, seq)
            self._outcomes[seq] = (outcome, fingerprint)
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

    def outcome(self, seq: int, retry_of: str | None = None) -> dict[str, Any]:
        """What entry seq gave on this host: its result, or its error raised again.
        retry_of: the fingerprint of a request that came back with the key of entry seq;
        a different request under that key is refused, not answered with seq's result."""
        with self._changed:
            found, recorded = self._outcomes.get(seq, (None, None))
        if retry_of is not None and recorded is not None and recorded != retry_of:
            raise InvalidInput(
                f"this Idempotency-Key was used for a different request (log entry {seq}); "
                "use a new key for a new request"
            )
        if isinstance(found, CodeGraphError):
            raise found
        return found if found is not None else {"seq": seq, "note": "applied earlier"}
