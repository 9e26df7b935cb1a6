"""What a message of the stream carries besides its data: when the stream stored it, and
the id it was published with."""

from __future__ import annotations

import datetime
from typing import Any

# When the stream stored an entry dates it on every host (its records, the deadline, the
# position), so each way of reading an entry must give the very same number: whole
# microseconds since the epoch, truncated. (nats-py rounds a delivered message's
# nanoseconds through a float but truncates a message read by sequence: 1 us apart for
# about half the entries, which made a host that read some entries from the leader
# differ from the others.)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def delivered_stored_at(reply: str) -> float:
    """From a consumer's delivery: its ack subject carries the stream's nanoseconds,
    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending> (9 tokens) or,
    with a domain and an account before the stream, the ns as the 10th token."""
    tokens = reply.split(".")
    nanoseconds = int(tokens[7] if len(tokens) == 9 else tokens[9])
    return (nanoseconds // 1000) / 1_000_000


def read_stored_at(stored: datetime.datetime) -> float:
    """From a message read by its sequence (nats-py's datetime, truncated to microseconds)."""
    return ((stored - _EPOCH) // _MICROSECOND) / 1_000_000


def entry_id_of(message: Any) -> str | None:
    """The id an entry was published with (its Nats-Msg-Id), from a delivered message or
    one read from the stream."""
    return (message.headers or {}).get("Nats-Msg-Id")
