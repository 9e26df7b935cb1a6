#!/usr/bin/python
# Copyright: CodeGraph Ops
# Apache License 2.0 (see LICENSE)
"""Judge a batch of hosts on a new release against the hosts on the old one, in Prometheus."""

from __future__ import annotations

DOCUMENTATION = r"""
module: canary_analysis
short_description: Judge a rollout batch against the hosts still on the old release
version_added: 3.0.0
description:
  - Asks Prometheus, over one window, for the batch's hosts and the baseline's, per host -
    requests by route and status code, the answer-time histogram, the replication
    applier's refused entries and lag, restarts, resident memory growth, scrape
    completeness (C(up)), and HAProxy's view of each server (5xx, retries, failed health
    checks) - and judges the batch against the baseline.
  - Only user traffic is judged - O(probe_routes) (health checks, scrapes) never are.
    Every route the baseline serves is judged on the batch - its share of the traffic (a
    route that disappears or moves to another label fails), its 5xx share, the share of
    each 4xx code, and its latency as the share of requests over the bucket boundary
    nearest the limit the baseline's quantile makes. A route only the batch serves is
    judged on its errors against the absolute margins alone.
  - Each count is judged by a one-sided exact test knowing both sample sizes (Fisher's;
    binomial for a new route) - a row fails when the batch is past its limit and the test
    says so at O(confidence); it is inconclusive only when the test cannot decide.
  - Host checks compare each batch host with the baseline hosts' median. A series the
    baseline has and a batch host lacks fails; no data anywhere never counts as a pass.
  - The verdict is V(fail) if any row fails; V(inconclusive) with no user traffic, or
    while a route with at least O(busy_share) of the baseline's traffic cannot be decided;
    V(pass) otherwise.
  - The window runs from O(since) (when the batch went back behind the load balancer on
    the new release) to O(until) (now by default), so retrying the task (C(until)) judges a
    longer window each time.
  - Fails closed - Prometheus unreachable, a refused login or a query that fails makes the
    module fail, so a rollout cannot go on without its analysis.
  - "Read-only; runs on the controller (C(delegate_to: localhost))."
author: CodeGraph Ops (@codegraph-ops)
attributes:
  check_mode:
    support: full
    description: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing is changed.
options:
  prometheus_url:
    description: Prometheus' base URL, e.g. V(https://ops1.example.com:9090).
    type: str
    required: true
  username:
    description: Basic auth user of Prometheus' web configuration.
    type: str
  password:
    description: Its password.
    type: str
  ca_path:
    description: The CA Prometheus' certificate chains to (the fleet CA).
    type: path
  batch:
    description: The C(instance) labels (inventory names) of the hosts on the new release.
    type: list
    elements: str
    required: true
  baseline:
    description:
      - The hosts still on the old release, judged over the same window.
      - Empty when the whole fleet is in the batch - the baseline is then the batch's own
        hosts over a window as long ending at O(baseline_until) (before they switched).
    type: list
    elements: str
    default: []
  since:
    description:
      - Unix time at which the batch took traffic on the new release.
      - Required unless O(validate_only).
    type: float
  until:
    description: Unix time at which the window ends; now when not given.
    type: float
  baseline_until:
    description:
      - Unix time at which the baseline's window ends; O(until) when not given.
      - Required when O(baseline) is empty.
    type: float
  thresholds:
    description:
      - Per check, C(relative) (a factor >= 1) and/or C(absolute) (>= 0) replacing the
        defaults. Checks and defaults (relative, absolute) - C(traffic_share) (2.0, 0),
        C(error_ratio) (2.0, 0.01), C(client_error_ratio) (2.0, 0.02), C(latency_p95)
        (1.5, 0.05 s), C(latency_p99) (1.5, 0.1 s), C(lb_error_ratio) (2.0, 0.01),
        C(refused_entries) (1.0, 0), C(lag_entries) (2.0, 50), C(restarts) (1.0, 0),
        C(memory_growth) (2.0, 256 MiB), C(user_requests) (4.0, 10), C(scrape_up) (1.0,
        0.1), C(lb_retries) (2.0, 5), C(lb_check_failures) (1.0, 0).
      - A higher-is-worse check's limit is the larger of the baseline times C(relative)
        and the baseline plus C(absolute); a lower-is-worse one's (C(traffic_share),
        C(user_requests), C(scrape_up)) the smaller of the baseline divided by
        C(relative) and the baseline minus C(absolute).
    type: dict
    default: {}
  route_thresholds:
    description:
      - "Per route, per-route checks' thresholds over O(thresholds), e.g.
        C({'/search': {'latency_p99': {'absolute': 0.3}}}). That route is then judged by
        them alone (it leaves the all-routes row of those checks)."
    type: dict
    default: {}
  checks:
    description:
      - The operator's checks. Each has C(name), C(query) (PromQL with C($instances), the
        side's hosts as a regex, and C($window)), C(direction) (V(higher_is_worse), the
        default, or V(lower_is_worse)), C(relative) (1.0), C(absolute) (0), C(critical)
        (true; a failure of a check that is not critical is a warning) and C(dry_run)
        (false; reported, never counted).
      - A query whose answer keeps C(instance) is judged per host against the baseline
        hosts' median; otherwise its one number a side is compared.
    type: list
    elements: dict
    default: []
  confidence:
    description: How sure a test must be before a row past its limit fails, in [0.5, 1).
    type: float
    default: 0.99
  busy_share:
    description:
      - A route with at least this share of the baseline's user traffic holds the verdict
        while its test cannot decide; rarer routes are reported only.
    type: float
    default: 0.05
  probe_routes:
    description: Routes that are not user traffic (health checks, probes, scrapes).
    type: list
    elements: str
    default: [/ready, /health, /metrics]
  service_job:
    description: The C(job) label of the service's metrics.
    type: str
    default: codegraph
  lb_job:
    description: The C(job) label of HAProxy's own metrics.
    type: str
    default: haproxy
  lb_backend:
    description: HAProxy's backend (C(proxy) label) holding the app hosts as servers.
    type: str
    default: codegraph
  grafana_url:
    description: Grafana's base URL, for an explore link beside each row.
    type: str
  grafana_datasource:
    description: The Prometheus data source's name or uid in Grafana.
    type: str
  validate_only:
    description:
      - Check O(thresholds), O(route_thresholds) and O(checks), and ask Prometheus every
        query once for O(batch) (it parses the operator's PromQL), without judging - for a
        preflight before any host is touched.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for each answer of Prometheus.
    type: float
    default: 10
"""

