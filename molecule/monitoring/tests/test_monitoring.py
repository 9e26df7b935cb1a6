"""A live Prometheus + Alertmanager beside a real CodeGraph host."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import testinfra
import yaml
from cg_molecule import INVENTORY, TOP

sys.path.insert(0, str(TOP / "scripts"))
import monitoring_refs

# Records every notification as one JSON line: the path it was posted to, and its body.
RECEIVER = """
import http.server, json
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open("/tmp/webhook.jsonl", "a") as out:
            out.write(json.dumps({"path": self.path, "body": body}) + "\\n")
        self.send_response(200)
        self.end_headers()
http.server.HTTPServer(("127.0.0.1", 9999), Hook).serve_forever()
"""
CA = "/etc/prometheus/web/ca.crt"
# what Prometheus scrapes, over TLS with basic auth: (host fixture name, port, path)
SECURED = [
    ("app", 9100, "/metrics"),  # node_exporter
    ("ops", 9100, "/metrics"),
    ("ops", 9090, "/api/v1/status/buildinfo"),  # Prometheus
    ("ops", 9093, "/api/v2/status"),  # Alertmanager
    ("ops", 8405, "/metrics"),  # HAProxy's exporter
]


@pytest.fixture(scope="module")
def ops():
    return testinfra.get_host("podman://cg-mon-ops")


@pytest.fixture(scope="module")
def app():
    return testinfra.get_host("podman://cg-mon-app")


def scrape_password() -> str:
    secrets = INVENTORY / ".secrets"
    return (secrets / "monitoring_scrape_password").read_text().strip()


def prometheus(ops, path: str) -> dict:
    out = ops.check_output(
        f"curl -sS --cacert {CA} -u 'prometheus:{scrape_password()}' 'https://localhost:9090{path}'"
    )
    return json.loads(out)["data"]


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
    assert jobs == ["alertmanager", "codegraph", "haproxy", "node", "node", "probe", "prometheus"]
    # the role's own jobs over TLS; the inventory's own job (probe) is plain HTTP on loopback
    own = [t for t in targets if t["labels"]["job"] != "probe"]
    assert all(t["scrapeUrl"].startswith("https://") for t in own), targets
    codegraph = next(t for t in targets if t["labels"]["job"] == "codegraph")
    assert codegraph["labels"]["instance"] == "cg-mon-app"


def test_the_inventorys_own_haproxy_section_backend_name_and_scrape_job(ops):
    """lb_extra_config's frontend answers, prometheus_extra_scrape_configs' job reads it,
    and the backend carries lb_backend_name in HAProxy's metrics."""
    probe = wait_for("the extra job's sample", lambda: query(ops, "codegraph_extra_probe"), 60)
    assert probe[0]["metric"]["job"] == "probe" and probe[0]["value"][1] == "1"
    servers = wait_for(
        "the backend's servers",
        lambda: query(ops, 'haproxy_backend_active_servers{proxy="cg_api"}'),
        60,
    )
    assert servers[0]["value"][1] == "1"


@pytest.mark.parametrize(("where", "port", "path"), SECURED)
def test_scrapes_need_tls_and_the_password(ops, app, where, port, path):
    server = {"ops": ops, "app": app}[where]
    url = f"https://localhost:{port}{path}"

    def status(options: str) -> str:
        curl = f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {CA} {options} {url}"
        return server.run(curl).stdout

    assert status(f"-u 'prometheus:{scrape_password()}'") == "200"
    assert status("") == "401"  # no credentials
    assert status("-u prometheus:wrong-password") == "401"
    plain = server.run(f"curl -sS -o /dev/null -w '%{{http_code}}' http://localhost:{port}{path}")
    assert plain.stdout != "200"  # plain HTTP is not served


