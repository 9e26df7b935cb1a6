"""A live Prometheus + Alertmanager beside a real CodeGraph host."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import testinfra

TOP = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(TOP / "scripts"))
import monitoring_refs  # noqa: E402

RECEIVER = """
import http.server, json
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open("/tmp/webhook.jsonl", "ab") as out:
            out.write(body.replace(b"\\n", b" ") + b"\\n")
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", 9999), Hook).serve_forever()
"""


@pytest.fixture(scope="module")
def ops():
    return testinfra.get_host("podman://cg-mon-ops")


@pytest.fixture(scope="module")
def app():
    return testinfra.get_host("podman://cg-mon-app")


@pytest.fixture(scope="module")
def api_key() -> str:
    return (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "api_key").read_text().strip()


def prometheus(ops, path: str) -> dict:
    return json.loads(ops.check_output(f"curl -sS 'http://localhost:9090{path}'"))["data"]


def query(ops, promql: str) -> list[dict]:
    return prometheus(ops, f"/api/v1/query?query={quote(promql)}")["result"]


def wait_for(what, check, seconds=180):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(2)


def test_every_target_is_up(ops):

    def all_up():
        targets = prometheus(ops, "/api/v1/targets")["activeTargets"]
        return targets if targets and all(t["health"] == "up" for t in targets) else None

    targets = wait_for("every target up", all_up, 60)
    jobs = sorted(t["labels"]["job"] for t in targets)
    assert jobs == ["alertmanager", "codegraph", "node", "node", "prometheus"]
    codegraph = next(t for t in targets if t["labels"]["job"] == "codegraph")
    assert (
        codegraph["scrapeUrl"].startswith("https://")
        and codegraph["labels"]["instance"] == "cg-mon-app"
    )


def test_every_rule_group_is_loaded(ops):
    groups = {g["name"]: g for g in prometheus(ops, "/api/v1/rules")["groups"]}
    expected = {g["name"]: len(g["rules"]) for g in monitoring_refs.rule_groups()}
    assert {name: len(groups[name]["rules"]) for name in expected} == expected
    assert all(rule["health"] == "ok" for g in groups.values() for rule in g["rules"])


def test_every_metric_the_dashboards_and_alerts_use_is_exported(ops, app, api_key):
    """Against a live scrape: exercise the service, then compare with what Prometheus has."""
    calls = [
        ("POST", "/nodes", {"nodes": [{"id": "m:1", "kind": "function", "name": "f"}]}),
        ("GET", "/search?q=f&mode=hybrid", None),
        ("POST", "/parse", {"files": [{"path": "a.py", "content": "def f():\n    pass\n"}]}),
        ("POST", "/maintenance/compact", None),
        ("POST", "/backup", None),
    ]
    for method, path, body in calls:
        data = f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body else ""
        app.check_output(
            f"curl -sS -f -X {method} -H 'Authorization: Bearer {api_key}' {data} "
            f"'https://localhost:8080{path}'"
        )
    app.check_output("/opt/codegraph/bin/backup.sh")  # the daily backup's textfile metric
    needed = monitoring_refs.used_metrics()

    def exported():
        names = set(prometheus(ops, "/api/v1/label/__name__/values"))
        return names if needed <= names else None

    names = wait_for("every used metric to be scraped", exported, 60)
    assert needed <= names, sorted(needed - names)


def test_provoked_401s_show_in_the_auth_failure_metric(ops, app):
    series = 'codegraph_auth_failures_total{job="codegraph",instance="cg-mon-app"}'

    def current():
        result = query(ops, series)
        return float(result[0]["value"][1]) if result else None

    before = (
        wait_for("the auth-failure metric", lambda: current() is not None and current() + 1, 30) - 1
    )
    for _ in range(7):
        app.run(
            "curl -s -o /dev/null -H 'Authorization: Bearer wrong' https://localhost:8080/stats"
        )
    wait_for("Prometheus to see 7 more failures", lambda: (current() or 0) >= before + 7, 30)


def test_service_down_fires_reaches_the_webhook_and_resolves(ops, app):
    ops.check_output(f"cat > /tmp/receiver.py <<'EOF'\n{RECEIVER}\nEOF")
    ops.run("systemctl stop webhook-receiver; rm -f /tmp/webhook.jsonl")
    ops.check_output("systemd-run --unit=webhook-receiver python3 /tmp/receiver.py")

    def deliveries(status):
        lines = ops.run("cat /tmp/webhook.jsonl").stdout.splitlines()
        return [
            alert
            for line in lines
            for alert in json.loads(line)["alerts"]
            if alert["labels"]["alertname"] == "CodeGraphServiceDown" and alert["status"] == status
        ]

    app.check_output("systemctl stop codegraph")
    try:
        firing = wait_for(
            "CodeGraphServiceDown to fire",
            lambda: [
                a
                for a in prometheus(ops, "/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == "CodeGraphServiceDown" and a["state"] == "firing"
            ],
            150,
        )
        assert firing[0]["labels"] == {
            "alertname": "CodeGraphServiceDown",
            "severity": "critical",
            "job": "codegraph",
            "instance": "cg-mon-app",
        }
        delivered = wait_for("the webhook to receive it", lambda: deliveries("firing"), 60)
        assert delivered[0]["annotations"]["summary"] == "CodeGraph service is down"
        assert delivered[0]["annotations"]["runbook_url"].endswith("#codegraphservicedown")
    finally:
        app.check_output("systemctl start codegraph")
    resolved = wait_for("the resolution to reach the webhook", lambda: deliveries("resolved"), 120)
    assert resolved[0]["labels"]["instance"] == "cg-mon-app"
