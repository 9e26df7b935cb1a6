"""The fleet playbooks, run against three app hosts behind HAProxy, under load."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from consumer import (
    PUBLISHED,
    STATE,
    command,
    no_default_route_on_the_management_network,
    run,
)

from conftest import (
    APPS,
    TOP,
    api,
    api_key,
    converged,
    every_acknowledged_write_everywhere,
    host,
    listed,
    no_failures,
    playbook,
    prometheus,
    release_state,
    served_version,
    under_load,
)

RELEASES = STATE / "artifacts"  # the operator's copies (codegraph_release_dir)
ADMIN_SOCKET = "/run/haproxy/admin.sock"


def test_the_fleet_serves_through_the_load_balancer():
    ops = host("cg-fleet-ops")
    assert '"healthy"' in ops.check_output("curl -sS https://127.0.0.1:8443/health")
    backends = ops.check_output(f"echo 'show servers state codegraph' | socat stdio {ADMIN_SOCKET}")
    for name in APPS:
        assert name in backends


def lb_server(state: str, *options: str) -> dict:
    """The lb role's haproxy_server module on cg-fleet-app1, ad hoc; its result."""
    arguments = f"socket={ADMIN_SOCKET} backend=codegraph server=cg-fleet-app1 state={state}"
    argv, env = command(
        "",
        "cg-fleet-ops",
        "-o",
        *options,
        "-m",
        "codegraph.ops.haproxy_server",
        "-a",
        arguments,
        tool="ansible",
    )
    result = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.split(" => ", 1)[1])


def sessions_of_app1() -> int:
    """Requests HAProxy has sent to cg-fleet-app1 so far (its stot)."""
    stat = host("cg-fleet-ops").check_output(f"echo 'show stat' | socat stdio {ADMIN_SOCKET}")
    header, *rows = stat.splitlines()
    row = next(r.split(",") for r in rows if r.startswith("codegraph,cg-fleet-app1,"))
    return int(row[header[2:].split(",").index("stot")])


def test_drain_stops_new_requests_is_idempotent_and_check_mode_touches_nothing():
    with under_load() as (summary, _):
        assert lb_server("drained", "--check")["changed"] is True
        assert lb_server("ready")["changed"] is False  # the check run left it up
        drained = lb_server("drained")
        assert drained["changed"] is True and drained["status"] == "DRAIN"
        before = sessions_of_app1()
        time.sleep(2)
        assert sessions_of_app1() == before, "a drained host still got requests"
        assert lb_server("drained")["changed"] is False
        ready = lb_server("ready")
        assert ready["changed"] is True and ready["status"] == "UP"
        assert lb_server("ready")["changed"] is False
    no_failures(summary)


def test_rolling_deploy_of_a_new_release_fails_no_request():
    """From the operator's controller: the installed collection, plain Ansible, the new
    release fetched from where the project publishes it."""
    subprocess.run([TOP / "scripts/build-release.sh", "1.1.1"], check=True, capture_output=True)
    started = time.time()
    with under_load() as (summary, _):
        result = run("deploy", "-e", "codegraph_version=1.1.1")
    assert result.returncode == 0, result.stdout[-5000:]
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)
    assert [served_version(name) for name in APPS] == ["1.1.1"] * 3
    # staged everywhere first, then one host per batch (a canary, then 50% of 3 = 1 at a time)
    plays = [line for line in result.stdout.splitlines() if line.startswith("PLAY [")]
    assert plays.index(next(p for p in plays if p.startswith("PLAY [Stage"))) < plays.index(
        next(p for p in plays if p.startswith("PLAY [Roll out"))
    )
    assert len([p for p in plays if p.startswith("PLAY [Roll out")]) == 3
    for name in APPS:
        assert (
            host(name).check_output("readlink /opt/codegraph/previous")
            == "/opt/codegraph/releases/1.1.0"
        )
        assert len(api(name, "GET", "/backup")["backups"]) >= 1  # the backup before the switch
    # each batch judged against the hosts still on 1.1.0 (the last against itself before
    # the switch), every verdict kept
    report = _report("deploy", "1.1.1")
    assert report["verdict"] == "pass" and "rolled_back" not in report, report
    assert [batch["verdict"] for batch in report["batches"]] == ["pass"] * 3, report
    assert [len(batch["baseline"]) for batch in report["batches"]] == [2, 1, 0]
    for batch in report["batches"]:
        judged = {row["check"] for row in batch["rows"] if row["verdict"] == "pass"}
        assert {"error_ratio", "latency_p99", "restarts", "memory_growth"} <= judged, batch
    # the overview dashboard's release marks: each host's first minutes on 1.1.1
    overview = json.loads((TOP / "files/dashboards/codegraph-overview.json").read_text())
    [marks] = overview["annotations"]["list"]
    expr = marks["expr"].replace("$job", "codegraph").replace("$instance", ".*")
    found = prometheus(
        "/api/v1/query_range", query=expr, start=started, end=time.time(), step=marks["step"]
    )["data"]["result"]
    marked = {m["metric"]["instance"] for m in found if m["metric"]["version"] == "1.1.1"}
    assert marked == set(APPS), found


