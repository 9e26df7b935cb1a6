"""The canary judge's verdicts from recorded numbers (module_utils/canary.py): a gallery of
bad releases that must fail and good ones that must pass, in every batch size.

A side is what canary_promql.side_results() makes of Prometheus' answers; `_host()` writes
one host's window of traffic the way the service counts it."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction
from pathlib import Path

import pytest
from ansible_collections.codegraph.ops.plugins.module_utils.canary import (
    ALL_ROUTES,
    DEFAULT_PROBE_ROUTES,
    DEFAULT_THRESHOLDS,
    FAIL,
    HIGHER,
    HOST_CHECKS,
    INCONCLUSIVE,
    LOWER,
    NO_DATA,
    PASS,
    QUANTILES,
    WARN,
    analyse,
    checks_with,
    judge_counts,
    quantile,
    thresholds_with,
    verdict,
)
from ansible_collections.codegraph.ops.plugins.module_utils.canary_promql import markdown
from ansible_collections.codegraph.ops.plugins.module_utils.canary_stats import (
    binomial_at_least,
    fisher_greater,
    fisher_less,
    hypergeom_at_least,
    median,
)

COLLECTION = Path(__file__).resolve().parents[4]
BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, math.inf)
# a route's answers: requests in the window, and the share answered within 5 ms (the
# rest within 10 ms)
ROUTES = {"/search": 300, "/nodes/{node_id}": 900, "/stats": 60}
HEALTHY = {"refused_entries": 3.0, "lag_entries": 2.0, "restarts": 0.0, "memory_growth": 1e6}


def _host(name, routes=None, codes=None, slow=None, probes=150, host_checks=None, lb=None):
    """One host's window: routes {route: requests} answered 200 unless codes {route:
    {code: count}} says otherwise; slow {route: [(seconds, count)]} answered that slowly;
    HAProxy's health checks on /ready; host-level values; HAProxy's view (lb {class: n})."""
    routes = dict(ROUTES if routes is None else routes)
    requests, buckets = {}, {}
    for route, count in routes.items():
        by_code = dict((codes or {}).get(route, {}))
        by_code["200"] = count - sum(by_code.values())
        for code, n in by_code.items():
            requests[(name, route, code)] = float(n)
        late = (slow or {}).get(route, [])
        fast = count - sum(pair[1] for pair in late)
        times = [(0.004, fast // 2), (0.008, fast - fast // 2), *late]
        for bound in BOUNDS:
            buckets[(route, bound)] = sum(n for seconds, n in times if seconds <= bound)
    if probes:
        requests[(name, "/ready", "200")] = float(probes)
    checks = dict(HEALTHY, scrape_up=1.0, lb_retries=0.0, lb_check_failures=0.0)
    checks.update(host_checks or {})
    responses = lb or {"2xx": sum(routes.values()), "5xx": 0}
    return {
        "requests": requests,
        "buckets": buckets,
        "lb_responses": {(name, kind): float(n) for kind, n in responses.items()},
        "hosts": {check: {name: value} for check, value in checks.items() if value is not None},
    }


def _side(*hosts):
    """Hosts' windows as one side (their counts and buckets add up, as PromQL's sum)."""
    side = {"requests": {}, "buckets": {}, "lb_responses": {}, "hosts": {}, "custom": {}}
    for host in hosts:
        side["requests"].update(host["requests"])
        side["lb_responses"].update(host["lb_responses"])
        for key, count in host["buckets"].items():
            side["buckets"][key] = side["buckets"].get(key, 0) + count
        for check, values in host["hosts"].items():
            side["hosts"].setdefault(check, {}).update(values)
    return side


def _judge(batch_hosts, baseline_hosts, **options):
    """(verdict, reason, rows) of batch hosts against baseline hosts."""
    rows = analyse(
        _side(*batch_hosts),
        _side(*baseline_hosts),
        [host["name"] for host in batch_hosts],
        **options,
    )
    return (*verdict(rows), rows)


def _named(name, **window):
    host = _host(name, **window)
    host["name"] = name
    return host


def _failed(rows):
    return {
        (row["check"], row["scope"], row.get("status")) for row in rows if row["verdict"] == FAIL
    }


# --- bad releases fail -------------------------------------------------------------


def test_a_release_refusing_every_api_key_fails():
    """Its traffic moves to (unauthenticated) 401s with no error: the routes the baseline
    serves vanish from it, and its share of 401s jumps."""
    refused = {"(unauthenticated)": sum(ROUTES.values())}
    canary = _named("app1", routes=refused, codes={"(unauthenticated)": {"401": 1260}})
    outcome, why, rows = _judge([canary], [_named("app2"), _named("app3")])
    assert outcome == FAIL, why
    failed = _failed(rows)
    assert {("traffic_share", route, None) for route in ROUTES} <= failed
    assert ("client_error_ratio", ALL_ROUTES, "401") in failed


def test_a_route_removed_by_mistake_fails():
    """/stats renamed: its calls are now 404s under (unmatched)."""
    routes = {"/search": 300, "/nodes/{node_id}": 900, "(unmatched)": 60}
    canary = _named("app1", routes=routes, codes={"(unmatched)": {"404": 60}})
    outcome, why, rows = _judge([canary], [_named("app2"), _named("app3")])
    assert outcome == FAIL, why
    assert ("traffic_share", "/stats", None) in _failed(rows)
    assert ("client_error_ratio", ALL_ROUTES, "404") in _failed(rows)


def test_a_quiet_fleet_canary_failing_30_of_30_searches_fails():
    """30 searches per host in the window, and HAProxy's 150 health checks: the checks do
    not make it judged, the 30 failures do."""
    quiet = {"/search": 30}
    canary = _named("app1", routes=quiet, codes={"/search": {"500": 30}})
    outcome, why, rows = _judge(
        [canary], [_named("app2", routes=quiet), _named("app3", routes=quiet)]
    )
    assert outcome == FAIL, why
    assert ("error_ratio", "/search", "5xx") in _failed(rows)
    assert not any(row["scope"] == "/ready" for row in rows)


def test_a_canary_without_replication_metrics_fails():
    missing = {"refused_entries": None, "lag_entries": None}
    outcome, why, rows = _judge([_named("app1", host_checks=missing)], [_named("app2")])
    assert outcome == FAIL, why
    assert {("refused_entries", "hosts", None), ("lag_entries", "hosts", None)} <= _failed(rows)
    assert "no data from app1" in why


def test_a_restarting_canary_refusing_twice_the_entries_fails_though_one_baseline_host_restarted():
    canary = _named("app1", host_checks={"restarts": 1.0, "refused_entries": 19.0})
    baseline = [
        _named("app2", host_checks={"refused_entries": 10.0}),
        _named("app3", host_checks={"refused_entries": 10.0, "restarts": 1.0}),
        _named("app4", host_checks={"refused_entries": 10.0}),
    ]
    outcome, why, rows = _judge([canary], baseline)
    assert outcome == FAIL, why
    assert {("restarts", "hosts", None), ("refused_entries", "hosts", None)} <= _failed(rows)


def test_a_later_batch_with_one_failing_host_fails():
    bad = _named("app3", codes={"/search": {"503": 60}})
    outcome, why, rows = _judge([_named("app2"), bad], [_named("app4")])
    assert outcome == FAIL, why
    assert ("error_ratio", "/search", "5xx") in _failed(rows)


def test_a_rising_share_of_one_4xx_code_on_a_route_fails():
    base_codes = {"/nodes/{node_id}": {"404": 45}}  # 5 % of lookups miss: the clients' doing
    canary = _named("app1", codes={"/nodes/{node_id}": {"404": 270}})
    outcome, why, rows = _judge(
        [canary], [_named("app2", codes=base_codes), _named("app3", codes=base_codes)]
    )
    assert outcome == FAIL, why
    assert ("client_error_ratio", "/nodes/{node_id}", "404") in _failed(rows)


def test_a_slower_route_fails_its_latency():
    canary = _named("app1", slow={"/search": [(0.2, 60)]})  # a fifth of searches at 200 ms
    outcome, why, rows = _judge([canary], [_named("app2"), _named("app3")])
    assert outcome == FAIL, why
    assert {("latency_p95", "/search", None), ("latency_p99", "/search", None)} <= _failed(rows)


def test_haproxy_seeing_5xx_and_failed_checks_from_the_canary_fails():
    canary = _named("app1", lb={"2xx": 1100, "5xx": 160}, host_checks={"lb_check_failures": 4.0})
    outcome, why, rows = _judge([canary], [_named("app2"), _named("app3")])
    assert outcome == FAIL, why
    assert {("lb_error_ratio", "hosts", None), ("lb_check_failures", "hosts", None)} <= _failed(
        rows
    )


def test_a_canary_missing_scrapes_or_given_no_traffic_fails():
    outcome, _why, rows = _judge([_named("app1", host_checks={"scrape_up": 0.5})], [_named("app2")])
    assert outcome == FAIL and ("scrape_up", "hosts", None) in _failed(rows)
    outcome, _why, rows = _judge([_named("app1", routes={})], [_named("app2"), _named("app3")])
    assert outcome == FAIL and ("user_requests", "hosts", None) in _failed(rows)


# --- good releases pass ------------------------------------------------------------


def test_a_canary_identical_to_its_baseline_passes_every_row():
    outcome, why, rows = _judge([_named("app1")], [_named("app2"), _named("app3")])
    assert outcome == PASS, why
    assert {row["verdict"] for row in rows} == {PASS}, markdown(rows, "app1")


@pytest.mark.parametrize("batch_size", [1, 2, 3, 4])
def test_identical_hosts_pass_in_every_batch_size(batch_size):
    hosts = [_named(f"app{number}") for number in range(1, 6)]
    outcome, why, rows = _judge(hosts[:batch_size], hosts[batch_size:])
    assert outcome == PASS, why
    refused = next(row for row in rows if row["check"] == "refused_entries")
    assert refused["batch"] == refused["baseline"] == 3.0


def test_one_cold_request_among_60_passes():
    quiet = {"/search": 60}
    canary = _named("app1", routes=quiet, slow={"/search": [(0.4, 1)]})
    outcome, why, rows = _judge([canary], [_named("app2", routes=quiet)])
    assert outcome == PASS, why
    p99 = next(row for row in rows if row["check"] == "latency_p99" and row["scope"] == "/search")
    assert p99["batch"] > p99["limit"] and p99["verdict"] == PASS  # past it, by chance alone


def test_a_new_route_by_design_is_reported_and_judged_on_its_errors_only():
    routes = dict(ROUTES, **{"/v2/graph": 100})
    canary = _named("app1", routes=routes, slow={"/v2/graph": [(0.2, 100)]})
    outcome, why, rows = _judge([canary], [_named("app2"), _named("app3")])
    assert outcome == PASS, why
    new = {row["check"]: row for row in rows if row["scope"] == "/v2/graph"}
    assert new["error_ratio"]["verdict"] == PASS and "new route" in new["error_ratio"]["why"]
    assert new["latency_p99"]["verdict"] == NO_DATA
    broken = _named("app1", routes=routes, codes={"/v2/graph": {"500": 20}})
    outcome, why, _rows = _judge([broken], [_named("app2")])
    assert outcome == FAIL and "error_ratio on /v2/graph" in why


def test_no_data_at_all_fails_even_where_a_quiet_fleet_would_proceed():
    rows = analyse({}, {}, ["app1"])
    assert verdict(rows) == (
        FAIL,
        "no data at all for the batch or the baseline: is Prometheus scraping them?",
    )


def test_health_checks_alone_are_no_user_traffic():
    idle = {}
    outcome, why, _rows = _judge([_named("app1", routes=idle)], [_named("app2", routes=idle)])
    assert outcome == INCONCLUSIVE and why.startswith("no user traffic")


def test_a_busy_route_the_test_cannot_decide_yet_holds_the_verdict():
    few = {"/search": 1}
    outcome, why, rows = _judge(
        [_named("app1", routes=few)], [_named("app2", routes={"/search": 2})]
    )
    assert outcome == INCONCLUSIVE, why
    assert "too few requests to decide" in why
    # a rare route (under busy_share of the baseline's traffic) is reported, not waited for
    rare = dict(ROUTES, **{"/backup": 1})
    outcome, why, rows = _judge([_named("app1")], [_named("app2", routes=rare)])
    assert outcome == PASS, why
    backup = next(
        row for row in rows if row["scope"] == "/backup" and row["check"] == "traffic_share"
    )
    assert backup["verdict"] == INCONCLUSIVE


# --- thresholds and the operator's checks ---------------------------------------------


def test_a_route_threshold_applies_to_that_route_only():
    canary = _named("app1", slow={"/search": [(0.2, 60)], "/stats": [(0.2, 12)]})
    loose = {"/search": {"latency_p95": {"absolute": 0.5}, "latency_p99": {"absolute": 0.5}}}
    outcome, _why, rows = _judge([canary], [_named("app2")], route_thresholds=loose)
    assert outcome == FAIL
    assert {row["scope"] for row in rows if row["verdict"] == FAIL} == {"/stats"}


def test_a_check_threshold_applies():
    canary = _named("app1", codes={"/search": {"500": 30}})  # 10 %
    assert _judge([canary], [_named("app2")])[0] == FAIL
    loose = {"error_ratio": {"absolute": 0.2}}
    assert _judge([canary], [_named("app2")], thresholds=loose)[0] == PASS


def test_the_operators_checks_critical_not_critical_and_dry_run():
    checks = checks_with(
        [
            {"name": "queue", "query": "x{instance=~'$instances'}[$window]", "absolute": 5},
            {"name": "gc", "query": "$instances $window", "critical": False},
            {"name": "trial", "query": "$instances $window", "dry_run": True},
        ]
    )
    batch, baseline = _side(_named("app1")), _side(_named("app2"))
    batch["custom"] = {"queue": {"app1": 20.0}, "gc": {"app1": 9.0}, "trial": {"": 9.0}}
    baseline["custom"] = {"queue": {"app2": 10.0}, "gc": {"app2": 1.0}, "trial": {"": 1.0}}
    rows = analyse(batch, baseline, ["app1"], checks=checks)
    found = {row["check"]: row["verdict"] for row in rows if row["scope"] == "operator"}
    assert found == {"queue": FAIL, "gc": WARN, "trial": WARN}
    assert verdict(rows)[0] == FAIL
    batch["custom"]["queue"] = {"app1": 14.0}  # within the absolute margin of 5
    rows = analyse(batch, baseline, ["app1"], checks=checks)
    assert verdict(rows)[0] == PASS


KNOWN = ", ".join(DEFAULT_THRESHOLDS)


@pytest.mark.parametrize(
    ("thresholds", "routes", "message"),
    [
        ({"latency_p100": {"absolute": 1}}, None, f"unknown check 'latency_p100' (known: {KNOWN})"),
        (
            {"error_ratio": {"absolute": -0.1}},
            None,
            "error_ratio.absolute must be a number >= 0, not -0.1",
        ),
        (
            {"error_ratio": {"absolute": True}},
            None,
            "error_ratio.absolute must be a number >= 0, not True",
        ),
        (
            {"error_ratio": {"absolute": "1"}},
            None,
            "error_ratio.absolute must be a number >= 0, not '1'",
        ),
        (
            {"error_ratio": {"relative": 0.5}},
            None,
            "error_ratio.relative must be >= 1 (a factor), not 0.5",
        ),
        (
            {"error_ratio": 0.1},
            None,
            "error_ratio: give a dict of relative and/or absolute, not 0.1",
        ),
        ({"error_ratio": {}}, None, "error_ratio: give a dict of relative and/or absolute, not {}"),
        (
            {"error_ratio": {"margin": 1}},
            None,
            "error_ratio: give a dict of relative and/or absolute, not {'margin': 1}",
        ),
        (
            {},
            {"/search": {"restarts": {"absolute": 1}}},
            "route '/search': 'restarts' is not a per-route check",
        ),
        (
            {},
            {"/search": {"latency_p150": {"absolute": 1}}},
            "route '/search': 'latency_p150' is not a per-route check",
        ),
        ({}, {"/search": 1}, "route '/search': give a dict of checks, not 1"),
        (
            {},
            {"/s": {"error_ratio": {"absolute": -1}}},
            "/s.error_ratio.absolute must be a number >= 0, not -1",
        ),
    ],
)
def test_bad_thresholds_are_refused_naming_why(thresholds, routes, message):
    with pytest.raises(ValueError) as refused:
        thresholds_with(thresholds, routes)
    assert str(refused.value) == message


def test_a_route_threshold_keeps_the_checks_other_limit():
    limits, per_route = thresholds_with(
        {"error_ratio": {"relative": 3}}, {"/s": {"error_ratio": {"absolute": 0.2}}}
    )
    assert per_route == {"/s": {"error_ratio": {"relative": 3.0, "absolute": 0.2}}}
    assert limits["error_ratio"] == {"relative": 3.0, "absolute": 0.01}
    assert thresholds_with(None, None) == (DEFAULT_THRESHOLDS, {})


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("queue", "a check is a dict, not 'queue'"),
        (
            {"name": "Bad-Name", "query": "$instances $window"},
            "check name 'Bad-Name': lowercase letters, digits and _",
        ),
        ({"query": "$instances $window"}, "check name None: lowercase letters, digits and _"),
        (
            {"name": "restarts", "query": "$instances $window"},
            "check 'restarts' is named twice (or like a built-in check)",
        ),
        ({"name": "a", "query": "up"}, "check 'a': query must use $instances and $window"),
        ({"name": "a", "query": "up[$window]"}, "check 'a': query must use $instances and $window"),
        (
            {"name": "a", "query": "{$instances}"},
            "check 'a': query must use $instances and $window",
        ),
        ({"name": "a", "query": 1}, "check 'a': query must use $instances and $window"),
        (
            {"name": "a", "query": "$instances $window", "direction": "up"},
            "check 'a': direction is higher_is_worse or lower_is_worse",
        ),
        (
            {"name": "a", "query": "$instances $window", "critical": "yes"},
            "check 'a': critical is true or false, not 'yes'",
        ),
        (
            {"name": "a", "query": "$instances $window", "dry_run": 1},
            "check 'a': dry_run is true or false, not 1",
        ),
        (
            {"name": "a", "query": "$instances $window", "oops": 1, "bad": 2},
            "check 'a': unknown keys bad, oops",
        ),
        (
            {"name": "a", "query": "$instances $window", "relative": 0.5},
            "a.relative must be >= 1 (a factor), not 0.5",
        ),
    ],
)
def test_bad_checks_are_refused_naming_why(check, message):
    with pytest.raises(ValueError) as refused:
        checks_with([check])
    assert str(refused.value) == message


def test_a_check_gets_its_defaults_and_keeps_what_it_gives():
    [check] = checks_with([{"name": "a", "query": "$instances $window"}])
    assert check == {
        "name": "a",
        "query": "$instances $window",
        "direction": "higher_is_worse",
        "relative": 1.0,
        "absolute": 0.0,
        "critical": True,
        "dry_run": False,
    }
    given = {
        "name": "b",
        "query": "$window $instances",
        "direction": "lower_is_worse",
        "relative": 2,
    }
    given.update(absolute=3, critical=False, dry_run=True)
    assert checks_with([given]) == [dict(given, relative=2.0, absolute=3.0)]
    with pytest.raises(ValueError, match="named twice"):
        checks_with([given, given])
    assert checks_with(None) == []


def test_limits_take_the_looser_of_the_factor_and_the_margin():
    """A 5 % baseline may reach 10 % (the factor, looser than + 1 point); a route at 70 %
    of its share is within half; scrape_up exactly at its limit passes."""
    base = _named("app2", codes={"/search": {"500": 15}})
    assert _judge([_named("app1", codes={"/search": {"500": 24}})], [base])[0] == PASS
    assert _judge([_named("app1", codes={"/search": {"500": 45}})], [base])[0] == FAIL
    fewer = dict(ROUTES, **{"/search": 180})  # 0.2 of traffic against 0.24, significant
    outcome, why, _rows = _judge([_named("app1", routes=fewer)], [_named("app2")])
    assert outcome == PASS, why
    edge = _named("app1", host_checks={"scrape_up": 0.9})
    assert _judge([edge], [_named("app2")])[0] == PASS
    assert _judge([_named("app1", host_checks={"scrape_up": 0.89})], [_named("app2")])[0] == FAIL


def test_a_lower_is_worse_count_decides_when_the_worst_split_would_be_significant():
    assert judge_counts((3, 6), (6, 6), 0.5, "lower_is_worse", 0.99)["verdict"] == PASS
    assert judge_counts((0, 6), (6, 6), 0.5, "lower_is_worse", 0.99)["verdict"] == FAIL
    assert judge_counts((0, 3), (3, 3), 0.5, "lower_is_worse", 0.99)["verdict"] == INCONCLUSIVE
    assert judge_counts((0, 0), (3, 3), 0.5, "lower_is_worse", 0.99) == {
        "verdict": "no data",
        "why": "no requests on the batch",
    }
    assert judge_counts((1, 2), (0, 0), 0.5, "higher_is_worse", 0.99) == {
        "verdict": "no data",
        "why": "new route: no baseline to compare with",
    }


# --- the contract: the words the role reads, the defaults the docs give ---------------


def test_the_verdicts_and_directions_are_the_words_the_role_and_reports_read():
    assert (PASS, FAIL, INCONCLUSIVE, NO_DATA, WARN) == (
        "pass",
        "fail",
        "inconclusive",
        "no data",
        "warn",
    )
    assert (HIGHER, LOWER, ALL_ROUTES) == ("higher_is_worse", "lower_is_worse", "(all routes)")


def _documented_defaults():
    """docs/operations.md's table of checks: {check: {relative, absolute}}."""
    text = (COLLECTION / "docs/operations.md").read_text()
    table = text[text.index("| Check | Scope | Default (relative, absolute) |") :]
    found = {}
    for line in table.splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.split("|")]
        relative, absolute = re.fullmatch(
            r"([\d.]+) x, [+-] ([\d.]+)( s| MiB)?", cells[3]
        ).groups()[:2]
        scale = 1048576 if cells[3].endswith("MiB") else 1
        found[cells[1].strip("`")] = {
            "relative": float(relative),
            "absolute": float(absolute) * scale,
        }
    return found


