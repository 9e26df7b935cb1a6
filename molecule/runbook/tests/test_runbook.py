"""Every runbook script, run on the host against the live service, and what it did."""

from __future__ import annotations

import subprocess
import time

import pytest
from cg_molecule import playbook

from conftest import BASE, BIN, URL, summary

SCRIPTS = [
    "codegraph-lib.sh",
    "health_check.sh",
    "perf_check.sh",
    "log_cleanup.sh",
    "backup.sh",
    "full_recovery.sh",
    "pitr.sh",
    "security_check.sh",
    "capacity_track.sh",
    "incident_p0.sh",
]
BACKUPS = f"{BASE}/backups"


def _wait_healthy(host, seconds=90):
    deadline = time.monotonic() + seconds
    while host.run(f"curl -sf {URL}/health").rc != 0:
        assert time.monotonic() < deadline, "the service did not come back"
        time.sleep(1)


def _ids(api) -> list[str]:
    return [node["id"] for node in api("GET", "/nodes?limit=1000")["nodes"]]


@pytest.fixture(scope="module")
def rendered(host, tmp_path_factory):
    """The scripts as installed, side by side (shellcheck follows the sourced library)."""
    folder = tmp_path_factory.mktemp("scripts")
    for name in SCRIPTS:
        (folder / name).write_text(host.file(f"{BIN}/{name}").content_string)
    return folder


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_installed_and_passes_shellcheck(host, rendered, name):
    installed = host.file(f"{BIN}/{name}")
    assert installed.user == "root" and installed.mode == (
        0o644 if name.endswith("lib.sh") else 0o750
    )
    result = subprocess.run(
        [
            "shellcheck",
            "--shell=bash",
            "--external-sources",
            "--source-path=SCRIPTDIR",
            str(rendered / name),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_health_check_passes_on_a_healthy_host(script):
    result = script("health_check.sh")
    assert result.rc == 0, result.stdout
    fields = summary(result)
    assert fields["status"] == "ok" and fields["failed"] == "none"
    assert (fields["service"], fields["api"], fields["database"]) == ("ok", "ok", "ok")
    assert 0 <= int(fields["disk_percent"]) <= 100 and 0 <= int(fields["memory_percent"]) <= 100


def test_health_check_fails_with_the_service_stopped(host, script):
    host.run("systemctl stop codegraph")
    try:
        result = script("health_check.sh")
        fields = summary(result)
        assert result.rc == 1
        assert (fields["status"], fields["service"], fields["api"], fields["database"]) == (
            "fail",
            "down",
            "fail",
            "fail",
        )
    finally:
        host.run("systemctl start codegraph")
        _wait_healthy(host)


def test_backup_tarball_holds_the_database_and_verifies(host, api, script):
    api(
        "POST",
        "/nodes",
        {"nodes": [{"id": f"bk:{i}", "kind": "function", "name": f"f{i}"} for i in range(25)]},
    )
    result = script("backup.sh", "daily-test")
    assert result.rc == 0, result.stdout
    name = summary(result)["backup"]
    assert name.startswith("codegraph-backup-") and name.endswith("-daily-test.tar.gz")
    assert host.run(f"cd {BACKUPS} && sha256sum -c {name}.sha256").rc == 0
    listing = host.check_output(f"tar -tzf {BACKUPS}/{name}")
    stem = name.removesuffix(".tar.gz")
    for member in (
        "backup_id.txt",
        "config/codegraph.toml",
        "db_stats.json",
        "service.log",
        "checksums.sha256",
        "app-backup/manifest.json",
        "app-backup/vector/index.bin",
    ):
        assert f"{stem}/{member}" in listing, member
    assert f"{stem}/app-backup/rocksdb/CURRENT" in listing and ".sst" in listing
    unpacked = host.run(
        f"d=$(mktemp -d) && tar -xzf {BACKUPS}/{name} -C $d && cd $d/{stem} "
        "&& sha256sum --quiet -c checksums.sha256 && wc -l < checksums.sha256"
    )
    assert unpacked.rc == 0 and int(unpacked.stdout.split()[-1]) > 10
    metric = host.file("/var/lib/prometheus/node-exporter/codegraph_backup.prom").content_string
    stamp = float(
        next(
            line.split()[1]
            for line in metric.splitlines()
            if line.startswith("codegraph_backup_last_success_timestamp_seconds ")
        )
    )
    assert time.time() - stamp < 600


def test_full_recovery_brings_back_exactly_the_backed_up_data(host, api, script):
    api(
        "POST",
        "/nodes",
        {"nodes": [{"id": f"fr:{i}", "kind": "class", "name": f"C{i}"} for i in range(10)]},
    )
    before = api("GET", "/nodes?limit=1000")["nodes"]
    backup_id = (
        summary(script("backup.sh", "recovery"))["backup"]
        .removeprefix("codegraph-backup-")
        .removesuffix(".tar.gz")
    )
    api("DELETE", "/nodes/fr:3")
    api(
        "POST",
        "/nodes",
        {
            "nodes": [
                {"id": "fr:after", "kind": "class", "name": "After"},
                {"id": "fr:5", "kind": "class", "name": "Changed"},
            ]
        },
    )
    result = script("full_recovery.sh", backup_id)
    assert result.rc == 0, result.stdout + result.stderr
    assert summary(result)["status"] == "ok"
    assert api("GET", "/nodes?limit=1000")["nodes"] == before
    assert host.run(f"ls -d {BASE}/data.pre-recovery.*").rc == 0


def test_full_recovery_refuses_a_damaged_tarball_before_touching_anything(host, api, script):
    good = summary(script("backup.sh", "to-damage"))["backup"]
    host.check_output(
        f"d=$(mktemp -d) && tar -xzf {BACKUPS}/{good} -C $d && cd $d "
        f"&& echo tampered >> {good.removesuffix('.tar.gz')}/db_stats.json "
        f"&& mv {good.removesuffix('.tar.gz')} codegraph-backup-damaged "
        f"&& tar -czf {BACKUPS}/codegraph-backup-damaged.tar.gz codegraph-backup-damaged"
    )
    before = _ids(api)
    pid = host.check_output("systemctl show -p MainPID --value codegraph")
    result = script("full_recovery.sh", "damaged")
    assert result.rc == 2 and "do not match" in result.stdout
    assert host.check_output("systemctl show -p MainPID --value codegraph") == pid  # never stopped
    assert _ids(api) == before
    assert script("full_recovery.sh", "no-such-backup").rc == 2
    assert script("full_recovery.sh").rc == 2


def test_pitr_script_recovers_to_a_moment(host, api, script):
    assert script("pitr.sh", "yesterday").rc == 2
    api("POST", "/backup")
    api("POST", "/nodes", {"nodes": [{"id": "pitr:kept", "kind": "file", "name": "kept"}]})
    time.sleep(1.1)
    moment = host.check_output("date '+%Y-%m-%d %H:%M:%S'")
    time.sleep(1.1)
    api("POST", "/nodes", {"nodes": [{"id": "pitr:later", "kind": "file", "name": "later"}]})
    result = script("pitr.sh", moment)
    assert result.rc == 0, result.stdout + result.stderr
    ids = _ids(api)
    assert "pitr:kept" in ids and "pitr:later" not in ids


def test_security_check_counts_failed_logins_and_flags_problems(host, script):
    for _ in range(3):
        host.run(f"curl -s -o /dev/null -H 'Authorization: Bearer wrong-key' {URL}/stats")
    result = script("security_check.sh")
    fields = summary(result)
    assert result.rc == 0, result.stdout
    assert int(fields["failed_auth"]) >= 3 and int(fields["cert_days_left"]) > 300
    assert fields["permissions"] == "ok"

    crt = f"{BASE}/config/server.crt"
    host.check_output(
        f"cp -a {crt} {crt}.orig && openssl req -x509 -newkey ec "
        "-pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 5 -subj /CN=soon "
        f"-keyout /tmp/soon.key -out {crt} 2>/dev/null"
    )
    try:
        result = script("security_check.sh")
        assert result.rc == 1 and int(summary(result)["cert_days_left"]) <= 5
        assert "certificate expires within" in result.stdout
    finally:
        host.check_output(f"mv {crt}.orig {crt}")

    host.check_output(f"chmod 0644 {BASE}/config/.env")
    try:
        result = script("security_check.sh")
        assert result.rc == 1 and summary(result)["permissions"] == "wrong"
    finally:
        host.check_output(f"chmod 0640 {BASE}/config/.env")


def test_log_cleanup_compresses_deletes_and_cleans(host, script):
    logs = f"{BASE}/logs"
    setup = [
        f"echo old > {logs}/aged-test.log",
        f"touch -d '2 days ago' {logs}/aged-test.log",
        f"echo new > {logs}/fresh-test.log",
        f"echo gone | gzip > {logs}/ancient-test.log.gz",
        f"touch -d '40 days ago' {logs}/ancient-test.log.gz",
        f"echo keep | gzip > {logs}/recent-test.log.gz",
        f"touch -d '3 days ago' {logs}/recent-test.log.gz",
        "mkdir -p /tmp/codegraph-stale",
        "touch -d '2 days ago' /tmp/codegraph-stale",
    ]
    host.check_output(" && ".join(setup))
    result = script("log_cleanup.sh")
    assert result.rc == 0 and summary(result)["status"] == "ok"
    assert (
        host.file(f"{logs}/aged-test.log.gz").exists
        and not host.file(f"{logs}/aged-test.log").exists
    )
    assert host.file(f"{logs}/fresh-test.log").exists
    assert not host.file(f"{logs}/ancient-test.log.gz").exists
    assert host.file(f"{logs}/recent-test.log.gz").exists
    assert not host.file("/tmp/codegraph-stale").exists


def test_capacity_tracking_appends(host, script):
    growth = f"{BASE}/logs/capacity-growth.log"
    lines_before = (
        len(host.file(growth).content_string.splitlines()) if host.file(growth).exists else 1
    )
    for _ in range(2):
        result = script("capacity_track.sh")
        assert result.rc == 0 and int(summary(result)["nodes"]) > 0
    lines = host.file(growth).content_string.splitlines()
    assert lines[0] == "time db_bytes nodes" and len(lines) == lines_before + 2


def test_perf_check_reports(script):
    result = script("perf_check.sh")
    assert result.rc == 0, result.stdout
    assert "/health:" in result.stdout and "CPU:" in result.stdout and "Disk I/O:" in result.stdout


def test_incident_bundle_has_the_diagnostics_and_no_secret(host, script, api_key):
    result = script("incident_p0.sh")
    assert result.rc == 0, result.stdout
    bundle = summary(result)["bundle"]
    listing = host.check_output(f"tar -tzf {bundle}")
    for part in (
        "summary.txt",
        "journal-errors.txt",
        "resources.txt",
        "releases.txt",
        "stats.json",
    ):
        assert part in listing
    assert ".env" not in listing and "server.key" not in listing
    assert host.run(f"zcat {bundle} | grep -a -c '{api_key}'").stdout.strip() == "0"


def test_cron_schedule(host):
    cron = host.file("/etc/cron.d/codegraph").content_string
    assert 'MAILTO=""' in cron.splitlines()  # the whole line: the cron module wrote MAILTO=""""
    expected = {
        "health_check": "0 8",
        "perf_check": "0 10,18",
        "log_cleanup": "0 2",
        "backup": "30 3",
        "security_check": "0 6",
        "capacity_track": "55 23",
    }
    for job, when in expected.items():
        line = next(line for line in cron.splitlines() if f"/{job}.sh" in line)
        assert line.startswith(f"{when} * * * root flock -n /run/lock/codegraph-{job}.lock")
        assert line.endswith(f">> {BASE}/logs/cron-{job}.log 2>&1")


def test_logrotate_rotates_and_the_service_keeps_logging(host):
    assert host.run("logrotate -d /etc/logrotate.d/codegraph").rc == 0
    assert host.run("logrotate -f /etc/logrotate.d/codegraph").rc == 0
    assert host.run(f"ls {BASE}/logs/codegraph.log-*").rc == 0
    host.run(f"curl -s -o /dev/null -H 'Authorization: Bearer nope' {URL}/stats")
    assert "authentication failed" in host.file(f"{BASE}/logs/codegraph.log").content_string


def test_the_layout_and_port_are_the_inventorys(host):
    """Nothing is left at the defaults this scenario moved away from."""
    assert BASE != "/opt/codegraph" and not host.file("/opt/codegraph").exists
    assert URL != "https://localhost:8080" and host.run("curl -s https://localhost:8080").rc != 0
    toml = host.file(f"{BASE}/config/codegraph.toml").content_string
    assert f"port = {URL.rsplit(':', 1)[1]}" in toml and f'keys_file = "{BASE}/config/.env"' in toml


def test_the_playbooks_follow_the_moved_contract(host, api_key, tmp_path):
    """The fleet playbooks find the moved scripts, files and port from the inventory alone."""
    health = playbook("health_check.yml", secret=api_key)
    assert health.returncode == 0, health.stdout[-3000:]
    assert "healthy" in health.stdout and f"{host.backend.hostname}" in health.stdout
    assert f":{URL.rsplit(':', 1)[1]}" in health.stdout, "the summary shows another port"

    backup = playbook("backup.yml", "-e", f"backup_store_dir={tmp_path}", secret=api_key)
    assert backup.returncode == 0, backup.stdout[-3000:]
    assert list(tmp_path.glob("*/codegraph-backup-*-fleet.tar.gz")), "no backup was fetched"

    window = playbook(
        "maintenance.yml", "-e", f"maintenance_reports_dir={tmp_path}", secret=api_key
    )
    assert window.returncode == 0, window.stdout[-3000:]
    assert list(tmp_path.glob("*.json")), "maintenance saved no auto-tune report"
    _wait_healthy(host)