def test_maintenance_window_fails_no_request():
    with under_load() as (summary, _):
        result = playbook("maintenance")
    assert result.returncode == 0, result.stdout[-5000:]
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)
    reports = list((STATE / "reports/maintenance").glob("cg-fleet-app*-*.json"))
    assert {report.name.split("-2")[0] for report in reports} >= set(APPS)


def test_api_key_rotation_without_a_401_after_clients_switch():
    old_key = api_key()
    with under_load() as (summary, load):
        started = playbook("rotate_api_key", "-e", "rotate_phase=start")
        assert started.returncode == 0, started.stdout[-5000:]
        new_key = api_key()
        assert new_key != old_key
        switched_at = time.time()
        load.set_key(new_key)  # the clients switch
        time.sleep(5)
        finished = playbook("rotate_api_key", "-e", "rotate_phase=finish")
        assert finished.returncode == 0, finished.stdout[-5000:]
        time.sleep(5)
    new_id = hashlib.sha256(new_key.encode()).hexdigest()[:8]
    after_switch = [
        f for f in summary["failures"] if f["t"] > switched_at + 1 or f["key"] == new_id
    ]
    assert not after_switch, after_switch[:10]
    no_failures(summary)  # the old key kept working during the window, too
    every_acknowledged_write_everywhere(summary)
    for name in APPS:
        box = host(name)
        old = box.check_output(
            f"curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer {old_key}' "
            "https://localhost:8080/stats"
        )
        assert old == "401"
        assert api(name, "GET", "/stats", key=new_key)["total_nodes"] >= 200