EXAMPLES = r"""
- name: Judge the canary against the rest of the fleet
  codegraph.ops.canary_analysis:
    prometheus_url: "https://{{ groups['monitoring'][0] }}:9090"
    username: prometheus
    password: "{{ monitoring_scrape_password }}"
    ca_path: "{{ codegraph_tls_secrets_dir }}/ca.crt"
    batch: [app1]
    baseline: [app2, app3]
    since: "{{ canary_enabled_at }}"
    route_thresholds:
      /search: {latency_p99: {absolute: 0.25}}
  delegate_to: localhost
  register: analysis
  until: analysis.verdict != 'inconclusive'
  retries: 10
  delay: 30

- name: Check the thresholds and an operator's check before any host is touched
  codegraph.ops.canary_analysis:
    prometheus_url: "https://{{ groups['monitoring'][0] }}:9090"
    username: prometheus
    password: "{{ monitoring_scrape_password }}"
    ca_path: "{{ codegraph_tls_secrets_dir }}/ca.crt"
    batch: "{{ groups['codegraph'] }}"
    checks:
      - name: queue_depth
        query: 'max by (instance) (max_over_time(my_queue_depth{instance=~"$instances"}[$window]))'
        absolute: 10
    validate_only: true
  delegate_to: localhost
"""

RETURN = r"""
verdict:
  description: V(pass), V(fail) or V(inconclusive).
  type: str
  returned: unless validate_only
why:
  description: The failed rows, or what keeps the verdict inconclusive; empty on a pass.
  type: str
  returned: unless validate_only
rows:
  description:
    - One per check and scope (a route, all routes, C(hosts) or C(operator)) - check,
      scope, status (the code class of a count row), direction, batch, baseline, limit,
      verdict (pass, fail, inconclusive, no data, warn) and why; counts (events and
      requests of batch and baseline) and p_value for a test; hosts (each host's value
      or counts, batch and baseline); queries (the resolved PromQL of both sides); links
      (Prometheus, and Grafana with O(grafana_url)).
  type: list
  elements: dict
  returned: unless validate_only
table:
  description: The rows as a Markdown table, failures first.
  type: str
  returned: unless validate_only
window:
  description: Seconds of traffic judged.
  type: int
  returned: unless validate_only
checks:
  description: The operator's checks that Prometheus parsed (O(validate_only)).
  type: list
  elements: str
  returned: when validate_only
"""

import contextlib
import json
import time
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url
from ansible_collections.codegraph.ops.plugins.module_utils.canary import (
    DEFAULT_PROBE_ROUTES,
    analyse,
    checks_with,
    thresholds_with,
    verdict,
)
from ansible_collections.codegraph.ops.plugins.module_utils.canary_promql import (
    SOURCE,
    links,
    markdown,
    parse,
    side_queries,
    side_results,
)


