"""The background indexer: keeps the vector index in step with the store.

Writes never wait for the index. Each node change puts an entry on the store's
vector queue in the same atomic batch; this thread applies the queue to the
index, saves the index now and then, and only then trims the queue, so a crash
at any point is recovered by replaying the queue from the saved index's seq. A
backup links the saved file beside a checkpoint and is restored the same way.
Rebuilds run beside it: queries keep using the old index until the new one has
caught up and is swapped in.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import orjson

from codegraph.errors import CodeGraphError, Conflict
from codegraph.store.graph import GraphStore, iso
from codegraph.vector.embed import embed_record, normalize
from codegraph.vector.index import IndexParams, VectorIndex

log = logging.getLogger("codegraph.indexer")

SAVE_INTERVAL_SECONDS = 300
CHUNK = 256  # vectors added per index lock: searches wait at most this long
# While writes stream in (one came within WRITE_RECENT_SECONDS), the indexer rests
# WRITE_YIELD_FACTOR times as long as it worked: a bulk load gets the CPU, the index
# catches up when it ends (the lag stays visible in /stats and the lag alert).
WRITE_RECENT_SECONDS = 0.2
WRITE_YIELD_FACTOR = 4
RECALL_SAMPLE_EVERY = 50  # one query in this many is re-run exactly to measure recall


class SearchStats:
    """Recent vector-search latencies and sampled recall, for /vector/performance."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies: deque[tuple[float, float]] = deque(maxlen=10_000)
        self.recalls: deque[float] = deque(maxlen=500)
        self.total = 0

    def record(self, seconds: float) -> bool:
        """Note one search; True when this one should be sampled for recall."""
        with self._lock:
            self.latencies.append((time.monotonic(), seconds))
            self.total += 1
            return self.total % RECALL_SAMPLE_EVERY == 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            latencies = list(self.latencies)
            recalls = list(self.recalls)
        now = time.monotonic()
        last_minute = [seconds for at, seconds in latencies if now - at <= 60]
        values = np.array([seconds for _, seconds in latencies]) * 1000
        percentiles = (
            {f"p{q}_ms": round(float(np.percentile(values, q)), 3) for q in (50, 95, 99)}
            if len(values)
            else {"p50_ms": None, "p95_ms": None, "p99_ms": None}
        )
        return {
            "searches_total": self.total,
            "window_searches": len(latencies),
            "qps_last_minute": round(len(last_minute) / 60, 3),
            "latency": percentiles,
            "recall_at_k": round(float(np.mean(recalls)), 4) if recalls else None,
            "recall_samples": len(recalls),
        }


