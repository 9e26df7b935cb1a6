"""The codegraph_canary role's own steps, on this machine, against a real Prometheus that
scrapes itself as two hosts, app1 and app2 (job codegraph): they have process metrics but
no user traffic. No user traffic is inconclusive, judged again up to the longest window,
then ends the rollout at that batch (or proceeds when told to), and the verdicts are kept;
Prometheus not answering, a bad threshold or a check Prometheus cannot parse stops a
rollout before any host is touched; dry_run judges and never ends; check mode shows the
verdict; a replay with new thresholds says which verdicts change. The fleet scenario
judges real traffic: a good release, a bad one, and Prometheus going away mid-rollout."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playbook import LOCAL, TOP, run_play

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
    port = _free_port()
    scrapes = [
        {
            "job_name": f"self-as-{name}",
            "scrape_interval": "1s",
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            "relabel_configs": [
                {"target_label": "job", "replacement": "codegraph"},
                {"target_label": "instance", "replacement": name},
            ],
        }
        for name in ("app1", "app2")
    ]
    (work / "prometheus.yml").write_text(json.dumps({"scrape_configs": scrapes}))
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
    while True:  # ready, with a few scrapes of both "hosts"
        try:
            query = urllib.parse.urlencode({"query": "count_over_time(up[1m]) >= 4"})
            with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=1) as answer:  # noqa: S310
                if len(json.loads(answer.read())["data"]["result"]) == 2:
                    break
        except (urllib.error.URLError, ConnectionError):
            pass
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
        "codegraph_canary_window": 3,
        "codegraph_canary_interval": 1,
        "codegraph_canary_max_window": 5,
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
                            "stdout": '{"changed": true, "from": "1.1.0", "to": "9.9.9"}'
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
    assert output.count("FAILED - RETRYING") == 2, output[-3000:]  # windows of 3, 4, 5 s
    assert report["verdict"] == "fail", report
    [batch] = report["batches"]  # app2 never judged: the rollout ended at app1
    assert batch["hosts"] == ["app1"] and batch["baseline"] == ["app2"]
    assert time.time() - 60 < batch["since"] < batch["until"] < time.time(), batch
    assert re.match(r"inconclusive after \d+ s \(no user traffic", batch["why"]), batch
    restarts = next(row for row in batch["rows"] if row["check"] == "restarts")
    assert restarts["verdict"] == "pass" and restarts["hosts"]["batch"] == {"app1": 0}, restarts
    lag = next(row for row in batch["rows"] if row["check"] == "lag_entries")
    assert lag["verdict"] == "no data" and "| no data (no data anywhere) |" in batch["table"]
    assert (tmp_path / "reports").glob("*-test-9.9.9.md")
    assert "secret-of-the-test" not in output


def test_told_to_proceed_a_quiet_fleet_rolls_on_and_says_so(tmp_path, prometheus):
    result, report = _rollout(tmp_path, prometheus, "-e", "codegraph_canary_inconclusive=proceed")
    assert result.returncode == 0, result.stdout[-3000:]
    assert [batch["verdict"] for batch in report["batches"]] == ["pass", "pass"], report
    assert [batch["baseline"] for batch in report["batches"]] == [["app2"], []]
    assert all("codegraph_canary_inconclusive=proceed" in b["why"] for b in report["batches"])
    assert all("no user traffic" in b["why"] for b in report["batches"])
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


# app1 looks ten times worse than app2 to this check of the operator's
WORSE_ON_APP1 = (
    'max by (instance) (max_over_time(up{job="codegraph", instance=~"$instances"}[$window]))'
    ' * 10 and on (instance) up{instance="app1"}'
    ' or max by (instance) (max_over_time(up{job="codegraph", instance=~"$instances"}[$window]))'
)


def test_bad_thresholds_and_checks_stop_the_rollout_before_any_host(tmp_path, prometheus):
    negative = '{"codegraph_canary_thresholds": {"error_ratio": {"absolute": -0.1}}}'
    result, report = _rollout(tmp_path, prometheus, "-e", negative)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and report is None
    assert "error_ratio.absolute must be a number >= 0" in output, output[-3000:]
    assert "No host was touched" in output and "Switch (as codegraph-switch" not in output
    broken = json.dumps(
        {
            "codegraph_canary_checks": [
                {"name": "broken", "query": "rate(up{instance=~'$instances'}[$window]"}
            ]
        }
    )
    result, report = _rollout(tmp_path, prometheus, "-e", broken)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and report is None
    assert "Prometheus refused" in output and "parse error" in output, output[-3000:]
    assert "Switch (as codegraph-switch" not in output


def test_dry_run_judges_every_batch_never_ends_and_a_replay_says_what_changes(tmp_path, prometheus):
    check = {"name": "worse_on_app1", "query": WORSE_ON_APP1}
    extra = json.dumps({"codegraph_canary_mode": "dry_run", "codegraph_canary_checks": [check]})
    result, report = _rollout(tmp_path, prometheus, "-e", extra)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "DRY RUN (nothing is rolled back): FAIL worse_on_app1 on operator" in output, output[
        -3000:
    ]
    # both judged: app1 failed the check, app2 (no user traffic) inconclusive, taken as a fail
    assert [batch["verdict"] for batch in report["batches"]] == ["fail", "fail"], report
    assert "no user traffic" in report["batches"][1]["why"]
    assert report["mode"] == "dry_run" and report["verdict"] == "fail"
    # the same rollout judged again with the check's margin widened: the verdict changes
    loose = json.dumps(
        {
            "codegraph_canary_checks": [dict(check, absolute=20)],
            "codegraph_canary_prometheus_url": prometheus,
            "codegraph_canary_prometheus_ca": SOME_CA,
            "codegraph_canary_reports_dir": str(tmp_path / "reports"),
        }
    )
    inventory = {"all": {"children": {"codegraph": {"hosts": {"app1": LOCAL, "app2": LOCAL}}}}}
    replay = run_play(
        tmp_path, inventory, (TOP / "playbooks/canary_replay.yml").read_text(), "-e", loose
    )
    output = replay.stdout + replay.stderr
    assert replay.returncode == 0, output[-3000:]
    flat = re.sub(r"\s+", " ", output)  # the callback folds long lines
    assert re.search(
        r"CHANGED test 9\.9\.9 \([^)]*\) batch 1 app1: fail -> inconclusive no user traffic", flat
    ), output[-3000:]


def test_check_mode_shows_the_verdict_on_the_batch_as_it_runs(tmp_path, prometheus):
    check = {"name": "worse_on_app1", "query": WORSE_ON_APP1}
    result, report = _rollout(
        tmp_path, prometheus, "--check", "-e", json.dumps({"codegraph_canary_checks": [check]})
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "CHECK MODE: FAIL worse_on_app1 on operator" in output, output[-3000:]
    assert report is None  # nothing written
