"""The prometheus role's extension points, rendered by Ansible on the controller: extra
scrape jobs and remote_write land in a configuration promtool accepts, and ill-formed
ones stop in the role's preflight."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml
from playbook import LOCAL, TOP, run_play

INVENTORY = {
    "all": {
        "hosts": {
            name: {"codegraph_fleet_address": address, **LOCAL}
            for name, address in (("cg-app1", "10.0.0.11"), ("cg-ops", "10.0.0.10"))
        },
        "children": {
            "codegraph": {"hosts": {"cg-app1": {}}},
            "lb": {"hosts": {"cg-ops": {}}},
            "monitoring": {"hosts": {"cg-ops": {}}},
        },
    }
}
# the role's defaults (and the fleet contract's) are what the template sees on a host
RENDER = """
- hosts: cg-ops
  gather_facts: false
  vars_files:
    - {top}/roles/codegraph_common/defaults/main.yml
    - {top}/roles/prometheus/defaults/main.yml
  vars:
    _web_ca: /etc/prometheus/web/ca.crt
    _password_file: /etc/prometheus/scrape-password
  tasks:
    - ansible.builtin.template:
        src: {top}/roles/prometheus/templates/prometheus.yml.j2
        dest: {out}
      delegate_to: localhost
      become: false
"""
PREFLIGHT = """
- hosts: cg-ops
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: prometheus
        tasks_from: preflight
"""
POSTGRES = {
    "job_name": "postgres",
    "scrape_interval": "30s",
    "static_configs": [{"targets": ["db1.example.internal:9187"], "labels": {"team": "data"}}],
}
LONG_TERM = {
    "url": "https://metrics.example.internal/api/v1/write",
    "queue_config": {"max_shards": 4},
}


def _ansible(tmp_path: Path, play: str, extra: dict) -> subprocess.CompletedProcess:
    return run_play(tmp_path, INVENTORY, play, "-e", json.dumps(extra))


def render(tmp_path: Path, extra: dict) -> dict:
    out = tmp_path / "prometheus.yml"
    result = _ansible(tmp_path, RENDER.format(top=TOP, out=out), extra)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    check = subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    return yaml.safe_load(out.read_text())


def test_by_default_the_roles_own_jobs_and_no_remote_write(tmp_path):
    config = render(tmp_path, {})
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert jobs == ["codegraph", "node", "haproxy", "prometheus", "alertmanager"]
    assert "remote_write" not in config


def test_extra_scrape_jobs_and_remote_write_are_rendered_as_given(tmp_path):
    config = render(
        tmp_path,
        {"prometheus_extra_scrape_configs": [POSTGRES], "prometheus_remote_write": [LONG_TERM]},
    )
    assert config["scrape_configs"][-1] == POSTGRES
    assert [job["job_name"] for job in config["scrape_configs"]][:5] == [
        "codegraph",
        "node",
        "haproxy",
        "prometheus",
        "alertmanager",
    ]
    assert config["remote_write"] == [LONG_TERM]


def test_a_job_named_like_the_roles_own_or_a_target_without_url_stops_in_preflight(tmp_path):
    good = {
        "prometheus_codegraph_scheme": "http",
        "prometheus_scrape_password": "p" * 20,
        "prometheus_extra_scrape_configs": [POSTGRES],
    }
    assert _ansible(tmp_path, PREFLIGHT, good).returncode == 0
    for bad in (
        {"prometheus_extra_scrape_configs": [{**POSTGRES, "job_name": "node"}]},
        {"prometheus_extra_scrape_configs": [POSTGRES, POSTGRES]},
        {"prometheus_extra_scrape_configs": [{"static_configs": []}]},
        {"prometheus_remote_write": [{"queue_config": {}}]},
    ):
        result = _ansible(tmp_path, PREFLIGHT, {**good, **bad})
        assert result.returncode != 0, bad
        assert "prometheus_extra_scrape_configs needs a job_name of its own" in result.stdout, (
            result.stdout[-2000:]
        )


def test_an_app_host_that_is_also_the_monitoring_host_needs_another_port(tmp_path):
    """The service's metrics take 9090 on an app host: Prometheus' default port there
    would fail to bind in a restart loop, so preflight names the clash first."""
    play = PREFLIGHT.replace("hosts: cg-ops", "hosts: cg-app1")
    good = {"prometheus_codegraph_scheme": "http", "prometheus_scrape_password": "p" * 20}
    clash = _ansible(tmp_path, play, good)
    assert clash.returncode != 0
    assert "cg-app1 is an app host and the monitoring host, and prometheus_port 9090" in (
        clash.stdout
    ), clash.stdout[-2000:]
    assert _ansible(tmp_path, play, {**good, "prometheus_port": 9091}).returncode == 0
    # on a host that is not an app host, 9090 is Prometheus' own
    assert _ansible(tmp_path, PREFLIGHT, good).returncode == 0