def _query(module, promql, at):
    """The instant query's answer (a vector) at time `at`; fails the module (closed)
    when Prometheus does not answer or refuses the query."""
    params = module.params
    url = params["prometheus_url"].rstrip("/") + "/api/v1/query"
    try:
        response = open_url(
            url,
            method="POST",
            data=urlencode({"query": promql, "time": f"{at:.3f}"}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            url_username=params["username"],
            url_password=params["password"],
            force_basic_auth=bool(params["username"]),
            ca_path=params["ca_path"],
            timeout=params["timeout"],
        )
        answer = json.loads(response.read())
    except Exception as error:  # unreachable, refused, not JSON: the rollout stops
        body = getattr(error, "read", None)
        detail = ""
        if body is not None and getattr(error, "code", 0) == 400:  # a query Prometheus refused
            with contextlib.suppress(Exception):  # not JSON: the error itself says enough
                detail = json.loads(body()).get("error", "")
        if detail:
            module.fail_json(msg=f"Prometheus refused {promql!r}: {detail}")
        module.fail_json(msg=f"Prometheus at {params['prometheus_url']} did not answer: {error}")
    if answer.get("status") != "success":
        module.fail_json(msg=f"Prometheus refused {promql!r}: {answer.get('error')}")
    if answer["data"].get("resultType") == "scalar":
        return [{"metric": {}, "value": answer["data"]["result"]}]
    return answer["data"]["result"]


def _side(module, hosts, window, at, checks):
    """One side's results and the PromQL that gave them."""
    queries = side_queries(hosts, window, _jobs(module.params), checks)
    answers = {
        name: parse(_query(module, promql, at), keys) for name, (promql, keys) in queries.items()
    }
    return side_results(answers), {name: query[0] for name, query in queries.items()}


def _jobs(params):
    return {
        "service": params["service_job"],
        "lb": params["lb_job"],
        "backend": params["lb_backend"],
    }


def _validated(module):
    """The operator's thresholds and checks, or the module fails naming what is wrong."""
    params = module.params
    try:
        thresholds_with(params["thresholds"], params["route_thresholds"])
        checks = checks_with(params["checks"])
    except ValueError as error:
        module.fail_json(msg=f"thresholds or checks: {error}")
    if not 0.5 <= params["confidence"] < 1:
        module.fail_json(msg=f"confidence must be in [0.5, 1), not {params['confidence']}")
    if not 0 <= params["busy_share"] <= 1:
        module.fail_json(msg=f"busy_share must be in [0, 1], not {params['busy_share']}")
    return checks


def main():
    module = AnsibleModule(
        argument_spec={
            "prometheus_url": {"type": "str", "required": True},
            "username": {"type": "str"},
            "password": {"type": "str", "no_log": True},
            "ca_path": {"type": "path"},
            "batch": {"type": "list", "elements": "str", "required": True},
            "baseline": {"type": "list", "elements": "str", "default": []},
            "since": {"type": "float"},
            "until": {"type": "float"},
            "baseline_until": {"type": "float"},
            "thresholds": {"type": "dict", "default": {}},
            "route_thresholds": {"type": "dict", "default": {}},
            "checks": {"type": "list", "elements": "dict", "default": []},
            "confidence": {"type": "float", "default": 0.99},
            "busy_share": {"type": "float", "default": 0.05},
            "probe_routes": {
                "type": "list",
                "elements": "str",
                "default": list(DEFAULT_PROBE_ROUTES),
            },
            "service_job": {"type": "str", "default": "codegraph"},
            "lb_job": {"type": "str", "default": "haproxy"},
            "lb_backend": {"type": "str", "default": "codegraph"},
            "grafana_url": {"type": "str"},
            "grafana_datasource": {"type": "str"},
            "validate_only": {"type": "bool", "default": False},
            "timeout": {"type": "float", "default": 10},
        },
        supports_check_mode=True,
    )
    params = module.params
    if not params["batch"]:
        module.fail_json(msg="batch is empty: there is no host to judge")
    checks = _validated(module)
    if params["validate_only"]:  # every query, the operator's too, parsed and run once now
        _side(module, params["batch"], 60, time.time(), checks)
        module.exit_json(changed=False, checks=[check["name"] for check in checks])
    if params["since"] is None:
        module.fail_json(msg="since is required: when the batch took traffic on the new release")
    if not params["baseline"] and params["baseline_until"] is None:
        module.fail_json(
            msg="baseline is empty and baseline_until not given: nothing to compare the batch with"
        )
    until = params["until"] if params["until"] is not None else time.time()
    window = int(until - params["since"])
    if window < 1:
        module.fail_json(msg=f"the window ends {until - params['since']:.1f} s after it starts")
    baseline_hosts = params["baseline"] or params["batch"]
    baseline_until = params["baseline_until"] if params["baseline_until"] is not None else until
    batch, batch_queries = _side(module, params["batch"], window, until, checks)
    baseline, baseline_queries = _side(module, baseline_hosts, window, baseline_until, checks)
    rows = analyse(
        batch,
        baseline,
        params["batch"],
        params["thresholds"],
        params["route_thresholds"],
        checks,
        params["confidence"],
        params["probe_routes"],
    )
    for row in rows:
        source = SOURCE.get(row["check"], row["check"])
        source = source if source in batch_queries else "custom:" + row["check"]
        row["queries"] = {"batch": batch_queries[source], "baseline": baseline_queries[source]}
        row["links"] = links(
            params["prometheus_url"],
            batch_queries[source],
            until - window,
            until,
            params["grafana_url"],
            params["grafana_datasource"],
        )
    outcome, why = verdict(rows, params["busy_share"])
    module.exit_json(
        changed=False,
        verdict=outcome,
        why=why,
        rows=rows,
        table=markdown(rows, ", ".join(params["batch"])),
        window=window,
    )


if __name__ == "__main__":
    main()
