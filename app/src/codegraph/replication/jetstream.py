"""The fleet's log: a NATS JetStream stream that every app host applies in order.

A write is published with a message id (the client's Idempotency-Key, or a fresh
one), so JetStream stores it once however often it is retried within its duplicate
window; the publish returns once a quorum of the stream's replicas holds it (its
sequence). The answering host then waits until its own applier has applied that
entry and answers with what the entry gave.

Each host follows the stream with an ordered consumer (JetStream's gap-free, in-order
delivery) from the entry after the last one in both its store and its operation log;
a thread applies the entries in order (Engine.apply_locked). The local operation log
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
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats
import orjson
from nats.js import api as js_api

from codegraph import fleet_restore, metrics
from codegraph.errors import CodeGraphError, Unavailable
from codegraph.replication.applied import fingerprint
from codegraph.replication.stream import connection_options

if TYPE_CHECKING:
    from codegraph.engine import Engine

log = logging.getLogger("codegraph.replication")
PROBE_SECONDS = 1.0  # how often the stream's state (and the peers' reachability) is read
UNREACHABLE_AFTER = 3.0  # seconds without a successful probe: the log is unreachable
QUEUED_ENTRIES = 64  # between the consumer and the applier (backpressure beyond)
# How long this host's consumer may leave it behind the stream's head, idle, before the
# missing entries are read from the stream's leader instead (_fill_from_leader).
FILL_AFTER = 1.0


@dataclass
class StreamState:
    """The stream as last seen from this host."""

    last_seq: int = 0
    first_seq: int = 0
    messages: int = 0
    bytes: int = 0
    max_bytes: int = -1
    max_age_seconds: float = 0
    replicas: int = 0
    leader: str | None = None
    peers: list[dict[str, Any]] = field(default_factory=list)
    seen_at: float = 0.0  # monotonic time of the last successful probe; 0: never
    error: str = ""
    peers_answering: int | None = None  # peer hosts that answer on their NATS port
    peer_hosts: int = 0


class JetStreamLog:
    mode = "jetstream"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings.replication
        self.stream = StreamState()
        self._loop = asyncio.new_event_loop()
        self._client_thread = threading.Thread(
            target=self._loop.run_forever, name="nats-client", daemon=True
        )
        self._applier_thread = threading.Thread(
            target=self._apply_forever, name="log-applier", daemon=True
        )
        self._entries: queue.Queue[tuple[int, float, dict[str, Any]]] = queue.Queue(QUEUED_ENTRIES)
        self._queued_seq = 0  # the last entry handed to the applier (NATS client thread)
        self._queued_at = time.monotonic()
        self._filling = False  # entries being read from the leader (_fill_if_idle)
        self._stopping = threading.Event()
        self._nc: Any = None
        self._js: Any = None
        self._subscription: Any = None
        self._prober: asyncio.Future | None = None
        self._caught_up_at = time.monotonic()  # when applied last equalled the stream's head
        self.stalled = ""  # why this host cannot go on applying (needs a bootstrap)
        self.refused = 0

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
                    **connection_options(self.engine.settings),
                    reconnect_time_wait=0.5,
                    max_reconnect_attempts=-1,
                    ping_interval=5,
                    max_outstanding_pings=2,
                    pending_size=256 * 1024 * 1024,
                    name=f"codegraph-{self.engine.settings.server.port}",
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
        start = self._start_seq()
        self._queued_seq = start - 1
        self._prober = asyncio.ensure_future(self._probe_forever())
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
        engine = self.engine
        logged = engine.oplog.last_lsn
        return (min(engine.applied.seq, logged) if logged else engine.applied.seq) + 1

    async def _delivered(self, message: Any) -> None:
        await self._enqueue(message.metadata.sequence.stream, message.data)

    async def _enqueue(self, seq: int, data: bytes, *, next_only: bool = False) -> bool:
        """Hand an entry to the applier, once and in order: one the consumer and the leader
        both delivered goes on once. next_only: only if it is the next one (the leader's)."""
        entry = orjson.loads(data)
        item = (seq, entry["ts"], entry["m"], entry.get("f"))
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
                await self._enqueue(seq, message.data, next_only=True)
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
                seq, ts, mutation, asked = self._entries.get(timeout=0.2)
            except queue.Empty:
                continue
            self._apply(seq, ts, mutation, asked)

    def _apply(self, seq: int, ts: float, mutation: dict[str, Any], asked: str | None) -> None:
        """Apply one entry, or note the error every host refuses it with; retried (never
        skipped) while the store is closed for a restore or fails unexpectedly. asked: the
        fingerprint of a write sent with an Idempotency-Key."""
        engine = self.engine
        if mutation["op"] == "adopt" and seq == self._start_seq():
            self._adopt(seq, ts, mutation)  # a restore: it takes the locks itself
            return
        while not self._stopping.is_set() and not self.stalled:
            try:
                with engine.writing():
                    needed = self._start_seq()  # the ordered consumer never skips one...
                    if seq > needed:  # ...unless the stream no longer has it
                        self._stall(
                            f"entries {needed}..{seq - 1} are no longer in the stream (it "
                            f"starts at {self.stream.first_seq}); bootstrap this host from a "
                            "recent backup (playbooks/add_host.yml)"
                        )
                        return
                    if seq <= engine.applied.seq:  # in the store already: the log's copy only
                        if seq > engine.oplog.last_lsn:
                            engine.oplog.append(ts, mutation, seq)
                        return
                    try:
                        outcome = engine.apply_locked(seq, ts, mutation, log_refused=True)
                    except CodeGraphError as error:
                        outcome = error
                        self.refused += 1
                        metrics.REPLICATION_REFUSED.inc()
                    engine.applied.record(seq, outcome, asked)
                engine.indexer.notify()
                if seq >= self.stream.last_seq:
                    self._caught_up_at = time.monotonic()
                return
            except Unavailable:
                time.sleep(0.2)  # a restore has the store closed
            except Exception:
                log.exception("applying entry %d failed; trying it again", seq)
                time.sleep(1.0)

    def _adopt(self, seq: int, ts: float, entry: dict[str, Any]) -> None:
        """The fleet adopts a backup at this entry; a host that cannot stops here."""
        try:
            outcome = fleet_restore.adopt(self.engine, seq, ts, entry)
        except CodeGraphError as error:
            self._stall(
                f"entry {seq} adopts backup {entry['backup_id']}, which failed here: {error}; "
                "bootstrap this host (playbooks/add_host.yml)"
            )
            return
        self.engine.applied.record(seq, outcome)
        self.engine.indexer.notify()

    def _stall(self, reason: str) -> None:
        self.stalled = reason
        log.error("replicated log: cannot go on: %s", reason)

    # ---------------------------------------------------------------- submit
    def submit(self, mutation: dict[str, Any], key: str | None) -> tuple[dict[str, Any], int, bool]:
        if self.stalled:
            raise Unavailable(f"this host cannot apply the log: {self.stalled}", retry_after=30)
        asked = fingerprint(mutation) if key is not None else None
        entry = {"ts": time.time(), "m": mutation} | ({"f": asked} if asked else {})
        data = orjson.dumps(entry)
        message_id = key or uuid.uuid4().hex
        try:
            ack = self._call_soon(self._publish(data, message_id)).result(
                self.settings.publish_timeout_seconds + 1
            )
        except Exception as error:
            raise Unavailable(
                "the replicated log did not take the write (no quorum, or unreachable: "
                f"{error or type(error).__name__}); nothing was applied. Retry, with the same "
                "Idempotency-Key if you sent one",
                retry_after=2,
            ) from None
        seq, replayed = ack.seq, bool(ack.duplicate)
        wait = self.settings.apply_wait_seconds
        applied = self.engine.applied.wait_for(seq, min(FILL_AFTER, wait))
        if not applied:  # not delivered here yet: from the leader, then
            self._call_soon(self._fill_if_idle(seq))
            applied = self.engine.applied.wait_for(seq, max(wait - FILL_AFTER, 0))
        if not applied:
            raise Unavailable(
                f"the write is in the log (entry {seq}) but this host has not applied it within "
                f"{self.settings.apply_wait_seconds:g} s (applied: {self.engine.applied.seq}); "
                f"it will be: read it with X-CodeGraph-Min-Seq: {seq}",
                retry_after=2,
            )
        return self.engine.applied.outcome(seq, retry_of=asked if replayed else None), seq, replayed

    async def _publish(self, data: bytes, message_id: str) -> Any:
        if self._js is None or not self._nc.is_connected:
            raise ConnectionError("not connected")
        return await self._js.publish(
            self.settings.subject,
            data,
            stream=self.settings.stream,
            timeout=self.settings.publish_timeout_seconds,
            headers={"Nats-Msg-Id": message_id},
        )

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
            if self.engine.applied.seq >= state.last_seq:
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
        behind = max(self.stream.last_seq - self.engine.applied.seq, 0)
        return behind, (time.monotonic() - self._caught_up_at) if behind else 0.0

    def ready(self) -> tuple[bool, str]:
        applied = self.engine.applied.seq
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
            "applied_seq": self.engine.applied.seq,
            "lag_entries": behind,
            "lag_seconds": round(seconds, 3),
            "reachable": self.reachable(),
            "stalled": self.stalled or None,
            "refused_entries": self.refused,
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
