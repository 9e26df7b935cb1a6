"""The operation log: every mutation, in order, outside the database directory.

A restore replaces the database directory but never this log, so point-in-time
recovery can replay it on top of any backup. Records are framed as
``length (4 bytes) | crc32 (4 bytes) | JSON``; a torn record at the end of the
newest segment (a crash mid-append) is cut off when the log is opened.
A segment holds the records of one UTC day and is named by its first LSN.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_HEADER = struct.Struct("<II")


@dataclass(frozen=True)
class Entry:
    lsn: int
    ts: float
    mutation: dict[str, Any]


def _day(ts: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(ts))


def _scan(path: Path) -> tuple[list[Entry], int]:
    """Good records of one segment and the byte offset where they end."""
    data = path.read_bytes()
    entries: list[Entry] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start, end = offset + _HEADER.size, offset + _HEADER.size + length
        payload = data[start:end]
        if end > len(data) or zlib.crc32(payload) != crc:
            break
        record = orjson.loads(payload)
        entries.append(Entry(record["lsn"], record["ts"], record["m"]))
        offset = end
    return entries, offset


class OpLog:
    def __init__(self, path: str | Path, *, retention_days: int, sync: bool) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.retention_seconds = retention_days * 86400
        self.sync = sync
        self._lock = threading.Lock()
        self._file = None
        self._file_day = ""
        self.last_lsn = 0
        self.last_ts = 0.0
        segments = self.segments()
        if segments:
            newest = segments[-1]
            entries, good_end = _scan(newest)
            if good_end < newest.stat().st_size:  # torn tail from a crash
                with open(newest, "r+b") as handle:
                    handle.truncate(good_end)
            if entries:
                self.last_lsn, self.last_ts = entries[-1].lsn, entries[-1].ts
            else:
                self.last_lsn = int(newest.stem) - 1
            self._file = open(newest, "ab")  # noqa: SIM115 (kept open for appends)
            self._file_day = _day(entries[0].ts) if entries else _day(time.time())

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.log"))

    def append(self, ts: float, mutation: dict[str, Any]) -> int:
        """Write one mutation; return its LSN once it is on disk (fsync'ed if sync)."""
        with self._lock:
            lsn = self.last_lsn + 1
            payload = orjson.dumps({"lsn": lsn, "ts": ts, "m": mutation})
            if self._file is None or _day(ts) != self._file_day:
                self._roll(lsn, ts)
            self._file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
            self._file.flush()
            if self.sync:
                os.fdatasync(self._file.fileno())
            self.last_lsn, self.last_ts = lsn, ts
            return lsn

    def _roll(self, first_lsn: int, ts: float) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.dir / f"{first_lsn:020d}.log", "ab")  # noqa: SIM115
        self._file_day = _day(ts)
        if self.sync:
            directory = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def read(self, after_lsn: int = 0) -> Iterator[Entry]:
        """Every entry with an LSN greater than after_lsn, in order."""
        segments = self.segments()
        for index, segment in enumerate(segments):
            following = segments[index + 1] if index + 1 < len(segments) else None
            if following is not None and int(following.stem) <= after_lsn + 1:
                continue  # every record in this segment is at or before after_lsn
            entries, _ = _scan(segment)
            for entry in entries:
                if entry.lsn > after_lsn:
                    yield entry

    def first_lsn(self) -> int:
        segments = self.segments()
        return int(segments[0].stem) if segments else self.last_lsn + 1

    def prune(self, now: float | None = None) -> list[Path]:
        """Delete whole segments last written to more than retention_days ago."""
        cutoff = (now or time.time()) - self.retention_seconds
        removed = []
        with self._lock:
            for segment in self.segments()[:-1]:  # never the segment being written
                if segment.stat().st_mtime < cutoff:
                    segment.unlink()
                    removed.append(segment)
        return removed

    def size_bytes(self) -> int:
        return sum(segment.stat().st_size for segment in self.segments())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