def _release(workdir: Path, version: str, module: str, old: str, new: str) -> Path:
    """A release of `version` built from this checkout's app with `old` replaced by `new`
    in `module` (under src/codegraph/); the wheels of 1.1.1 for everything else."""
    source = workdir / "src"
    shutil.copytree(TOP / "app", source, ignore=shutil.ignore_patterns("tests", "*.egg-info"))
    changed = source / "src/codegraph" / module
    assert old in changed.read_text(), f"{module} no longer has the line this test changes"
    changed.write_text(changed.read_text().replace(old, new))
    pyproject = source / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('version = "1.1.0"', f'version = "{version}"')
    )
    stage = workdir / f"codegraph-{version}"
    with tarfile.open(PUBLISHED / "codegraph-1.1.1.tar.gz") as good:
        good.extractall(workdir, filter="data")
    (workdir / "codegraph-1.1.1").rename(stage)
    for wheel in (stage / "wheelhouse").glob("codegraph-*.whl"):
        wheel.unlink()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(stage / "wheelhouse"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (stage / "VERSION").write_text(version + "\n")
    artifact = workdir / f"codegraph-{version}.tar.gz"
    with tarfile.open(artifact, "w:gz") as out:
        out.add(stage, arcname=stage.name)
    return artifact


def _broken_release(workdir: Path, version: str) -> Path:
    """A release of `version` whose service refuses to start."""
    serve = "def serve(config_path: str, settings: Settings) -> int:\n"
    return _release(
        workdir,
        version,
        "cli/api.py",
        serve,
        serve + "    raise SystemExit('this release is broken on purpose')\n",
    )


def test_hotfix_that_never_gets_healthy_rolls_back_the_canary_only(tmp_path):
    artifact = _broken_release(tmp_path, "1.1.2")
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    try:
        with under_load() as (summary, _):
            result = playbook(
                "hotfix", "-e", f"hotfix_artifact={artifact}", "-e", f"hotfix_sha256={digest}"
            )
        output = result.stdout + result.stderr
        assert result.returncode != 0
        assert "did not become healthy" in output and "rolled back" in output, output[-3000:]
        no_failures(summary)
        every_acknowledged_write_everywhere(summary)
        touched = [name for name in APPS if host(name).file("/opt/codegraph/releases/1.1.2").exists]
        assert len(touched) == 1, touched  # only the canary
        assert [served_version(name) for name in APPS] == ["1.1.1"] * 3
        assert (
            host(touched[0]).check_output("readlink /opt/codegraph/current")
            == "/opt/codegraph/releases/1.1.1"
        )
    finally:
        for leftover in RELEASES.glob("codegraph-1.1.2.tar.gz*"):
            leftover.unlink()


def test_hotfix_with_a_wrong_checksum_touches_no_host(tmp_path):
    artifact = tmp_path / "codegraph-1.1.3.tar.gz"
    shutil.copy(PUBLISHED / "codegraph-1.1.1.tar.gz", artifact)
    before = release_state()
    result = playbook(
        "hotfix", "-e", f"hotfix_artifact={artifact}", "-e", f"hotfix_sha256={'0' * 64}"
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "did not match" in output and "no host was touched" in output, output[-3000:]
    assert "PLAY [Roll out the hotfix" not in result.stdout  # stopped on the controller
    assert release_state() == before
    assert not list(RELEASES.glob("codegraph-1.1.3.tar.gz*"))


REPORTS = STATE / "reports/rollouts"  # the canary analysis' verdicts (codegraph_canary)
# the line of auth.py that reads the scheme: the bad release compares it case-sensitively
SCHEME = 'authorization[:7].lower() != b"bearer "'


def _report(rollout: str, version: str) -> dict:
    """The newest report of that rollout, its Markdown beside it."""
    found = sorted(REPORTS.glob(f"*-{rollout}-{version}.json"))
    assert found, f"no report of {rollout} {version} in {REPORTS}"
    assert found[-1].with_suffix(".md").is_file()
    return json.loads(found[-1].read_text())


@pytest.fixture(scope="module")
def healthy_but_wrong(tmp_path_factory) -> tuple[Path, str]:
    """Release 1.1.4: healthy (/health and /ready need no key, so every health gate and
    HAProxy's checks pass), but it compares the Authorization scheme case-sensitively:
    every client's `Bearer <key>` is refused 401, with no 5xx anywhere."""
    artifact = _release(
        tmp_path_factory.mktemp("bad"), "1.1.4", "auth.py", SCHEME, SCHEME.replace(".lower()", "")
    )
    yield artifact, hashlib.sha256(artifact.read_bytes()).hexdigest()
    for leftover in RELEASES.glob("codegraph-1.1.4.tar.gz*"):
        leftover.unlink()


def _hotfix(artifact: Path, digest: str) -> subprocess.CompletedProcess:
    return playbook("hotfix", "-e", f"hotfix_artifact={artifact}", "-e", f"hotfix_sha256={digest}")


def test_a_healthy_release_refusing_every_key_is_stopped_at_the_canary_and_rolled_back(
    healthy_but_wrong,
):
    with under_load() as (summary, _):
        result = _hotfix(*healthy_but_wrong)
        rolled_back = time.time()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "The canary analysis failed (" in output, output[-3000:]
    touched = [name for name in APPS if host(name).file("/opt/codegraph/releases/1.1.4").exists]
    assert len(touched) == 1, touched  # only the canary
    assert [served_version(name) for name in APPS] == ["1.1.1"] * 3
    report = _report("hotfix", "1.1.4")
    assert report["verdict"] == "fail" and report["rolled_back"] == touched, report
    [canary] = report["batches"]
    assert canary["hosts"] == touched and sorted(canary["baseline"]) == sorted(
        set(APPS) - set(touched)
    )
    failed = {(row["check"], row["scope"]) for row in canary["rows"] if row["verdict"] == "fail"}
    # its traffic left every route for (unauthenticated), and 401s took over
    assert {("traffic_share", "/search"), ("client_error_ratio", "(all routes)")} <= failed, canary[
        "table"
    ]
    assert "](https://" in canary["table"]  # each row links to its query
    # the clients saw the bug only from the canary, while it served (from a moment before
    # its window, when it went back behind HAProxy, to its rollback): at most its share of
    # the traffic then (one host of three)
    served = (canary["since"] - 2, rolled_back)
    assert {f["outcome"] for f in summary["failures"]} == {"401"}, summary["failures"][:10]
    assert all(served[0] <= f["t"] <= served[1] for f in summary["failures"]), served
    sent = sum(
        count
        for route in summary["per_second"].values()
        for second, count in route.items()
        if served[0] - 1 <= int(second) <= served[1]
    )
    assert 0 < summary["failure_count"] <= sent / len(APPS) * 1.5, (summary["failure_count"], sent)
    every_acknowledged_write_everywhere(summary)


def test_prometheus_unreachable_stops_the_rollout_after_the_canary(healthy_but_wrong):
    """Prometheus answers when the rollout starts and stops once the canary has switched:
    its analysis cannot be made, so the canary goes back and no other host is touched."""
    switched: set[str] = set()
    done = threading.Event()

    def stop_prometheus_once_the_canary_switched() -> None:
        while not done.is_set():
            for name in APPS:
                if host(name).check_output("readlink /opt/codegraph/current").endswith("1.1.4"):
                    switched.add(name)
            if switched:
                host("cg-fleet-ops").check_output("systemctl stop prometheus")
                return
            time.sleep(0.5)

    watcher = threading.Thread(target=stop_prometheus_once_the_canary_switched)
    watcher.start()
    try:
        result = _hotfix(*healthy_but_wrong)
    finally:
        done.set()
        watcher.join()
        host("cg-fleet-ops").check_output("systemctl start prometheus")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert len(switched) == 1, switched
    assert "The canary analysis failed (not judged: Prometheus at" in output, output[-3000:]
    assert "did not answer" in output
    assert [served_version(name) for name in APPS] == ["1.1.1"] * 3
    report = _report("hotfix", "1.1.4")
    assert report["rolled_back"] == sorted(switched) and len(report["batches"]) == 1, report


def _ready(name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while host(name).run("curl -sf -o /dev/null https://localhost:8080/ready").rc != 0:
        assert time.monotonic() < deadline, f"{name} not ready: {api(name, 'GET', '/replication')}"
        time.sleep(1)


def test_a_rolling_restart_of_the_nats_servers_keeps_the_fleet_writable():
    with under_load() as (summary, _):
        result = playbook("nats_rolling_restart")
        assert result.returncode == 0, result.stdout[-5000:]
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)


def test_kill_9_of_the_service_on_one_host_loses_no_acknowledged_write():
    with under_load() as (summary, _):
        time.sleep(5)
        host("cg-fleet-app2").check_output(
            "systemctl kill -s KILL codegraph"
        )  # systemd restarts it
        time.sleep(3)
        _ready("cg-fleet-app2")
        time.sleep(3)
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)


def test_a_host_stopped_for_a_minute_catches_up_before_it_takes_traffic_again():
    with under_load() as (summary, _):
        time.sleep(3)
        subprocess.run(["podman", "stop", "-t", "10", "cg-fleet-app3"], check=True)
        time.sleep(60)
        subprocess.run(["podman", "start", "cg-fleet-app3"], check=True)
        no_default_route_on_the_management_network("cg-fleet-app3")  # (podman adds it again)
        _ready("cg-fleet-app3")
        time.sleep(3)
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)


