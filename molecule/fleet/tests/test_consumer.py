"""From the operator's controller (consumer.py; molecule's converge ran codegraph.ops.site
from scratch with it): a rerun changes nothing, a --limit to any one host or to the lb
group renders exactly what the full run did, with no fact cache, and the fleet talks on its
own network, never on the one Ansible reaches the hosts on.

First of the scenario's tests (its file sorts first): the later ones change the fleet."""

from __future__ import annotations

import subprocess

import pytest
from consumer import HOME, command, hosts, recap, run

from conftest import APPS, host

FLEET = {name: f"10.88.210.{11 + i}" for i, name in enumerate([*APPS, "cg-fleet-ops"])}
MANAGEMENT = "10.89.210."


def test_a_rerun_changes_nothing():
    result = run("site")
    assert result.returncode == 0, result.stdout[-5000:]
    changed = {name: counts["changed"] for name, counts in recap(result.stdout).items()}
    assert set(changed) == set(hosts()) and not any(changed.values()), changed


def _limited(limit: str) -> subprocess.Popen:
    argv, env = command("site", "--limit", limit, "--diff")
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=HOME)  # fmt: skip


@pytest.mark.parametrize("limits", [[*APPS, "lb"], ["cg-fleet-ops"]], ids=["apps+lb", "ops"])
def test_a_limited_run_without_a_fact_cache_changes_nothing(limits):
    """Each limit its own run, at once (the ops host is in both 'lb' and its own limit: two
    batches). The hosts outside a limit are never in its play; their addresses come from
    facts gathered for them from the controller (the ops host's from the inventory)."""
    runs = {limit: _limited(limit) for limit in limits}
    for limit, process in runs.items():
        output = process.communicate(timeout=900)[0]
        assert process.returncode == 0, f"--limit {limit}:\n{output[-5000:]}"
        counts = recap(output)
        assert counts and not any(c["changed"] for c in counts.values()), (limit, counts)
        assert "--- before" not in output, f"--limit {limit} would change a file"
        others = [name for name in APPS if name != limit]
        for name in others:  # learned from the controller, not from a cache
            assert f"-> {name}" in output, f"--limit {limit}: {name}'s facts not gathered"
        assert "-> cg-fleet-ops" not in output  # its codegraph_fleet_address is given


def test_the_fleet_talks_on_its_own_network():
    """HAProxy's servers, Prometheus' targets, the NATS routes and each certificate name
    the fleet addresses; none names the management network Ansible connects on."""
    ops = host("cg-fleet-ops")
    for config in ("/etc/haproxy/haproxy.cfg", "/etc/prometheus/prometheus.yml"):
        text = ops.file(config).content_string
        assert MANAGEMENT not in text, config
        for name in APPS:
            assert FLEET[name] in text, (config, name)
    prometheus = ops.file("/etc/prometheus/prometheus.yml").content_string
    assert f"{FLEET['cg-fleet-ops']}:9100" in prometheus  # its given codegraph_fleet_address
    for name in APPS:
        box = host(name)
        routes = box.check_output("grep nats-route /etc/nats-server.conf")
        assert MANAGEMENT not in routes
        assert all(FLEET[peer] in routes for peer in APPS if peer != name), routes
        names = box.check_output(
            "openssl x509 -noout -ext subjectAltName -in /opt/codegraph/config/server.crt"
        )
        assert f"IP Address:{FLEET[name]}" in names and MANAGEMENT not in names, names