def test_the_default_thresholds_are_the_documented_ones():
    assert _documented_defaults() == DEFAULT_THRESHOLDS
    assert set(HOST_CHECKS) < set(DEFAULT_THRESHOLDS) and set(QUANTILES) < set(DEFAULT_THRESHOLDS)
    assert QUANTILES == {"latency_p95": 0.95, "latency_p99": 0.99}
    directions = {check for check, direction in HOST_CHECKS.items() if direction == LOWER}
    assert directions == {"user_requests", "scrape_up"}
    assert DEFAULT_PROBE_ROUTES == ("/ready", "/health", "/metrics")


# --- the rows an on-call engineer reads ---------------------------------------------

GOLDEN = Path(__file__).with_name("canary_golden.json")


def _golden_case():
    """app1 against app2 and app3: /a half 500s, two 404s, half slow; /b new; /c gone;
    no lag series from app1."""
    batch = _named(
        "app1",
        routes={"/a": 40, "/b": 10},
        codes={"/a": {"500": 20, "404": 2}},
        slow={"/a": [(0.3, 20)]},
        host_checks={"lag_entries": None},
    )
    baseline = [_named(name, routes={"/a": 40, "/c": 10}) for name in ("app2", "app3")]
    outcome, why, rows = _judge([batch], baseline)
    return {"verdict": outcome, "why": why, "rows": rows}


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.10g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(item) for item in value]
    return value


