"""The converged CodeGraph host, checked from inside and from the controller."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import tomllib
from pathlib import Path

import httpx
import pytest
import testinfra

from codegraph.settings import parse_settings

BASE = "/opt/codegraph"
CURL_AUTH = "curl -sS -H 'Authorization: Bearer {key}' https://localhost:8080{path}"
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory" / ".secrets" / "tls"


# Debian 12 and Debian 13 (the platforms of molecule.yml)
HOSTS = ("cg-default-app", "cg-default-app13")


def _config(host) -> dict:
    return tomllib.loads(host.file(f"{BASE}/config/codegraph.toml").content_string)


def test_service_enabled_and_running_as_codegraph(host):
    service = host.service("codegraph")
    assert service.is_enabled and service.is_running
    pid = host.check_output("systemctl show -p MainPID --value codegraph")
    assert host.check_output(f"ps -o user= -p {pid}").strip() == "codegraph"
    assert host.socket("tcp://0.0.0.0:8080").is_listening
    assert host.socket("tcp://0.0.0.0:9090").is_listening


def test_health_over_tls_verified_against_the_fleet_ca(host):
    with_ca = host.run(f"curl -sS --cacert {BASE}/config/ca.crt https://localhost:8080/health")
    assert with_ca.rc == 0 and json.loads(with_ca.stdout)["status"] == "healthy"
    # The runbook's plain call verifies too: the CA is in the system trust store.
    code = host.check_output('curl -s -o /dev/null -w "%{http_code}" https://localhost:8080/health')
    assert code == "200"
    metrics = host.run("curl -sS https://localhost:9090/metrics")
    assert metrics.rc == 0 and "codegraph_build_info" in metrics.stdout


def test_tls_handshake_from_the_controller(host):
    address = host.check_output("hostname -I").split()[0]
    context = ssl.create_default_context(cafile=str(SECRETS / "ca.crt"))
    response = httpx.get(f"https://{address}:8080/health", verify=context, timeout=10)
    assert response.json()["status"] == "healthy"
    certificate = host.check_output(
        f"openssl x509 -in {BASE}/config/server.crt -noout -ext subjectAltName"
    )
    for name in (
        "DNS:localhost",
        "IP Address:127.0.0.1",
        f"IP Address:{address}",
        "DNS:codegraph.example.internal",
        f"DNS:{host.backend.name}",
    ):
        assert name in certificate


def test_authentication_required(host, api_key):
    assert (
        host.check_output('curl -s -o /dev/null -w "%{http_code}" https://localhost:8080/stats')
        == "401"
    )
    stats = json.loads(host.check_output(CURL_AUTH.format(key=api_key, path="/stats")))
    assert stats["total_nodes"] >= 1  # the node the profile switch kept


@pytest.mark.parametrize(
    ("path", "owner", "group", "mode"),
    [
        (f"{BASE}/config", "root", "codegraph", 0o750),
        (f"{BASE}/config/codegraph.toml", "root", "codegraph", 0o640),
        (f"{BASE}/config/.env", "root", "codegraph", 0o640),
        (f"{BASE}/config/server.key", "root", "codegraph", 0o640),
        (f"{BASE}/config/server.crt", "root", "codegraph", 0o644),
        (f"{BASE}/data", "codegraph", "codegraph", 0o750),
        (f"{BASE}/logs", "codegraph", "codegraph", 0o750),
        (f"{BASE}/backups", "codegraph", "codegraph", 0o750),
        (f"{BASE}/bin", "root", "root", 0o755),
    ],
)
def test_file_modes_and_owners(host, path, owner, group, mode):
    entry = host.file(path)
    assert entry.exists
    assert (entry.user, entry.group, entry.mode) == (owner, group, mode)


def test_release_layout(host):
    current = host.file(f"{BASE}/current")
    assert current.is_symlink and current.linked_to == f"{BASE}/releases/1.1.0"
    assert host.file(f"{BASE}/releases/1.1.0/.installed").exists
    api = host.file(f"{BASE}/bin/codegraph-api")
    assert api.is_symlink and api.linked_to == f"{BASE}/releases/1.1.0/venv/bin/codegraph-api"
    assert host.check_output(f"{BASE}/bin/codegraph-api --version") == "codegraph-api 1.1.0"
    assert not host.file(f"{BASE}/releases/.incoming").exists


def _assert_installed_and_shellcheck_clean(host, tmp_path, name: str, mode: int) -> None:
    """A script of BASE/bin, owned by root with this mode, as shellcheck sees it."""
    installed = host.file(f"{BASE}/bin/{name}")
    assert (installed.user, installed.mode) == ("root", mode)
    script = tmp_path / name
    script.write_text(installed.content_string)
    lint = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
    assert lint.returncode == 0, lint.stdout


def test_codegraph_switch_passes_shellcheck_and_refuses_what_it_cannot_do(host, tmp_path):
    _assert_installed_and_shellcheck_clean(host, tmp_path, "codegraph-switch", 0o750)
    served = host.run(f"{BASE}/bin/codegraph-switch 1.1.0")  # what it already serves
    assert served.rc == 0 and json.loads(served.stdout)["changed"] is False
    missing = host.run(f"{BASE}/bin/codegraph-switch --backup 9.9.9")
    assert missing.rc == 3 and "9.9.9 is not installed" in missing.stderr
    no_previous = host.run(f"{BASE}/bin/codegraph-switch --rollback")
    assert no_previous.rc == 3 and "no release to roll back to" in no_previous.stderr
    # --link-only: the role's converge switch (its handler restarts), --dry-run its check mode
    would = host.run(f"{BASE}/bin/codegraph-switch --link-only 9.9.9 --dry-run")
    expected = {"changed": True, "from": "1.1.0", "to": "9.9.9"}
    assert would.rc == 0 and json.loads(would.stdout) == expected
    refused = host.run(f"{BASE}/bin/codegraph-switch --link-only 9.9.9")
    assert refused.rc == 3 and "9.9.9 is not installed" in refused.stderr
    same = host.run(f"{BASE}/bin/codegraph-switch --link-only 1.1.0")
    assert same.rc == 0 and json.loads(same.stdout)["changed"] is False
    assert host.file(f"{BASE}/current").linked_to == f"{BASE}/releases/1.1.0"


def test_codegraph_healthy_means_healthy_on_the_current_release(host, tmp_path):
    """The one definition of healthy the handlers, codegraph-switch and the runbook use."""
    _assert_installed_and_shellcheck_clean(host, tmp_path, "codegraph-healthy", 0o755)
    assert host.run(f"{BASE}/bin/codegraph-healthy").rc == 0  # current: 1.1.0
    other = host.run(f"{BASE}/bin/codegraph-healthy 9.9.9")
    assert other.rc == 1 and "not healthy on release 9.9.9" in other.stderr
    assert '"version":"1.1.0"' in other.stderr  # what it does serve, in the reason
    host.run("systemctl stop codegraph")
    try:
        stopped = host.run(f"{BASE}/bin/codegraph-healthy --wait 1")
        assert stopped.rc == 1 and "no answer" in stopped.stderr
    finally:
        host.run("systemctl start codegraph")
    assert host.run(f"{BASE}/bin/codegraph-healthy --wait 60").rc == 0


def test_codegraph_auth_header_prints_the_key_as_a_header_and_only_that(host, tmp_path, api_key):
    _assert_installed_and_shellcheck_clean(host, tmp_path, "codegraph-auth-header", 0o755)
    header = host.run(f"{BASE}/bin/codegraph-auth-header")
    assert header.rc == 0 and header.stdout == f"Authorization: Bearer {api_key}\n"
    stats = host.run(
        f"{BASE}/bin/codegraph-auth-header | curl -sf -H @- https://localhost:8080/stats"
    )
    assert stats.rc == 0 and "total_nodes" in json.loads(stats.stdout)
    no_key = host.run(f"{BASE}/bin/codegraph-auth-header /etc/hostname")
    assert no_key.rc == 1 and no_key.stdout == ""
    assert "no CODEGRAPH_API_KEY in /etc/hostname" in no_key.stderr


def test_systemd_hardening(host):
    wanted = {
        "User": "codegraph",
        "Type": "notify",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "LimitNOFILE": "16384",
        "RestrictSUIDSGID": "yes",
    }
    shown = host.check_output(
        "systemctl show codegraph -p " + " -p ".join([*wanted, "ReadWritePaths", "ExecReload"])
    )
    values = dict(line.split("=", 1) for line in shown.splitlines())
    for key, value in wanted.items():
        assert values[key] == value, key
    assert set(values["ReadWritePaths"].split()) == {
        f"{BASE}/data",
        f"{BASE}/logs",
        f"{BASE}/backups",
    }
    assert "kill" in values["ExecReload"] and "-HUP" in values["ExecReload"]


def test_systemd_exposure_is_at_most_2(host):
    """systemd's own rating of the sandbox, on a real host: the service parses untrusted
    input, so it is boxed in as tightly as it still runs (it does: every other test here
    talks to it)."""
    report = host.check_output("systemd-analyze security --no-pager codegraph")
    exposure = float(re.search(r"Overall exposure level for \S+: ([\d.]+)", report)[1])
    assert exposure <= 2.0, report
    for setting in ("SystemCallFilter=~@privileged", "ProtectProc=", "MemoryDenyWriteExecute="):
        assert any(line.startswith("✓ " + setting) for line in report.splitlines()), setting


def test_the_chosen_profile_reached_rocksdb(host, api_key):
    """Every value of the profile in force, read from RocksDB's own OPTIONS file."""
    config = _config(host)
    tuning = parse_settings(config).database.tuning()
    newest = host.check_output(f"ls -t {BASE}/data/rocksdb/OPTIONS-* | head -1")
    options = host.file(newest).content_string
    section = options.split('[CFOptions "nodes"]')[1]
    table = options.split('[TableOptions/BlockBasedTable "nodes"]')[1]
    database = options.split("[DBOptions]")[1]
    compression = {"none": "kNoCompression", "lz4": "kLZ4Compression", "zstd": "kZSTD"}
    expected_cf = {
        key: tuning[key]
        for key in (
            "write_buffer_size",
            "max_write_buffer_number",
            "min_write_buffer_number_to_merge",
            "level0_file_num_compaction_trigger",
            "level0_slowdown_writes_trigger",
            "level0_stop_writes_trigger",
            "max_bytes_for_level_base",
            "target_file_size_base",
            "bloom_locality",
        )
    }
    expected_cf["compression_per_level"] = ":".join(
        compression[c] for c in tuning["compression_per_level"]
    )
    for key, value in expected_cf.items():
        assert re.search(rf"^\s*{key}={value}$", section, re.MULTILINE), (key, value)
    for key in (
        "cache_index_and_filter_blocks",
        "pin_l0_filter_and_index_blocks_in_cache",
        "pin_top_level_index_and_filter",
        "optimize_filters_for_memory",
    ):
        assert re.search(rf"^\s*{key}={str(tuning[key]).lower()}$", table, re.MULTILINE), key
    assert re.search(
        rf"^\s*max_background_jobs={tuning['max_background_jobs']}$",
        database,
        re.MULTILINE,
    )
    assert re.search(r"^\s*max_log_file_size=67108864$", database, re.MULTILINE)
    stats = json.loads(host.check_output(CURL_AUTH.format(key=api_key, path="/stats/rocksdb")))
    assert stats["profile"] == config["database"]["profile"] == "write_heavy"
    assert stats["block_cache"]["capacity_bytes"] == tuning["block_cache_size"]