class Indexer:
    def __init__(
        self,
        store: GraphStore,
        params: IndexParams,
        path: str | Path,
        *,
        on_error: Callable[[], None] = lambda: None,
    ) -> None:
        faiss.omp_set_num_threads(1)  # leave the other core to request handling
        self.store = store
        self.configured = params
        self.path = Path(path)
        self.on_error = on_error
        self.pause_lock = threading.RLock()  # held while the index changes
        self.stats = SearchStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rebuild_thread: threading.Thread | None = None
        self._cancel_rebuild = threading.Event()
        self._rebuild_floor: int | None = None  # queue entries a running rebuild still needs
        self._recall_samples: deque[tuple[np.ndarray, list[str], int]] = deque(maxlen=20)
        self._saved_seq = 0
        self._saved_at = time.monotonic()
        self._file_saved = False  # a readable index file at path
        self._publish_lock = threading.Lock()  # a save's rename and queue trim, or a backup
        self._caught_up_at = time.monotonic()
        self._last_write = 0.0
        self.rebuild_status: dict[str, Any] = {"state": "idle"}
        self._pending_rebuild: IndexParams | None = None  # decided at open, run at start
        self.index = self._open_index()

    # ------------------------------------------------------------ lifecycle
    def _open_index(self) -> VectorIndex:
        wanted = self.configured
        if self.path.exists():
            try:
                index = VectorIndex.load(self.path)
            except Exception:
                log.exception("vector index at %s is unreadable; rebuilding", self.path)
            else:
                self._saved_seq, self._file_saved = index.seq, True
                index.ef_search = wanted.efSearch
                if replace(index.params, efSearch=wanted.efSearch) != wanted:
                    log.info("vector index parameters changed; rebuilding in the background")
                    self._pending_rebuild = wanted
                else:
                    self._pending_rebuild = None
                return index
        self._pending_rebuild = wanted if self.store.counters["nodes_total"] else None
        return VectorIndex(wanted)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vector-indexer", daemon=True)
        self._thread.start()
        if self._pending_rebuild is not None:
            params, self._pending_rebuild = self._pending_rebuild, None
            self.rebuild(params)

    def stop(self, *, save: bool = True) -> None:
        self.cancel_rebuild()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if save:
            self.save()

    def notify(self) -> None:
        """A write happened: there is work, but writes come first while they stream in."""
        self._last_write = time.monotonic()
        self._wake.set()

    # ----------------------------------------------------------- main loop
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            try:
                while not self._stop.is_set():
                    started = time.monotonic()
                    with self.pause_lock:
                        applied = self._apply_pending(self.index, CHUNK)
                    if not applied:
                        self._caught_up_at = time.monotonic()
                        break
                    self._save_if_due()  # a long catch-up is saved as it goes, too
                    if time.monotonic() - self._last_write < WRITE_RECENT_SECONDS:
                        self._stop.wait((time.monotonic() - started) * WRITE_YIELD_FACTOR)
                self._measure_recall()
                self._save_if_due()
            except Exception:
                log.exception("vector indexer failed; retrying")
                self.on_error()
                self._stop.wait(1.0)

    def _apply_pending(self, index: VectorIndex, limit: int) -> int:
        entries = self.store.queue_after(index.seq, limit)
        if not entries:
            return 0
        ids = list(dict.fromkeys(node_id for _, batch in entries for node_id in batch))
        records = self.store.get_records(ids)
        changed = []
        for node_id, record in zip(ids, records, strict=True):
            if record is None:
                index.remove(node_id)
            elif index.version_of(node_id) != record["version"]:
                changed.append(record)
        self._add(index, changed)
        index.seq = entries[-1][0]
        return len(entries)

    def _add(self, index: VectorIndex, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), CHUNK):
            self._add_chunk(index, records[start : start + CHUNK])

    def _add_chunk(self, index: VectorIndex, records: list[dict[str, Any]]) -> None:
        rows, ids, versions = [], [], []
        dimension = index.params.dimension
        for record in records:
            if record["embedding_source"] == "client":
                vector, problem = self._client_vector(record["id"], dimension)
                if vector is None:
                    log.warning("node %r: %s; not indexed", record["id"], problem)
                    index.remove(record["id"])
                    continue
            else:
                vector = embed_record(record, dimension)
            rows.append(vector)
            ids.append(record["id"])
            versions.append(record["version"])
        if rows:
            index.upsert(ids, versions, np.vstack(rows))

    def _client_vector(self, node_id: str, dimension: int) -> tuple[np.ndarray | None, str]:
        """The unit vector of a client-supplied embedding, or None and why not."""
        stored = self.store.get_embedding(node_id)
        if stored is None:
            return None, "its embedding is missing from the store"
        if len(stored) != dimension:
            return None, f"its embedding has {len(stored)} values, the index {dimension}"
        if not np.isfinite(stored).all():
            return None, "its embedding holds values that are not finite"
        vector = normalize(stored)
        if vector is None:
            return None, "its embedding is all zeros"
        return vector, ""

    def cpu_seconds(self) -> float:
        """CPU time the background indexer thread has used since the store was opened
        (rebuilds run in threads of their own and are not counted)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return 0.0
        try:  # nanoseconds on a CPU come first (stat's ticks are too coarse)
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as handle:
                return round(int(handle.read().split()[0]) / 1e9, 3)
        except OSError:  # it ended just now
            return 0.0

    def lag(self) -> dict[str, float]:
        pending = max(self.store.counters["vq_seq"] - self.index.seq, 0)
        seconds = 0.0 if pending == 0 else time.monotonic() - self._caught_up_at
        return {"operations": pending, "seconds": round(seconds, 3)}

    # ---------------------------------------------------------------- save
    def save(self) -> None:
        with self.pause_lock:
            index = self.index
            written = self.path.with_name(self.path.name + ".tmp")
            index.write(written)
            floor = (
                index.seq if self._rebuild_floor is None else min(index.seq, self._rebuild_floor)
            )
            with self._publish_lock:  # not while a backup holds the file it replaces
                os.replace(written, self.path)
                self._saved_seq, self._saved_at = index.seq, time.monotonic()
                self._file_saved = True
                self.store.trim_queue(floor)

    def _save_if_due(self) -> None:
        if (
            self.index.seq != self._saved_seq
            and time.monotonic() - self._saved_at >= SAVE_INTERVAL_SECONDS
        ):
            self.save()

    @contextmanager
    def saved_file(self) -> Iterator[tuple[Path, int]]:
        """The index file as last saved and its queue position, for a backup. While the
        caller holds them, the queue entries the file lacks are not trimmed, so a
        checkpoint taken meanwhile holds them and a restore catches the index up. A
        backup thus never writes the index (seconds at a million vectors) nor waits for
        a save, unless no file was saved yet."""
        if not self._file_saved:
            with self.pause_lock:  # the indexer may be writing the first one
                if not self._file_saved:
                    self.save()
        with self._publish_lock:
            yield self.path, self._saved_seq

    # -------------------------------------------------------------- recall
    def sample(self, vector: np.ndarray, found: list[str], k: int) -> None:
        self._recall_samples.append((vector, found, k))
        self._wake.set()

    def _measure_recall(self) -> None:
        while self._recall_samples:
            vector, found, k = self._recall_samples.popleft()
            exact = [node_id for node_id, _, _ in self.index.search(vector, k, exact=True)]
            if exact:
                self.stats.recalls.append(len(set(found[:k]) & set(exact)) / len(exact))

    # ------------------------------------------------------------- rebuild
    def _new_rebuild_status(self, params: IndexParams) -> None:
        self._cancel_rebuild.clear()
        self.rebuild_status = {
            "state": "running",
            "parameters": params.__dict__,
            "started_at": iso(time.time()),
            "done": 0,
            "total": self.store.counters["nodes_total"],
            "progress": 0.0,
        }

    def catch_up(self, progress: Callable[[str], None] = lambda message: None) -> None:
        """Bring the index up to date now, in this thread (offline use, no background thread)."""
        if self._pending_rebuild is not None:
            params, self._pending_rebuild = self._pending_rebuild, None
            self._new_rebuild_status(params)
            progress(f"building the vector index ({self.rebuild_status['total']} nodes)...")
            self._rebuild(params)
            if self.rebuild_status["state"] != "completed":
                raise CodeGraphError(
                    f"vector index rebuild {self.rebuild_status['state']}: "
                    f"{self.rebuild_status.get('error', '')}"
                )
        with self.pause_lock:
            while self._apply_pending(self.index, 4 * CHUNK):
                pass

    def rebuild(self, params: IndexParams) -> dict[str, Any]:
        if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
            raise Conflict("a vector index rebuild is already running")
        self._new_rebuild_status(params)
        self._rebuild_thread = threading.Thread(
            target=self._rebuild, args=(params,), name="vector-rebuild", daemon=True
        )
        self._rebuild_thread.start()
        return dict(self.rebuild_status)

    def cancel_rebuild(self) -> None:
        self._cancel_rebuild.set()
        if self._rebuild_thread is not None:
            self._rebuild_thread.join()
            self._rebuild_thread = None

    def _rebuild(self, params: IndexParams) -> None:
        status = self.rebuild_status
        try:
            with self.pause_lock:
                start_seq = self.store.counters["vq_seq"]
                self._rebuild_floor = start_seq
            fresh = VectorIndex(params)
            fresh.seq = start_seq
            chunk = []
            for _, raw in self.store.scan("nodes", b""):
                chunk.append(orjson.loads(raw))
                if len(chunk) == CHUNK:
                    self._rebuild_step(fresh, chunk, status)
                    chunk = []
            self._rebuild_step(fresh, chunk, status)
            while self._apply_pending(fresh, 4 * CHUNK):  # catch up without pausing writers
                if self._cancel_rebuild.is_set():
                    raise _Cancelled
            with self.pause_lock:
                while self._apply_pending(fresh, 4 * CHUNK):
                    pass
                self.index = fresh
                self._rebuild_floor = None
                self.save()
            status.update(state="completed", finished_at=iso(time.time()), progress=1.0)
            log.info("vector index rebuilt: %d vectors", len(fresh.label_of))
        except _Cancelled:
            status.update(state="cancelled", finished_at=iso(time.time()))
        except Exception as error:
            log.exception("vector index rebuild failed")
            status.update(state="failed", error=str(error), finished_at=iso(time.time()))
        finally:
            self._rebuild_floor = None

    def _rebuild_step(self, fresh: VectorIndex, chunk: list[dict], status: dict) -> None:
        if self._cancel_rebuild.is_set():
            raise _Cancelled
        self._add(fresh, chunk)
        status["done"] += len(chunk)
        total = max(status["total"], status["done"], 1)
        status["progress"] = round(status["done"] / total, 4)

    def is_rebuilding(self) -> bool:
        return self._rebuild_thread is not None and self._rebuild_thread.is_alive()


class _Cancelled(Exception):
    pass
