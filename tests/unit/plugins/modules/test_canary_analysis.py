"""canary_analysis against a real Prometheus (the controller's, started here over TLS with
basic auth) holding recorded series: a baseline of two hosts, a good canary, a canary
whose /search answers 500 to one request in ten, and a canary with too little traffic.
Run as Ansible runs a module (a process given its arguments in a file).

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


def _counter(rate: float):
    return lambda t: rate * (t - (END - SPAN))


def _host(instance: str, rate: float, failing: float = 0.0) -> list[str]:
    """One host's service: `rate` requests a second to /search and to /nodes/{node_id},
    `failing` of /search's answered 500; half of the answers within 5 ms, all within 10."""
    service = {"job": "codegraph", "instance": instance}
    lines = []
    for handler, bad in (("/search", failing), ("/nodes/{node_id}", 0.0)):
        route = {**service, "method": "GET", "handler": handler}
        lines += _series(
            "http_requests_total", {**route, "code": "200"}, _counter(rate * (1 - bad))
        )
        if bad:
            lines += _series("http_requests_total", {**route, "code": "500"}, _counter(rate * bad))
        for le, share in (("0.005", 0.5), ("0.01", 1.0), ("+Inf", 1.0)):
            bucket = {**route, "le": le}
            lines += _series("http_request_duration_seconds_bucket", bucket, _counter(rate * share))
    lines += _series("process_start_time_seconds", service, lambda t: END - SPAN - 60)
    lines += _series("process_resident_memory_bytes", service, lambda t: 200e6)
    lines += _series("codegraph_replication_refused_entries_total", service, lambda t: 0)
    lines += _series("codegraph_replication_lag_entries", service, lambda t: 0)
    return lines


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
    lines = []
    for instance, rate, failing in [
        ("app2", 5.0, 0.0),
        ("app3", 5.0, 0.0),
        ("good", 5.0, 0.0),
        ("bad", 5.0, 0.1),
        ("quiet", 0.05, 0.0),
    ]:
        lines += _host(instance, rate, failing)
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


def test_a_canary_like_the_baseline_passes_every_check(prometheus):
    url, work = prometheus
    result = run(
        url,
        work,
        check_mode=True,
        batch=["good"],
        baseline=["app2", "app3"],
        since=SWITCH,
        until=END,
    )
    assert result["verdict"] == "pass", result["table"]
    assert result["window"] == 300 and result["changed"] is False
    judged = {(row["check"], row["scope"]) for row in result["rows"]}
    assert ("error_ratio", "/search") in judged and ("latency_p99", "/nodes/{node_id}") in judged
    assert {"refused_entries", "lag_entries", "restarts", "memory_growth"} <= {
        check for check, scope in judged
    }
    assert {row["verdict"] for row in result["rows"]} == {"pass"}, result["table"]


def test_one_route_answering_500_to_one_request_in_ten_fails_that_route(prometheus):
    url, work = prometheus
    result = run(url, work, batch=["bad"], baseline=["app2", "app3"], since=SWITCH, until=END)
    assert result["verdict"] == "fail", result["table"]
    failed = [row for row in result["rows"] if row["verdict"] == "fail"]
    assert [(row["check"], row["scope"]) for row in failed] == [("error_ratio", "/search")]
    assert failed[0]["batch"] == pytest.approx(0.1, rel=0.05) and failed[0]["baseline"] == 0
    assert "| error_ratio | /search | 0.1 | 0 | 0.01 | fail |" in result["table"]
    assert "| memory_growth | hosts | 0.0 MiB | 0.0 MiB | 256.0 MiB | pass |" in result["table"]


def test_too_little_traffic_is_inconclusive(prometheus):
    url, work = prometheus
    result = run(url, work, batch=["quiet"], baseline=["app2", "app3"], since=SWITCH, until=END)
    assert result["verdict"] == "inconclusive", result["table"]
    assert "requests < 50" in result["table"]


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
    url, work = prometheus
    loose = {"error_ratio": {"absolute": 0.2}}
    result = run(
        url,
        work,
        batch=["bad"],
        baseline=["app2", "app3"],
        since=SWITCH,
        until=END,
        thresholds=loose,
    )
    assert result["verdict"] == "pass", result["table"]


def test_prometheus_is_reached_over_tls_with_basic_auth_only(prometheus):
    """The recorded data is served only to the login (so the tests above used it)."""
    url, work = prometheus
    context = ssl.create_default_context(cafile=str(work / "server.crt"))
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/v1/query?query=up", context=context, timeout=5)  # noqa: S310
    assert refused.value.code == 401