def write_golden():
    """After a deliberate change of the rows: python -c 'import test_canary as t;
    t.write_golden()' (with the collection on PYTHONPATH), and read the diff."""
    GOLDEN.write_text(json.dumps(_rounded(_golden_case()), indent=1, sort_keys=True) + "\n")


def test_every_row_says_what_was_judged_on_which_numbers():
    """Each row's fields (values, limit, counts, per-host numbers, p-value, why) exactly
    as the report shows them, for one case touching every kind of row."""
    assert _rounded(_golden_case()) == json.loads(GOLDEN.read_text())


# --- the tests underneath ------------------------------------------------------------


def test_fisher_and_binomial_tails_match_known_values():
    # [[3, 1], [1, 3]]: one-sided p = 17/70 (Fisher's tea-tasting lady)
    assert fisher_greater(3, 4, 1, 4) == pytest.approx(17 / 70)
    assert fisher_less(1, 4, 3, 4) == pytest.approx(17 / 70)
    assert fisher_greater(0, 10, 5, 10) == 1.0 and fisher_less(10, 10, 0, 10) == 1.0
    assert binomial_at_least(1, 60, 0.01) == pytest.approx(1 - 0.99**60)
    assert binomial_at_least(2, 3, 0.5) == pytest.approx(0.5)
    assert binomial_at_least(0, 3, 0.5) == 1.0 and binomial_at_least(4, 3, 0.5) == 0.0
    # large samples stay exact and fast: 1 % against 1 % is no evidence, 2 % against 1 % is
    assert fisher_greater(1000, 100000, 1000, 100000) > 0.4
    assert fisher_greater(2000, 100000, 1000, 100000) < 1e-20
    assert median([3, 1, 2]) == 2 and median([1, 2, 3, 10]) == 2.5


