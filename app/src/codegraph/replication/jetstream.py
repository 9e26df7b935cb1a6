"""The fleet's log: a NATS JetStream stream that every app host applies in order.

A write is published with a message id (the client's Idempotency-Key, or a fresh
one), so JetStream stores it once however often it is retried within its duplicate
window; the publish returns once a quorum of the stream's replicas holds it (its
sequence). The answering host then waits until its own applier has applied that
entry and answers with what the entry gave.

Each host follows the stream with an ordered consumer (JetStream's gap-free, in-order
delivery) from the entry after the last one in both its store and its operation log;
a thread applies the entries in order (applier.Applier). The local operation log
mirrors the stream entry for entry (same sequence numbers, refused entries included),
so point-in-time recovery works on every host as on one.

Neither RocksDB nor the operation log is fsync'ed per entry here: an acknowledged
write is in the stream on a quorum of hosts, and a host that loses its unsynced tail
in a crash applies it again from the stream (see docs/replication.md).

The NATS client runs in a thread of its own (its own asyncio loop); the engine's
threads talk to it through run_coroutine_threadsafe.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats
from nats.js import api as js_api

from codegraph import metrics
from codegraph.errors import CodeGraphError, Unavailable
from codegraph.replication import entries
from codegraph.replication.applied import KEPT_OUTCOMES, to_bytes
from codegraph.replication.messages import delivered_stored_at, entry_id_of, read_stored_at
from codegraph.replication.publishing import FILL_AFTER, Publishing
from codegraph.replication.stream import connection_options

if TYPE_CHECKING:
    from codegraph.replication.applier import Applier

log = logging.getLogger("codegraph.replication")
PROBE_SECONDS = 1.0  # how often the stream's state (and the peers' reachability) is read
UNREACHABLE_AFTER = 3.0  # seconds without a successful probe: the log is unreachable
QUEUED_ENTRIES = 64  # between the consumer and the applier (backpressure beyond)
# An entry that fails to apply for another reason than the data (which every host would
# refuse alike) is tried again this many times, then the host stops applying and says why.
APPLY_ATTEMPTS = 3


@dataclass
class StreamState:
    """The stream as last seen from this host."""

    last_seq: int = 0
    first_seq: int = 0
    messages: int = 0
    bytes: int = 0
    max_bytes: int = -1
    max_msg_size: int = -1  # the largest entry it takes (bytes); -1: no limit of its own
    max_age_seconds: float = 0
    replicas: int = 0
    leader: str | None = None
    peers: list[dict[str, Any]] = field(default_factory=list)
    seen_at: float = 0.0  # monotonic time of the last successful probe; 0: never
    error: str = ""
    peers_answering: int | None = None  # peer hosts that answer on their NATS port
    peer_hosts: int = 0


class JetStreamLog(Publishing):
    mode = "jetstream"

    def __init__(self, applier: Applier) -> None:
        self.applier = applier
        self.settings = applier.settings.replication
        self.stream = StreamState()
        self._loop = asyncio.new_event_loop()
        self._client_thread = threading.Thread(
            target=self._loop.run_forever, name="nats-client", daemon=True
        )
        self._applier_thread = threading.Thread(
            target=self._apply_forever, name="log-applier", daemon=True
        )
        # (sequence, message id, data): decoded and judged by the applier (entries.decode)
        self._entries: queue.Queue[tuple[int, str | None, bytes]] = queue.Queue(QUEUED_ENTRIES)
        self._queued_seq = 0  # the last entry handed to the applier (NATS client thread)
        self._queued_at = time.monotonic()
        self._filling = False  # entries being read from the leader (_fill_if_idle)
        self._stopping = threading.Event()
        self._nc: Any = None
        self._js: Any = None
        self._subscription: Any = None
        self._prober: asyncio.Future | None = None
        self._caught_up_at = time.monotonic()  # when applied last equalled the stream's head
        # why this host cannot go on applying (needs a bootstrap): kept in its store
        self.stalled = applier.store.stopped
        self.refused = 0
        # the stream's identity (its creation time): this host's state follows one stream
        self.identity: str | None = None
        self._ahead_probes = 0  # probes in a row that saw the stream end before applied

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._client_thread.start()
        self._applier_thread.start()
        self._call_soon(self._follow())

    def close(self) -> None:
        self._stopping.set()
        if self._client_thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._disconnect(), self._loop)
            try:
                future.result(5)
            except Exception:  # closing anyway
                log.exception("closing the NATS connection")
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._client_thread.join(5)
        if self._applier_thread.is_alive():
            self._applier_thread.join(5)

    def _call_soon(self, coroutine: Coroutine) -> asyncio.Future:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    # ---------------------------------------------------------- connection
    async def _connect(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._nc = await nats.connect(
                    **connection_options(self.applier.settings),
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    pending_size=256 * 1024 * 1024,
                    name=f"codegraph-{self.applier.settings.server.port}",
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                self._js = self._nc.jetstream(timeout=self.settings.publish_timeout_seconds)
                log.info("connected to the replicated log at %s", self._nc.connected_url.netloc)
                return
            except Exception as error:  # unreachable, refused, bad credentials: retry
                self.stream.error = f"cannot connect: {error or type(error).__name__}"
                log.warning("replicated log: %s; retrying in %.1f s", self.stream.error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _on_error(self, error: Exception) -> None:
        log.warning("replicated log connection: %s", error or type(error).__name__)

    async def _on_disconnected(self) -> None:
        log.warning("replicated log: disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("replicated log: reconnected to %s", self._nc.connected_url.netloc)

    async def _disconnect(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
        if self._nc is not None and not self._nc.is_closed:
            await self._nc.close()

    # ---------------------------------------------------------------- follow
    async def _follow(self) -> None:
        """Connect, then follow the stream from where this host is, and probe it."""
        await self._connect()
        while not self._stopping.is_set():  # which stream, before following it
            try:
                self._check_stream(await self._js.stream_info(self.settings.stream), first=True)
                break
            except Exception as error:  # no stream yet, no quorum: try again
                failure = error or type(error).__name__
                self.stream.error = f"stream {self.settings.stream}: {failure}"
                log.warning("replicated log: %s; retrying", self.stream.error)
                await asyncio.sleep(1.0)
        start = self._start_seq()
        self._queued_seq = start - 1
        self._prober = asyncio.ensure_future(self._probe_forever())
        if self.stalled:
            return
        while not self._stopping.is_set():
            try:
                self._subscription = await self._js.subscribe(
                    self.settings.subject,
                    stream=self.settings.stream,
                    cb=self._delivered,
                    ordered_consumer=True,
                    deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                    config=js_api.ConsumerConfig(opt_start_seq=start),
                    idle_heartbeat=2.0,
                )
                log.info("following stream %s from entry %d", self.settings.stream, start)
                return
            except Exception as error:  # no stream yet, no quorum: try again
                self.stream.error = f"cannot follow the stream: {error or type(error).__name__}"
                log.warning("replicated log: %s; retrying", self.stream.error)
                await asyncio.sleep(1.0)

    def _start_seq(self) -> int:
        """The first entry this host lacks in its store or its operation log (both are
        written unsynced, so a crash can cost either its tail)."""
        applier = self.applier
        logged = applier.oplog.last_lsn
        return (min(applier.applied.seq, logged) if logged else applier.applied.seq) + 1

    def _check_stream(self, info: Any, *, first: bool = False) -> None:
        """This host's state follows one stream: the one it applied its entries from. A
        stream created again (deleted, or lost) has another identity, and its sequences
        start over; a stream that ends before this host's last applied entry lost entries
        (a power loss of its servers). Either way this host stops, loudly, instead of
        taking entries of another history as its next ones."""
        created = info.created.isoformat() if info.created else ""
        followed = self.applier.store.position.get("stream")
        applied, last = self.applier.applied.seq, info.state.last_seq
        if followed and created and followed != created:
            self._stall(
                f"this host's state follows stream {self.settings.stream} created {followed}; "
                f"the stream now is one created {created}: it was created again, and its "
                "entries are not the ones this host applied. Restore the fleet or bootstrap "
                "this host (docs/replication.md, 'The stream was lost or created again')"
            )
        # a replica that answers for a moment with an older state is not proof: the stream
        # must end before applied when the host starts, or on ten probes in a row
        self._ahead_probes = self._ahead_probes + 1 if applied > last else 0
        if applied > last and (first or self._ahead_probes >= 10):
            self._stall(
                f"this host applied entry {applied}, but stream {self.settings.stream} ends at "
                f"entry {last}: the stream lost entries this host had (a power loss of its "
                "servers?). Restore the fleet or bootstrap this host (docs/replication.md)"
            )
        self.identity = created or None

    def _position(self, entry_id: str | None, stored_at: float) -> dict[str, Any] | None:
        """What the store records with an applied entry: the stream, the entry's id, and
        when the stream stored it (a backup's time on the log's clock: recovery.py)."""
        if not self.identity:
            return None
        return {"stream": self.identity, "entry": entry_id or "", "at": stored_at}

    async def _delivered(self, message: Any) -> None:
        stored_at = delivered_stored_at(message.reply)
        seq = message.metadata.sequence.stream
        await self._enqueue(seq, entry_id_of(message), message.data, stored_at)

    async def _enqueue(
        self,
        seq: int,
        entry_id: str | None,
        data: bytes,
        stored_at: float,
        *,
        next_only: bool = False,
    ) -> bool:
        """Hand an entry (and when the stream stored it) to the applier, once and in order:
        one the consumer and the leader both delivered goes on once. next_only: only if it
        is the next one (the leader's)."""
        item = (seq, entry_id, data, stored_at)
        while not self._stopping.is_set():  # wait for room: the consumer's backpressure
            if seq <= self._queued_seq or (next_only and seq != self._queued_seq + 1):
                return False
            try:
                self._entries.put_nowait(item)
            except queue.Full:
                await asyncio.sleep(0.002)
                continue
            self._queued_seq, self._queued_at = seq, time.monotonic()
            return True
        return False

    async def _fill_if_idle(self, upto: int) -> None:
        """Read the entries up to `upto` from the stream's leader when this host's consumer
        has delivered nothing for FILL_AFTER and the applier is idle: that consumer may sit
        on a replica of the stream that lags (Debian 12's nats-server, 2.9.10, was seen to
        keep one an entry behind until the next write arrived, so in a quiet moment a write
        through this host was not applied here: docs/replication.md). A host that is
        catching up is left to its consumer; at most QUEUED_ENTRIES at a time."""
        idle = self._entries.empty() and time.monotonic() - self._queued_at >= FILL_AFTER
        if self._filling or not idle or upto <= self._queued_seq:
            return
        self._filling = True
        try:
            await self._fill_from_leader(min(upto, self._queued_seq + QUEUED_ENTRIES))
        finally:
            self._filling = False

    async def _fill_from_leader(self, upto: int) -> None:
        first = self._queued_seq + 1
        while self._queued_seq < upto and not self._stopping.is_set():
            seq = self._queued_seq + 1
            try:
                message = await self._js.get_msg(self.settings.stream, seq)
                stored_at = read_stored_at(message.time)
                await self._enqueue(
                    seq, entry_id_of(message), message.data, stored_at, next_only=True
                )
            except Exception as error:  # gone from the stream, or no leader: left to the consumer
                log.debug("reading entry %d from the stream's leader: %s", seq, error)
                return
        if self._queued_seq >= first:
            log.info(
                "entries %d..%d read from the stream's leader: this host's consumer had not "
                "delivered them",
                first,
                self._queued_seq,
            )

    # ----------------------------------------------------------------- apply
    def _apply_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                seq, entry_id, data, stored_at = self._entries.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self._apply(seq, entry_id, data, stored_at)
            except Exception as error:  # never a silent end of applying: say why, stop
                log.exception("applying entry %d", seq)
                self._stall(f"entry {seq} could not be applied here: {error!r}")

    def _apply(self, seq: int, entry_id: str | None, data: bytes, stored_at: float) -> None:
        """Apply one entry, or note the error every host refuses it with; retried (never
        skipped) while the store is closed for a restore. Anything else that fails is
        tried APPLY_ATTEMPTS times, then this host stops applying and says why (/ready,
        codegraph_replication_stalled): skipping it would put the host apart from the
        fleet, and trying forever would hide it."""
        if self.stalled:
            return
        try:
            entry = entries.decode(data, stored_at)
        except entries.NeedsNewerRelease as error:
            self._stall(f"entry {seq}: {error}")
            return
        mutation = entry.mutation
        store = self.applier.store
        fence = store.withdrawn_by(entry.publication) if entry.publication else None
        # reached the log after the fence that settled it (0: a fence replayed by a
        # point-in-time recovery, before the state it made; an entry the store holds
        # already, applied before its fence, is not withdrawn on a second delivery)
        if fence is not None and fence < seq:
            mutation = entries.withdrawn(fence)
        # one clock for the fleet: an entry is dated by the stream's timestamp, not by its
        # publishing host's (nodes' times, the operation log, point-in-time recovery);
        # at entry format 1, by its own, as the older releases of a rolling deploy do
        ts = entry.dated_at(stored_at, self.applier.store.entry_format)
        if mutation["op"] == "adopt" and seq == self._start_seq():
            self._adopt(seq, ts, mutation, entry_id, entry.publication)  # takes the locks itself
            return
        applier, failures = self.applier, 0
        while not self._stopping.is_set() and not self.stalled:
            try:
                with applier.writing():
                    needed = self._start_seq()  # the ordered consumer never skips one...
                    if seq > needed:  # ...unless the stream no longer has it
                        self._stall(
                            f"entries {needed}..{seq - 1} are no longer in the stream (it "
                            f"starts at {self.stream.first_seq}); bootstrap this host from a "
                            "recent backup (playbooks/add_host.yml)"
                        )
                        return
                    if seq <= applier.applied.seq:  # in the store already: the log's copy only
                        applier.log_copy(seq, ts, mutation)
                        return
                    try:
                        outcome = applier.apply_locked(
                            seq, ts, mutation, log_refused=True,
                            position=self._position(entry_id, ts),
                        )  # fmt: skip
                    except CodeGraphError as error:
                        outcome = error
                        self.refused += 1
                        metrics.REPLICATION_REFUSED.inc()
                    applier.applied.record(
                        seq, outcome, entry.fingerprint, entry_id, entry.publication
                    )
                    if entry.fingerprint is not None:  # a keyed write: its answer after a restart
                        applier.store.keep_outcome(seq, to_bytes(outcome), KEPT_OUTCOMES)
                applier.notify()
                if seq >= self.stream.last_seq:
                    self._caught_up_at = time.monotonic()
                return
            except Unavailable:
                time.sleep(0.2)  # a restore has the store closed
            except Exception as error:
                failures += 1
                log.exception("applying entry %d failed (attempt %d)", seq, failures)
                if failures >= APPLY_ATTEMPTS:
                    self._stall(f"entry {seq} could not be applied here: {error!r}")
                    return
                time.sleep(1.0)

    def _adopt(
        self,
        seq: int,
        ts: float,
        mutation: dict[str, Any],
        entry_id: str | None,
        publication: str | None,
    ) -> None:
        """The fleet adopts a backup at this entry; a host that cannot stops here."""
        try:
            if self.applier.adopt is None:
                raise RuntimeError("this process does not adopt backups (no handler)")
            outcome = self.applier.adopt(seq, ts, mutation, self._position(entry_id, ts))
        except Exception as error:  # (a missing or damaged backup, a digest that differs)
            self._stall(
                f"entry {seq} adopts backup {mutation.get('backup_id')}, which failed here: "
                f"{error}; bootstrap this host (playbooks/add_host.yml)"
            )
            return
        # (the handler's reset kept the outcome for whoever waited; recorded again with
        # the entry's ids, so a fence's search finds this publication)
        self.applier.applied.record(seq, outcome, None, entry_id, publication)
        self.applier.notify()

    def _stall(self, reason: str) -> None:
        """Stop applying, and say why, until an operator clears it: on disk first (a
        restart must not make this host ready again with state that differs)."""
        if not self.stalled:
            try:
                self.applier.store.record_stop(reason)
            except Exception:  # still stopped, for as long as this process runs
                log.exception("recording why this host stopped")
        self.stalled = reason
        log.error("replicated log: cannot go on: %s", reason)

    # ------------------------------------------------------------ the stream
    async def _probe_forever(self) -> None:
        while not self._stopping.is_set():
            await self._probe()
            await asyncio.sleep(PROBE_SECONDS)

    async def _probe(self) -> None:
        try:
            info = await self._js.stream_info(self.settings.stream)
        except Exception as error:
            self.stream.error = f"stream {self.settings.stream}: {error or type(error).__name__}"
        else:
            state, config, cluster = info.state, info.config, info.cluster
            self.stream.last_seq, self.stream.first_seq = state.last_seq, state.first_seq
            self.stream.messages, self.stream.bytes = state.messages, state.bytes
            self.stream.max_bytes = config.max_bytes or -1
            self.stream.max_msg_size = config.max_msg_size or -1
            self._check_stream(info)
            self.stream.max_age_seconds = config.max_age or 0
            self.stream.replicas = config.num_replicas or 1
            self.stream.leader = cluster.leader if cluster else None
            self.stream.peers = (
                [
                    {"name": peer.name, "current": bool(peer.current), "lag": peer.lag or 0}
                    for peer in (cluster.replicas or [])
                ]
                if cluster
                else []
            )
            if cluster is not None and not cluster.leader:
                # this host's own server answers with what it knows, but no leader means no
                # quorum it can reach: the log does not take writes from here
                self.stream.error = f"stream {self.settings.stream}: no leader reachable"
            else:
                self.stream.seen_at, self.stream.error = time.monotonic(), ""
            if self.applier.applied.seq >= state.last_seq:
                self._caught_up_at = time.monotonic()
            else:
                await self._fill_if_idle(state.last_seq)
        if self.reachable():
            self.stream.peers_answering = None  # (asked only when the stream is silent)
            return
        peers = self.settings.servers[1:]  # (the first is this host's own server)
        answers = await asyncio.gather(*(_answers(server) for server in peers))
        self.stream.peer_hosts, self.stream.peers_answering = len(peers), sum(answers)

    # ---------------------------------------------------------------- state
    def reachable(self) -> bool:
        seen = self.stream.seen_at
        return bool(seen) and time.monotonic() - seen < UNREACHABLE_AFTER

    def lag(self) -> tuple[int, float]:
        """Entries this host is behind the stream's head as last seen, and for how long."""
        behind = max(self.stream.last_seq - self.applier.applied.seq, 0)
        return behind, (time.monotonic() - self._caught_up_at) if behind else 0.0

    def ready(self) -> tuple[bool, str]:
        applied = self.applier.applied.seq
        if self.stalled:
            return False, self.stalled
        if not self.stream.seen_at:
            return False, f"the replicated log has not been reached yet ({self.stream.error})"
        behind, _ = self.lag()
        if behind > self.settings.ready_max_lag:
            return False, f"catching up: applied {applied} of {self.stream.last_seq}"
        answering, peers = self.stream.peers_answering, self.stream.peer_hosts
        if not self.reachable() and answering is not None and (answering + 1) * 2 <= peers + 1:
            return False, (
                f"cut off from the log: {answering} of its {peers} peers answer "
                f"(last reached {time.monotonic() - self.stream.seen_at:.0f} s ago)"
            )
        return True, f"applied {applied} of {self.stream.last_seq}"

    def status(self) -> dict[str, Any]:
        behind, seconds = self.lag()
        stream = self.stream
        return {
            "mode": self.mode,
            "applied_seq": self.applier.applied.seq,
            "lag_entries": behind,
            "lag_seconds": round(seconds, 3),
            "reachable": self.reachable(),
            "stalled": self.stalled or None,
            "refused_entries": self.refused,
            "entry_format": self.applier.store.entry_format,
            "entry_format_newest": entries.FORMAT,
            "stream": {
                "name": self.settings.stream,
                "first_seq": stream.first_seq,
                "last_seq": stream.last_seq,
                "bytes": stream.bytes,
                "max_bytes": stream.max_bytes,
                "max_age_seconds": stream.max_age_seconds,
                "replicas": stream.replicas,
                "leader": stream.leader,
                "peers": stream.peers,
                "last_error": stream.error or None,
            },
            "peers_reachable": stream.peers_answering,
        }


async def _answers(server: str, timeout: float = 1.0) -> bool:
    """Whether the host of a NATS URL answers on its port: a connection, or a refusal
    (the host is there, its server is not). Silence means it cannot be reached: a host
    that hears from fewer than half its peers is cut off from them, whereas one whose
    peers refuse is part of a cluster that lost its quorum, and keeps serving reads."""
    address = server.split("://", 1)[-1]
    host, _, port = address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True