def seconds(duration: str) -> int:
    return int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def test_every_rule_is_loaded_with_the_inventorys_thresholds(ops):
    """Every rule loaded and healthy; each alert's `for` as rendered with the scenario's
    prometheus_alert_thresholds (the frozen-host alerts' shortened ones among them)."""
    scenario = yaml.safe_load((Path(__file__).parent.parent / "molecule.yml").read_text())
    overrides = scenario["provisioner"]["inventory"]["group_vars"]["all"]
    rendered = [
        group
        for text in monitoring_refs.render_rules(
            thresholds=overrides["prometheus_alert_thresholds"]
        ).values()
        for group in yaml.safe_load(text)["groups"]
    ]
    expected = {
        (group["name"], rule.get("alert") or rule["record"]): seconds(rule.get("for", "0s"))
        for group in rendered
        for rule in group["rules"]
    }
    loaded = {
        (group["name"], rule["name"]): rule.get("duration", 0)
        for group in prometheus(ops, "/api/v1/rules")["groups"]
        for rule in group["rules"]
        if rule["health"] == "ok"
    }
    assert loaded == expected
    assert expected[("platform.alerts", "HostDown")] == 20


def test_chrony_is_configured_and_left_off_in_a_container(app):
    """The time_sync role: chrony with the default pool; a test host is a container, whose
    clock is the machine's, so chrony is neither enabled nor running there."""
    assert app.package("chrony").is_installed
    assert "pool 2.debian.pool.ntp.org iburst" in app.file("/etc/chrony/chrony.conf").content_string
    assert not app.service("chrony").is_enabled and not app.service("chrony").is_running


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


@pytest.fixture(scope="module")
def webhook(ops):
    """The receiver both Alertmanager webhooks post to; returns a reader of what came."""
    ops.check_output(f"cat > /tmp/receiver.py <<'EOF'\n{RECEIVER}\nEOF")
    ops.run("systemctl stop webhook-receiver; rm -f /tmp/webhook.jsonl")
    ops.check_output("systemd-run --unit=webhook-receiver python3 /tmp/receiver.py")

    def received(path: str, alertname: str, status: str = "firing") -> list[dict]:
        lines = ops.run("cat /tmp/webhook.jsonl").stdout.splitlines()
        return [
            alert
            for line in map(json.loads, lines)
            if line["path"] == path
            for alert in line["body"]["alerts"]
            if alert["labels"]["alertname"] == alertname and alert["status"] == status
        ]

    return received


def firing(ops, alertname: str) -> list[dict]:
    return [
        a
        for a in prometheus(ops, "/api/v1/alerts")["alerts"]
        if a["labels"]["alertname"] == alertname and a["state"] == "firing"
    ]


def test_the_watchdog_reaches_the_dead_man_receiver_only(ops, webhook):
    heartbeats = wait_for("the Watchdog at /deadman", lambda: webhook("/deadman", "Watchdog"), 60)
    assert heartbeats[0]["labels"]["severity"] == "none"
    assert heartbeats[0]["annotations"]["runbook_url"].endswith("#watchdog")
    # every alertmanager_deadman_interval (10 s here): a second one comes
    wait_for("a second heartbeat", lambda: len(webhook("/deadman", "Watchdog")) >= 2, 60)
    assert not webhook("/alerts", "Watchdog"), "the Watchdog reached the default receiver"


def test_a_host_down_fires_host_service_and_lb_alerts_and_they_resolve(ops, webhook):
    """The app host frozen (podman pause): its exporters and service stop answering, and
    the load balancer in front of it has no host left."""
    app = {"severity": "critical", "instance": "cg-mon-app"}
    expected = {
        "HostDown": {**app, "job": "node"},
        "CodeGraphServiceDown": {**app, "job": "codegraph"},
        "LoadBalancerNoServerUp": {
            "severity": "critical",
            "job": "haproxy",
            "instance": "cg-mon-ops",
            "proxy": "cg_api",  # lb_backend_name in molecule.yml
        },
    }
    subprocess.run(["podman", "pause", "cg-mon-app"], check=True)
    try:
        for name, labels in expected.items():
            alert = wait_for(f"{name} to fire", lambda name=name: firing(ops, name), 240)
            assert alert[0]["labels"] == {"alertname": name, **labels}
            delivered = wait_for(
                f"{name} at the webhook", lambda name=name: webhook("/alerts", name), 60
            )
            assert delivered[0]["annotations"]["runbook_url"].endswith("#" + name.lower())
    finally:
        subprocess.run(["podman", "unpause", "cg-mon-app"], check=True)
    for name in expected:
        wait_for(f"{name} to resolve", lambda name=name: webhook("/alerts", name, "resolved"), 180)
