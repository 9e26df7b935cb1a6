"""Parsing in a process of its own, bounded in time and memory.

Parsing untrusted source is the service's most expensive work per byte: a 4 MB file
takes seconds of CPU inside the parser, which holds the GIL all along (so /health
would wait), and deeply nested code can exhaust the parser's stack or memory. In a
separate process the server's threads keep running, a parse that overruns its time is
killed, one that runs out of its address-space limit dies alone, and either way the
next request gets a fresh process.

The worker is `python -m codegraph.parse MEMORY_BYTES` (parse/__main__.py); requests and answers
are length-prefixed JSON on its stdin and stdout (JSON, not pickle: the parent never
runs what the child sends).
"""

from __future__ import annotations

import logging
import os
import resource
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Any, BinaryIO

import orjson

from codegraph.errors import InvalidInput, TooLarge, Unavailable

log = logging.getLogger("codegraph.parse")

Batch = dict[str, list[tuple[str, str]]]  # language -> (path, source)
Result = dict[str, tuple[list[dict], list[dict]]]  # language -> (nodes, edges)
_LENGTH = struct.Struct("<Q")


def _write_frame(stream: BinaryIO, value: Any) -> None:
    data = orjson.dumps(value)
    stream.write(_LENGTH.pack(len(data)) + data)
    stream.flush()


def _read_frame(stream: BinaryIO) -> Any | None:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    return orjson.loads(stream.read(_LENGTH.unpack(header)[0]))


def serve(memory_bytes: int, parsers: dict[str, Any]) -> None:
    """The worker: parse each batch it is sent with parsers (language -> parser); answer
    ["ok", result], or ["invalid" or "too_large", why]."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while (batch := _read_frame(requests)) is not None:
        try:
            result = {language: parsers[language](files) for language, files in batch.items()}
        except InvalidInput as error:
            _write_frame(answers, ["invalid", str(error)])
        except MemoryError:
            _write_frame(answers, ["too_large", f"parsing needed more than {memory_bytes} bytes"])
            return  # a fresh process for the next batch
        else:
            _write_frame(answers, ["ok", result])


class ParseWorker:
    """One worker process, started on first use and replaced after a failure."""

    def __init__(self, *, timeout: float, memory_bytes: int) -> None:
        self.timeout = timeout
        self.memory_bytes = memory_bytes
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def parse(self, batch: Batch) -> Result:
        if not self._lock.acquire(timeout=self.timeout):
            raise Unavailable("the parser is busy with other requests; retry shortly")
        try:
            deadline = time.monotonic() + self.timeout
            try:
                process = self._running()
                _write_frame(process.stdin, batch)
                (length,) = _LENGTH.unpack(self._read(_LENGTH.size, deadline))
                status, payload = orjson.loads(self._read(length, deadline))
            except TimeoutError:
                self._stop()
                raise TooLarge(
                    f"parsing took longer than {self.timeout:g} s and was stopped "
                    "(server.parse_timeout_seconds); send fewer or smaller files"
                ) from None
            except (OSError, EOFError):  # it died where no MemoryError could tell
                self._stop()
                raise TooLarge(
                    f"parsing needed more than {self.memory_bytes} bytes of memory and was "
                    "stopped (server.parse_memory_bytes); send fewer or smaller files"
                ) from None
        finally:
            self._lock.release()
        if status == "ok":
            return {language: (nodes, edges) for language, (nodes, edges) in payload.items()}
        if status == "too_large":
            self._stop()
            raise TooLarge(
                f"{payload} of memory and was stopped (server.parse_memory_bytes); "
                "send fewer or smaller files"
            )
        raise InvalidInput(payload)

    def _read(self, wanted: int, deadline: float) -> bytes:
        """Exactly `wanted` bytes of the worker's answer, waiting no later than deadline."""
        descriptor = self._process.stdout.fileno()
        chunks, missing = [], wanted
        while missing:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([descriptor], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(descriptor, min(missing, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)

    def _running(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._stop()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "codegraph.parse", str(self.memory_bytes)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,  # read with os.read, never through its buffer
            )
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(5)
        process.stdin.close()
        process.stdout.close()
        log.info("parse worker stopped (exit code %s)", process.returncode)

    def close(self) -> None:
        with self._lock:
            self._stop()