def _exact_hypergeom_at_least(x, total, marked, drawn):
    found = sum(
        Fraction(
            math.comb(marked, k) * math.comb(total - marked, drawn - k), math.comb(total, drawn)
        )
        for k in range(max(x, 0), min(marked, drawn) + 1)
    )
    return float(found)


def _exact_binomial_at_least(x, size, rate):
    return float(
        sum(
            math.comb(size, k) * rate**k * (1 - rate) ** (size - k)
            for k in range(max(x, 0), size + 1)
        )
    )


def _close(found, exact):
    """Equal to 1e-9 relatively, or both below what a p-value is ever compared with."""
    return found == pytest.approx(exact, rel=1e-9, abs=1e-300) or max(found, exact) < 1e-250


def test_the_tails_equal_exact_sums_on_every_small_table_and_far_tails():
    for total in (0, 1, 3, 6):
        for marked in range(total + 1):
            for drawn in range(total + 1):
                for x in range(-1, min(marked, drawn) + 3):
                    found = hypergeom_at_least(x, total, marked, drawn)
                    exact = _exact_hypergeom_at_least(x, total, marked, drawn)
                    assert _close(found, exact), (x, total, marked, drawn, found, exact)
    # far tails, where a sum from the wrong side would give 1 - 1 = 0 or lose every digit
    for x, total, marked, drawn in [(30, 90, 30, 30), (0, 3780, 1800, 1260), (25, 400, 40, 100)]:
        exact = _exact_hypergeom_at_least(x, total, marked, drawn)
        assert _close(hypergeom_at_least(x, total, marked, drawn), exact), (x, exact)
        below = 1 - _exact_hypergeom_at_least(x + 1, total, marked, drawn)
        assert _close(fisher_less(x, drawn, marked - x, total - drawn), below), (x, below)
    for size in (0, 1, 2, 9, 60):
        for rate in (
            Fraction(0),
            Fraction(1, 100),
            Fraction(3, 10),
            Fraction(1, 2),
            Fraction(99, 100),
            Fraction(1),
        ):
            for x in range(-1, size + 3):
                found = binomial_at_least(x, size, float(rate))
                exact = _exact_binomial_at_least(x, size, rate)
                assert _close(found, exact), (x, size, rate, found, exact)
    assert _close(
        binomial_at_least(40, 60, 0.01), _exact_binomial_at_least(40, 60, Fraction(1, 100))
    )


