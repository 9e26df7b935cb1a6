"""Restart time with a 1 GB operation-log segment against an empty one (goal <= 1.2x).

The same data directory restarted with an empty operation log (the baseline) and with
about 1 GB of upserts of 1,000 nodes in today's segment (written by the service's own
OpLog, as a day of heavy writes leaves it), five times each, interleaved. A restart is
timed from process start to /health answering 200; medians are compared. Peak memory
once healthy is read too: the newest segment used to be read whole at start.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import orjson
from common import Server, record, save

from codegraph.store.oplog import OpLog

TARGET_BYTES = 1 << 30
RESTARTS = 5


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) * 1024


def _fill_log(path: Path) -> tuple[int, int]:
    """Append upserts of 1,000 nodes until the newest segment holds TARGET_BYTES."""
    log = OpLog(path, retention_days=35, sync=False)
    batch = {"op": "upsert", "nodes": [record(i) for i in range(1000)], "edges": []}
    size = len(orjson.dumps(batch))
    appended = 0
    while log.size_bytes() < TARGET_BYTES:
        for _ in range(256):
            log.append(time.time(), batch)
        appended += 256
    log.close()
    return appended, size


def main() -> None:
    server = Server()
    with server.client() as http:  # some data, so the start is not of an empty store
        for start in range(0, 20_000, 1000):
            http.post("/nodes", json={"nodes": [record(i) for i in range(start, start + 1000)]})
    server.stop(remove=False)
    oplog = server.root / "data" / "oplog"
    big, empty = oplog.with_name("oplog.big"), oplog.with_name("oplog.empty")
    filled = time.monotonic()
    entries, entry_bytes = _fill_log(big)
    filled = time.monotonic() - filled
    segments = sorted(big.glob("*.log"))
    segment_bytes = segments[-1].stat().st_size
    os.sync()  # nothing left to write back while restarts are timed
    oplog.rename(empty)
    for segment in empty.glob("*"):
        segment.unlink()  # the writes above: the baseline's log is empty
    # Interleaved, so drift of this machine falls on both alike: the service's log
    # directory is the empty one, then the 1 GB one, and so on.
    timings: dict[str, list[tuple[float, int]]] = {"empty": [], "big": []}
    for _ in range(RESTARTS):
        for name, source in (("empty", empty), ("big", big)):
            source.rename(oplog)
            seconds = server.start()
            timings[name].append((seconds, _peak_rss(server.process.pid)))
            server.stop(remove=False)
            oplog.rename(source)
    big.rename(oplog)
    server.start()
    with server.client() as http:
        stats = http.get("/stats").json()
    server.stop()
    empty_seconds = statistics.median(seconds for seconds, _ in timings["empty"])
    big_seconds = statistics.median(seconds for seconds, _ in timings["big"])
    save(
        "restart",
        {
            "restarts_each": RESTARTS,
            "empty_log_seconds": round(empty_seconds, 3),
            "big_log_seconds": round(big_seconds, 3),
            "ratio": round(big_seconds / empty_seconds, 2),
            "goal": "<= 1.2x",
            "segment_bytes": segment_bytes,
            "segments": len(segments),
            "entries": entries,
            "entry_bytes": entry_bytes,
            "last_lsn_after_restart": stats["oplog"]["last_lsn"],
            "fill_seconds": round(filled, 1),
            "peak_rss_empty_log": max(peak for _, peak in timings["empty"]),
            "peak_rss_big_log": max(peak for _, peak in timings["big"]),
        },
    )


if __name__ == "__main__":
    main()
