"""The operation log: every mutation, in order, outside the database directory.

A restore replaces the database directory but never this log, so point-in-time
recovery can replay it on top of any backup. Records are framed as
``length (4 bytes) | crc32 (4 bytes) | JSON``; a torn record at the end of the
newest segment (a crash mid-append) is cut off when the log is opened.
A segment holds the records of one UTC day and is named by its first LSN.

Beside each segment, ``<first LSN>.idx`` holds a sparse index: the LSN and byte
offset of a record about every INDEX_EVERY_BYTES. Opening the log reads the newest
segment from its last indexed record only, so a start costs the same after a quiet
day as after a busy one; reading from an LSN seeks instead of scanning. The index is
a hint: an entry that does not point at the record it names is ignored, and a
segment without one (or written by an older version) is scanned once and indexed.
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
from typing import Any, BinaryIO

import orjson

# What the rest of the service may use (tests/test_layers.py holds it to this).
__all__ = ["Entry", "OpLog"]

_HEADER = struct.Struct("<II")
_INDEX_ENTRY = struct.Struct("<QQ")  # lsn, byte offset of its record
INDEX_EVERY_BYTES = 1 << 20
_READ_CHUNK = 1 << 20
_MAX_RECORD = 1 << 30  # a length past this is a corrupt header, not a record


@dataclass(frozen=True)
class Entry:
    lsn: int
    ts: float
    mutation: dict[str, Any]


def _day(ts: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(ts))


def _records(handle: BinaryIO, offset: int = 0) -> Iterator[tuple[Entry, int, int]]:
    """(entry, its offset, the offset after it) of each good record from offset on,
    read in chunks (constant memory); stops at the end or at a torn or corrupt record."""
    handle.seek(offset)
    buffer, start = b"", 0  # buffer[start:] holds the bytes at file offset `offset`
    while True:
        if len(buffer) - start < _HEADER.size:
            buffer, start = buffer[start:] + handle.read(_READ_CHUNK), 0
            if len(buffer) < _HEADER.size:
                return
        length, crc = _HEADER.unpack_from(buffer, start)
        if length > _MAX_RECORD:
            return
        end = start + _HEADER.size + length
        if end > len(buffer):
            buffer, start = buffer[start:] + handle.read(max(_READ_CHUNK, end - start)), 0
            end = _HEADER.size + length
            if end > len(buffer):
                return  # torn: the record was never written whole
        payload = buffer[start + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            return
        record = orjson.loads(payload)
        after = offset + (end - start)
        yield Entry(record["lsn"], record["ts"], record["m"]), offset, after
        offset, start = after, end


class _SparseIndex:
    """The (lsn, offset) hints of one segment, kept in memory and appended to its file."""

    def __init__(self, segment: Path) -> None:
        self.path = segment.with_suffix(".idx")
        self.entries: list[tuple[int, int]] = []
        if self.path.exists():
            data = self.path.read_bytes()
            usable = len(data) - len(data) % _INDEX_ENTRY.size
            self.entries = [entry for entry in _INDEX_ENTRY.iter_unpack(data[:usable])]
        self._file = None

    def add(self, lsn: int, offset: int) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 (kept open for appends)
        self.entries.append((lsn, offset))
        self._file.write(_INDEX_ENTRY.pack(lsn, offset))
        self._file.flush()  # a hint: never fsync'ed, checked when used

    def rewrite(self, entries: list[tuple[int, int]]) -> None:
        self.close()
        self.entries = entries
        self.path.write_bytes(b"".join(_INDEX_ENTRY.pack(*entry) for entry in entries))

    def last_offset(self) -> int:
        return self.entries[-1][1] if self.entries else 0

    def start_for(self, handle: BinaryIO, after_lsn: int) -> int:
        """The offset of the last hinted record at or before after_lsn + 1 that really
        is that record; 0 when none is."""
        for lsn, offset in reversed(self.entries):
            if lsn <= after_lsn + 1:
                found = next(_records(handle, offset), None)
                if found is not None and found[0].lsn == lsn:
                    return offset
        return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class OpLog:
    def __init__(self, path: str | Path, *, retention_days: int, sync: bool) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.retention_seconds = retention_days * 86400
        self.sync = sync
        self._lock = threading.Lock()
        self._file = None
        self._index: _SparseIndex | None = None
        self._file_day = ""
        self._size = 0  # bytes in the segment being written
        self.last_lsn = 0
        self.last_ts = 0.0
        segments = self.segments()
        if segments:
            self._open_newest(segments[-1])

    def _open_newest(self, newest: Path) -> None:
        """Find the newest segment's last good record from its last index hint, cut
        off a torn tail, and keep the segment open for appends."""
        index = _SparseIndex(newest)
        self.last_lsn = int(newest.stem) - 1
        with open(newest, "rb") as handle:
            first = next(_records(handle), None)
            start = index.start_for(handle, 1 << 62)
            good_end = start
            for entry, offset, after in _records(handle, start):
                self.last_lsn, self.last_ts, good_end = entry.lsn, entry.ts, after
                if offset - index.last_offset() >= INDEX_EVERY_BYTES:
                    index.add(entry.lsn, offset)  # a segment never indexed before
        if good_end < newest.stat().st_size:  # torn tail from a crash
            with open(newest, "r+b") as handle:
                handle.truncate(good_end)
            index.rewrite([entry for entry in index.entries if entry[1] < good_end])
        self._file = open(newest, "ab")  # noqa: SIM115 (kept open for appends)
        self._index, self._size = index, good_end
        self._file_day = _day(first[0].ts) if first else _day(time.time())

    def segments(self) -> list[Path]:
        return sorted(self.dir.glob("*.log"))

    def append(self, ts: float, mutation: dict[str, Any], lsn: int | None = None) -> int:
        """Write one mutation; return its LSN once it is on disk (fsync'ed if sync).

        The LSN is the next one, or the one given (a replicated log's sequence, which
        may skip the entries this host refused): it must be past the last."""
        with self._lock:
            if lsn is None:
                lsn = self.last_lsn + 1
            elif lsn <= self.last_lsn:
                raise ValueError(f"LSN {lsn} is not past the log's last, {self.last_lsn}")
            payload = orjson.dumps({"lsn": lsn, "ts": ts, "m": mutation})
            if self._file is None or _day(ts) != self._file_day:
                self._roll(lsn, ts)
            offset = self._size
            self._file.write(_HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
            self._file.flush()
            if self.sync:
                os.fdatasync(self._file.fileno())
            self._size += _HEADER.size + len(payload)
            if offset - self._index.last_offset() >= INDEX_EVERY_BYTES:
                self._index.add(lsn, offset)
            self.last_lsn, self.last_ts = lsn, ts
            return lsn

    def _roll(self, first_lsn: int, ts: float) -> None:
        if self._file is not None:
            self._file.close()
            self._index.close()
        segment = self.dir / f"{first_lsn:020d}.log"
        self._file = open(segment, "ab")  # noqa: SIM115
        self._index, self._size = _SparseIndex(segment), 0
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
        for position, segment in enumerate(segments):
            following = segments[position + 1] if position + 1 < len(segments) else None
            if following is not None and int(following.stem) <= after_lsn + 1:
                continue  # every record in this segment is at or before after_lsn
            with open(segment, "rb") as handle:
                start = _SparseIndex(segment).start_for(handle, after_lsn)
                for entry, _, _ in _records(handle, start):
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
                    segment.with_suffix(".idx").unlink(missing_ok=True)
                    removed.append(segment)
        return removed

    def size_bytes(self) -> int:
        return sum(segment.stat().st_size for segment in self.segments())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._index.close()
                self._file = None