def test_judge_counts_decides_only_when_it_can():
    assert judge_counts((30, 30), (0, 60), 0.01, "higher_is_worse", 0.99)["verdict"] == FAIL
    assert judge_counts((1, 60), (0, 60), 0.01, "higher_is_worse", 0.99)["verdict"] == PASS
    assert judge_counts((1, 1), (0, 1), 0.01, "higher_is_worse", 0.99)["verdict"] == INCONCLUSIVE
    assert judge_counts((0, 0), (0, 60), 0.01, "higher_is_worse", 0.99)["verdict"] == NO_DATA
    # with no baseline, held to the margin by a binomial test
    assert (
        judge_counts((5, 100), (0, 0), None, "higher_is_worse", 0.99, new_limit=0.01)["verdict"]
        == FAIL
    )
    assert (
        judge_counts((1, 100), (0, 0), None, "higher_is_worse", 0.99, new_limit=0.01)["verdict"]
        == PASS
    )


def test_quantile_interpolates_as_prometheus_does():
    cumulative = [(0.1, 50), (0.2, 100), (math.inf, 100)]
    assert quantile(0.5, cumulative) == pytest.approx(0.1)
    assert quantile(0.75, cumulative) == pytest.approx(0.15)
    assert quantile(0.99, [(0.1, 0), (math.inf, 10)]) == 0.1
    assert quantile(0.5, [(0.1, 0), (math.inf, 0)]) is None


def test_the_table_shows_failures_first_with_their_test():
    canary = _named("app1", codes={"/search": {"500": 30}})
    _outcome, _why, rows = _judge([canary], [_named("app2")])
    table = markdown(rows, "app1").splitlines()
    assert table[0].startswith("| Check | Scope | Batch (app1) |")
    assert table[2].startswith(
        "| error_ratio | (all routes) 5xx | 0.02381 | 0 | 0.01 | 30/1260 vs 0/1260"
    )
    assert any(
        line.startswith("| error_ratio | /search 5xx | 0.1 | 0 | 0.01 | 30/300 vs 0/300, p=")
        for line in table[3:6]
    )
    assert table[-1].endswith("| pass |")
