"""Shared by the benchmarks: a scratch CodeGraph server, records, and result files.

Each benchmark writes bench/results/<name>.json; bench/report.py turns them into
docs/benchmarks.md. Every goal is a ratio against a baseline measured in the same
run, on the same machine, so the machine's noise cancels out as far as it can.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

TOP = Path(__file__).resolve().parent.parent
RESULTS = TOP / "bench" / "results"
API_KEY = "bench-" + "k" * 32
BIN = Path(sys.executable).parent


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine(), **data}, indent=2))
    print(json.dumps(data, indent=2))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def record(index: int, text_size: int = 200) -> dict[str, Any]:
    """A node the size of a typical parsed function."""
    return {
        "id": f"function:src/pkg{index % 100}/mod{index % 1000}.py:handler_{index}",
        "kind": "function",
        "name": f"handler_{index}",
        "qualified_name": f"pkg{index % 100}.mod{index % 1000}.handler_{index}",
        "path": f"src/pkg{index % 100}/mod{index % 1000}.py",
        "language": "python",
        "start_line": 10 + index % 500,
        "end_line": 30 + index % 500,
        "text": (f"def handler_{index}(request, context): return process(request) " * 8)[
            :text_size
        ],
    }


class Server:
    """codegraph-api on loopback (plain HTTP), on a scratch data directory."""

    def __init__(self, **database: Any) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="codegraph-bench-"))
        self.port, self.metrics_port = free_port(), free_port()
        (self.root / "config").mkdir()
        (self.root / "config" / ".env").write_text(f"CODEGRAPH_API_KEY={API_KEY}\n")
        options = "".join(f"{key} = {json.dumps(value)}\n" for key, value in database.items())
        (self.root / "config" / "codegraph.toml").write_text(f"""
[server]
host = "127.0.0.1"
port = {self.port}
metrics_port = {self.metrics_port}
log_level = "warning"
[auth]
keys_file = "{self.root}/config/.env"
[database]
path = "{self.root}/data/rocksdb"
{options}
[vector]
path = "{self.root}/data/vector"
[backup]
dir = "{self.root}/backups"
[oplog]
path = "{self.root}/data/oplog"
""")
        self.url = f"http://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> float:
        """Start the process on this data directory; seconds until /health answers 200."""
        started = time.monotonic()
        self.process = subprocess.Popen(
            [str(BIN / "codegraph-api"), "--config", str(self.root / "config" / "codegraph.toml")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.root / "stderr.log", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError((self.root / "stderr.log").read_text())
            time.sleep(0.02)

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=600
        )

    def wait_until_indexed(self) -> None:
        """Until the background vector indexer has applied every write (so a
        measurement that follows does not share the CPU with it)."""
        with self.client() as http:
            while http.get("/vector/index/stats").json()["lag"]["operations"]:
                time.sleep(1)

    def stop(self, *, remove: bool = True) -> None:
        """Stop the process; remove its data directory unless told to keep it."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def wrk(
    url: str,
    *,
    seconds: int = 10,
    connections: int = 32,
    script: str | None = None,
    headers: dict[str, str] | None = None,
) -> float:
    """Requests per second measured by wrk (one thread: the other core serves)."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        raise RuntimeError(f"wrk saw errors:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