def test_a_host_cut_off_from_the_network_leaves_the_load_balancer_and_catches_up():
    """Its network unplugged while writes go on: it says it is cut off, and once back it
    takes no traffic until it has caught up."""
    box = host("cg-fleet-app1")
    with under_load() as (summary, _):
        time.sleep(3)
        subprocess.run(["podman", "network", "disconnect", "podman", "cg-fleet-app1"], check=True)
        try:
            deadline = time.monotonic() + 60
            while "cut off" not in (
                reason := box.run("curl -s https://localhost:8080/ready").stdout
            ):
                assert time.monotonic() < deadline, reason
                time.sleep(1)
            time.sleep(10)  # writes go on through the other two
        finally:
            subprocess.run(
                ["podman", "network", "connect", "--ip", "10.88.210.11", "podman", "cg-fleet-app1"],
                check=True,
            )
        _ready("cg-fleet-app1")
        time.sleep(3)
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)


def _register_clients(action: str) -> dict:
    """Start the register clients on the ops host (files/register.py), or stop them and
    return what each value was answered."""
    ops = host("cg-fleet-ops")
    if action == "start":
        script = (TOP / "molecule/fleet/files/register.py").read_text()
        ops.check_output(f"cat > /tmp/register.py <<'PYEOF'\n{script}\nPYEOF")
        ops.check_output(f"printf '%s\\n' '{api_key()}' > /tmp/register.key")
        ops.run("systemctl reset-failed register; rm -f /tmp/register.stop /tmp/register.json")
        ops.check_output(
            "systemd-run --unit=register --collect python3 /tmp/register.py "
            "/tmp/register.key /tmp/register.json 3"
        )
        return {}
    ops.check_output("touch /tmp/register.stop")
    deadline = time.monotonic() + 90
    while not ops.file("/tmp/register.json").exists:
        assert time.monotonic() < deadline, "the register clients did not stop"
        time.sleep(1)
    return json.loads(ops.file("/tmp/register.json").content_string)


