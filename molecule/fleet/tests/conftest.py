"""Helpers for the fleet tests: the hosts, the playbooks, the load generator."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from consumer import INVENTORY, TOP, api_key, run  # the operator's controller

APPS = ["cg-fleet-app1", "cg-fleet-app2", "cg-fleet-app3"]
SEEDED = [f"function:src/seed.py:handler_{i}" for i in range(200)]


def host(name: str):
    return testinfra.get_host(f"podman://{name}")


def api(name: str, method: str, path: str, body: dict | None = None, key: str | None = None):
    """Call the API on one app host (from inside it); returns the parsed JSON."""
    data = f"-H 'Content-Type: application/json' -d '{json.dumps(body)}'" if body else ""
    out = host(name).check_output(
        f"curl -sS --fail-with-body -X {method} -H 'Authorization: Bearer {key or api_key()}' "
        f"{data} 'https://localhost:8080{path}'"
    )
    return json.loads(out) if out else None


def prometheus(path: str, **params: object) -> dict:
    """An answer of the ops host's Prometheus, asked from the controller as the canary
    analysis asks it (TLS verified against the fleet CA, basic auth)."""
    secrets = INVENTORY / ".secrets"
    password = (secrets / "monitoring_scrape_password").read_text().strip()
    request = urllib.request.Request(
        f"https://10.88.210.14:9090{path}?{urllib.parse.urlencode(params)}",
        headers={
            "Authorization": "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()
        },
    )
    context = ssl.create_default_context(cafile=str(secrets / "tls/ca.crt"))
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:  # noqa: S310
        return json.load(answer)


def served_version(name: str) -> str:
    return json.loads(host(name).check_output("curl -sS https://localhost:8080/health"))["version"]


def playbook(name: str, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run a playbook of the installed collection against the operator's inventory, with
    Mitogen (the tests' speed-up: docs/testing.md); the API key must not be printed."""
    return run(name, *args, mitogen=True, timeout=timeout)


def release_state() -> dict[str, tuple[str, str, str]]:
    """What each app host has installed and runs: releases, current target, main PID."""
    state = {}
    for name in APPS:
        box = host(name)
        state[name] = (
            box.check_output("ls /opt/codegraph/releases"),
            box.check_output("readlink /opt/codegraph/current"),
            box.check_output("systemctl show -p MainPID --value codegraph"),
        )
    return state


def converged(timeout: float = 120) -> dict:
    """Wait until every app host has applied the same entries with identical content;
    returns that state (applied_seq, digest, nodes)."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for name in APPS:
            try:
                states.append(api(name, "GET", "/replication/digest"))
            except AssertionError:  # (a host restarting)
                states.append({})
        if all(states) and len({(s["applied_seq"], s["digest"]) for s in states}) == 1:
            return states[0]
        assert time.monotonic() < deadline, f"the hosts did not converge: {states}"
        time.sleep(1)


def listed(prefix: str, name: str = APPS[0]) -> set[str]:
    """Every node id with this prefix on one host (GET /nodes, page by page)."""
    found, cursor = set(), prefix
    while True:
        page = api(name, "GET", f"/nodes?limit=1000&cursor={cursor}")
        ids = [node["id"] for node in page["nodes"] if node["id"].startswith(prefix)]
        found.update(ids)
        if len(ids) < len(page["nodes"]) or not page["next_cursor"]:
            return found
        cursor = page["next_cursor"]


def every_acknowledged_write_everywhere(summary: dict) -> None:
    """0 acknowledged writes lost, and every host's digest identical (bounded time)."""
    assert summary["acknowledged_writes"] > 0, summary
    state = converged()
    assert state["applied_seq"] >= summary["max_seq"]
    missing = set(summary["acked"]) - listed("lg:")
    assert not missing, f"{len(missing)} acknowledged nodes lost, e.g. {sorted(missing)[:5]}"


@pytest.fixture(scope="session", autouse=True)
def seeded():
    """Nodes every reader asks for: written through one host, on every host."""
    nodes = [
        {
            "id": node_id,
            "kind": "function",
            "name": node_id.rsplit(":", 1)[1],
            "text": "def handler(request): return response",
        }
        for node_id in SEEDED
    ]
    api(APPS[0], "POST", "/nodes", {"nodes": nodes})
    converged()
    ops = host("cg-fleet-ops")
    ops.check_output("cat > /tmp/loadgen.ids <<'EOF'\n" + "\n".join(SEEDED) + "\nEOF")
    loadgen = (TOP / "molecule/fleet/files/loadgen.py").read_text()
    ops.check_output(f"cat > /tmp/loadgen.py <<'PYEOF'\n{loadgen}\nPYEOF")


class Load:
    """A load generator running on the ops host, through HAProxy."""

    def __init__(self) -> None:
        self.ops = host("cg-fleet-ops")

    def set_key(self, key: str) -> None:
        self.ops.check_output(
            f"printf '%s\\n' '{key}' > /tmp/loadgen.key.new "
            "&& mv /tmp/loadgen.key.new /tmp/loadgen.key"
        )

    def start(self) -> None:
        self.set_key(api_key())
        self.ops.run("systemctl reset-failed loadgen; rm -f /tmp/loadgen.stop /tmp/loadgen.json*")
        self.ops.check_output(
            "systemd-run --unit=loadgen --collect python3 /tmp/loadgen.py "
            "/tmp/loadgen.key /tmp/loadgen.ids /tmp/loadgen.json 1500"
        )
        time.sleep(3)

    def stop(self) -> dict:
        self.ops.check_output("touch /tmp/loadgen.stop")
        deadline = time.monotonic() + 60
        while not self.ops.file("/tmp/loadgen.json").exists:
            assert time.monotonic() < deadline, "the load generator did not stop"
            time.sleep(1)
        summary = json.loads(self.ops.file("/tmp/loadgen.json").content_string)
        acked = self.ops.file("/tmp/loadgen.json.acked").content_string.split()
        summary["acked"] = acked[0::2]  # "id seq" pairs
        return summary


@contextmanager
def under_load():
    """Run the block under load; yields a dict that gets the summary at the end."""
    load, summary = Load(), {}
    load.start()
    try:
        yield summary, load
    finally:
        summary.update(load.stop())


def no_failures(summary: dict) -> None:
    """No failed request but the documented fast refusals (503 with Retry-After)."""
    assert summary["total"] > 100, summary
    first = summary["first"] or 0
    failed = "; ".join(
        f"{f['outcome']} {f['path']} at +{f['t'] - first:.1f}s (key {f['key']})"
        for f in summary["failures"][:10]
    )
    assert summary["failure_count"] == 0, f"{summary['failure_count']} failed: {failed}"
    # sent again once on a new connection after the load balancer closed a kept-alive
    # one (loadgen.py): seen when a host is killed; many would be a defect of their own
    assert summary["resent"] <= 10, f"{summary['resent']} requests had to be sent again"