def _hosts() -> list:
    return [testinfra.get_host(f"podman://{name}") for name in HOSTS]


def test_check_mode_on_the_converged_hosts_changes_nothing(api_key):
    """`ansible-playbook --check --diff` reports no change, does not fail, shows no secret."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    (profile,) = {_config(host)["database"]["profile"] for host in _hosts()}
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--check",
            "--diff",
            "-e",
            f"codegraph_rocksdb_profile={profile}",
            str(scenario / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
    )
    assert result.returncode == 0, result.stdout[-4000:]
    for name in HOSTS:
        recap = re.search(
            rf"{name}\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)",
            result.stdout,
        )
        assert recap and recap.groups() == ("0", "0"), result.stdout[-4000:]
    assert api_key not in result.stdout and "PRIVATE KEY" not in result.stdout


def test_a_controller_with_another_fleet_ca_stops_before_touching_the_hosts(tmp_path):
    """A second controller without the fleet's CA folder, told to create one: the hosts
    trust the first CA, so the run stops in preflight, says what to do, changes nothing."""
    files = f"{BASE}/config/server.crt {BASE}/config/server.key {BASE}/config/ca.crt"
    before = [host.check_output(f"sha256sum {files}") for host in _hosts()]
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    result = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "-e",
            f"codegraph_tls_secrets_dir={tmp_path}/tls",
            "-e",
            "fleet_ca_create=true",
            str(scenario / "converge.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"},
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "trusts another fleet CA" in output, output[-3000:]
    assert "fleet_ca_replace=true" in output
    assert [host.check_output(f"sha256sum {files}") for host in _hosts()] == before
    assert not (tmp_path / "tls" / "ca.key").exists()  # no new CA was made either