def test_no_acknowledged_value_is_undone_and_no_value_answered_503_is_applied():
    """The register test: clients without an Idempotency-Key overwrite their own node with
    increasing values through HAProxy while nats-server is frozen (SIGSTOP) for a few
    seconds on each host in turn, then while one host is cut off. On every host, each
    register holds the last value applied (no value answered 504, nor resent, lands after
    a later one), every value answered 200 is applied, and none answered 503 is."""
    _register_clients("start")
    try:
        time.sleep(2)
        for name in APPS:
            host(name).check_output("systemctl kill -s SIGSTOP nats-server")
            time.sleep(4)
            host(name).check_output("systemctl kill -s SIGCONT nats-server")
            time.sleep(3)
        subprocess.run(["podman", "network", "disconnect", "podman", "cg-fleet-app2"], check=True)
        time.sleep(15)  # it says it is cut off (within about 15 s); writes go on elsewhere
    finally:
        for name in APPS:
            host(name).run("systemctl kill -s SIGCONT nats-server")
        subprocess.run(
            ["podman", "network", "connect", "--ip", "10.88.210.12", "podman", "cg-fleet-app2"],
            check=False,
        )
        answers = _register_clients("stop")
    for name in APPS:
        _ready(name)
    converged()
    statuses = [status for answered in answers.values() for _, status in answered]
    assert statuses.count(200) > 30, {s: statuses.count(s) for s in set(statuses)}
    for client, answered in answers.items():
        acked = {value for value, status in answered if status == 200}
        refused = {value for value, status in answered if status == 503}
        for name in APPS:
            applied = {int(i.rsplit(":", 1)[1]) for i in listed(f"reg:{client}:", name)}
            last = int(api(name, "GET", f"/nodes/reg:{client}")["text"])
            assert acked <= applied, f"{name}: {sorted(acked - applied)[:5]} acknowledged, lost"
            assert not refused & applied, f"{name}: {sorted(refused & applied)} answered 503"
            assert last == max(applied), f"{name}: {client} holds {last}, not {max(applied)}"


