"""Every curl call of the runbook, run by bash against a real codegraph-api over TLS.

The commands are the runbook's text; only the ports are those of the test
server. curl verifies the server certificate against the test CA
(CURL_CA_BUNDLE), just as it would against the fleet CA installed on a host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import API_KEY, Served

pytestmark = pytest.mark.slow


def run(served: Served, script: str, **env: str) -> subprocess.CompletedProcess:
    for tool in ("curl", "jq"):
        assert shutil.which(tool), f"{tool} is needed (make test installs it)"
    script = script.replace("localhost:8080", f"localhost:{served.port}")
    script = script.replace("localhost:9090", f"localhost:{served.metrics_port}")
    return subprocess.run(
        ["bash", "-c", "set -o pipefail\n" + script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CURL_CA_BUNDLE": str(served.ca_file), "API_KEY": API_KEY, **env},
    )


def ok(served: Served, script: str, **env: str) -> str:
    result = run(served, script, **env)
    assert result.returncode == 0, f"{script}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_daily_checks_and_performance_review(served):
    with served.client() as http:
        http.post("/nodes", json={"nodes": [{"id": "f:1", "kind": "function", "name": "parse"}]})
        http.get("/nodes/missing")  # a 404, for the error-rate grep
    assert (
        ok(
            served,
            """
response=$(curl -s -o /dev/null -w "%{http_code}" https://localhost:8080/health)
[ "$response" = "200" ]""",
        )
        == ""
    )
    stats = ok(
        served,
        """curl -s -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/stats/rocksdb""",
    )
    assert "compaction_stats" in json.loads(stats)
    assert "http_request_duration_seconds_bucket" in ok(
        served, "curl -s https://localhost:9090/metrics | grep http_request_duration_seconds"
    )
    assert "http_requests_total" in ok(
        served, "curl -s https://localhost:9090/metrics | grep http_requests_total"
    )
    errors = ok(
        served,
        """curl -s https://localhost:9090/metrics | grep http_requests_total | grep -v '="200"' """,
    )
    assert 'code="404"' in errors
    timings = ok(
        served,
        """
for endpoint in /health /search /nodes; do
time=$(curl -o /dev/null -s -w "%{time_total}" https://localhost:8080$endpoint)
echo " $endpoint: ${time}s"
done""",
    )
    assert timings.count("s\n") == 3
    compaction = ok(
        served,
        """curl -s -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/stats/rocksdb | jq '.compaction_stats' """,
    )
    assert "files_per_level" in json.loads(compaction)
    assert "latency" in json.loads(
        ok(
            served,
            """curl -s -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/vector/performance""",
        )
    )
    assert (
        json.loads(
            ok(
                served,
                """curl -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/vector/index/stats""",
            )
        )["index_type"]
        == "HNSW"
    )
    node_count = ok(
        served,
        """curl -s -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/stats | jq '.total_nodes' """,
    )
    assert node_count.strip() == "1"


def test_vector_rebuild_as_the_runbook_sends_it(served):
    body = ok(
        served,
        """curl -X POST \\
-H "Authorization: Bearer $API_KEY" \\
-H "Content-Type: application/json" \\
-d '{
"index_type": "HNSW",
"parameters": {
"M": 16,
"efConstruction": 200,
"efSearch": 100
}
}' \\
https://localhost:8080/vector/index/rebuild""",
    )
    assert json.loads(body)["status"] == "started"


def test_backup_restore_and_point_in_time_calls(served):
    with served.client() as http:
        http.post("/nodes", json={"nodes": [{"id": "keep", "kind": "file", "name": "keep"}]})
    backup_id = ok(
        served,
        '''backup_id=$(curl -s -X POST \\
-H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/backup | jq -r '.backup_id')
[ "$backup_id" != "null" ] && echo "$backup_id"''',
    ).strip()
    ok(
        served,
        '''curl -s -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/stats/rocksdb > "$OUT"''',
        OUT=str(served.root / "db_stats.json"),
    )
    assert "compaction_stats" in json.loads((served.root / "db_stats.json").read_text())
    time.sleep(1.1)
    recovery_time = time.strftime("%Y-%m-%d %H:%M:%S")
    time.sleep(1.1)
    with served.client() as http:
        http.delete("/nodes/keep")
    pitr = ok(
        served,
        """curl -X POST \\
-H "Authorization: Bearer $API_KEY" \\
-H "Content-Type: application/json" \\
-d "{\\"recovery_time\\": \\"$RECOVERY_TIME\\"}" \\
https://localhost:8080/recovery/point-in-time""",
        RECOVERY_TIME=recovery_time,
    )
    assert json.loads(pitr)["status"] == "restored"
    with served.client() as http:
        assert http.get("/nodes/keep").status_code == 200
        http.delete("/nodes/keep")
    restored = ok(
        served,
        """curl -X POST \\
-H "Authorization: Bearer $API_KEY" \\
-H "Content-Type: application/json" \\
-d "{\\"backup_id\\": \\"$backup_id\\"}" \\
https://localhost:8080/backup/restore""",
        backup_id=backup_id,
    )
    assert json.loads(restored)["backup_id"] == backup_id
    integrity = ok(
        served,
        """curl -X POST -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/integrity/check""",
    )
    assert json.loads(integrity)["status"] == "ok"


def test_maintenance_window_calls(served):
    for path in ("maintenance/compact", "maintenance/analyze", "optimization/auto-tune"):
        body = ok(
            served,
            f"""curl -X POST -H "Authorization: Bearer $API_KEY" \\
https://localhost:8080/{path}""",
        )
        assert json.loads(body)
    ok(served, "curl -f https://localhost:8080/health > /dev/null")


def test_api_key_rotation_by_sighup(served):
    """The runbook's rotation: sed the key line, reload (SIGHUP), call with the new key."""
    env_file = served.root / "config" / ".env"
    new_key = "rotated-" + "k" * 30
    ok(
        served,
        '''sed -i "s/CODEGRAPH_API_KEY=.*/CODEGRAPH_API_KEY=$NEW_API_KEY/" "$ENV_FILE"
kill -HUP "$PID"
sleep 0.5
response=$(curl -s -H "Authorization: Bearer $NEW_API_KEY" \\
https://localhost:8080/health)
echo "$response" | grep -q "healthy"''',
        NEW_API_KEY=new_key,
        ENV_FILE=str(env_file),
        PID=str(served.process.pid),
    )
    with served.client(new_key) as http:
        assert http.get("/stats").status_code == 200
    with served.client() as http:
        assert http.get("/stats").status_code == 401  # the old key is gone
    assert "API keys reloaded" in served.log()
    assert served.process.poll() is None  # reloaded, not restarted

    # A dual-key window: the new key primary, the previous still accepted.
    env_file.write_text(
        f"CODEGRAPH_API_KEY=third-{'k' * 30}\nCODEGRAPH_API_KEYS_PREVIOUS={new_key}\n"
    )
    served.process.send_signal(1)
    time.sleep(0.5)
    for key in (new_key, "third-" + "k" * 30):
        with served.client(key) as http:
            assert http.get("/stats").status_code == 200
    # An unusable keys file keeps the keys in force.
    env_file.write_text("# emptied by mistake\n")
    served.process.send_signal(1)
    time.sleep(0.5)
    with served.client(new_key) as http:
        assert http.get("/stats").status_code == 200
    assert "keys not reloaded" in served.log()
    assert new_key not in served.log() and API_KEY not in served.log()
