"""The codegraph_canary role's own steps, on this machine, against a real Prometheus that
has no traffic to show (it scrapes nothing): too little traffic is inconclusive, judged
again up to the longest window, then ends the rollout at that batch (or proceeds when
told to), and the verdicts are kept; Prometheus not answering stops a rollout before any
host is touched. The fleet scenario judges real traffic: a good release, a bad one, and
Prometheus going away mid-rollout."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from playbook import LOCAL, run_play

PROMETHEUS = shutil.which("prometheus")
SOME_CA = "/etc/ssl/certs/ca-certificates.crt"  # not used over plain HTTP


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    if not PROMETHEUS:
        pytest.fail("no prometheus: scripts/bootstrap-host.sh installs it")
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text("global: {}\n")
    port = _free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            "--config.file=prometheus.yml",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.path=data",
        ],
        cwd=work,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)  # noqa: S310
            break
        except (urllib.error.URLError, ConnectionError):
            assert process.poll() is None and time.monotonic() < deadline, "no Prometheus"
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(10)


def _rollout(tmp_path, url: str, *args: str):
    """Two hosts rolled out one at a time, as deploy.yml does: the canary role's
    preflight, then per batch a switch (as codegraph-switch reports it) and the analysis."""
    inventory = {"all": {"children": {"codegraph": {"hosts": {"app1": LOCAL, "app2": LOCAL}}}}}
    settings = {
        "codegraph_version": "9.9.9",
        "rollout_kind": "test",
        "codegraph_canary_prometheus_url": url,
        "codegraph_canary_prometheus_ca": SOME_CA,
        "codegraph_canary_prometheus_password": "secret-of-the-test",
        "codegraph_canary_reports_dir": str(tmp_path / "reports"),
        "codegraph_canary_window": 1,
        "codegraph_canary_interval": 1,
        "codegraph_canary_max_window": 3,
    }
    plays = [
        {"hosts": "codegraph", "gather_facts": False, "vars": settings},
        {
            "hosts": "codegraph",
            "gather_facts": False,
            "serial": 1,
            "vars": settings,
            "tasks": [
                {
                    "name": "Switch (as codegraph-switch reports it)",
                    "ansible.builtin.set_fact": {
                        "rollout_left_at": "{{ now().timestamp() }}",
                        "_switched": {
                            "stdout": '{"changed": true, "from": "1.0.0", "to": "9.9.9"}'
                        },
                    },
                },
                {
                    "name": "Judge the batch",
                    "ansible.builtin.include_role": {
                        "name": "codegraph_canary",
                        "tasks_from": "analyse",
                    },
                },
            ],
        },
    ]
    plays[0]["roles"] = ["codegraph_canary"]
    result = run_play(tmp_path, inventory, plays, *args)
    reports = sorted((tmp_path / "reports").glob("*-test-9.9.9.json"))
    report = json.loads(reports[-1].read_text()) if reports else None
    return result, report


def test_too_little_traffic_is_judged_again_up_to_the_max_then_ends_the_rollout(
    tmp_path, prometheus
):
    result, report = _rollout(tmp_path, prometheus)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]  # ended (end_play), for the rollback play
    assert output.count("FAILED - RETRYING") == 2, output[-3000:]  # windows of 1, 2, 3 s
    assert report["verdict"] == "fail", report
    [batch] = report["batches"]  # app2 never judged: the rollout ended at app1
    assert batch["hosts"] == ["app1"] and batch["baseline"] == ["app2"]
    assert time.time() - 60 < batch["since"] < time.time(), batch  # when it took traffic
    assert re.match(r"inconclusive after \d+ s \(too little traffic\)", batch["why"]), batch
    assert "| restarts | hosts | - | - | - | inconclusive (no data) |" in batch["table"]
    assert (tmp_path / "reports").glob("*-test-9.9.9.md")
    assert "secret-of-the-test" not in output


def test_told_to_proceed_a_quiet_fleet_rolls_on_and_says_so(tmp_path, prometheus):
    result, report = _rollout(tmp_path, prometheus, "-e", "codegraph_canary_inconclusive=proceed")
    assert result.returncode == 0, result.stdout[-3000:]
    assert [batch["verdict"] for batch in report["batches"]] == ["pass", "pass"], report
    assert [batch["baseline"] for batch in report["batches"]] == [["app2"], []]
    assert all("codegraph_canary_inconclusive=proceed" in b["why"] for b in report["batches"])
    assert report["verdict"] == "pass"


def test_prometheus_not_answering_stops_the_rollout_before_any_host(tmp_path):
    result, report = _rollout(tmp_path, f"http://127.0.0.1:{_free_port()}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "The canary analysis needs Prometheus, which did not answer" in output, output[-3000:]
    assert "No host was touched" in output and "Switch (as codegraph-switch" not in output
    assert report is None


def test_the_analysis_turned_off_is_said_loudly_and_kept_in_the_report(tmp_path):
    result, report = _rollout(
        tmp_path, f"http://127.0.0.1:{_free_port()}", "-e", "codegraph_canary_analysis=false"
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "CANARY ANALYSIS IS OFF" in result.stdout
    assert report["verdict"] == "off" and [b["verdict"] for b in report["batches"]] == ["off"] * 2
