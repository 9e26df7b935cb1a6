"""canary_analysis against a real Prometheus (the controller's, started here over TLS with
basic auth) holding recorded series: identical hosts, and the bad releases and good ones
the judge must tell apart (a release refusing every key, a route removed, a quiet fleet
failing 30 of 30 searches, a canary without replication metrics, a restarting one
refusing twice the entries; a cold request among 60, a new route by design). Run as
Ansible runs a module (a process given its arguments in a file).

Run by `ansible-test units` on the installed collection (tests/test_collection.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

COLLECTION = Path(__file__).resolve().parents[4]
MODULE = COLLECTION / "plugins/modules/canary_analysis.py"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
USER = "prometheus"
PASSWORD = "canary-test"
# bcrypt of PASSWORD (Prometheus' web configuration takes only hashes): a test password
PASSWORD_HASH = "$2b$04$KZX9uwGTyrW18ZrdKlNoPORdhW.fTPmE90L3bVJu0sGp50H7Qbn1m"
STEP = 5  # a sample every 5 s
SPAN = 600  # over 10 minutes, ending an hour ago
END = (int(time.time()) // 60) * 60 - 3600
SWITCH = END - 300  # the canaries took traffic from here on


def _series(name: str, labels: dict, value_at) -> list[str]:
    text = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return [f"{name}{{{text}}} {value_at(t)} {t}" for t in range(END - SPAN, END + 1, STEP)]


def _counter(rate: float, restart: int | None = None):
    """rate events a second since the recording started (or since a restart)."""
    start = END - SPAN
    return lambda t: rate * (t - (start if restart is None or t < restart else restart))


ROUTES = {"/search": 1.0, "/nodes/{node_id}": 3.0, "/stats": 0.2}  # requests a second
BOUNDS = ("0.005", "0.01", "0.1", "0.25", "0.5", "+Inf")


def _host(
    instance, routes=None, codes=None, slow=None, replication=True, refused=0.0, restart=None
):
    """One host's recorded service: routes {route: requests a second} answered 200 unless
    codes {route: {code: share}}; slow {route: (seconds, share)} answered that slowly, the
    rest within 5-10 ms; HAProxy's health checks on /ready every 2 s; refused log entries a
    second; a restart at Unix time `restart` (its counters start again)."""
    service = {"job": "codegraph", "instance": instance}
    lines = []
    for route, rate in (ROUTES if routes is None else routes).items():
        shares = dict((codes or {}).get(route, {}))
        shares["200"] = 1 - sum(shares.values())
        for code, share in shares.items():
            labels = {**service, "method": "GET", "handler": route, "code": code}
            lines += _series("http_requests_total", labels, _counter(rate * share, restart))
        seconds, late = (slow or {}).get(route, (0, 0.0))
        for le in BOUNDS:
            share = (1 - late) * (0.5 if le == "0.005" else 1) + (
                late if float(le) >= seconds else 0
            )
            bucket = {**service, "method": "GET", "handler": route, "le": le}
            lines += _series(
                "http_request_duration_seconds_bucket", bucket, _counter(rate * share, restart)
            )
    probe = {**service, "method": "GET", "handler": "/ready", "code": "200"}
    lines += _series("http_requests_total", probe, _counter(0.5, restart))
    started = END - SPAN - 60
    lines += _series(
        "process_start_time_seconds",
        service,
        lambda t: restart if restart and t >= restart else started,
    )
    lines += _series("process_resident_memory_bytes", service, lambda t: 200e6)
    lines += _series("up", service, lambda t: 1)
    if replication:
        lines += _series(
            "codegraph_replication_refused_entries_total", service, _counter(refused, restart)
        )
        lines += _series("codegraph_replication_lag_entries", service, lambda t: 0)
    server = {"job": "haproxy", "instance": "lb1", "proxy": "codegraph", "server": instance}
    total = sum((ROUTES if routes is None else routes).values())
    lines += _series(
        "haproxy_server_http_responses_total", {**server, "code": "2xx"}, _counter(total)
    )
    lines += _series("haproxy_server_http_responses_total", {**server, "code": "5xx"}, _counter(0))
    lines += _series("haproxy_server_retry_warnings_total", server, _counter(0))
    lines += _series("haproxy_server_check_failures_total", server, _counter(0))
    return lines


QUIET = {"/search": 0.1}  # 30 searches in the window
HOSTS = {
    **{name: {} for name in ("app2", "app3", "app4", "good")},
    "bad": {"codes": {"/search": {"500": 0.1}}},
    "refuses": {"routes": {"(unauthenticated)": 4.2}, "codes": {"(unauthenticated)": {"401": 1.0}}},
    "removed": {
        "routes": {"/search": 1.0, "/nodes/{node_id}": 3.0, "(unmatched)": 0.2},
        "codes": {"(unmatched)": {"404": 1.0}},
    },
    "quiet1": {"routes": QUIET},
    "quiet2": {"routes": QUIET},
    "quiet_failing": {"routes": QUIET, "codes": {"/search": {"500": 1.0}}},
    "idle": {"routes": {}},
    "no_replication": {"replication": False},
    "refusing1": {"refused": 10 / 300},
    "refusing2": {"refused": 10 / 300, "restart": SWITCH + 150},
    "refusing_canary": {"refused": 19 / 300, "restart": SWITCH + 100},
    "cold_base": {"routes": {"/search": 0.2}},
    "cold": {"routes": {"/search": 0.2}, "slow": {"/search": (0.4, 1 / 60)}},
    "new_route": {"routes": {**ROUTES, "/v2/graph": 0.5}, "slow": {"/v2/graph": (0.2, 1.0)}},
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    for tool in (PROMETHEUS, PROMTOOL):
        if not tool:
            pytest.fail("no prometheus/promtool: scripts/bootstrap-host.sh installs them")
    work = tmp_path_factory.mktemp("prometheus")
    lines = [line for instance, shape in HOSTS.items() for line in _host(instance, **shape)]
    (work / "recorded.om").write_text("\n".join(lines) + "\n# EOF\n")
    subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", "recorded.om", "data"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        cwd=work,
        check=True,
        capture_output=True,
    )
    (work / "web.yml").write_text(
        "tls_server_config: {cert_file: server.crt, key_file: server.key}\n"
        f"basic_auth_users: {{{USER}: '{PASSWORD_HASH}'}}\n"
    )
    (work / "prometheus.yml").write_text("global: {}\n")
    port = _free_port()
    process = subprocess.Popen(
        [
            PROMETHEUS,
            "--config.file=prometheus.yml",
            "--web.config.file=web.yml",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.path=data",
            "--storage.tsdb.retention.time=30d",
        ],
        cwd=work,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while run(url, work, batch=["good"], baseline=["app2"], since=SWITCH, until=END).get(
            "failed"
        ):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "Prometheus did not start"
            time.sleep(0.2)
        yield url, work
    finally:
        process.terminate()
        process.wait(10)


def run(url: str, work: Path, check_mode: bool = False, **arguments: object) -> dict:
    """The module as Ansible runs it; its JSON answer (failed ones included)."""
    args = {
        "prometheus_url": url,
        "username": USER,
        "password": PASSWORD,
        "ca_path": str(work / "server.crt"),
        **arguments,
    }
    args_file = work / "args.json"
    args_file.write_text(
        json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}})
    )
    # the module imports its module_utils from where this test imported the collection
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    return json.loads(result.stdout)


def judged(prometheus, batch, baseline, **options):
    url, work = prometheus
    return run(url, work, batch=batch, baseline=baseline, since=SWITCH, until=END, **options)


def _failed(result):
    return {(row["check"], row["scope"]) for row in result["rows"] if row["verdict"] == "fail"}


def test_a_canary_like_the_baseline_passes_every_check(prometheus):
    result = judged(prometheus, ["good"], ["app2", "app3"])
    assert result["verdict"] == "pass", result["table"]
    assert result["window"] == 300 and result["changed"] is False
    judged_rows = {(row["check"], row["scope"]) for row in result["rows"]}
    assert ("error_ratio", "/search") in judged_rows and (
        "latency_p99",
        "/nodes/{node_id}",
    ) in judged_rows
    assert {"refused_entries", "lag_entries", "restarts", "memory_growth", "scrape_up"} <= {
        check for check, scope in judged_rows
    }
    assert {"lb_error_ratio", "lb_retries", "lb_check_failures", "traffic_share"} <= {
        check for check, scope in judged_rows
    }
    assert {row["verdict"] for row in result["rows"]} == {"pass"}, result["table"]
    assert not any(row["scope"] == "/ready" for row in result["rows"])  # health checks


@pytest.mark.parametrize(
    ("batch", "baseline"),
    [
        (["app2"], ["app3", "app4"]),
        (["app2", "app3"], ["app4"]),
        (["good"], ["app2", "app3", "app4"]),
    ],
)
def test_identical_hosts_pass_in_any_batch_size(prometheus, batch, baseline):
    result = judged(prometheus, batch, baseline)
    assert result["verdict"] == "pass", result["table"]


@pytest.mark.parametrize(
    ("batch", "baseline", "failing"),
    [
        (["bad"], ["app2", "app3"], ("error_ratio", "/search")),
        (["refuses"], ["app2", "app3"], ("traffic_share", "/search")),
        (["refuses"], ["app2", "app3"], ("client_error_ratio", "(all routes)")),
        (["removed"], ["app2", "app3"], ("traffic_share", "/stats")),
        (["quiet_failing"], ["quiet1", "quiet2"], ("error_ratio", "/search")),
        (["no_replication"], ["app2", "app3"], ("lag_entries", "hosts")),
        (["no_replication"], ["app2", "app3"], ("refused_entries", "hosts")),
        (["refusing_canary"], ["refusing1", "refusing2", "app2"], ("refused_entries", "hosts")),
        (["refusing_canary"], ["refusing1", "refusing2", "app2"], ("restarts", "hosts")),
    ],
    ids=[
        "one-route-500s",
        "refuses-every-key",
        "refuses-every-key-401s",
        "route-removed",
        "quiet-fleet-30-of-30",
        "no-replication-lag",
        "no-replication-refused",
        "restart-refusing-twice",
        "restart",
    ],
)
def test_a_bad_release_fails(prometheus, batch, baseline, failing):
    result = judged(prometheus, batch, baseline)
    assert result["verdict"] == "fail", result["table"]
    assert failing in _failed(result), result["table"]


def test_a_cold_request_among_60_and_a_new_route_by_design_pass(prometheus):
    cold = judged(prometheus, ["cold"], ["cold_base"])
    assert cold["verdict"] == "pass", cold["table"]
    new = judged(prometheus, ["new_route"], ["app2", "app3"])
    assert new["verdict"] == "pass", new["table"]
    rows = {row["check"]: row for row in new["rows"] if row["scope"] == "/v2/graph"}
    assert "new route" in rows["error_ratio"]["why"] and rows["latency_p99"]["verdict"] == "no data"


def test_no_user_traffic_is_inconclusive_and_says_so(prometheus):
    result = judged(prometheus, ["idle"], ["idle"])
    assert result["verdict"] == "inconclusive" and result["why"].startswith("no user traffic")


def test_each_row_has_its_query_and_a_link(prometheus):
    result = judged(
        prometheus, ["bad"], ["app2", "app3"], grafana_url="https://grafana.example:3000"
    )
    row = next(r for r in result["rows"] if r["check"] == "error_ratio" and r["scope"] == "/search")
    assert (
        'instance=~"bad"' in row["queries"]["batch"]
        and 'instance=~"app2|app3"' in row["queries"]["baseline"]
    )
    assert row["links"]["prometheus"].startswith("https://127.0.0.1:")
    assert "/graph?g0.expr=sum+by" in row["links"]["prometheus"]
    assert row["links"]["grafana"].startswith("https://grafana.example:3000/explore?left=")
    assert row["hosts"]["batch"]["bad"][1] > 250 and row["p_value"] < 1e-6
    assert "](https://127.0.0.1:" in result["table"]


def test_the_operators_check_is_asked_of_prometheus(prometheus):
    check = {
        "name": "memory_mib",
        "query": "max by (instance) (max_over_time("
        'process_resident_memory_bytes{instance=~"$instances"}[$window])) / 1048576',
        "absolute": 1,
    }
    result = judged(prometheus, ["good"], ["app2"], checks=[check])
    row = next(r for r in result["rows"] if r["check"] == "memory_mib")
    assert row["verdict"] == "pass" and row["hosts"]["batch"]["good"] == pytest.approx(
        200e6 / 1048576
    )
    lower = {**check, "direction": "lower_is_worse", "relative": 1.0, "absolute": 0}
    lower["query"] = check["query"].replace("/ 1048576", "/ 1048576 - 1")  # 1 MiB less, both sides
    result = judged(prometheus, ["good"], ["app2"], checks=[lower])
    assert result["verdict"] == "pass", result["table"]


def test_validate_only_asks_prometheus_to_parse_every_query(prometheus):
    url, work = prometheus
    good = {"name": "ok", "query": 'sum by (instance) (rate(up{instance=~"$instances"}[$window]))'}
    result = run(url, work, batch=["app2"], validate_only=True, checks=[good])
    assert not result.get("failed") and result["checks"] == ["ok"], result
    broken = {
        "name": "broken",
        "query": 'sum by (instance) (rate(up{instance=~"$instances"}[$window])',
    }
    result = run(url, work, batch=["app2"], validate_only=True, checks=[broken])
    assert (
        result["failed"]
        and "Prometheus refused" in result["msg"]
        and "parse error" in result["msg"]
    ), result
    negative = run(
        url, work, batch=["app2"], validate_only=True, thresholds={"restarts": {"absolute": -1}}
    )
    assert negative["failed"] and "restarts.absolute must be a number >= 0" in negative["msg"]


def test_with_the_whole_fleet_in_the_batch_the_baseline_is_its_hosts_before_the_switch(prometheus):
    """bad failed from the start; judged against itself before SWITCH it is no worse."""
    url, work = prometheus
    result = run(url, work, batch=["bad"], since=SWITCH, until=END, baseline_until=SWITCH)
    assert result["verdict"] == "pass", result["table"]
    row = next(r for r in result["rows"] if r["check"] == "error_ratio" and r["scope"] == "/search")
    assert row["baseline"] == pytest.approx(0.1, rel=0.05)


def test_it_fails_closed_naming_why(prometheus):
    url, work = prometheus
    common = {"batch": ["good"], "baseline": ["app2"], "since": SWITCH, "until": END}
    unreachable = run(f"https://127.0.0.1:{_free_port()}", work, **common)
    assert unreachable["failed"] and "did not answer" in unreachable["msg"], unreachable
    refused = run(url, work, **{**common, "password": "wrong"})
    assert refused["failed"] and "401" in refused["msg"], refused
    assert PASSWORD not in json.dumps(refused) and "wrong" not in json.dumps(refused)
    untrusted = run(url, work, **{**common, "ca_path": None})
    assert untrusted["failed"] and "CERTIFICATE_VERIFY_FAILED" in untrusted["msg"], untrusted
    bad_threshold = run(url, work, **common, thresholds={"latency_p100": {"absolute": 1}})
    assert bad_threshold["failed"] and "unknown check 'latency_p100'" in bad_threshold["msg"]
    alone = run(url, work, batch=["good"], since=SWITCH, until=END)
    assert alone["failed"] and "baseline is empty" in alone["msg"]


def test_a_threshold_of_the_operator_applies(prometheus):
    loose = {"error_ratio": {"absolute": 0.2}}
    assert judged(prometheus, ["bad"], ["app2", "app3"], thresholds=loose)["verdict"] == "pass"
    by_route = {"/search": {"error_ratio": {"absolute": 0.2}}}
    assert (
        judged(prometheus, ["bad"], ["app2", "app3"], route_thresholds=by_route)["verdict"]
        == "pass"
    )


def test_prometheus_is_reached_over_tls_with_basic_auth_only(prometheus):
    """The recorded data is served only to the login (so the tests above used it)."""
    url, work = prometheus
    context = ssl.create_default_context(cafile=str(work / "server.crt"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/v1/query?query=up", context=context, timeout=5)  # noqa: S310
    assert refused.value.code == 401
