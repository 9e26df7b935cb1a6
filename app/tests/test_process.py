"""The real process: durability under kill -9, the admin CLI beside it, metrics over TLS."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, start_server

pytestmark = pytest.mark.slow
ADMIN = str(Path(sys.executable).with_name("codegraph-admin"))


def admin(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ADMIN, "--config", str(config), *args], capture_output=True, text=True, timeout=300
    )


def test_acknowledged_writes_survive_kill_9(tmp_path):
    served = start_server(tmp_path, tls=False)
    acknowledged: list[str] = []
    stop = threading.Event()

    def ingest() -> None:
        with served.client() as http:
            batch = 0
            while not stop.is_set():
                ids = [f"k9:{batch:05d}:{i:03d}" for i in range(200)]
                try:
                    response = http.post(
                        "/nodes",
                        json={
                            "nodes": [
                                {"id": node_id, "kind": "function", "name": "n", "text": "x" * 200}
                                for node_id in ids
                            ]
                        },
                    )
                except httpx.TransportError:
                    return  # the server died mid-request: not acknowledged
                if response.status_code == 200:
                    acknowledged.extend(ids)
                batch += 1

    writer = threading.Thread(target=ingest)
    writer.start()
    while len(acknowledged) < 4000:
        assert writer.is_alive()
        threading.Event().wait(0.02)
    served.process.send_signal(signal.SIGKILL)  # mid-ingest
    served.process.wait(10)
    stop.set()
    writer.join()

    restarted = start_server(tmp_path, tls=False)
    try:
        with restarted.client() as http:
            total = http.get("/stats").json()["total_nodes"]
            assert total >= len(acknowledged)
            missing = [
                node_id
                for node_id in acknowledged[::97] + acknowledged[-200:]
                if http.get(f"/nodes/{node_id}").status_code != 200
            ]
            assert not missing
            listed, cursor = set(), None
            while True:
                page = http.get(
                    "/nodes", params={"limit": 1000, **({"cursor": cursor} if cursor else {})}
                ).json()
                listed.update(node["id"] for node in page["nodes"])
                if not (cursor := page["next_cursor"]):
                    break
            assert set(acknowledged) <= listed
            assert http.post("/integrity/check").json()["status"] == "ok"
    finally:
        restarted.stop()


def test_admin_refuses_while_the_service_runs_and_works_once_stopped(served):
    with served.client() as http:
        http.post(
            "/nodes",
            json={"nodes": [{"id": f"a:{i}", "kind": "class", "name": f"A{i}"} for i in range(20)]},
        )
    busy = admin(served.config_path, "stats")
    assert busy.returncode == 3 and "in use by another process" in busy.stderr
    assert "systemctl stop codegraph" in busy.stderr
    assert served.stop() in (0, -signal.SIGTERM)  # systemd counts SIGTERM as a clean stop
    assert "codegraph.server: stopped" in served.log()  # the engine closed cleanly

    stats = admin(served.config_path, "stats")
    assert stats.returncode == 0 and '"total_nodes": 20' in stats.stdout
    backup = admin(served.config_path, "backup")
    assert backup.returncode == 0, backup.stderr
    backup_id = next(
        line.split('"')[3] for line in backup.stdout.splitlines() if '"backup_id"' in line
    )
    assert admin(served.config_path, "verify").returncode == 0
    assert admin(served.config_path, "verify", "--backup", backup_id).returncode == 0
    assert admin(served.config_path, "compact").returncode == 0
    assert backup_id in admin(served.config_path, "backups").stdout
    restored = admin(served.config_path, "restore", backup_id)
    assert restored.returncode == 0 and '"status": "restored"' in restored.stdout
    unknown = admin(served.config_path, "restore", "20260101T000000Z-000000")
    assert unknown.returncode == 1 and "no backup" in unknown.stderr


def test_metrics_over_tls_name_everything_the_runbook_lists(served):
    with served.client() as http:
        http.post("/nodes", json={"nodes": [{"id": "m:1", "kind": "function", "name": "f"}]})
        http.get("/search", params={"q": "f", "mode": "hybrid"})
        http.post("/parse", json={"files": [{"path": "a.py", "content": "def f():\n  pass\n"}]})
        http.post("/maintenance/compact")
        http.post("/backup")
    with served.client(key=None) as anonymous:
        anonymous.get("/stats")
    import ssl

    context = ssl.create_default_context(cafile=str(served.ca_file))
    text = httpx.get(f"https://localhost:{served.metrics_port}/metrics", verify=context).text
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_requests_concurrent",
        "codegraph_nodes_total",
        "codegraph_search_queries_total",
        "codegraph_parse_operations_total",
        "codegraph_vector_search_duration_seconds_bucket",
        "codegraph_rocksdb_compaction_duration_seconds_bucket",
        "codegraph_memory_usage_bytes",
        "codegraph_backup_last_success_timestamp_seconds",
        "codegraph_auth_failures_total",
        "codegraph_build_info",
        "codegraph_vector_index_lag_seconds",
        "codegraph_tls_certificate_expiry_timestamp_seconds",
        "codegraph_rocksdb_pending_compaction_bytes",
        "codegraph_rocksdb_block_cache_hits_total",
        "process_start_time_seconds",
    ):
        assert f"\n{name}" in text, name
    assert (
        'http_requests_total{code="200",handler="/nodes/{node_id:path}",method="GET"}' in text
        or 'handler="/nodes"' in text
    )
    assert "codegraph_auth_failures_total 1.0" in text
    assert API_KEY not in text