def test_a_replaced_host_is_bootstrapped_from_a_peer_and_catches_up():
    box = host("cg-fleet-app3")
    box.check_output("systemctl stop codegraph && rm -rf /opt/codegraph/data/*")  # a new disk
    with under_load() as (summary, _):  # (the host runs the stack: no converge needed)
        result = playbook(
            "add_host", "-e", "add_host=cg-fleet-app3", "-e", "add_host_converge=false"
        )
        assert result.returncode == 0, result.stdout[-5000:]
        time.sleep(3)
    assert "bootstrapped from backup" in result.stdout
    no_failures(summary)
    every_acknowledged_write_everywhere(summary)


def _moment(name: str) -> str:
    """The next whole second on the host (its local time), once it has passed."""
    now = float(host(name).check_output("date +%s.%N"))
    time.sleep(math.ceil(now) - now + 0.2)
    return host(name).check_output(f"date -d @{math.ceil(now)} '+%Y-%m-%d %H:%M:%S'")


def test_the_fleet_restores_a_backup_together():
    prefix = f"r{int(time.time())}:"  # this run's own nodes
    nodes = [{"id": f"{prefix}{i}", "kind": "class", "name": f"R{i}"} for i in range(30)]
    api(APPS[0], "POST", "/nodes", {"nodes": nodes})
    converged()
    before = listed(prefix)
    result = playbook("backup", "-e", "backup_label=restore-test")
    assert result.returncode == 0, result.stdout[-5000:]
    fetched = sorted((STATE / "backups" / APPS[0]).glob("codegraph-backup-*-restore-test.tar.gz"))
    assert fetched, "the backup was not fetched to the controller"
    backup_id = fetched[-1].name.removeprefix("codegraph-backup-").removesuffix(".tar.gz")
    later = {"id": f"{prefix}later", "kind": "class", "name": "L"}
    api(APPS[1], "POST", "/nodes", {"nodes": [later]})
    api(APPS[2], "DELETE", f"/nodes/{prefix}0")
    result = playbook("restore", "-e", f"restore_backup_id={backup_id}")
    assert result.returncode == 0, result.stdout[-5000:]
    assert "Every host holds backup" in result.stdout  # the fleet's way, not host by host
    state = converged()
    for name in APPS:
        assert listed(prefix, name) == before  # the later node gone, the deleted one back
    after = {"id": f"{prefix}after", "kind": "class", "name": "A"}
    assert api(APPS[2], "POST", "/nodes", {"nodes": [after]})
    assert converged()["applied_seq"] > state["applied_seq"]  # writes resumed


def test_the_fleet_recovers_to_a_point_in_time_together():
    prefix = f"pitr{int(time.time())}:"
    api(APPS[1], "POST", "/backup")
    nodes = [{"id": f"{prefix}{n}", "kind": "file", "name": n} for n in ("kept", "gone")]
    api(APPS[0], "POST", "/nodes", {"nodes": nodes})
    api(APPS[2], "DELETE", f"/nodes/{prefix}gone")
    moment = _moment(APPS[1])
    converged()
    state = listed(prefix)
    time.sleep(1)
    later = {"id": f"{prefix}later", "kind": "file", "name": "later"}
    api(APPS[0], "POST", "/nodes", {"nodes": [later]})
    result = playbook("pitr", "-e", f"recovery_time='{moment}'", "-e", f"restore_source={APPS[1]}")
    assert result.returncode == 0, result.stdout[-5000:]
    converged()
    for name in APPS:
        assert listed(prefix, name) == state == {f"{prefix}kept"}


def test_fleet_reports():
    health = playbook("health_check")
    assert health.returncode == 0 and health.stdout.count("healthy    1.1.1") == 3, health.stdout[
        -3000:
    ]
    security = playbook("security_check")
    assert security.returncode == 0, security.stdout[-3000:]
    assert security.stdout.count("status=ok") == 3
    incident = playbook("incident_p0")
    assert incident.returncode == 0, incident.stdout[-3000:]
    bundles = [bundle.name for bundle in (STATE / "incidents").glob("*/incident-p0-*.tar.gz")]
    for name in APPS:
        assert any(bundle.startswith(f"incident-p0-{name}-") for bundle in bundles), bundles
    capacity = playbook("capacity_report")
    assert capacity.returncode == 0 and capacity.stdout.count(" nodes ") == 3, capacity.stdout[
        -3000:
    ]
