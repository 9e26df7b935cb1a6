#!/usr/bin/python
# Copyright: CodeGraph Ops
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare a batch of hosts on a new release with the hosts on the old one, in Prometheus."""

from __future__ import annotations

DOCUMENTATION = r"""
module: canary_analysis
short_description: Judge a rollout batch against the hosts still on the old release
version_added: 3.0.0
description:
  - Asks Prometheus, over one window, for the batch's hosts and the baseline's - the 5xx
    ratio and the 95th and 99th percentile of answer time per route, the replication
    applier's refused entries and lag, restarts of the service and the growth of its
    memory - and judges each check against the baseline.
  - A check fails when the batch's value exceeds the baseline's by more than its relative
    factor and by more than its absolute margin. A route with fewer than O(min_requests)
    requests in the window is inconclusive; with no route judged, the verdict is
    inconclusive.
  - Read-only; runs on the controller (C(delegate_to) localhost) and supports check mode.
  - Any query that fails makes the module fail (fail closed) - a rollout must not go on
    without its analysis.
options:
  prometheus_url:
    description: Prometheus' base URL, e.g. https://ops.example.com:9090.
    type: str
    required: true
  username:
    description: Basic auth user of Prometheus' web configuration.
    type: str
  password:
    description: Its password.
    type: str
  ca_path:
    description: The CA Prometheus' certificate chains to.
    type: path
  batch:
    description: The inventory names (the C(instance) label) of the hosts on the new release.
    type: list
    elements: str
    required: true
  baseline:
    description: The hosts on the old release over the same window.
    type: list
    elements: str
    required: true
  window:
    description: The window, as Prometheus reads a duration (C(60s), C(5m)).
    type: str
    default: 60s
  thresholds:
    description:
      - Per check, C([relative, absolute]) replacing the default. Checks - C(error_ratio)
        (2.0, 0.01), C(latency_p95) (1.5, 0.05 s), C(latency_p99) (1.5, 0.1 s),
        C(refused_entries) (1.0, 0), C(lag_entries) (2.0, 50), C(restarts) (1.0, 0),
        C(memory_growth) (1.5, 64 MiB).
    type: dict
    default: {}
  min_requests:
    description: Requests a route needs in the window to be judged.
    type: int
    default: 50
author: CodeGraph Ops
"""

EXAMPLES = r"""
- name: Judge the canary against the rest of the fleet
  codegraph.ops.canary_analysis:
    prometheus_url: "https://{{ groups['monitoring'][0] }}:9090"
    username: scrape
    password: "{{ monitoring_scrape_password }}"
    ca_path: /etc/codegraph/ca.crt
    batch: [app1]
    baseline: [app2, app3]
    window: 60s
  delegate_to: localhost
  register: analysis
"""

RETURN = r"""
verdict:
  description: pass, fail or inconclusive.
  type: str
  returned: always
rows:
  description: One per check and route - check, scope, batch, baseline, limit, verdict.
  type: list
  elements: dict
  returned: always
table:
  description: The rows as a Markdown table.
  type: str
  returned: always
"""

import json
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.codegraph.ops.plugins.module_utils.canary import (
    PER_ROUTE,
    analyse,
    markdown,
    queries,
    verdict,
)


def _query(module, promql, per_route):
    """The instant query's answer: {handler: value} per route, else one number."""
    params = module.params
    url = params["prometheus_url"].rstrip("/") + "/api/v1/query?" + urlencode({"query": promql})
    try:
        answer = json.load(
            open_url(
                url,
                url_username=params["username"],
                url_password=params["password"],
                force_basic_auth=bool(params["username"]),
                ca_path=params["ca_path"],
                timeout=10,
            )
        )
    except Exception as error:  # unreachable, refused, not JSON: the rollout stops
        module.fail_json(msg=f"Prometheus did not answer {promql!r}: {error}")
    if answer.get("status") != "success":
        module.fail_json(msg=f"Prometheus refused {promql!r}: {answer.get('error')}")
    found = {}
    for sample in answer["data"]["result"]:
        value = float(sample["value"][1])
        if value == value:  # NaN: no requests, no ratio
            found[sample["metric"].get("handler", "")] = value
    return found if per_route else found.get("")


def main():
    module = AnsibleModule(
        argument_spec={
            "prometheus_url": {"type": "str", "required": True},
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "ca_path": {"type": "path"},
            "batch": {"type": "list", "elements": "str", "required": True},
            "baseline": {"type": "list", "elements": "str", "required": True},
            "window": {"type": "str", "default": "60s"},
            "thresholds": {"type": "dict", "default": {}},
            "min_requests": {"type": "int", "default": 50},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not params["baseline"]:
        module.fail_json(msg="baseline is empty: there is nothing to compare the batch with")
    results = {}
    for side in ("batch", "baseline"):
        asked = queries(params["window"], params[side])
        results[side] = {
            check: _query(module, promql, check in PER_ROUTE or check == "requests")
            for check, promql in asked.items()
        }
    thresholds = {name: tuple(value) for name, value in params["thresholds"].items()}
    rows = analyse(results["batch"], results["baseline"], thresholds, params["min_requests"])
    module.exit_json(
        changed=False,
        verdict=verdict(rows),
        rows=rows,
        table=markdown(rows, ", ".join(params["batch"])),
    )


if __name__ == "__main__":
    main()
