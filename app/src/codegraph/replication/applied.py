"""A host's position in the log: the last entry it applied, and what recent ones gave."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from codegraph.errors import CodeGraphError

KEPT_OUTCOMES = 10_000  # answers for retried writes (and for writers still waiting)


class Applied:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self._changed = threading.Condition()
        self._outcomes: OrderedDict[int, dict[str, Any] | CodeGraphError] = OrderedDict()

    def record(self, seq: int, outcome: dict[str, Any] | CodeGraphError) -> None:
        """Entry seq was applied (a result) or refused (the error every host raises)."""
        with self._changed:
            self.seq = max(self.seq, seq)
            self._outcomes[seq] = outcome
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

    def outcome(self, seq: int) -> dict[str, Any]:
        """What entry seq gave on this host: its result, or its error raised again."""
        with self._changed:
            found = self._outcomes.get(seq)
        if isinstance(found, CodeGraphError):
            raise found
        return found if found is not None else {"seq": seq, "note": "applied earlier"}
