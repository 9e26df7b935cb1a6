"""Canary verdicts from recorded query results (module_utils/canary.py)."""

from __future__ import annotations

import pytest
from ansible_collections.codegraph.ops.plugins.module_utils.canary import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    analyse,
    judge,
    markdown,
    queries,
    thresholds_with,
    verdict,
)

BASELINE = {
    "requests": {"/nodes/{node_id}": 900.0, "/search": 300.0},
    "error_ratio": {"/nodes/{node_id}": 0.0, "/search": 0.002},
    "latency_p95": {"/nodes/{node_id}": 0.004, "/search": 0.03},
    "restarts": 0.0,
}


def _batch(**changes):
    batch = {
        "requests": {"/nodes/{node_id}": 400.0, "/search": 120.0},
        "error_ratio": {"/nodes/{node_id}": 0.0, "/search": 0.003},
        "latency_p95": {"/nodes/{node_id}": 0.005, "/search": 0.035},
        "restarts": 0.0,
    }
    for name, value in changes.items():
        batch[name] = {**batch[name], **value} if isinstance(value, dict) else value
    return batch


def test_a_release_like_the_old_one_passes():
    rows = analyse(_batch(), BASELINE)
    assert verdict(rows) == PASS
    assert {row["verdict"] for row in rows} == {PASS}


def test_five_percent_of_one_route_answering_500_fails_that_route_only():
    rows = analyse(_batch(error_ratio={"/nodes/{node_id}": 0.05}), BASELINE)
    failed = [(row["check"], row["scope"]) for row in rows if row["verdict"] == FAIL]
    assert failed == [("error_ratio", "/nodes/{node_id}")]
    assert verdict(rows) == FAIL


def test_a_doubled_p95_fails_and_noise_on_a_tiny_baseline_does_not():
    assert verdict(analyse(_batch(latency_p95={"/search": 0.09}), BASELINE)) == FAIL
    # 0.004 s -> 0.008 s is twice as slow but within the absolute margin (0.05 s)
    assert verdict(analyse(_batch(latency_p95={"/nodes/{node_id}": 0.008}), BASELINE)) == PASS


def test_a_restart_of_the_service_fails():
    assert verdict(analyse(_batch(restarts=1.0), BASELINE)) == FAIL


def test_too_few_requests_is_inconclusive_not_a_pass():
    quiet = _batch(requests={"/nodes/{node_id}": 10.0, "/search": 3.0})
    rows = analyse(quiet, BASELINE, min_requests=50)
    assert verdict(rows) == INCONCLUSIVE
    assert {row["why"] for row in rows if row["verdict"] == INCONCLUSIVE} >= {"10 requests < 50"}


def test_a_busy_route_still_below_the_minimum_keeps_the_verdict_inconclusive():
    """/search is busy on the baseline (300 requests on 2 hosts) but has 30 on the canary:
    its 500s could hide there, so the others passing is not enough."""
    batch = _batch(requests={"/search": 30.0}, error_ratio={"/search": 0.5})
    assert verdict(analyse(batch, BASELINE, hosts=(1, 2))) == INCONCLUSIVE
    # a route quiet everywhere (health checks, scrapes) does not hold the verdict up
    quiet_everywhere = {**BASELINE, "requests": {"/nodes/{node_id}": 900.0, "/search": 60.0}}
    assert verdict(analyse(batch, quiet_everywhere, hosts=(1, 2))) == PASS


def test_a_threshold_of_the_operator_replaces_the_default():
    batch = _batch(error_ratio={"/search": 0.009})
    assert verdict(analyse(batch, BASELINE)) == PASS  # within 0.002 + 0.01
    assert (
        verdict(analyse(batch, BASELINE, {"error_ratio": {"relative": 1.5, "absolute": 0.001}}))
        == FAIL
    )


def test_a_row_says_its_limit():
    limits = {"relative": 2.0, "absolute": 0.01}
    row = judge("error_ratio", "/search", 0.05, 0.002, limits, requests=100, min_requests=50)
    assert row["limit"] == 0.012 and row["verdict"] == FAIL


def test_the_queries_select_the_hosts_and_the_window():
    built = queries("45s", ["cg-app2", "cg-app1"])
    assert 'instance=~"cg\\\\-app1|cg\\\\-app2"' in built["error_ratio"]
    # a dot in a host name is matched as a dot, not any character
    assert 'instance=~"app\\\\.example\\\\.com"' in queries("45s", ["app.example.com"])["restarts"]
    assert 'code=~"5.."' in built["error_ratio"] and "[45s]" in built["latency_p99"]


def test_the_table_shows_every_row():
    rows = analyse(_batch(error_ratio={"/search": 0.2}), BASELINE)
    table = markdown(rows, "canary")
    assert table.count("\n") == len(rows) + 1
    assert "| error_ratio | /search | 0.2 | 0.002 | 0.012 | fail |" in table


def test_thresholds_merge_over_the_defaults_and_bad_ones_are_named():
    merged = thresholds_with({"latency_p99": {"absolute": 0.5}})
    assert merged["latency_p99"] == {"relative": 1.5, "absolute": 0.5}
    for bad, named in [
        ({"latency_p100": {"absolute": 1}}, "unknown check 'latency_p100'"),
        ({"restarts": {"absolute": -1}}, "restarts.absolute must be a number >= 0"),
        ({"restarts": [1, 0]}, "restarts: give a dict"),
    ]:
        with pytest.raises(ValueError, match=named):
            thresholds_with(bad)
