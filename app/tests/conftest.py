"""Shared fixtures: settings on a temporary data directory, an engine, an
in-process API client, and a real `codegraph-api` process serving TLS."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from fastapi.testclient import TestClient

from codegraph.api.app import create_app
from codegraph.auth import ApiKeys
from codegraph.engine import Engine
from codegraph.settings import Settings, parse_settings

API_KEY = "test-key-" + "0" * 24
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DIMENSION = 32


def config_for(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A configuration whose every path is under root; sections override keys."""
    config: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1"},
        "auth": {"keys_file": str(root / "config" / ".env")},
        "database": {"path": str(root / "data" / "rocksdb"), "block_cache_size": 16 << 20},
        "vector": {"path": str(root / "data" / "vector"), "dimension": DIMENSION},
        "backup": {"dir": str(root / "backups"), "keep": 30},
        "oplog": {"path": str(root / "data" / "oplog")},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    keys = root / "config" / ".env"
    keys.parent.mkdir(parents=True, exist_ok=True)
    if not keys.exists():
        keys.write_text(f"CODEGRAPH_API_KEY={API_KEY}\n")
    return config


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return parse_settings(config_for(tmp_path, server={"max_request_bytes": 1 << 20}))


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = Engine(settings)
    yield engine
    if engine.gate.closed_for is None:
        engine.close()


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    app = create_app(engine, ApiKeys(settings.auth.keys_file))
    with TestClient(app, headers=AUTH) as test_client:
        yield test_client


def node(node_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "kind": fields.pop("kind", "function"),
        "name": fields.pop("name", node_id.rsplit(":", 1)[-1]),
        **fields,
    }


def wait_for_index(engine: Engine, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while engine.indexer.lag()["operations"] or engine.indexer.is_rebuilding():
        assert time.monotonic() < deadline, "vector index did not catch up"
        time.sleep(0.02)


# ------------------------------------------------------------- real servers
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """A running codegraph-api process."""

    root: Path
    config_path: Path
    port: int
    metrics_port: int
    process: subprocess.Popen
    ca_file: Path | None
    log_path: Path

    @property
    def scheme(self) -> str:
        return "https" if self.ca_file else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.port}"

    def client(self, key: str | None = API_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        verify = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else False
        return httpx.Client(base_url=self.url, headers=headers, verify=verify, timeout=60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        return self.process.returncode


def start_server(
    root: Path, *, tls: bool = True, env: dict[str, str] | None = None, **sections: dict[str, Any]
) -> Served:
    """A codegraph-api process under root (env: more environment variables)."""
    import tomli_w

    port, metrics_port = free_port(), free_port()
    server: dict[str, Any] = {
        "port": port,
        "metrics_port": metrics_port,
        "log_file": str(root / "logs" / "codegraph.log"),
    }
    ca_file = None
    if tls:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        (root / "config").mkdir(parents=True, exist_ok=True)
        cert.private_key_pem.write_to_path(str(root / "config" / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(root / "config" / "server.crt"))
        ca_file = root / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        server |= {
            "tls_cert": str(root / "config" / "server.crt"),
            "tls_key": str(root / "config" / "server.key"),
        }
    (root / "logs").mkdir(parents=True, exist_ok=True)
    config = config_for(root, server=server | sections.pop("server", {}), **sections)
    config_path = root / "config" / "codegraph.toml"
    config_path.write_text(tomli_w.dumps(config))
    log_path = root / "logs" / "stderr.log"
    with open(log_path, "ab") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("codegraph-api")), "--config", str(config_path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    served = Served(root, config_path, port, metrics_port, process, ca_file, log_path)
    wait_healthy(served)
    return served


def wait_healthy(served: Served, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with served.client(key=None) as http:
        while True:
            if served.process.poll() is not None:
                raise AssertionError(f"codegraph-api exited: {served.log()[-3000:]}")
            try:
                if http.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not healthy in time: {served.log()[-3000:]}"
            time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = start_server(tmp_path)
    yield server
    server.stop()
