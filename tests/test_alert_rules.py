"""The alert rules as the prometheus role renders them: its own template task, run by
Ansible on the controller, with config.yml's selectors and thresholds or the inventory's
overrides; promtool's unit tests then run on what was rendered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from playbook import LOCAL, TOP, run_play

sys.path.insert(0, str(TOP / "scripts"))
import monitoring_refs

ROLE = TOP / "roles/prometheus"
INVENTORY = {
    "all": {
        "hosts": {"cg-app1": LOCAL, "cg-ops": LOCAL},
        "children": {
            "codegraph": {"hosts": {"cg-app1": {}}},
            "monitoring": {"hosts": {"cg-ops": {}}},
        },
    }
}
PREFLIGHT = [
    {
        "hosts": "cg-ops",
        "gather_facts": False,
        "tasks": [
            {
                "ansible.builtin.include_role": {
                    "name": "prometheus",
                    "tasks_from": "preflight",
                },
            }
        ],
    }
]
# An error ratio alert for another job with a higher threshold and a shorter `for`.
OVERRIDES = {
    "prometheus_alert_selectors": {"codegraph": 'job="api",env="prod"'},
    "prometheus_alert_thresholds": {"CodeGraphHighErrorRate": {"ratio": 0.3, "for": "2m"}},
}
OVERRIDES_TEST = {
    "rule_files": ["../codegraph.rules.yml"],
    "evaluation_interval": "1m",
    "tests": [
        {
            "interval": "1m",
            "input_series": [
                # 25% errors on the selected job: under the new threshold
                {
                    "series": 'http_requests_total{job="api",env="prod",instance="a",code="200"}',
                    "values": "0+75x15",
                },
                {
                    "series": 'http_requests_total{job="api",env="prod",instance="a",code="500"}',
                    "values": "0+25x15",
                },
                # 40% errors on the selected job: over it
                {
                    "series": 'http_requests_total{job="api",env="prod",instance="b",code="200"}',
                    "values": "0+60x15",
                },
                {
                    "series": 'http_requests_total{job="api",env="prod",instance="b",code="500"}',
                    "values": "0+40x15",
                },
                # all errors, but not the selected job (nor the selected env)
                {
                    "series": 'http_requests_total{job="codegraph",instance="c",code="500"}',
                    "values": "0+50x15",
                },
                {
                    "series": 'http_requests_total{job="api",env="dev",instance="d",code="500"}',
                    "values": "0+50x15",
                },
            ],
            "alert_rule_test": [
                # the rate has two samples at 1m, then `for: 2m`: pending at 2m, firing from 3m
                {"eval_time": "2m", "alertname": "CodeGraphHighErrorRate", "exp_alerts": []},
                {
                    "eval_time": "4m",
                    "alertname": "CodeGraphHighErrorRate",
                    "exp_alerts": [
                        {
                            "exp_labels": {"severity": "critical", "job": "api", "instance": "b"},
                            "exp_annotations": {
                                "summary": "High error rate detected",
                                "description": "Error rate on b is 40%.",
                                "runbook_url": "https://codegraph-ops.invalid/docs/operations.md"
                                "#codegraphhigherrorrate",
                            },
                        }
                    ],
                },
            ],
        }
    ],
}


def _ansible(tmp_path: Path, play: list, extra: dict) -> subprocess.CompletedProcess:
    return run_play(tmp_path, INVENTORY, play, "-e", json.dumps(extra))


def _role_rules_task() -> dict:
    """The role's own task that installs the rules, to run as it is but into a folder."""
    tasks = yaml.safe_load((ROLE / "tasks/configure.yml").read_text())
    task = next(t for t in tasks if t["name"].startswith("Install the rules"))
    template = dict(task["ansible.builtin.template"])
    for key in ("owner", "group", "validate"):
        template.pop(key)
    task = {key: value for key, value in task.items() if key != "notify"}
    return {**task, "ansible.builtin.template": template}


def render_with_the_role(tmp_path: Path, extra: dict) -> Path:
    out = tmp_path / "rules"
    (out / "tests").mkdir(parents=True)
    for test in (TOP / "files/alerts/tests").glob("*.yml"):
        (out / "tests" / test.name).write_text(test.read_text())
    task = _role_rules_task()
    name = "{{ item | basename | regex_replace('[.]j2$', '') }}"
    task["ansible.builtin.template"]["dest"] = f"{out}/{name}"
    play = [
        {
            "hosts": "cg-ops",
            "gather_facts": False,
            "vars_files": [str(ROLE / "defaults/main.yml"), str(ROLE / "vars/main.yml")],
            "tasks": [task],
        }
    ]
    result = _ansible(tmp_path, play, {"prometheus_rules_src": str(TOP / "files/alerts"), **extra})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return out


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)


def test_the_role_renders_what_the_tests_check_and_promtool_tests_pass(tmp_path):
    out = render_with_the_role(tmp_path, {})
    rendered = {path.name: path.read_text() for path in out.glob("*.rules.yml")}
    assert rendered == monitoring_refs.render_rules()
    check = promtool("check", "rules", *map(str, sorted(out.glob("*.rules.yml"))))
    assert check.returncode == 0, check.stdout + check.stderr
    tests = promtool("test", "rules", *map(str, sorted((out / "tests").glob("*.yml"))))
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_overridden_selectors_and_thresholds_change_what_fires(tmp_path):
    out = render_with_the_role(tmp_path, OVERRIDES)
    assert (
        out.joinpath("codegraph.rules.yml").read_text()
        == (
            monitoring_refs.render_rules(
                selectors=OVERRIDES["prometheus_alert_selectors"],
                thresholds=OVERRIDES["prometheus_alert_thresholds"],
            )["codegraph.rules.yml"]
        )
    )
    (out / "tests/overrides_test.yml").write_text(yaml.safe_dump(OVERRIDES_TEST))
    tests = promtool("test", "rules", str(out / "tests/overrides_test.yml"))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    # config.yml's own tests expect the defaults: with the overrides they must fail
    defaults = promtool("test", "rules", str(out / "tests/codegraph_test.yml"))
    assert defaults.returncode != 0


def test_unknown_keys_and_bad_values_stop_in_preflight(tmp_path):
    good = {
        "prometheus_codegraph_scheme": "http",
        "prometheus_scrape_password": "p" * 20,
        **OVERRIDES,
    }
    result = _ansible(tmp_path, PREFLIGHT, good)
    assert result.returncode == 0, result.stdout[-3000:]
    selectors, thresholds = "prometheus_alert_selectors", "prometheus_alert_thresholds"
    for bad, named in (
        ({selectors: {"nodes": 'job="node"'}}, f"{selectors}.nodes: no such selector"),
        ({selectors: {"node": 'job="node"}'}}, f"{selectors}.node: not a label selector"),
        ({thresholds: {"HostDwn": {"for": "5m"}}}, f"{thresholds}.HostDwn: no such alert"),
        ({thresholds: {"HostDown": {"ratio": 0.5}}}, f"{thresholds}.HostDown.ratio: no such"),
        ({thresholds: {"HostDown": {"for": "5 min"}}}, f"{thresholds}.HostDown.for: not a dur"),
        (
            {thresholds: {"CodeGraphHighErrorRate": {"ratio": "high"}}},
            "CodeGraphHighErrorRate.ratio: not a number of 0 or more",
        ),
    ):
        result = _ansible(tmp_path, PREFLIGHT, {**good, **bad})
        assert result.returncode != 0, bad
        assert named in result.stdout, result.stdout[-2000:]
