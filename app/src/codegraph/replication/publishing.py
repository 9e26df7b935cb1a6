"""A replicated write's path into the log, and its answer (JetStreamLog's, as a mixin:
it uses the log's connection, applier and stream state). docs/replication.md, "What an
answer means", gives the argument for each answer.

A write is published once under its message id (the client's Idempotency-Key, or a
fresh one) and its own publication id, and answered with what its entry gave once this
host has applied it. A publish the log does not answer is settled by a fence: a no-op
entry, sent through another server, that withdraws the publication; once the fence is
applied, every entry before it is decided, so the write is either there (its outcome)
or never applied (503). Only when no quorum takes the fence is the answer 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import nats
from nats.errors import MaxPayloadError, NoRespondersError
from nats.js.errors import APIError

from codegraph.errors import (
    CodeGraphError,
    Conflict,
    OutcomeUnknown,
    TooLarge,
    Unavailable,
    Withdrawn,
)
from codegraph.replication import entries
from codegraph.replication.applied import (
    NotKept,
    NotThisEntry,
    fingerprint,
    from_bytes,
    key_used_for_another_request,
)
from codegraph.replication.messages import entry_id_of, read_stored_at
from codegraph.replication.stream import connection_options

log = logging.getLogger("codegraph.replication")
# How long this host's consumer may leave it behind the stream's head, idle, before the
# missing entries are read from the stream's leader instead (_fill_from_leader).
FILL_AFTER = 1.0
# A publish that times out is sent again with the same message id (JetStream keeps one
# copy within its duplicate window), up to this many times before the write's outcome is
# called unknown; from entry format 3, it is sent once and then settled by a fence.
PUBLISH_ATTEMPTS = 3
# A key whose entry the log withdrew (or refused as late) is used again as key#2, key#3...:
# every host walks the same chain, so a retry through any host finds the same entry.
KEY_REUSES = 5
# An entry's deadline (entry format 2): past the time its publishing may take, plus this.
# Its host answers "outcome unknown" only after the deadline and CLOCK_MARGIN (the hosts'
# clocks against the stream leader's: keep them within it, with NTP).
DEADLINE_MARGIN = 2.0
CLOCK_MARGIN = 1.0


class Publishing:
    """The write path of JetStreamLog, which provides what it uses: applier, settings
    (its [replication] section), stream (StreamState), _nc and _js (the connection),
    _call_soon, _fill_if_idle, _stall and stalled."""

    def submit(self, mutation: dict[str, Any], key: str | None) -> tuple[dict[str, Any], int, bool]:
        """Publish the write, wait until this host has applied that very entry, answer
        with what it gave. Every answer says the truth about the write (docs/replication.md,
        "What an answer means"): 200 for an entry this host applied (or refused, with the
        error every host gives) and whose outcome it recorded; 503 when the log did not
        take it or settled it as not applied; 504 (OutcomeUnknown) only when this host
        cannot learn it; 409 when a key's first request can no longer be told."""
        if self.stalled:
            raise Unavailable(f"this host cannot apply the log: {self.stalled}", retry_after=30)
        asked = fingerprint(mutation) if key is not None else None
        if key is None:
            return self._submit_as(mutation, asked, uuid.uuid4().hex)
        for reuse in range(KEY_REUSES):
            try:
                return self._submit_as(mutation, asked, key if reuse == 0 else f"{key}#{reuse + 1}")
            except _KeyWithdrawn:
                continue  # that id's entry was settled as not applied: the key's next one
        raise Conflict(
            f"this Idempotency-Key's entry was withdrawn {KEY_REUSES} times within the log's "
            "duplicate window; nothing was applied: send the request with a new key"
        )

    def _submit_as(
        self, mutation: dict[str, Any], asked: str | None, entry_id: str
    ) -> tuple[dict[str, Any], int, bool]:
        """One publication of the write under entry_id, and its answer."""
        fenced = self.applier.store.entry_format >= 3  # every host applies a fence
        publication = uuid.uuid4().hex if fenced else None
        attempts = 1 if fenced else PUBLISH_ATTEMPTS
        after = self.applier.applied.seq  # the write's entry comes after this one
        now, deadline = time.time(), None
        if self.applier.store.entry_format >= 2:  # every host refuses it stored later
            deadline = now + self._publishing_takes(attempts) + DEADLINE_MARGIN
        data = entries.encode(mutation, now, asked, deadline, publication)
        limits = (self.stream.max_msg_size, getattr(self._nc, "max_payload", 0) or 0)
        limit = min((size for size in limits if size > 0), default=0)
        if limit and len(data) > limit:
            raise TooLarge(
                f"this write is {len(data)} bytes as a log entry; the log takes entries of "
                f"up to {limit} bytes (nats_max_payload). Nothing was applied: send it in "
                "smaller batches"
            )
        try:
            ack = self._publish_once(data, entry_id, attempts)
        except _Unanswered as unknown:
            if publication is not None:
                return self._settled(publication, entry_id, asked, after, deadline, unknown)
            if deadline is None:
                raise
            self._wait_past(deadline)
            raise OutcomeUnknown(
                f"{unknown} It cannot take effect after this answer: a write sent from now on "
                "comes after it in the log"
            ) from None
        seq, replayed = ack.seq, bool(ack.duplicate)
        self._wait_until_applied(seq)
        if replayed and self.applier.applied.recorded(seq) is None:
            self._check_retry_against_the_stream(seq, entry_id, asked)
        try:
            return self._answer(seq, entry_id, asked, replayed), seq, replayed
        except NotThisEntry as error:
            # The log acknowledged the publish as an entry that is another write: seen from
            # nats-server 2.9 at a stream leader change (the new leader numbered it before
            # taking over the old one's entries), and from a stream created again. Settled
            # as an unanswered publish, unless this host follows another stream now.
            log.warning("publication %s: %s; settling it", publication, error)
            if publication is None or replayed or self._follows_another_stream():
                raise OutcomeUnknown(
                    f"the log acknowledged this write as its entry {seq}, which is another "
                    "write; its outcome is unknown here. Send it again with the same "
                    "Idempotency-Key, through another host"
                ) from None
            unknown = _Unanswered(str(error), failure=f"acknowledged as entry {seq}: {error}")
            return self._settled(publication, entry_id, asked, after, deadline, unknown)

    def _settled(
        self,
        publication: str,
        entry_id: str,
        asked: str | None,
        after: int,
        deadline: float | None,
        unknown: _Unanswered,
    ) -> tuple[dict[str, Any], int, bool]:
        """The answer of a publish settled by a fence: its own entry's outcome, or that of
        the same key's entry another host published first (then as a retry: a different
        request under the key is refused)."""
        seq = self._settle(publication, entry_id, after, deadline, unknown)
        kept = self.applier.applied.recorded(seq)
        mine = kept is not None and kept.publication == publication
        return self._answer(seq, entry_id, asked, replayed=not mine), seq, not mine

    def _follows_another_stream(self) -> bool:
        """Whether the stream is now another than the one this host applied (it stops)."""
        try:
            info = self._call_soon(self._js.stream_info(self.settings.stream)).result(
                self.settings.publish_timeout_seconds + 1
            )
        except Exception:  # cannot tell: as if it did
            return True
        self._check_stream(info)
        return bool(self.stalled)

    def _wait_until_applied(self, seq: int) -> None:
        """Until this host has applied entry seq (from the leader, if its consumer does not
        deliver it); OutcomeUnknown after apply_wait_seconds."""
        wait = self.settings.apply_wait_seconds
        applied = self.applier.applied.wait_for(seq, min(FILL_AFTER, wait))
        if not applied:  # not delivered here yet: from the leader, then
            self._call_soon(self._fill_if_idle(seq))
            applied = self.applier.applied.wait_for(seq, max(wait - FILL_AFTER, 0))
        if not applied:  # in the log: applied or refused alike everywhere, not known here yet
            raise OutcomeUnknown(
                f"the write is settled in the log (by entry {seq}), but this host has not "
                f"applied that far within {wait:g} s (applied: {self.applier.applied.seq}): "
                f"it is applied, or refused, alike on every host. Read with "
                f"X-CodeGraph-Min-Seq: {seq}, or send it again with the same Idempotency-Key "
                "for its result"
            )

    def _answer(self, seq: int, entry_id: str, asked: str | None, replayed: bool) -> dict[str, Any]:
        """What entry seq gave here, for the request that published entry_id."""
        try:
            return self.applier.applied.outcome(
                seq, retry_of=asked if replayed else None, entry_id=entry_id
            )
        except Withdrawn:
            if replayed:  # an earlier publication under this id, settled as not applied
                raise _KeyWithdrawn from None
            raise
        except NotKept:
            kept = self.applier.store.kept_outcome(seq) if replayed else None
            if kept is not None:  # a keyed write applied before this host last started
                outcome = from_bytes(kept)
                if isinstance(outcome, Withdrawn):
                    raise _KeyWithdrawn from None
                if isinstance(outcome, CodeGraphError):
                    raise outcome from None
                return outcome
            if replayed:  # its answer is gone (a crash before it was kept, say)
                raise Conflict(
                    f"this Idempotency-Key's request is the log's entry {seq}, applied or "
                    "refused alike on every host before this one last started; its answer "
                    "is no longer kept here (read the data to see its effect; a new request "
                    "needs a new key)"
                ) from None
            # this host's position passed seq without applying it here: a restore since,
            # or a stream created again (the probe stops this host: _check_stream)
            raise OutcomeUnknown(
                f"the write is entry {seq} of the log, but this host keeps no outcome of that "
                "entry (a restore since, or it follows another history of the log); send it "
                "again with the same Idempotency-Key, through another host"
            ) from None

    def _settle(
        self,
        publication: str,
        entry_id: str,
        after: int,
        deadline: float | None,
        unknown: _Unanswered,
    ) -> int:
        """The publish of `publication` went unanswered: append a fence that withdraws it.
        Once this host has applied the fence, every entry before it is decided, so the
        publication is either there (its seq) or never applied (Withdrawn). Without a
        quorum for the fence, the outcome stays unknown (OutcomeUnknown)."""
        fence_seq = self._call_soon(self._publish_fence(publication)).result()
        if fence_seq is None:  # no quorum reachable: the second line, the deadline
            if deadline is not None:
                self._wait_past(deadline)
            raise OutcomeUnknown(
                f"the log did not answer this write's publish in time ({unknown.failure}), "
                "and no quorum of the log could be reached to settle it: it may have been "
                "taken, or may be still. It cannot take effect after this answer if the "
                f"hosts' clocks agree within {CLOCK_MARGIN:g} s (its deadline; chrony keeps "
                "them so). Send it again with the same Idempotency-Key to learn its outcome"
            )
        fence_seq = self._wait_for_the_fence(publication, acknowledged=fence_seq)
        seq, complete = self.applier.applied.published(publication, entry_id, after, fence_seq)
        if seq is None and not complete:
            raise OutcomeUnknown(
                f"the write is settled in the log (before its entry {fence_seq}, a fence), "
                "but this host no longer keeps every outcome since it was sent; send it "
                "again with the same Idempotency-Key for its result"
            )
        if seq is None:
            raise Withdrawn(
                f"the write was not applied, and never will be: the log did not answer its "
                f"publish in time, and did not take it before entry {fence_seq}, which "
                "withdrew it. Send it again (the same Idempotency-Key may be used)",
                retry_after=1,
            )
        return seq

    def _wait_for_the_fence(self, publication: str, acknowledged: int) -> int:
        """The fence's own position, once this host has applied it (not the number the
        log acknowledged it with: nats-server 2.9.10 was seen to acknowledge a publish
        with another entry's number at a stream leader change). OutcomeUnknown if this
        host does not apply it within apply_wait_seconds."""
        store, applied = self.applier.store, self.applier.applied
        wait = self.settings.apply_wait_seconds
        if not applied.wait_until(lambda: store.withdrawn_by(publication) is not None, FILL_AFTER):
            self._call_soon(self._fill_if_idle(acknowledged))  # from the leader, then
            applied.wait_until(
                lambda: store.withdrawn_by(publication) is not None, max(wait - FILL_AFTER, 0)
            )
        fence_seq = store.withdrawn_by(publication)
        if fence_seq is None:
            raise OutcomeUnknown(
                f"the write is settled in the log (a fence, acknowledged as entry "
                f"{acknowledged}, withdrew it unless it came before), but this host has not "
                f"applied the fence within {wait:g} s (applied: {applied.seq}): read with "
                f"X-CodeGraph-Min-Seq: {acknowledged}, or send it again with the same "
                "Idempotency-Key for its result"
            )
        return fence_seq

    async def _publish_fence(self, publication: str) -> int | None:
        """The fence's seq, published through a new connection to each server in turn,
        this host's own last (the path the write took may hold it still): its id makes
        every copy one entry. None if none of them could store it."""
        options = connection_options(self.applier.settings)
        servers = [*self.settings.servers[1:], *self.settings.servers[:1]]
        data = entries.encode(entries.fence(publication), time.time(), None)
        timeout = self.settings.publish_timeout_seconds
        for server in servers:
            try:  # (bounded: a server that accepts and then says nothing, too)
                connection = await asyncio.wait_for(
                    nats.connect(
                        **{**options, "servers": [server]},
                        allow_reconnect=False,
                        max_reconnect_attempts=1,  # a refusal ends it (no 2 s backoff loop)
                        reconnect_time_wait=0.1,
                    ),
                    options["connect_timeout"] + 1,
                )
            except Exception as error:  # unreachable: the next one
                log.warning(
                    "fencing %s through %s: %s", publication, server, error or type(error).__name__
                )
                continue
            try:
                ack = await connection.jetstream(timeout=timeout).publish(
                    self.settings.subject,
                    data,
                    stream=self.settings.stream,
                    timeout=timeout,
                    headers={"Nats-Msg-Id": f"fence-{publication}"},
                )
                if ack.seq:
                    log.info("publication %s fenced by entry %d", publication, ack.seq)
                    return ack.seq
            except Exception as error:  # no quorum from there: the next one
                log.warning(
                    "fencing %s through %s: %s", publication, server, error or type(error).__name__
                )
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2)
        return None

    @staticmethod
    def _wait_past(deadline: float) -> None:
        """Past its deadline, the stream stores no copy of an entry that a host applies."""
        time.sleep(max(deadline + CLOCK_MARGIN - time.time(), 0))

    def _check_retry_against_the_stream(self, seq: int, entry_id: str, asked: str | None) -> None:
        """A retry whose first answer this host no longer keeps (a restart since, or
        KEPT_OUTCOMES writes ago): the entry itself, read from the stream, says whether it
        is this request's (its id and fingerprint), so another request under a used key is
        refused as it would be within memory; one that cannot be read is refused too (it
        cannot be told a retry). An entry the log withdrew frees its key (_KeyWithdrawn)."""
        try:
            message = self._call_soon(self._js.get_msg(self.settings.stream, seq)).result(
                self.settings.publish_timeout_seconds + 1
            )
        except Exception:  # gone from the stream, or no leader
            raise Conflict(
                f"this Idempotency-Key was used for the log's entry {seq}, which cannot be "
                "read from the log now (it left the stream, or no leader answers): this "
                "request cannot be told a retry of it. Nothing was applied; send it with a "
                "new key, or again later"
            ) from None
        found = entry_id_of(message)
        entry = entries.decode(message.data, read_stored_at(message.time))
        recorded = entry.fingerprint if found == entry_id else None
        if found != entry_id or (asked is not None and recorded not in (None, asked)):
            raise key_used_for_another_request(seq)
        store = self.applier.store
        fence = store.withdrawn_by(entry.publication) if entry.publication else None
        if entry.mutation["op"] == "late" or (fence is not None and fence < seq):
            raise _KeyWithdrawn

    def _publishing_takes(self, attempts: int) -> float:
        """The longest _publish_once can take: every attempt timed out, and its pauses."""
        return attempts * (self.settings.publish_timeout_seconds + 1.5)

    def _publish_once(self, data: bytes, entry_id: str, attempts: int) -> Any:
        """Put the entry into the stream, under its id: a publish that times out is sent
        again with the same id (the stream keeps one copy within its duplicate window).
        Its acknowledgement; or Unavailable when the log certainly did not take it; or
        OutcomeUnknown when it may have (an unanswered publish can still be stored)."""
        timeout = self.settings.publish_timeout_seconds
        uncertain = ""
        for _ in range(attempts):
            try:
                ack = self._call_soon(self._publish(data, entry_id)).result(timeout + 1)
                if ack.seq and ack.seq > 0:
                    return ack
                # nats-server 2.10 answers a publish whose id it holds in a proposal not
                # yet committed (the first one, without quorum) as a duplicate of entry 0
                uncertain = "the log holds this entry's id, not yet stored"
                time.sleep(0.5)
            except (ConnectionError, NoRespondersError, MaxPayloadError, APIError) as error:
                # not sent (not connected), no stream answering, or refused by the stream
                failure = f"{error or type(error).__name__}"
                if not uncertain:
                    raise Unavailable(
                        f"the replicated log did not take the write (no quorum, or "
                        f"unreachable: {failure}); nothing was applied. Retry, with the same "
                        "Idempotency-Key if you sent one",
                        retry_after=2,
                    ) from None
            except Exception as error:  # timed out, or the connection went mid-way
                uncertain = f"{error or type(error).__name__}"
                log.warning("publishing entry %s: %s", entry_id, uncertain)
        raise _Unanswered(
            f"the replicated log did not answer ({uncertain}): this write may have been "
            "taken, and applied, or may be still. Send it again with the same "
            "Idempotency-Key (a write sent with none cannot be told apart)",
            failure=uncertain,
        )

    async def _publish(self, data: bytes, message_id: str) -> Any:
        if self._js is None or not self._nc.is_connected:  # (checked here: nothing is sent)
            raise ConnectionError("not connected")
        return await self._js.publish(
            self.settings.subject,
            data,
            stream=self.settings.stream,
            timeout=self.settings.publish_timeout_seconds,
            headers={"Nats-Msg-Id": message_id},
        )


class _Unanswered(OutcomeUnknown):
    """A publish the log did not answer: whether it was stored is unknown (failure: how)."""

    def __init__(self, message: str, failure: str) -> None:
        super().__init__(message)
        self.failure = failure


class _KeyWithdrawn(Exception):
    """The entry an Idempotency-Key's id names was settled as not applied: the key's next
    id is the request's (JetStreamLog.submit)."""
